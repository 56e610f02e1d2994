"""``SessionPool``: a hard cap on concurrent sessions of one sandbox, with back-pressure.

    pool = SessionPool(sandbox, max_sessions=64)
    async with pool.session() as s:          # waits (FIFO) while 64 are in use
        r = await s.arun("1 + 1")
    with pool.session_sync() as s:           # the same from threads
        s.run("x = 1")

Each acquisition gets a fresh session (state never leaks between users) that is closed, with
its whole process tree, when the block exits, whether it ended normally, raised, timed out or
crashed. Sync and async users share one FIFO queue, so mixing them is fair.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator

from sandboxes.base import Sandbox, Session
from sandboxes.errors import SandboxError

__all__ = ["PoolClosed", "PoolTimeout", "SessionPool"]


class PoolTimeout(SandboxError, TimeoutError):
    """No session slot became free within the acquire timeout."""


class PoolClosed(SandboxError):
    """The pool was closed; no more sessions can be acquired from it."""


class _Waiter:
    __slots__ = ("event", "future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop
        self.event = threading.Event() if loop is None else None
        self.future: asyncio.Future[None] | None = loop.create_future() if loop else None
        self.granted = False

    def grant(self) -> None:
        self.granted = True
        if self.event is not None:
            self.event.set()
        else:
            assert self.loop is not None and self.future is not None
            fut = self.future
            self.loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))


class SessionPool:
    """Caps how many sessions of ``sandbox`` exist at once; waiters queue in FIFO order.

    Args:
        sandbox: Where sessions come from.
        max_sessions: Hard cap on sessions open at the same time through this pool.
        acquire_timeout_s: Default longest wait for a free slot (None waits forever); a
            timeout raises :class:`PoolTimeout`.

    Raises:
        ValueError: ``max_sessions`` is not a positive integer.
    """

    def __init__(self, sandbox: Sandbox, *, max_sessions: int,
                 acquire_timeout_s: float | None = None) -> None:
        if not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError(f"max_sessions must be a positive int, got {max_sessions!r}; "
                             "pass e.g. max_sessions=64.")
        self.sandbox = sandbox
        self.max_sessions = max_sessions
        self.acquire_timeout_s = acquire_timeout_s
        self._lock = threading.Lock()
        self._in_use = 0
        self._waiters: deque[_Waiter] = deque()
        self._sessions: set[Session] = set()
        self._closed = False
        self.peak = 0  # most slots ever in use at once

    @property
    def in_use(self) -> int:
        """Slots currently held."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Callers queued for a slot."""
        return len(self._waiters)

    # -- slots
    def _try_take(self, waiter: _Waiter | None) -> bool:
        if self._closed:
            raise PoolClosed("this SessionPool is closed; make a new one.")
        if self._in_use < self.max_sessions and not self._waiters:
            self._in_use += 1
            self.peak = max(self.peak, self._in_use)
            return True
        if waiter is not None:
            self._waiters.append(waiter)
        return False

    def _release(self) -> None:
        with self._lock:
            while self._waiters:
                w = self._waiters.popleft()
                w.grant()  # the slot passes straight to the next waiter
                return
            self._in_use -= 1

    def _timeout_error(self, timeout: float) -> PoolTimeout:
        return PoolTimeout(f"no sandbox session became free within {timeout:g} s "
                           f"(all {self.max_sessions} in use, {len(self._waiters)} waiting); "
                           "raise max_sessions or acquire_timeout_s, or close sessions sooner.")

    def _abandon(self, w: _Waiter) -> None:
        """A waiter gave up: leave the queue, or pass on a slot granted meanwhile."""
        with self._lock:
            if w in self._waiters:
                self._waiters.remove(w)
                return
        if w.granted:
            self._release()

    def acquire_slot(self, timeout_s: float | None = None) -> None:
        """Block until a slot is free (sync). Prefer :meth:`session_sync`."""
        timeout = self.acquire_timeout_s if timeout_s is None else timeout_s
        w = _Waiter()
        with self._lock:
            if self._try_take(w):
                return
        if not w.event.wait(timeout):  # type: ignore[union-attr]
            self._abandon(w)
            if not w.granted:
                raise self._timeout_error(timeout)  # type: ignore[arg-type]
        if self._closed:
            self._release()
            raise PoolClosed("this SessionPool was closed while waiting for a session.")

    async def aacquire_slot(self, timeout_s: float | None = None) -> None:
        """Wait until a slot is free (async). Prefer :meth:`session`."""
        timeout = self.acquire_timeout_s if timeout_s is None else timeout_s
        w = _Waiter(asyncio.get_running_loop())
        with self._lock:
            if self._try_take(w):
                return
        assert w.future is not None
        try:
            await asyncio.wait_for(asyncio.shield(w.future), timeout)
        except asyncio.TimeoutError:
            self._abandon(w)
            if not w.granted:
                raise self._timeout_error(timeout) from None  # type: ignore[arg-type]
        except asyncio.CancelledError:
            self._abandon(w)
            raise
        if self._closed:
            self._release()
            raise PoolClosed("this SessionPool was closed while waiting for a session.")

    # -- sessions
    def _track(self, s: Session, add: bool) -> None:
        with self._lock:
            (self._sessions.add if add else self._sessions.discard)(s)

    @contextlib.contextmanager
    def session_sync(self, *, timeout_s: float | None = None) -> Iterator[Session]:
        """A fresh session for the ``with`` block; waits for a slot first."""
        self.acquire_slot(timeout_s)
        try:
            s = self.sandbox.open()
        except BaseException:
            self._release()
            raise
        self._track(s, True)
        try:
            yield s
        finally:
            try:
                s.close()
            finally:
                self._track(s, False)
                self._release()

    @contextlib.asynccontextmanager
    async def session(self, *, timeout_s: float | None = None) -> AsyncIterator[Session]:
        """A fresh session for the ``async with`` block; waits (without blocking) for a slot."""
        await self.aacquire_slot(timeout_s)
        try:
            s = await self.sandbox.aopen()
        except BaseException:
            self._release()
            raise
        self._track(s, True)
        try:
            yield s
        finally:
            try:
                await asyncio.shield(s.aclose())
            finally:
                self._track(s, False)
                self._release()

    def close(self) -> None:
        """Refuse new acquisitions, fail the waiters, and kill the sessions still open."""
        with self._lock:
            self._closed = True
            waiters, self._waiters = list(self._waiters), deque()
            sessions = list(self._sessions)
        for w in waiters:
            with self._lock:
                self._in_use += 1  # each woken waiter releases the slot it is handed
            w.grant()
        for s in sessions:
            s.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> SessionPool:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> SessionPool:  # noqa: PYI034
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (f"<SessionPool {self.sandbox.name} in_use={self._in_use}/{self.max_sessions} "
                f"waiting={len(self._waiters)}>")
