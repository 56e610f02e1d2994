"""The server's worker threads (``ThreadSlots``): bounded, a stuck call gives its slot back,
and a stuck call never keeps the process alive."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from agent_envs.server._threads import ThreadSlots

ROOT = Path(__file__).resolve().parents[3]


def test_at_most_size_calls_run_at_once_and_the_rest_queue_in_order() -> None:
    pool = ThreadSlots(2)
    lock = threading.Lock()
    running, peak, order = 0, 0, []

    def work(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
            order.append(i)
        return i * i

    futures = [pool.submit(work, i) for i in range(8)]
    assert [f.result(timeout=10) for f in futures] == [i * i for i in range(8)]
    assert peak == 2 and pool.threads == 2
    assert sorted(order[:2]) == [0, 1]  # FIFO: the first two ran first


def test_an_exception_reaches_the_caller_and_the_thread_goes_on() -> None:
    pool = ThreadSlots(1)

    def boom() -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError, match="nope"):
        pool.submit(boom).result(timeout=10)
    assert pool.submit(lambda: 5).result(timeout=10) == 5
    assert pool.threads == 1


def test_an_abandoned_call_gives_its_slot_back() -> None:
    pool = ThreadSlots(1)
    release = threading.Event()
    stuck = pool.submit(release.wait)
    time.sleep(0.1)
    queued = pool.submit(lambda: "ran")
    time.sleep(0.1)
    assert not queued.done()  # the one slot is taken
    pool.abandon(stuck)
    assert queued.result(timeout=10) == "ran"  # a new thread took the slot
    assert pool.threads == 1
    release.set()
    assert stuck.result(timeout=10) is True  # the stuck call still finishes
    time.sleep(0.1)
    assert pool.threads == 1  # and its thread ended instead of rejoining


def test_a_call_abandoned_before_it_ran_never_runs() -> None:
    pool = ThreadSlots(1)
    release = threading.Event()
    ran = []
    first = pool.submit(release.wait)
    later = pool.submit(ran.append, 1)
    pool.abandon(later)
    release.set()
    first.result(timeout=10)
    with pytest.raises(CancelledError):
        later.result(timeout=10)
    time.sleep(0.1)
    assert ran == []
    pool.abandon(first)  # done already: no-op
    assert pool.threads == 1


def test_size_must_be_a_positive_integer() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="thread pool size must be an integer >= 1"):
            ThreadSlots(bad)  # type: ignore[arg-type]


def test_a_call_stuck_for_good_does_not_keep_the_process_alive() -> None:
    code = ("import threading; from agent_envs.server._threads import ThreadSlots; "
            "ThreadSlots(1).submit(threading.Event().wait); print('bye', flush=True)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout == "bye\n", done.stderr[-2000:]
