"""Token usage read from responses as they are relayed, without buffering them.

Streams: complete SSE events are passed on as soon as their closing blank line arrives; only events that
mention `"usage"` are decoded. When the router itself asked for usage, the usage-only event it caused
(`"choices": []`) is dropped so the client sees the stream it asked for. Plain JSON: the usage object is
found in the tail of the body.
"""

from __future__ import annotations

import re

import orjson

_MAX_PENDING = 64 * 1024  # never hold more than this waiting for an event boundary
_TAIL = 8 * 1024
_PROMPT = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
_INPUT = re.compile(rb'"input_tokens"\s*:\s*(\d+)')
_OUTPUT = re.compile(rb'"output_tokens"\s*:\s*(\d+)')


class SSEUsage:
    """Relays an SSE body event by event, reading `usage` and optionally dropping the usage-only event."""

    __slots__ = ("suppress", "pending", "prompt_tokens", "completion_tokens")

    def __init__(self, suppress: bool) -> None:
        self.suppress = suppress
        self.pending = b""
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to send on now (possibly empty)."""
        if self.pending:
            chunk = self.pending + chunk
            self.pending = b""
        end = chunk.rfind(b"\n\n")
        if end == -1:
            if len(chunk) > _MAX_PENDING:
                return chunk
            self.pending = chunk
            return b""
        end += 2
        if end < len(chunk):
            self.pending = chunk[end:]
            chunk = chunk[:end]
        if b'"usage"' in chunk:
            return self._scan(chunk)
        return chunk

    def flush(self) -> bytes:
        rest, self.pending = self.pending, b""
        if rest and b'"usage"' in rest:
            return self._scan(rest)
        return rest

    def _scan(self, events: bytes) -> bytes:
        kept = []
        dropped = False
        for event in events.split(b"\n\n"):
            if b'"usage"' in event and self._read_usage(event):
                dropped = True
                continue
            kept.append(event)
        return b"\n\n".join(kept) if dropped else events

    def _read_usage(self, event: bytes) -> bool:
        """Record the event's usage; True when the event should be dropped."""
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            try:
                obj = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue
            if not isinstance(obj, dict):
                continue
            usage = obj.get("usage")
            if isinstance(usage, dict):
                prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
                completion = usage.get("completion_tokens", usage.get("output_tokens"))
                if isinstance(prompt, int):
                    self.prompt_tokens = prompt
                if isinstance(completion, int):
                    self.completion_tokens = completion
                return self.suppress and obj.get("choices") == []
        return False


class JSONUsage:
    """Keeps the tail of a JSON body and reads its usage counts at the end."""

    __slots__ = ("tail",)

    def __init__(self) -> None:
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        tail = self.tail + chunk if self.tail else chunk
        self.tail = tail[-_TAIL:] if len(tail) > _TAIL else tail

    def tokens(self) -> tuple[int, int]:
        """(prompt, completion) from the last `usage` object of the body; zeros when absent."""
        at = self.tail.rfind(b'"usage"')
        if at == -1:
            return 0, 0
        usage = self.tail[at:]
        prompt = _PROMPT.search(usage) or _INPUT.search(usage)
        completion = _COMPLETION.search(usage) or _OUTPUT.search(usage)
        return (int(prompt.group(1)) if prompt else 0, int(completion.group(1)) if completion else 0)
