"""OpenAI request bodies: read `model` and `stream` once, and inject `stream_options.include_usage`.

The body is parsed once with orjson and the original bytes are forwarded unchanged, except when usage
reporting is injected into a streaming request (a splice at the front of the object in the common case, a
re-encode only when the client sent its own `stream_options` without `include_usage`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from kthena_router.errors import BadRequest

# POST paths whose body must name a model (the OpenAI API surface vLLM and SGLang serve).
MODEL_PATHS = frozenset({
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/rerank",
    "/v1/score",
    "/v1/moderations",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/images/generations",
    "/v1/tokenize",
    "/v1/detokenize",
    "/v1/classify",
    "/v1/pooling",
})
# Paths whose streaming responses carry token usage that the router can ask for.
USAGE_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})


@dataclass(frozen=True, slots=True)
class ParsedBody:
    model: str | None
    stream: bool
    payload: dict[str, Any] | None  # the decoded object; None when the body was not a JSON object


NO_BODY = ParsedBody(None, False, None)


_INVALID = object()


def _lenient_loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _INVALID


def parse_body(body: bytes, content_type: str, *, required: bool) -> ParsedBody:
    """Extract `model` and `stream`.

    When `required` (a POST to one of MODEL_PATHS) the body must be a JSON object with a non-empty string
    `model` (BadRequest otherwise); elsewhere a body that is not JSON is simply forwarded without a model.
    """
    if not body:
        if required:
            raise BadRequest("request body is required and must be a JSON object with a 'model' field")
        return NO_BODY
    if not required and "json" not in content_type:
        return NO_BODY
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        payload = _lenient_loads(body)  # what Python model servers accept (1e999, NaN) orjson refuses
        if payload is _INVALID:
            if required:
                raise BadRequest(f"request body is not valid JSON: {exc}") from None
            return NO_BODY
    if not isinstance(payload, dict):
        if required:
            raise BadRequest(f"request body must be a JSON object, got {_json_type(payload)}")
        return NO_BODY
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        if required:
            if model is None:
                raise BadRequest("'model' is required")
            if isinstance(model, str):
                raise BadRequest("'model' must not be empty")
            raise BadRequest(f"'model' must be a string, got {_json_type(model)}")
        model = None
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        if required:
            raise BadRequest(f"'stream' must be a boolean, got {_json_type(stream)}")
        stream = False
    return ParsedBody(model, bool(stream), payload)


def wants_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def inject_stream_usage(body: bytes, payload: dict[str, Any]) -> bytes | None:
    """Return the body with `stream_options.include_usage: true` added, or None when it cannot be done.

    When the client sent no `stream_options`, the key is spliced in after the opening brace: the rest of
    the bytes stay as they were. Otherwise the object is re-encoded with the option set.
    """
    options = payload.get("stream_options")
    if "stream_options" not in payload:
        start = body.find(b"{")
        if start == -1:
            return None
        rest = body[start + 1:]
        sep = b"" if rest.lstrip().startswith(b"}") else b","
        return body[: start + 1] + b'"stream_options":{"include_usage":true}' + sep + rest
    if options is None or isinstance(options, dict):
        return orjson.dumps({**payload, "stream_options": {**(options or {}), "include_usage": True}})
    return None  # a malformed stream_options: leave the request alone, the server will reject it


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
