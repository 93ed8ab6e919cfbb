"""The router's HTTP/1.1 client for endpoints: keep-alive pools per (host, port), typed failures, one sweep.

The proxy hands `send` a ready request head and body; `send` writes them on the most recently pooled idle
connection to that endpoint (or a new one) and returns the response once its head is in. The body is read
piece by piece from the response, which goes back to the pool on `release()` when it came whole and the
endpoint keeps the connection alive. A pooled connection that the endpoint closed just as it was reused is
replaced once, transparently (the keep-alive race); every other failure is raised for the proxy to map.

No timer per request or per connection: one read ticker, running only while something waits, counts ticks of
a quarter of the read timeout and fails a wait that has lasted five of them (between 1 and 1.25 times the
read timeout); one idle ticker, running only while the pool is not empty, closes connections idle for four
ticks of a quarter of the idle timeout (between 3/4 of it and all of it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from kthena_router.upstream.errors import ConnectFailed, UpstreamClosed
from kthena_router.upstream.protocol import BUSY, IDLE, Connection, UpstreamResponse

log = logging.getLogger(__name__)

_READ_TICKS = 5  # a wait fails at the fifth tick after it began: more than 4 ticks (the read timeout) later
_IDLE_TICKS = 4


class UpstreamClient:
    """Keep-alive connections to endpoints, by (host, port). Create it inside the running loop."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, keepalive_per_host: int = 256,
                 idle_timeout: float = 60.0) -> None:
        if connect_timeout <= 0 or read_timeout <= 0 or idle_timeout <= 0 or keepalive_per_host < 0:
            raise ValueError("timeouts must be positive and keepalive_per_host not negative")
        self.loop = asyncio.get_running_loop()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_per_host = keepalive_per_host
        self.idle_timeout = idle_timeout
        self.open: set[Connection] = set()  # every live connection, busy or idle
        self._idle: dict[tuple[str, int], list[Connection]] = {}  # oldest first
        self._closed = False
        self._alive: set | frozenset | None = None  # endpoints of the current pools, once told (forget_except)
        self.read_tick = 0
        self.read_ticker: asyncio.TimerHandle | None = None
        self._read_every = read_timeout / (_READ_TICKS - 1)
        self._idle_tick = 0
        self._idle_ticker: asyncio.TimerHandle | None = None
        self._idle_every = idle_timeout / _IDLE_TICKS

    @property
    def open_connections(self) -> int:
        """Live connections, busy and idle."""
        return len(self.open)

    @property
    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    # --- requests ---------------------------------------------------------------------------------------

    async def send(self, host: str, port: int, head: bytes, body: bytes, *,
                   head_only: bool = False) -> UpstreamResponse:
        """Send one request (`head` ends with a blank line) and return the response once its head arrived."""
        key = (host, port)
        idle = self._idle.get(key)
        if idle:
            conn = idle.pop()  # the most recently used: the least likely to be timed out by the endpoint
            conn.state = BUSY
            # Connection.exchange, inlined for the common case.
            response = conn.start(head, body, head_only)
            try:
                while response.status == 0 and response._error is None:
                    await conn.arm()
            except BaseException:
                conn.waiter = None
                conn.close()
                raise
            if response.status:
                return response
            error = response._error
            if not isinstance(error, UpstreamClosed) or error.response_started:
                raise error  # type: ignore[misc]
            log.debug("%s closed a pooled connection before responding; sending again on a new one", conn.name)
        conn = await self._connect(key)
        return await conn.exchange(head, body, head_only)

    async def _connect(self, key: tuple[str, int]) -> Connection:
        if self._closed:
            raise ConnectFailed(f"not connecting to {key[0]}:{key[1]}: the client is closed")
        host, port = key
        conn = Connection(self, key)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self.loop.create_connection(lambda: conn, host, port)
        except BaseException as exc:
            # Also when cancelled: uvloop can leave a connected transport behind a cancelled
            # create_connection, and the timeout can land just after the connection was made.
            conn.close()
            if isinstance(exc, TimeoutError):
                raise ConnectFailed(f"connecting to {host}:{port} timed out after {self.connect_timeout:g}s") from None
            if isinstance(exc, OSError):
                raise ConnectFailed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
            raise
        return conn

    # --- pool -------------------------------------------------------------------------------------------

    def _put(self, conn: Connection) -> None:
        """Pool a connection whose exchange ended cleanly, or close it when the pool is full."""
        conn.response = None
        alive = self._alive
        if alive is not None and conn.key not in alive:  # its endpoint left while it was busy
            conn.close()
            return
        idle = self._idle.get(conn.key)
        if idle is None:
            if self._closed:
                conn.close()
                return
            idle = self._idle[conn.key] = []
        if len(idle) >= self.keepalive_per_host:
            conn.close()
            return
        if conn.reparse:
            conn.reparse = False
            conn.parser = type(conn.parser)(conn)
        if conn.reading_paused:  # the body's end arrived in the read that crossed the high-water mark
            conn.resume_reading()
        conn.state = IDLE
        conn.idle_tick = self._idle_tick
        idle.append(conn)
        if self._idle_ticker is None:
            self._idle_ticker = self.loop.call_later(self._idle_every, self._sweep_idle)

    def _unpool(self, conn: Connection) -> None:
        """Take an idle connection out of the pool (it is closing)."""
        idle = self._idle.get(conn.key)
        if idle is not None:
            try:
                idle.remove(conn)
            except ValueError:
                pass

    def _sweep_idle(self) -> None:
        self._idle_ticker = None
        self._idle_tick += 1
        stale_tick = self._idle_tick - _IDLE_TICKS
        for key, idle in list(self._idle.items()):
            count = 0
            for conn in idle:
                if conn.idle_tick > stale_tick:
                    break
                count += 1
            if count:
                stale = idle[:count]
                del idle[:count]
                for conn in stale:
                    conn.state = BUSY  # already out of the pool
                    conn.close()
            if not idle:
                del self._idle[key]
        if self._idle:
            self._idle_ticker = self.loop.call_later(self._idle_every, self._sweep_idle)

    def forget_except(self, alive: Collection[tuple[str, int]]) -> None:
        """Close the idle connections to endpoints not in `alive`; busy ones close when their exchange ends."""
        self._alive = alive if isinstance(alive, (set, frozenset)) else set(alive)
        for key in [key for key in self._idle if key not in alive]:
            for conn in self._idle.pop(key):
                conn.state = BUSY  # already out of the pool
                conn.close()

    # --- read timeouts ----------------------------------------------------------------------------------

    def start_read_ticker(self) -> None:
        self.read_ticker = self.loop.call_later(self._read_every, self._sweep_waits)

    def _sweep_waits(self) -> None:
        self.read_ticker = None
        self.read_tick = tick = self.read_tick + 1
        late_tick = tick - _READ_TICKS
        late: list[Connection] = []
        waiting = False
        for conn in self.open:
            if conn.waiter is not None:
                if conn.wait_tick <= late_tick:
                    late.append(conn)
                else:
                    waiting = True
        for conn in late:
            conn.timed_out()
        if waiting:
            self.start_read_ticker()

    # --- shutdown ---------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close every connection, busy or idle; a pending read or send fails with UpstreamClosed."""
        self._closed = True
        for ticker in (self.read_ticker, self._idle_ticker):
            if ticker is not None:
                ticker.cancel()
        self.read_ticker = self._idle_ticker = None
        self._idle = {}
        for conn in list(self.open):
            if conn.state == IDLE:
                conn.state = BUSY  # the pool is already gone
            conn.close()
        await asyncio.sleep(0)  # let the transports report connection_lost

