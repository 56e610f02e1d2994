"""SessionPool: hard cap, FIFO back-pressure, acquire timeouts, and no leaked processes."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest

from sandboxes.pool import PoolClosed, PoolTimeout, SessionPool
from tests.sandboxes.conftest import pid_alive, wait_until


async def test_cap_is_never_exceeded_and_everyone_is_served(local_sandbox):
    pool = SessionPool(local_sandbox, max_sessions=3)
    live = 0
    peak_seen = 0
    seen_waiting = 0
    full = asyncio.Event()  # the first holders wait for each other: on a busy machine a
    # session could otherwise end before the third one has opened

    async def job(i: int) -> str | None:
        nonlocal live, peak_seen, seen_waiting
        async with pool.session() as s:
            live += 1
            peak_seen = max(peak_seen, live)
            seen_waiting = max(seen_waiting, pool.waiting)
            if live == 3:
                full.set()
            await asyncio.wait_for(full.wait(), 30)
            r = await s.arun(f"import time\ntime.sleep(0.05)\n{i} * 2")
            live -= 1
            return r.value

    values = await asyncio.gather(*(job(i) for i in range(12)))
    assert values == [str(i * 2) for i in range(12)]
    assert peak_seen == pool.peak == 3
    assert seen_waiting > 0  # callers really queued instead of failing
    assert pool.in_use == 0 and pool.waiting == 0
    assert local_sandbox.session_count() == 0


async def test_waiters_are_served_in_fifo_order(local_sandbox):
    pool = SessionPool(local_sandbox, max_sessions=1)
    order: list[int] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with pool.session():
            await release.wait()

    async def waiter(i: int) -> None:
        async with pool.session():
            order.append(i)

    h = asyncio.ensure_future(holder())
    await asyncio.sleep(0.05)
    ws = []
    for i in range(5):
        ws.append(asyncio.ensure_future(waiter(i)))
        await asyncio.sleep(0.01)  # enqueue in a known order
    assert pool.waiting == 5
    release.set()
    await asyncio.gather(h, *ws)
    assert order == [0, 1, 2, 3, 4]


async def test_acquire_timeout_is_a_clear_error_and_leaks_no_slot(local_sandbox):
    pool = SessionPool(local_sandbox, max_sessions=1, acquire_timeout_s=0.2)
    async with pool.session():
        t0 = time.monotonic()
        with pytest.raises(PoolTimeout, match=re.escape(
                "no sandbox session became free within 0.2 s (all 1 in use")):
            async with pool.session():
                pass
        assert 0.2 <= time.monotonic() - t0 < 2
        with pytest.raises(PoolTimeout):
            pool.acquire_slot(0.05)  # the sync path too
    assert pool.in_use == 0 and pool.waiting == 0
    async with pool.session() as s:  # the slot came back
        assert (await s.arun("1")).value == "1"


async def test_cancelled_waiter_leaks_no_slot(local_sandbox):
    pool = SessionPool(local_sandbox, max_sessions=1)
    async with pool.session():
        t = asyncio.ensure_future(pool.aacquire_slot())
        await asyncio.sleep(0.05)
        assert pool.waiting == 1
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert pool.waiting == 0
    assert pool.in_use == 0


def test_sync_sessions_from_threads(local_sandbox):
    pool = SessionPool(local_sandbox, max_sessions=2)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with pool.session_sync() as s:
                assert s.run(f"{i} + 1").value == str(i + 1)
                time.sleep(0.02)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and pool.peak == 2 and pool.in_use == 0


async def test_no_processes_leak_after_crash_timeout_and_errors(local_sandbox):
    pool = SessionPool(local_sandbox, max_sessions=4)
    pids: list[int] = []

    async def job(code: str, raise_after: bool = False) -> None:
        async with pool.session() as s:
            pids.append(s.info["pid"])
            await s.arun("import subprocess\nsubprocess.Popen(['sleep', '60'])")
            await s.arun(code, timeout_s=0.5)
            if raise_after:
                raise RuntimeError("caller failed")

    results = await asyncio.gather(
        job("import os\nos._exit(1)"), job("while True: pass"), job("1 / 0"),
        job("x = 1", raise_after=True), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["NoneType"] * 3 + ["RuntimeError"]
    assert len(pids) == 4
    assert wait_until(lambda: not any(pid_alive(p) for p in pids)), "session processes leaked"
    assert local_sandbox.session_count() == 0 and pool.in_use == 0


async def test_closed_pool_refuses_and_kills_open_sessions(local_sandbox):
    pool = SessionPool(local_sandbox, max_sessions=1)
    entered = asyncio.Event()
    holder_pid: list[int] = []

    async def holder() -> None:
        async with pool.session() as s:
            holder_pid.append(s.info["pid"])
            entered.set()
            await asyncio.sleep(30)

    h = asyncio.ensure_future(holder())
    await entered.wait()
    w = asyncio.ensure_future(pool.aacquire_slot())
    await asyncio.sleep(0.05)
    await pool.aclose()
    with pytest.raises(PoolClosed, match="closed while waiting"):
        await w
    assert wait_until(lambda: not pid_alive(holder_pid[0]))
    h.cancel()
    with pytest.raises(asyncio.CancelledError):
        await h
    with pytest.raises(PoolClosed, match="this SessionPool is closed"):
        async with pool.session():
            pass


def test_max_sessions_must_be_positive(local_sandbox):
    with pytest.raises(ValueError, match=re.escape("max_sessions must be a positive int, got 0")):
        SessionPool(local_sandbox, max_sessions=0)
