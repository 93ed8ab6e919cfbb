"""OpenAI request parsing and response shapes, as vLLM's OpenAI-compatible server speaks them.

Raw JSON becomes a frozen `GenerationRequest` here and nowhere else; a request the simulator cannot
serve raises a `SimError` (400, or 404 for an unknown model). The encoders build the exact bodies and
server-sent events vLLM returns for /v1/completions and /v1/chat/completions, and the /v1/models list.
Pure: no I/O, no clock (callers pass `created`), no engine state.

Token accounting is a deterministic stand-in for a tokenizer: a text costs one token per
whitespace-separated word, a token-id prompt one per id, and every prompt at least one. Output token
`i` is the text `" tok<i>"`. When the engine caches prefixes (`kv_blocks` set), the prompt's token ids
are kept too: each word maps to a fixed id (`engine.word_token_id`), chat messages are read in order,
so prompts that start with the same words start with the same KV blocks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from kthena_router.sim.config import MAX_MODEL_LEN, SimConfig
from kthena_router.sim.engine import FinishReason, word_token_id
from kthena_router.sim.errors import bad_request, model_not_found

log = logging.getLogger(__name__)

Kind = Literal["completion", "chat"]

SSE_DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What the simulator needs from a completion or chat request."""

    kind: Kind
    model: str
    lora: str | None
    prompt_tokens: int
    max_tokens: int
    finish_reason: FinishReason
    stream: bool
    include_usage: bool
    continuous_usage: bool
    token_ids: tuple[int, ...] = ()


def token_text(index: int) -> str:
    return f" tok{index}"


def generated_text(count: int) -> str:
    return "".join([f" tok{i}" for i in range(count)])


def count_words(text: str) -> int:
    return len(text.split())


# -- parsing -------------------------------------------------------------------------------------------


def parse_request(kind: Kind, body: bytes, config: SimConfig, served: frozenset[str]) -> GenerationRequest:
    """Validate a /v1/completions (`kind="completion"`) or /v1/chat/completions body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")

    model = data.get("model")
    if model is None:
        model = config.model  # vLLM serves its base model when the request names none
    elif not isinstance(model, str):
        raise bad_request("`model` must be a string.", "model")
    if model not in served:
        raise model_not_found(model)

    token_ids: tuple[int, ...] = ()
    if kind == "completion":
        if "prompt" not in data:
            raise bad_request("`prompt` is required.", "prompt")
        prompt_tokens = _prompt_tokens(data["prompt"])
        requested = _optional_int(data, "max_tokens")
        if config.kv_blocks is not None:
            token_ids = _prompt_ids(data["prompt"]) or (0,)
    else:
        if "messages" not in data:
            raise bad_request("`messages` is required.", "messages")
        prompt_tokens = _messages_tokens(data["messages"])
        if config.kv_blocks is not None:
            token_ids = _messages_ids(data["messages"]) or (0,)
        requested = _optional_int(data, "max_completion_tokens")
        if requested is None:
            requested = _optional_int(data, "max_tokens")

    n = data.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise bad_request("The simulator produces exactly one choice: `n` must be 1.", "n")

    if prompt_tokens >= MAX_MODEL_LEN:
        raise bad_request(
            f"This model's maximum context length is {MAX_MODEL_LEN} tokens, and the prompt has "
            f"{prompt_tokens} tokens.",
            "messages" if kind == "chat" else "prompt",
        )
    finish_reason: FinishReason
    if requested is None:
        max_tokens = min(config.default_output_tokens, MAX_MODEL_LEN - prompt_tokens)
        finish_reason = "stop" if max_tokens == config.default_output_tokens else "length"
    else:
        if prompt_tokens + requested > MAX_MODEL_LEN:
            raise bad_request(
                f"This model's maximum context length is {MAX_MODEL_LEN} tokens. However, you requested "
                f"{prompt_tokens + requested} tokens ({prompt_tokens} in the prompt, {requested} in the "
                "completion). Please reduce the length of the prompt or completion.",
                "max_tokens",
            )
        max_tokens = requested
        finish_reason = "length"

    stream = data.get("stream")
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise bad_request("`stream` must be a boolean.", "stream")
    include_usage = continuous_usage = False
    options = data.get("stream_options")
    if options is not None:
        if not stream:
            raise bad_request("Stream options can only be defined when `stream=True`.", "stream_options")
        if not isinstance(options, dict):
            raise bad_request("`stream_options` must be an object.", "stream_options")
        include_usage = _optional_bool(options, "include_usage")
        continuous_usage = include_usage and _optional_bool(options, "continuous_usage_stats")

    return GenerationRequest(
        kind=kind,
        model=model,
        lora=None if model == config.model else model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        finish_reason=finish_reason,
        stream=stream,
        include_usage=include_usage,
        continuous_usage=continuous_usage,
        token_ids=token_ids,
    )


def _prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, str):
        return max(1, count_words(prompt))
    if isinstance(prompt, list) and prompt:
        if _is_token_ids(prompt):
            return len(prompt)
        if len(prompt) == 1:
            (only,) = prompt
            if isinstance(only, str):
                return max(1, count_words(only))
            if isinstance(only, list) and only and _is_token_ids(only):
                return len(only)
        if all(isinstance(p, str) for p in prompt) or all(isinstance(p, list) for p in prompt):
            raise bad_request(
                "The simulator serves one prompt per request; batched prompts are not supported.", "prompt"
            )
    raise bad_request("`prompt` must be a string or a non-empty list of token ids.", "prompt")


def _prompt_ids(prompt: Any) -> tuple[int, ...]:
    """Token ids of a prompt `_prompt_tokens` accepted."""
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, str):
        return tuple(word_token_id(w) for w in prompt.split())
    return tuple(prompt)


def _messages_ids(messages: list[Any]) -> tuple[int, ...]:
    """Token ids of the text of messages `_messages_tokens` accepted, in order."""
    ids: list[int] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            ids.extend(word_token_id(w) for w in content.split())
        elif isinstance(content, list):
            for part in content:
                text = part.get("text")
                if part.get("type") == "text" and isinstance(text, str):
                    ids.extend(word_token_id(w) for w in text.split())
    return tuple(ids)


def _is_token_ids(values: list[Any]) -> bool:
    return all(type(v) is int and v >= 0 for v in values)


def _messages_tokens(messages: Any) -> int:
    if not isinstance(messages, list) or not messages:
        raise bad_request("`messages` must be a non-empty list.", "messages")
    words = 0
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request("Each message must be an object with a string `role`.", "messages")
        content = message.get("content")
        if content is None:
            continue
        if isinstance(content, str):
            words += count_words(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    raise bad_request("Each content part must be an object.", "messages")
                text = part.get("text")
                if part.get("type") == "text" and isinstance(text, str):
                    words += count_words(text)
        else:
            raise bad_request("A message's `content` must be a string, a list of parts or null.", "messages")
    return max(1, words)


def _optional_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise bad_request(f"`{key}` must be an integer >= 1, got {value!r}.", key)
    return value


def _optional_bool(data: dict[str, Any], key: str) -> bool:
    value = data.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"`stream_options.{key}` must be a boolean.", "stream_options")
    return value


# -- responses -----------------------------------------------------------------------------------------


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def response_id(kind: Kind, number: int) -> str:
    return f"{'cmpl' if kind == 'completion' else 'chatcmpl'}-{number:016x}"


def response_body(req: GenerationRequest, rid: str, created: int, completion_tokens: int) -> bytes:
    """The non-streaming body once `completion_tokens` tokens were generated."""
    text = generated_text(completion_tokens)
    choice: dict[str, Any]
    if req.kind == "completion":
        obj = "text_completion"
        choice = {"index": 0, "text": text}
    else:
        obj = "chat.completion"
        choice = {"index": 0, "message": {"role": "assistant", "content": text}}
    choice["logprobs"] = None
    choice["finish_reason"] = req.finish_reason
    choice["stop_reason"] = None
    return orjson.dumps(
        {
            "id": rid,
            "object": obj,
            "created": created,
            "model": req.model,
            "choices": [choice],
            "usage": usage(req.prompt_tokens, completion_tokens),
        }
    )


class StreamEncoder:
    """Server-sent events of one streamed completion or chat completion, in vLLM's order.

    Chat: a role chunk, one content chunk per token (the last one carries `finish_reason`); completions:
    one text chunk per token. Then, with `include_usage`, a chunk with no choices and the usage, and
    finally `data: [DONE]`. With `continuous_usage_stats`, every chunk also carries the usage so far.
    """

    __slots__ = ("_req", "_head")

    def __init__(self, req: GenerationRequest, rid: str, created: int) -> None:
        self._req = req
        obj = "text_completion" if req.kind == "completion" else "chat.completion.chunk"
        self._head = {"id": rid, "object": obj, "created": created, "model": req.model}

    def role_event(self) -> bytes | None:
        """The chat stream's opening chunk (before the first token); None for completions."""
        if self._req.kind == "completion":
            return None
        delta = {"role": "assistant", "content": ""}
        return self._event({"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}, 0)

    def token_event(self, index: int) -> bytes:
        """The chunk carrying token `index`; the final token's chunk carries the finish reason."""
        req = self._req
        finish = req.finish_reason if index == req.max_tokens - 1 else None
        text = token_text(index)
        choice: dict[str, Any]
        if req.kind == "completion":
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
            }
        else:
            choice = {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": finish}
        return self._event(choice, index + 1)

    def usage_event(self, completion_tokens: int) -> bytes | None:
        """The closing usage chunk, when the request asked for it."""
        if not self._req.include_usage:
            return None
        body = {**self._head, "choices": [], "usage": usage(self._req.prompt_tokens, completion_tokens)}
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def _event(self, choice: dict[str, Any], completion_tokens: int) -> bytes:
        body = {**self._head, "choices": [choice]}
        if self._req.continuous_usage:
            body["usage"] = usage(self._req.prompt_tokens, completion_tokens)
        return b"data: " + orjson.dumps(body) + b"\n\n"


def models_body(config: SimConfig, created: int) -> bytes:
    """The /v1/models list: the base model, then each LoRA adapter with the base model as parent."""
    cards = [_model_card(config.model, None, created)]
    cards.extend(_model_card(name, config.model, created) for name in config.loras)
    return orjson.dumps({"object": "list", "data": cards})


def _model_card(name: str, parent: str | None, created: int) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": name,
        "parent": parent,
        "max_model_len": MAX_MODEL_LEN,
    }
