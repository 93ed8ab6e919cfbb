"""Request bodies of every shape through `parse_body`: a 4xx RouterError or a result, never anything else."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kthena_router.errors import RouterError
from kthena_router.openai import inject_stream_usage, parse_body, wants_usage

FUZZ = settings(max_examples=200, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


def _outcome(body: bytes, required: bool = True):
    try:
        return parse_body(body, "application/json", required=required)
    except RouterError as err:
        assert 400 <= err.status < 500, err
        assert orjson.loads(err.body())["error"]["type"] == "invalid_request_error"
        return err


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_parsed_or_refused_with_a_4xx(body):
    _outcome(body)
    _outcome(body, required=False)


@FUZZ
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6), json_values)
def test_any_json_object_with_any_model_value(fields, model):
    body = json.dumps({**fields, "model": model}).encode()
    result = _outcome(body)
    if isinstance(model, str) and model.strip():
        assert not isinstance(result, RouterError) or "stream" in str(result)
        if not isinstance(result, RouterError):
            assert result.model == model
    else:
        assert isinstance(result, RouterError)


@FUZZ
@given(json_values)
def test_stream_must_be_a_boolean(stream):
    result = _outcome(json.dumps({"model": "m", "stream": stream}).encode())
    if stream is None or isinstance(stream, bool):
        assert not isinstance(result, RouterError) and result.stream == bool(stream)
    else:
        assert isinstance(result, RouterError)


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,  # deep nesting
    b'{"model": "m", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"model": "m", "n": 1' + b"0" * 5000 + b"}",  # a huge number
    b'{"model": 1e999}',
    b"\xef\xbb\xbf" + b'{"model": "m"}',  # a byte-order mark
    b'{"model": "\xff\xfe"}',  # invalid UTF-8
    b'{"model": "m\x00"}',
    b'{"model": "\\ud800"}',  # a lone surrogate
    b"null", b"[]", b'"m"', b"1", b"true", b"{", b"", b" ",
])
def test_hostile_bodies_are_refused_cleanly(body):
    _outcome(body)


def test_duplicate_keys_resolve_like_json_loads_does():
    """The model server parses the same bytes; the router must read the same `model` as it will."""
    body = b'{"model": "first", "prompt": "x", "model": "second"}'
    assert parse_body(body, "application/json", required=True).model == json.loads(body)["model"] == "second"


@FUZZ
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_injected_usage_keeps_every_field_and_asks_for_usage(fields):
    fields = {k: v for k, v in fields.items() if k not in ("stream_options", "model", "stream")}
    payload = {"model": "m", "stream": True, **fields}
    body = json.dumps(payload).encode()
    injected = inject_stream_usage(body, payload)
    assert injected is not None
    result = json.loads(injected)
    assert wants_usage(result) and {k: v for k, v in result.items() if k != "stream_options"} == payload
