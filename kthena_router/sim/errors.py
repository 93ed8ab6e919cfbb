"""The simulator's error type and its vLLM-shaped JSON body.

Request parsing and handlers raise `SimError`; one middleware in `server.py` renders it. The body is the
shape vLLM's OpenAI server returns: `{"error": {"message", "type", "param", "code"}}` with `code` the
HTTP status.
"""

from __future__ import annotations

import logging

import orjson

log = logging.getLogger(__name__)


class SimError(Exception):
    """A request the simulator refuses, with the HTTP status and OpenAI error fields to answer with."""

    def __init__(self, status: int, message: str, err_type: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type
        self.param = param

    def body(self) -> bytes:
        return error_body(self.status, self.message, self.err_type, self.param)


def error_body(status: int, message: str, err_type: str, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": err_type, "param": param, "code": status}})


def bad_request(message: str, param: str | None = None) -> SimError:
    return SimError(400, message, "BadRequestError", param)


def model_not_found(model: str) -> SimError:
    return SimError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
