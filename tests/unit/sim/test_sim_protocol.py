"""Request parsing, token accounting and the exact bodies and SSE events of protocol.py."""

import orjson
import pytest

from kthena_router.sim.config import MAX_MODEL_LEN, SimConfig
from kthena_router.sim.engine import word_token_id
from kthena_router.sim.errors import SimError
from kthena_router.sim.protocol import (
    SSE_DONE,
    StreamEncoder,
    generated_text,
    models_body,
    parse_request,
    response_body,
)

CONFIG = SimConfig(model="base", loras=("ad1", "ad2"), default_output_tokens=5)
SERVED = CONFIG.served_models


def parse(kind, body):
    return parse_request(kind, orjson.dumps(body) if not isinstance(body, bytes) else body, CONFIG, SERVED)


def events(raw: bytes) -> list[bytes]:
    """Split an SSE body into event payloads, checking the framing on the way."""
    assert raw.endswith(b"\n\n")
    chunks = raw.split(b"\n\n")[:-1]
    for chunk in chunks:
        assert chunk.startswith(b"data: ") and b"\n" not in chunk
    return [chunk[len(b"data: ") :] for chunk in chunks]


# -- parsing --------------------------------------------------------------------------------------


def test_prompt_tokens_are_whitespace_separated_words():
    req = parse("completion", {"model": "base", "prompt": "  the quick\tbrown\nfox ", "max_tokens": 3})
    assert req.prompt_tokens == 4
    assert (req.max_tokens, req.finish_reason) == (3, "length")


@pytest.mark.parametrize(
    ("prompt", "tokens"),
    [("", 1), ("one", 1), ([5, 6, 7], 3), (["a b c"], 3), ([[1, 2]], 2)],
)
def test_prompt_forms_are_counted_and_at_least_one(prompt, tokens):
    assert parse("completion", {"model": "base", "prompt": prompt}).prompt_tokens == tokens


def test_chat_counts_words_of_every_message_and_text_part():
    req = parse(
        "chat",
        {
            "model": "base",
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hello there you"}, {"type": "image_url"}],
                },
                {"role": "assistant", "content": None},
            ],
        },
    )
    assert req.prompt_tokens == 5


def test_missing_max_tokens_uses_the_default_and_stops():
    req = parse("completion", {"model": "base", "prompt": "x"})
    assert (req.max_tokens, req.finish_reason) == (5, "stop")


def test_chat_prefers_max_completion_tokens_over_max_tokens():
    req = parse(
        "chat",
        {
            "model": "base",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 9,
            "max_completion_tokens": 2,
        },
    )
    assert req.max_tokens == 2


def test_lora_name_selects_the_adapter_and_base_name_none():
    assert parse("completion", {"model": "ad2", "prompt": "x"}).lora == "ad2"
    assert parse("completion", {"model": "base", "prompt": "x"}).lora is None


def test_missing_model_means_the_base_model_as_in_vllm():
    req = parse("completion", {"prompt": "x"})
    assert (req.model, req.lora) == ("base", None)


def test_unknown_model_is_a_vllm_not_found_error():
    with pytest.raises(SimError) as caught:
        parse("completion", {"model": "nope", "prompt": "x"})
    assert caught.value.status == 404
    assert orjson.loads(caught.value.body()) == {
        "error": {
            "message": "The model `nope` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }


@pytest.mark.parametrize(
    ("kind", "body", "param"),
    [
        ("completion", b"{not json", None),
        ("completion", b"[1, 2]", None),
        ("completion", {"model": "base"}, "prompt"),
        ("chat", {"model": "base"}, "messages"),
        ("chat", {"model": "base", "messages": []}, "messages"),
        ("chat", {"model": "base", "messages": [{"content": "x"}]}, "messages"),
        ("completion", {"model": 7, "prompt": "x"}, "model"),
        ("completion", {"model": "base", "prompt": ["a", "b"]}, "prompt"),
        ("completion", {"model": "base", "prompt": 42}, "prompt"),
        ("completion", {"model": "base", "prompt": "x", "max_tokens": 0}, "max_tokens"),
        ("completion", {"model": "base", "prompt": "x", "max_tokens": "3"}, "max_tokens"),
        ("completion", {"model": "base", "prompt": "x", "max_tokens": MAX_MODEL_LEN}, "max_tokens"),
        ("completion", {"model": "base", "prompt": "x", "n": 2}, "n"),
        ("completion", {"model": "base", "prompt": "x", "stream": "yes"}, "stream"),
        (
            "completion",
            {"model": "base", "prompt": "x", "stream_options": {"include_usage": True}},
            "stream_options",
        ),
        (
            "completion",
            {"model": "base", "prompt": "x", "stream": True, "stream_options": {"include_usage": 1}},
            "stream_options",
        ),
    ],
)
def test_malformed_request_is_a_400_error_object(kind, body, param):
    with pytest.raises(SimError) as caught:
        parse(kind, body)
    error = orjson.loads(caught.value.body())["error"]
    assert caught.value.status == 400
    assert error["code"] == 400 and error["type"] == "BadRequestError" and error["param"] == param
    assert error["message"]


# -- responses ------------------------------------------------------------------------------------


def test_completion_body_is_the_openai_shape_with_usage():
    req = parse("completion", {"model": "ad1", "prompt": "a b", "max_tokens": 3})
    body = orjson.loads(response_body(req, "cmpl-1", 1700000000, 3))
    assert body == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1700000000,
        "model": "ad1",
        "choices": [
            {
                "index": 0,
                "text": " tok0 tok1 tok2",
                "logprobs": None,
                "finish_reason": "length",
                "stop_reason": None,
            }
        ],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
    }


def test_chat_body_has_an_assistant_message():
    req = parse("chat", {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    body = orjson.loads(response_body(req, "chatcmpl-1", 1, 2))
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": " tok0 tok1"}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


def test_generated_text_is_deterministic():
    assert generated_text(3) == " tok0 tok1 tok2"
    assert generated_text(0) == ""


def stream_all(req) -> bytes:
    enc = StreamEncoder(req, "id-1", 5)
    out = []
    for index in range(req.max_tokens):
        if index == 0 and (opening := enc.role_event()) is not None:
            out.append(opening)
        out.append(enc.token_event(index))
    if (closing := enc.usage_event(req.max_tokens)) is not None:
        out.append(closing)
    out.append(SSE_DONE)
    return b"".join(out)


def test_chat_stream_is_role_then_one_delta_per_token_then_usage_then_done():
    req = parse(
        "chat",
        {
            "model": "base",
            "messages": [{"role": "user", "content": "a b c"}],
            "max_tokens": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    payloads = events(stream_all(req))
    assert payloads[-1] == b"[DONE]"
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "id-1" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:4]] == [" tok0", " tok1", " tok2"]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:4]] == [None, None, None, "length"]
    assert chunks[4]["choices"] == []
    assert chunks[4]["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert all("usage" not in c for c in chunks[:4])


def test_completion_stream_without_include_usage_has_no_usage_chunk():
    req = parse("completion", {"model": "base", "prompt": "x", "max_tokens": 2, "stream": True})
    payloads = events(stream_all(req))
    assert len(payloads) == 3 and payloads[-1] == b"[DONE]"
    chunks = [orjson.loads(p) for p in payloads[:-1]]
    assert [c["choices"][0]["text"] for c in chunks] == [" tok0", " tok1"]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, "length"]
    assert all(c["object"] == "text_completion" and "usage" not in c for c in chunks)


def test_continuous_usage_stats_put_running_usage_on_every_chunk():
    req = parse(
        "completion",
        {
            "model": "base",
            "prompt": "x",
            "max_tokens": 2,
            "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        },
    )
    chunks = [orjson.loads(p) for p in events(stream_all(req))[:-1]]
    assert [c["usage"]["completion_tokens"] for c in chunks] == [1, 2, 2]


def test_models_list_has_the_base_model_then_adapters_parented_to_it():
    body = orjson.loads(models_body(CONFIG, 123))
    assert body["object"] == "list"
    assert [(m["id"], m["root"], m["parent"]) for m in body["data"]] == [
        ("base", "base", None),
        ("ad1", "ad1", "base"),
        ("ad2", "ad2", "base"),
    ]
    for card in body["data"]:
        assert card["object"] == "model" and card["owned_by"] == "vllm" and card["created"] == 123
        assert card["max_model_len"] == MAX_MODEL_LEN


def test_token_ids_are_kept_only_when_prefixes_are_cached():
    body = orjson.dumps({"model": "base", "prompt": "a b c"})
    served = frozenset({"base"})
    plain = parse_request("completion", body, SimConfig(model="base"), served)
    cached = parse_request("completion", body, SimConfig(model="base", kv_blocks=8), served)
    assert plain.token_ids == ()
    assert cached.token_ids == tuple(word_token_id(w) for w in ("a", "b", "c"))


def test_chat_and_completion_with_the_same_words_have_the_same_token_ids():
    config = SimConfig(model="base", kv_blocks=8)
    served = frozenset({"base"})
    messages = [
        {"role": "system", "content": "you are terse"},
        {"role": "user", "content": [{"type": "text", "text": "hi there"}]},
    ]
    chat = parse_request("chat", orjson.dumps({"model": "base", "messages": messages}), config, served)
    text = parse_request(
        "completion", orjson.dumps({"model": "base", "prompt": "you are terse hi there"}), config, served
    )
    ids = parse_request("completion", orjson.dumps({"model": "base", "prompt": [7, 8, 9]}), config, served)
    assert chat.token_ids == text.token_ids and len(chat.token_ids) == chat.prompt_tokens == 5
    assert ids.token_ids == (7, 8, 9)
