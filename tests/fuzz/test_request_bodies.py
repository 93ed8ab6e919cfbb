"""Request bodies of every shape through `parse_body` and `inject_stream_usage`: a 4xx RouterError or a
result, never another exception, and always the `model` a Python model server (json.loads) would read."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kthena_router.errors import RouterError
from kthena_router.openai import MAX_MODEL_CHARS, inject_stream_usage, parse_body, wants_usage

FUZZ = settings(max_examples=200, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8)
# Text that reaches `model` once decoded: control characters, separators, non-BMP, lone surrogates.
hostile_text = st.text(st.characters(exclude_categories=()), max_size=12) | st.sampled_from(
    ["\x00", "m\x00", "m\r\nX-Injected: 1", "\t", "\x7f", "\x85", "\ud800", "m\udfff", "\u2028", "模型", "😀",
     " m ", "m" * MAX_MODEL_CHARS, "m" * (MAX_MODEL_CHARS + 1)])
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16-le", "utf-16-be", "utf-16", "utf-32-le", "utf-32-be", "utf-32")


def outcome(body: bytes, required: bool = True):
    """The ParsedBody, or the RouterError, which must be a 4xx OpenAI error object."""
    try:
        return parse_body(body, "application/json", required=required)
    except RouterError as err:
        assert 400 <= err.status < 500, err
        error = orjson.loads(err.body())["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "request_parsing"
        return err


def model_is_acceptable(model: object) -> bool:
    """The rule the README states, written out independently of the implementation."""
    return (isinstance(model, str) and model.strip() != "" and len(model) <= MAX_MODEL_CHARS
            and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in model))


def python_reading(body: bytes) -> object:
    """What a Python model server (Starlette's `request.json()`) reads from these bytes, or None."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return payload


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_parsed_or_refused_with_a_4xx(body):
    outcome(body)
    outcome(body, required=False)


@FUZZ
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6), json_values | hostile_text)
def test_any_model_value_is_accepted_exactly_when_it_can_name_a_model(fields, model):
    body = json.dumps({**fields, "model": model}).encode()
    result = outcome(body)
    if model_is_acceptable(model) and not isinstance(fields.get("stream", False), bool):
        assert isinstance(result, RouterError) and "stream" in result.message
    elif model_is_acceptable(model):
        assert not isinstance(result, RouterError) and result.model == model
    else:
        assert isinstance(result, RouterError)
        # Elsewhere than a model path the same body is forwarded, just without a model.
        lenient = outcome(body, required=False)
        assert not isinstance(lenient, RouterError) and lenient.model is None


@pytest.mark.parametrize(("model", "message"), [
    (1, "must be a string, got number"),
    (1.5, "must be a string, got number"),
    (None, "'model' is required"),
    (True, "must be a string, got boolean"),
    (False, "must be a string, got boolean"),
    (["m"], "must be a string, got array"),
    ({"name": "m"}, "must be a string, got object"),
    ("", "must not be empty"),
    ("   \t", "must not be empty"),
    ("m" * (MAX_MODEL_CHARS + 1), "must not be longer"),
    ("m\x00", "control characters"),
    ("m\r\nX-Injected: 1", "control characters"),
    ("m\x1b[31m", "control characters"),
    ("m\x85", "control characters"),
], ids=["int", "float", "null", "true", "false", "array", "object", "empty", "blank", "too_long", "nul", "crlf",
        "escape", "c1"])
def test_model_of_a_wrong_type_or_shape_is_a_400_naming_the_problem(model, message):
    err = outcome(json.dumps({"model": model, "prompt": "x"}).encode())
    assert isinstance(err, RouterError) and err.status == 400 and message in err.message


def test_a_model_given_as_a_lone_surrogate_escape_is_refused():
    """orjson refuses the escape; json.loads accepts it, but the string cannot be encoded as UTF-8 for a
    header, a log line or a metric label."""
    for body in (b'{"model": "\\ud800"}', b'{"model": "m\\udfff"}', b'{"model": "\\udc00\\ud800"}'):
        err = outcome(body)
        assert isinstance(err, RouterError) and "surrogates" in err.message
        assert outcome(body, required=False).model is None


def test_a_model_of_exactly_the_longest_length_and_non_ascii_names_are_accepted():
    for model in ("m" * MAX_MODEL_CHARS, "模型-7B", "😀", "m\u2028", "Qwen/Qwen2.5 0.5B"):
        assert outcome(json.dumps({"model": model}).encode()).model == model  # \u-escaped
        assert outcome(json.dumps({"model": model}, ensure_ascii=False).encode()).model == model
    assert outcome(b'{"model": "\\ud83d\\ude00"}').model == "\U0001f600"  # an escaped surrogate pair


@FUZZ
@given(json_values)
def test_stream_must_be_a_boolean(stream):
    result = outcome(json.dumps({"model": "m", "stream": stream}).encode())
    if stream is None or isinstance(stream, bool):
        assert not isinstance(result, RouterError) and result.stream == bool(stream)
    else:
        assert isinstance(result, RouterError) and "'stream' must be a boolean" in result.message
        assert outcome(json.dumps({"model": "m", "stream": stream}).encode(), required=False).stream is False


@pytest.mark.parametrize("top", [b"null", b"[]", b'[{"model": "m"}]', b'"m"', b"1", b"-0.5e3", b"true", b"false",
                                 b'"{\\"model\\": \\"m\\"}"'])
def test_a_top_level_that_is_not_an_object_is_a_400(top):
    err = outcome(top)
    assert isinstance(err, RouterError) and "must be a JSON object" in err.message


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,  # deep nesting
    b"[" * 100_000,
    b'{"model": "m", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"model": "m", "x": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
    b'{"model": "m", "n": 1' + b"0" * 5000 + b"}",  # an integer json.loads refuses (over 4300 digits)
    b'{"model": "m", "n": 1' + b"0" * 400 + b"}",  # beyond a double, still an integer for Python
    b'{"model": "m", "n": 1e999999999}',
    b'{"model": "m", "n": -1e-999999999}',
    b'{"model": 1e999}',
    b'{"model": "m", "t": NaN, "u": -Infinity}',  # Python servers accept these, orjson does not
    b"\xef\xbb\xbf" + b'{"model": "m"}',  # a byte-order mark
    b"\xef\xbb\xbf\xef\xbb\xbf" + b'{"model": "m"}',
    b'{"model": "\xff\xfe"}',  # invalid UTF-8
    b'{"model": "m", "prompt": "\xed\xa0\x80"}',  # a UTF-8-encoded surrogate
    b'{"model": "m", "prompt": "\xc0\xaf"}',  # an overlong encoding
    b'{"model": "m\x00"}',  # a raw control character inside a string
    b'{"model": "m"}\x00',
    b'{"model": "m"} {"model": "n"}',  # two documents
    b'{"model": "m",}',  # trailing comma
    b"{'model': 'm'}",
    b'{"model": "m" /* comment */}',
    b'{"model" "m"}',
    b"{", b"}", b"", b" ", b"\x00" * 64, b"\r\n", b"model=m&prompt=x", b"<xml/>",
    '{"model": "m"}'.encode("utf-16-le"),
    '{"model": "m"}'.encode("utf-32"),
    '{"model": "m"}'.encode("cp500"),  # EBCDIC
])
def test_hostile_bodies_get_the_model_json_loads_reads_or_a_400(body):
    result = outcome(body)
    reading = python_reading(body)
    if isinstance(reading, dict) and model_is_acceptable(reading.get("model")):
        assert not isinstance(result, RouterError) and result.model == reading["model"]
    else:
        assert isinstance(result, RouterError)


def _object_text(pairs: list[tuple[str, object]], spaces: str) -> str:
    return "{" + spaces + ("," + spaces).join(
        json.dumps(key) + spaces + ":" + spaces + json.dumps(value) for key, value in pairs) + spaces + "}"


keys = st.sampled_from(["model", "stream", "prompt", "stream_options", "Model", "model "]) | st.text(max_size=6)
values = st.sampled_from(["m", "other", "", True, False, None, 1, [], {}, {"include_usage": True}]) | json_values


@FUZZ
@given(st.lists(st.tuples(keys, values), max_size=8), st.sampled_from(["", " ", "\n\t "]),
       st.sampled_from(ENCODINGS))
def test_duplicate_keys_whitespace_and_encodings_resolve_as_json_loads_resolves_them(pairs, spaces, encoding):
    """The model server parses the same bytes; the router must read the same `model` and `stream`."""
    body = _object_text(pairs, spaces).encode(encoding)
    result = outcome(body)
    reading = python_reading(body)
    assert isinstance(reading, dict)
    model, stream = reading.get("model"), reading.get("stream")
    if model_is_acceptable(model) and (stream is None or isinstance(stream, bool)):
        assert not isinstance(result, RouterError)
        assert (result.model, result.stream, result.payload) == (model, bool(stream), reading)
    else:
        assert isinstance(result, RouterError)


def test_the_last_duplicate_model_wins_as_in_json_loads():
    body = b'{"model": "first", "prompt": "x", "model": "second"}'
    assert parse_body(body, "application/json", required=True).model == json.loads(body)["model"] == "second"
    body = b'{"model": "first", "model": 7}'  # the last value decides, even when it is invalid
    assert isinstance(outcome(body), RouterError)


@FUZZ
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5), st.sampled_from(ENCODINGS),
       st.sampled_from(["", " ", "\r\n"]))
def test_injected_usage_keeps_every_field_and_asks_for_usage_in_any_encoding(fields, encoding, spaces):
    fields = {k: v for k, v in fields.items() if k not in ("stream_options", "model", "stream")}
    payload = {"model": "m", "stream": True, **fields}
    body = (spaces + json.dumps(payload) + spaces).encode(encoding)
    parsed = parse_body(body, "application/json", required=True)
    injected = inject_stream_usage(body, parsed.payload)
    assert injected is not None
    result = json.loads(injected)  # what the model server will read
    assert wants_usage(result) and {k: v for k, v in result.items() if k != "stream_options"} == payload


@pytest.mark.parametrize("options", [{}, {"include_usage": False}, {"continuous_usage_stats": True}, None])
def test_injected_usage_merges_into_the_clients_own_stream_options(options):
    payload = {"model": "m", "stream": True, "stream_options": options, "prompt": "x"}
    for encoding in ("utf-8", "utf-16"):
        body = json.dumps(payload).encode(encoding)
        result = json.loads(inject_stream_usage(body, parse_body(body, "application/json", required=True).payload))
        assert result["stream_options"] == {**(options or {}), "include_usage": True}
        assert {k: v for k, v in result.items() if k != "stream_options"} == \
            {k: v for k, v in payload.items() if k != "stream_options"}
