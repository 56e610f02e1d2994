"""One server, many sessions: no thread per session, envs on the event loop or on the shared
worker threads, ``GET /load``, and the open-file limit raised for ``max_sessions``."""

from __future__ import annotations

import asyncio
import resource
import threading
import time
from typing import Any

import gymnasium as gym
import httpx
import numpy as np
import pytest

import agent_envs
from agent_envs.envs.python_tool.env import PythonToolEnv
from agent_envs.envs.toy import ToyDigitEnv
from agent_envs.harmony import get_codec
from agent_envs.server.app import FD_RESERVE, FDS_PER_SESSION, raise_fd_limit
from agent_envs.server.session import ServerSettings, runs_async
from tests.agent_envs.server.conftest import AUTH
from tests.agent_envs.server.test_faults import HANG, SlowToyEnv

CODEC = get_codec()
ANSWER = CODEC.encode("7") + [200002]


class ThreadRecordingToyEnv(ToyDigitEnv):
    """toy-digit whose sync and async steps record the thread they ran on."""

    seen: list[str] = []  # noqa: RUF012 - shared with the test

    def step(self, action: Any) -> Any:
        ThreadRecordingToyEnv.seen.append(threading.current_thread().name)
        return super().step(action)

    async def astep(self, action: Any) -> Any:
        ThreadRecordingToyEnv.seen.append(threading.current_thread().name)
        return await super().astep(action)


class AsyncHangToyEnv(ToyDigitEnv):
    """toy-digit whose async step awaits forever on ``HANG`` (a sandbox call that never
    answers); records whether the awaiting call was cancelled and the env closed."""

    cancelled: list[int] = []  # noqa: RUF012
    closed: list[int] = []  # noqa: RUF012

    async def astep(self, action: Any) -> Any:
        if list(action) == HANG:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                AsyncHangToyEnv.cancelled.append(id(self))
                raise
        return await super().astep(action)

    async def aclose(self) -> None:
        AsyncHangToyEnv.closed.append(id(self))
        await super().aclose()


class PlainEnv(gym.Env):
    """A gymnasium env with no async twins."""

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        return np.zeros(1), {}

    def step(self, action: Any) -> Any:
        return np.zeros(1), 0.0, True, False, {}


def test_which_envs_run_on_the_event_loop() -> None:
    assert runs_async(agent_envs.make("toy-digit"))
    assert runs_async(PythonToolEnv(sandbox="local"))  # its sandbox calls are awaited
    assert runs_async(ThreadRecordingToyEnv())  # overrides both twins
    assert not runs_async(SlowToyEnv())  # overrides step only: astep would skip it
    assert not runs_async(PlainEnv())  # no async twins at all


def test_many_sessions_share_a_few_threads(serve) -> None:
    """200 sessions open at once cost no thread each: toy-digit runs on the event loop, and
    only env making uses the worker threads (4 here)."""
    server = serve("toy-digit", max_sessions=256, workers=4)
    before = threading.active_count()

    async def main() -> tuple[list[Any], int]:
        envs = [agent_envs.remote(server.url, "toy-digit") for _ in range(200)]
        await asyncio.gather(*(e.areset(seed=i) for i, e in enumerate(envs)))
        during = threading.active_count()
        results = await asyncio.gather(*(e.astep(ANSWER) for e in envs))
        await asyncio.gather(*(e.aclose() for e in envs))
        return results, during

    results, during = asyncio.run(main())
    assert all(r[1] == 1.0 and r[2] for r in results)
    assert during - before <= 4 + 2  # the workers, and the client's I/O thread
    r = httpx.get(server.url + "/load", headers=AUTH, timeout=10).json()
    assert r == {"env_id": "toy-digit-v0", "sessions": 0, "max_sessions": 256, "busy": 0}


def test_load_reports_open_sessions_and_needs_the_token(serve) -> None:
    server = serve("toy-digit", max_sessions=5)
    env = agent_envs.remote(server.url, "toy-digit")
    env.reset(seed=0)
    r = httpx.get(server.url + "/load", headers=AUTH, timeout=10)
    assert r.json() == {"env_id": "toy-digit-v0", "sessions": 1, "max_sessions": 5, "busy": 0}
    assert httpx.get(server.url + "/load", timeout=10).status_code == 401
    env.close()


@pytest.mark.parametrize("env_calls", ["auto", "threads"])
def test_env_calls_run_on_the_loop_or_on_the_worker_threads(serve, env_calls) -> None:
    server = serve("toy-digit", env_factory=ThreadRecordingToyEnv, env_calls=env_calls)
    ThreadRecordingToyEnv.seen.clear()
    env = agent_envs.remote(server.url, "toy-digit")
    local = agent_envs.make("toy-digit")
    try:
        for seed in (0, 1):
            obs, _ = env.reset(seed=seed)
            assert obs.tolist() == local.reset(seed=seed)[0].tolist()
            got = env.step(ANSWER)
            want = local.step(ANSWER)
            assert got[0].tolist() == want[0].tolist() and got[1:3] == want[1:3]
    finally:
        env.close()
        local.close()
    # the loop runs in the server's own thread; the workers are named agent-env
    assert ThreadRecordingToyEnv.seen
    if env_calls == "auto":
        assert "agent-env" not in ThreadRecordingToyEnv.seen
    else:
        assert set(ThreadRecordingToyEnv.seen) == {"agent-env"}


def test_an_async_step_past_the_timeout_is_cancelled_and_its_env_closed(serve) -> None:
    server = serve("toy-digit", env_factory=AsyncHangToyEnv, step_timeout_s=0.5)
    env = agent_envs.remote(server.url, "toy-digit")
    env.reset(seed=0)
    t0 = time.monotonic()
    _, reward, terminated, truncated, info = env.step(HANG)
    assert time.monotonic() - t0 < 3
    assert truncated and not terminated and reward == 0.0
    assert "step ran longer than the server's step timeout (0.5 s)" in info["infra_error"]
    deadline = time.monotonic() + 10
    while not (AsyncHangToyEnv.cancelled and AsyncHangToyEnv.closed) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert AsyncHangToyEnv.cancelled and AsyncHangToyEnv.closed
    env.reset(seed=1)  # the session goes on with a fresh env
    _, reward, terminated, *_ = env.step(ANSWER)
    assert terminated and reward == 1.0
    env.close()


def test_the_open_file_limit_is_raised_for_max_sessions() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 100 * FDS_PER_SESSION + FD_RESERVE
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the hard open-file limit here ({hard}) is below {need}")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        now, short = raise_fd_limit(100)
        assert now == need and short is None
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == need
        assert raise_fd_limit(1)[0] == need  # never lowered
        if hard != resource.RLIM_INFINITY:
            now, short = raise_fd_limit(hard)  # more than the hard limit allows
            assert now == hard and short == hard * FDS_PER_SESSION + FD_RESERVE
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_workers_and_env_calls_are_checked() -> None:
    with pytest.raises(ValueError, match=r"workers must be an integer >= 1 .* got 0"):
        ServerSettings(env_id="toy-digit", workers=0)
    with pytest.raises(ValueError, match="env_calls must be 'auto' .* got 'thread'"):
        ServerSettings(env_id="toy-digit", env_calls="thread")  # type: ignore[arg-type]
