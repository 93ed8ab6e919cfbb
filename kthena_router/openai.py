"""OpenAI request bodies: read `model` and `stream` once, and inject `stream_options.include_usage`.

The body is parsed once with orjson and the original bytes are forwarded unchanged, except when usage
reporting is injected into a streaming request (a splice at the front of the object in the common case, a
re-encode only when the client sent its own `stream_options` without `include_usage`, or a UTF-16/32 body).
Bodies orjson refuses but Python model servers accept (NaN, 1e999, a byte-order mark, UTF-16) are read with
json.loads, so the router always sees the `model` the server will see.
"""

from __future__ import annotations

import json
import re
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
# A `model` longer than this is refused: it travels in a request header (X-Gateway-Model-Name) that model
# servers cap at a few KiB, and no configured name comes near it (Kthena's ModelServer allows 256).
MAX_MODEL_CHARS = 1024
# Characters no model name has and no header, log line or metric label may carry: C0 and C1 controls,
# DEL, and lone surrogates (which json.loads yields for "\ud800" and which cannot be encoded as UTF-8).
_BAD_MODEL_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


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
    problem = _model_problem(model)
    if problem is not None:
        if required:
            raise BadRequest(problem)
        model = None
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        if required:
            raise BadRequest(f"'stream' must be a boolean, got {_json_type(stream)}")
        stream = False
    return ParsedBody(model, bool(stream), payload)


def _model_problem(model: Any) -> str | None:
    """Why `model` cannot name a model, or None when it can."""
    if not isinstance(model, str):
        if model is None:
            return "'model' is required"
        return f"'model' must be a string, got {_json_type(model)}"
    if not model.strip():
        return "'model' must not be empty"
    if len(model) > MAX_MODEL_CHARS:
        return f"'model' must not be longer than {MAX_MODEL_CHARS} characters"
    if _BAD_MODEL_CHAR.search(model) is not None:
        return "'model' must not contain control characters or unpaired surrogates"
    return None


def wants_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


# Encodings (as json.loads detects them) in which ASCII bytes can be spliced into the body as they are.
_SPLICEABLE = frozenset({"utf-8", "utf-8-sig"})


def inject_stream_usage(body: bytes, payload: dict[str, Any]) -> bytes | None:
    """Return the body with `stream_options.include_usage: true` added, or None when it cannot be done.

    When the client sent no `stream_options`, the key is spliced in after the opening brace: the rest of
    the bytes stay as they were. Otherwise the object is re-encoded with the option set.
    """
    options = payload.get("stream_options")
    if "stream_options" not in payload and json.detect_encoding(body) in _SPLICEABLE:
        start = body.find(b"{")
        if start == -1:
            return None
        rest = body[start + 1:]
        sep = b"" if rest.lstrip().startswith(b"}") else b","
        return body[: start + 1] + b'"stream_options":{"include_usage":true}' + sep + rest
    if options is None or isinstance(options, dict):  # also a UTF-16/32 body, which no splice can extend
        merged = {**payload, "stream_options": {**(options or {}), "include_usage": True}}
        try:
            # json, not orjson: it writes back what json.loads accepted (NaN, Infinity, integers beyond 64
            # bits, escaped lone surrogates) as the model server would have read it, and this path is rare.
            return json.dumps(merged, separators=(",", ":")).encode()
        except (ValueError, RecursionError):
            return None  # too deeply nested to re-encode: forwarded as it came, without the usage option
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
