"""Seeded request traces: what each workload sends, and when (Poisson arrivals at a given rate).

A trace is a list of `TraceRequest`s with arrival offsets; the same (workload, rate, seed) always gives
the same trace, so every system under test is driven by identical requests at identical times. Prompt
text is drawn from a fixed vocabulary; the simulators count one token per word, so a "600-word system
prompt" is a 600-token prompt to them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

MODEL = "bench-model"
ADAPTERS = tuple(f"lora-{i}" for i in range(8))
OBJECTIVE_HEADER = "x-gateway-inference-objective"
SESSION_HEADER = "x-session-id"
# InferenceObjective name -> priority, for the priorities workload.
OBJECTIVES = {"critical": 10, "standard": 0, "sheddable": -1}

_VOCAB = tuple(
    f"{a}{b}"
    for a in ("ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "ve", "zu", "bo", "da", "fe", "gi", "ho", "ju")
    for b in ("n", "r", "s", "t", "l", "m", "x", "k", "", "p", "d", "g")
)


@dataclass(frozen=True, slots=True)
class TraceRequest:
    at: float  # seconds after the start of the cell
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    klass: str = ""  # priority class, for per-class results


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    title: str
    nominal_rate: float  # req/s the fleet roughly sustains with a good picker; cells scale it
    make: Callable[[random.Random, int], list[tuple[str, bytes, dict[str, str], str]]]
    # Cells of this workload last at least this long (seconds of arrivals, then of drain): overload needs
    # time for the servers' queues to build up before anything is shed.
    min_duration: float = 0.0
    min_drain: float = 0.0
    # Only the systems of the target's comparison run it (default, round-robin, vllm-router): its cells are
    # long, and every single-plugin run would show the same admission control.
    comparison_only: bool = False


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(_VOCAB, k=n))


def _answer(tokens: int) -> str:
    # The simulator's deterministic output for `tokens` tokens, as a client would send it back.
    return "".join(f" tok{i}" for i in range(tokens)).strip()


def _chat(messages: list[dict[str, str]], max_tokens: int, model: str = MODEL) -> bytes:
    return orjson.dumps({"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True})


def _completion(prompt: str, max_tokens: int, model: str = MODEL) -> bytes:
    return orjson.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": True})


CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def shared_prefix(rng: random.Random, n: int) -> list[tuple[str, bytes, dict[str, str], str]]:
    """Many groups, each with its own long system prompt, and a short question per request."""
    groups = [_words(rng, 600) for _ in range(12)]
    out = []
    for _ in range(n):
        system = groups[rng.randrange(len(groups))]
        messages = [{"role": "system", "content": system}, {"role": "user", "content": _words(rng, 20)}]
        out.append((CHAT, _chat(messages, 24), {}, ""))
    return out


def multi_turn(rng: random.Random, n: int) -> list[tuple[str, bytes, dict[str, str], str]]:
    """Chat sessions of 3-6 turns, each turn resending the whole history plus a new question.

    Sessions interleave: each arrival continues a random one of the open sessions (a new session opens
    when one ends), so a session's turns are spread over several seconds, like users who read the answer.
    """
    out: list[tuple[str, bytes, dict[str, str], str]] = []
    sessions: list[dict] = []
    next_id = 0

    def open_session() -> dict:
        nonlocal next_id
        next_id += 1
        history = [{"role": "system", "content": _words(rng, 300)}]
        return {"id": f"s{next_id}", "history": history, "left": rng.randint(3, 6)}

    open_count = 24
    sessions = [open_session() for _ in range(open_count)]
    for _ in range(n):
        i = rng.randrange(len(sessions))
        s = sessions[i]
        s["history"].append({"role": "user", "content": _words(rng, 60)})
        answer = rng.randint(24, 40)
        out.append((CHAT, _chat(list(s["history"]), answer), {SESSION_HEADER: s["id"]}, ""))
        s["history"].append({"role": "assistant", "content": _answer(answer)})
        s["left"] -= 1
        if s["left"] == 0:
            sessions[i] = open_session()
    return out


def short_long(rng: random.Random, n: int) -> list[tuple[str, bytes, dict[str, str], str]]:
    """Short unique prompts, long answers: decode-bound."""
    return [(COMPLETIONS, _completion(_words(rng, 12), rng.randint(32, 64)), {}, "") for _ in range(n)]


def lora_mix(rng: random.Random, n: int) -> list[tuple[str, bytes, dict[str, str], str]]:
    """Requests for eight LoRA adapters (skewed: a few are popular) on servers with two LoRA slots each."""
    weights = [1.0 / (k + 1) for k in range(len(ADAPTERS))]
    out = []
    for _ in range(n):
        adapter = rng.choices(ADAPTERS, weights=weights)[0]
        out.append((COMPLETIONS, _completion(_words(rng, 80), 24, model=adapter), {}, ""))
    return out


def priorities(rng: random.Random, n: int) -> list[tuple[str, bytes, dict[str, str], str]]:
    """Unique 300-token prompts in three InferenceObjectives: critical (20 %), standard (50 %), sheddable (30 %)."""
    out = []
    for _ in range(n):
        klass = rng.choices(("critical", "standard", "sheddable"), weights=(2, 5, 3))[0]
        messages = [{"role": "user", "content": _words(rng, 300)}]
        out.append((CHAT, _chat(messages, 32), {OBJECTIVE_HEADER: klass}, klass))
    return out


def overload(rng: random.Random, n: int) -> list[tuple[str, bytes, dict[str, str], str]]:
    """The priorities mix with long answers (96 tokens), offered beyond what the fleet can serve.

    The fleet finishes roughly 14 such requests a second, so every rate of this workload saturates it
    (every server holds more than the saturation threshold of waiting requests): sheddable requests
    should be refused with 429 and the rest queue in the router, critical first.
    """
    out = []
    for _ in range(n):
        klass = rng.choices(("critical", "standard", "sheddable"), weights=(2, 5, 3))[0]
        messages = [{"role": "user", "content": _words(rng, 100)}]
        out.append((CHAT, _chat(messages, 96), {OBJECTIVE_HEADER: klass}, klass))
    return out


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "shared-prefix", "Shared long system prompts (12 groups of 600 tokens)", 30.0, shared_prefix
        ),
        Workload(
            "multi-turn",
            "Multi-turn chat (300-token system prompt, 24 open sessions, 3-6 turns)",
            24.0,
            multi_turn,
        ),
        Workload("short-long", "Short prompts (12 tokens), long outputs (32-64 tokens)", 30.0, short_long),
        Workload("lora", "Mixed LoRA adapters (8 adapters, 2 slots per server)", 24.0, lora_mix),
        Workload(
            "priorities",
            "Mixed priorities (critical / standard / sheddable, 300-token prompts)",
            28.0,
            priorities,
        ),
        Workload(
            "overload",
            "Overload with priorities (critical / standard / sheddable, 96-token answers, 2-5x capacity)",
            50.0,
            overload,
            min_duration=8.0,
            min_drain=15.0,
            comparison_only=True,
        ),
    )
}


def build_trace(workload: Workload, rate: float, duration: float, seed: int) -> list[TraceRequest]:
    """Poisson arrivals at `rate` req/s for `duration` seconds, with the workload's requests in order."""
    arrivals = random.Random(seed * 1_000_003 + int(rate * 1000))
    times: list[float] = []
    t = arrivals.expovariate(rate)
    while t < duration:
        times.append(t)
        t += arrivals.expovariate(rate)
    content = workload.make(random.Random(seed), len(times))
    return [
        TraceRequest(at=at, path=path, body=body, headers=headers, klass=klass)
        for at, (path, body, headers, klass) in zip(times, content, strict=True)
    ]
