"""A bounded pool of daemon threads for the server's blocking work, shared by every session.

The server runs most envs as coroutines on its event loop (their async twins); what must
block runs here: making an env (``agent_envs.make`` is synchronous), and every call of an env
whose async twins are not its real implementation (a subclass that overrides ``step`` only).
So a server holds ``size`` threads however many sessions it serves, instead of one or two per
session.

Why not ``concurrent.futures.ThreadPoolExecutor``: a call that hangs for good (past the step
timeout, ignoring ``close``) would keep its thread, its slot, and the process at exit (the
executor joins its threads). Here :meth:`ThreadSlots.abandon` gives the slot back (the stuck
thread ends once its call returns, and another thread takes its place), and the threads are
daemons, so a stuck call never keeps ``agent-envs serve`` from exiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["ThreadSlots"]


class _Call:
    __slots__ = ("abandoned", "args", "fn", "future", "ran")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args
        self.future: Future[Any] = Future()
        self.abandoned = False
        self.ran = False


class ThreadSlots:
    """At most ``size`` threads run calls at once; calls beyond that wait in a FIFO queue.

    Args:
        size: Most calls running at once (threads are started on demand, and kept).
        name: Thread name, for stack dumps.
    """

    def __init__(self, size: int, *, name: str = "agent-env") -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"the thread pool size must be an integer >= 1, got {size!r}")
        self.size = size
        self.name = name
        self._queue: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._live = 0  # threads counted against size: idle or running a call not abandoned
        self._idle = 0
        self._waiting = 0  # calls queued and not yet picked up
        self._calls: dict[Future[Any], _Call] = {}

    @property
    def threads(self) -> int:
        """Threads that count against ``size`` (abandoned calls' threads do not)."""
        return self._live

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on a pool thread; the future holds its result or exception."""
        call = _Call(fn, args)
        with self._lock:
            self._calls[call.future] = call
            self._waiting += 1
            self._queue.put(call)
            self._grow()
        return call.future

    def abandon(self, future: Future[Any]) -> None:
        """Stop counting ``future``'s call against the pool: its thread ends when the call
        returns, and a new thread serves the queue meanwhile. No-op once the call is done."""
        with self._lock:
            call = self._calls.get(future)
            if call is None or call.abandoned:
                return
            call.abandoned = True
            if call.ran:  # running now: its thread leaves the pool
                self._live -= 1
                self._grow()
        future.cancel()  # a call still queued never runs

    def _grow(self) -> None:  # under the lock
        if self._waiting > self._idle and self._live < self.size:
            self._live += 1
            self._idle += 1
            threading.Thread(target=self._loop, daemon=True, name=self.name).start()

    def _loop(self) -> None:
        while True:
            call = self._queue.get()
            with self._lock:
                self._waiting -= 1
                self._idle -= 1
                call.ran = not call.abandoned
            if call.ran and call.future.set_running_or_notify_cancel():
                try:
                    result = call.fn(*call.args)
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    call.future.set_exception(e)
                else:
                    call.future.set_result(result)
                    del result
            with self._lock:
                self._calls.pop(call.future, None)
                if call.ran and call.abandoned:
                    return  # abandoned mid-call: this thread no longer counts; end it
                self._idle += 1
            del call
