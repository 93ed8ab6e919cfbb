import orjson
import pytest

from kthena_router.errors import BadRequest
from kthena_router.openai import inject_stream_usage, parse_body, wants_usage


def test_model_and_stream_are_read_from_a_completion_body():
    parsed = parse_body(b'{"model": "m", "prompt": "hi", "stream": true}', "application/json", required=True)
    assert parsed.model == "m"
    assert parsed.stream is True
    assert parsed.payload["prompt"] == "hi"


@pytest.mark.parametrize("body, message", [
    (b"", "request body is required"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object, got array"),
    (b'{"prompt": "x"}', "'model' is required"),
    (b'{"model": ""}', "must not be empty"),
    (b'{"model": 5}', "must be a string, got number"),
    (b'{"model": null}', "'model' is required"),
    (b'{"model": ["a"]}', "must be a string, got array"),
    (b'{"model": {"a": 1}}', "must be a string, got object"),
    (b'{"model": true}', "must be a string, got boolean"),
    (b'{"model": "m", "stream": "yes"}', "'stream' must be a boolean"),
    (b'\xff\xfe{"model": "m"}', "not valid JSON"),
])
def test_bad_bodies_on_model_paths_are_rejected_with_a_reason(body, message):
    with pytest.raises(BadRequest) as err:
        parse_body(body, "application/json", required=True)
    assert message in err.value.message
    assert err.value.status == 400


def test_bodies_elsewhere_are_forwarded_without_a_model_when_not_json():
    assert parse_body(b"plain text", "text/plain", required=False).model is None
    assert parse_body(b"{bad", "application/json", required=False).model is None
    assert parse_body(b'{"model": "m"}', "application/json", required=False).model == "m"


def test_duplicate_keys_take_the_last_value_like_the_model_server():
    assert parse_body(b'{"model": "a", "model": "b"}', "application/json", required=True).model == "b"


def test_usage_is_spliced_in_without_touching_the_rest_of_the_body():
    body = b'{"model": "m", "stream": true, "prompt": "\\u00e9 x"}'
    payload = orjson.loads(body)
    out = inject_stream_usage(body, payload)
    assert out == b'{"stream_options":{"include_usage":true},"model": "m", "stream": true, "prompt": "\\u00e9 x"}'
    assert wants_usage(orjson.loads(out))


def test_usage_injection_on_an_empty_object_stays_valid_json():
    assert orjson.loads(inject_stream_usage(b" { } ", {})) == {"stream_options": {"include_usage": True}}


def test_usage_injection_keeps_the_clients_other_stream_options():
    payload = {"model": "m", "stream_options": {"continuous_usage_stats": True}}
    out = orjson.loads(inject_stream_usage(orjson.dumps(payload), payload))
    assert out["stream_options"] == {"continuous_usage_stats": True, "include_usage": True}


def test_malformed_stream_options_are_left_for_the_server_to_reject():
    assert inject_stream_usage(b'{"stream_options": 3}', {"stream_options": 3}) is None
