"""Time for the simulator's engine: the event loop's clock, or a virtual one that tests advance exactly.

The engine is the only part of the simulator that waits for time to pass (one sleep per batch step), so
swapping its clock swaps the whole time base: `LoopClock` paces real streams; `VirtualClock` jumps
forward by each step's duration at once, which makes step costs observable without wall-clock waits.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Clock(Protocol):
    """What the engine needs from time: read it, and let some of it pass."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The running event loop's monotonic clock (the default)."""

    __slots__ = ()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class VirtualClock:
    """A clock that only moves when slept on: each sleep advances it by exactly that much, then yields once.

    Meant for one sleeper (the engine): every other task sees time stand still between its steps.
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds
        await asyncio.sleep(0)
