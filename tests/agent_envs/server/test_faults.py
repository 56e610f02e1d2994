"""Faults over a real server: bad messages, the session cap, idle reaping, hanging steps,
a corrupted delta and a server killed mid-episode. Each gives a clear in-band answer."""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect

import agent_envs
from agent_envs.envs.toy import ToyDigitEnv
from agent_envs.errors import EnvStateError, InvalidActionError
from agent_envs.harmony import get_codec
from agent_envs.server.protocol import RunningHash, ServerBusyError, ServerUnavailableError
from tests.agent_envs.server.conftest import AUTH

ROOT = Path(__file__).resolve().parents[3]

CODEC = get_codec()
HANG = CODEC.encode("hang")  # SlowToyEnv sleeps on this action


class SlowToyEnv(ToyDigitEnv):
    """toy-digit whose step sleeps ``delay_s`` on the ``HANG`` action; records closes."""

    closed: list[int] = []  # noqa: RUF012 - a record shared with the test

    def __init__(self, *, delay_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay_s = delay_s

    def step(self, action: Any) -> Any:
        if list(action) == HANG:
            time.sleep(self.delay_s)
        return super().step(action)

    def close(self) -> None:
        SlowToyEnv.closed.append(id(self))
        super().close()


SLOW_SEED = 13  # LeakyToyEnv's reset sleeps on this seed
ANSWER = CODEC.encode("7") + [200002]  # toy-digit's default target, then <|return|>


class LeakyToyEnv(ToyDigitEnv):
    """toy-digit that is slow to make (``make_delay_s``), to reset (seed ``SLOW_SEED``) and to
    step (``HANG``), ``delay_s`` each. Like python-tool's sandbox session, reset and step open
    a handle after their slow part, which ``close`` releases; makes, closes, open handles and
    slow calls still running are recorded so a test can tell what leaked."""

    made: list[int] = []  # noqa: RUF012 - records shared with the tests
    closed: set[int] = set()  # noqa: RUF012
    handles: set[int] = set()  # noqa: RUF012 - envs holding an open handle
    slow_calls: set[int] = set()  # noqa: RUF012 - slow resets/steps not yet returned
    _serials = itertools.count()

    def __init__(self, *, make_delay_s: float = 0.0, delay_s: float = 2.0, **kwargs: Any
                 ) -> None:
        time.sleep(make_delay_s)
        super().__init__(**kwargs)
        self.delay_s = delay_s
        self.serial = next(LeakyToyEnv._serials)
        LeakyToyEnv.made.append(self.serial)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> Any:
        with self._slow(seed == SLOW_SEED):
            return super().reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        with self._slow(list(action) == HANG):
            return super().step(action)

    @contextlib.contextmanager
    def _slow(self, slow: bool) -> Iterator[None]:
        call = next(LeakyToyEnv._serials)
        LeakyToyEnv.slow_calls.add(call)
        try:
            if slow:
                time.sleep(self.delay_s)
            LeakyToyEnv.handles.add(self.serial)
            yield
        finally:
            LeakyToyEnv.slow_calls.discard(call)

    def close(self) -> None:
        LeakyToyEnv.handles.discard(self.serial)
        LeakyToyEnv.closed.add(self.serial)
        super().close()


def _all_closed_eventually(first: int, n_made: int, within_s: float = 15.0) -> None:
    """Once every reset and step has returned, every LeakyToyEnv made since
    ``LeakyToyEnv.made[first]`` (``n_made`` of them) is closed and holds no handle, within
    ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        made = set(LeakyToyEnv.made[first:])
        done = (len(made) >= n_made and not LeakyToyEnv.slow_calls and made <= LeakyToyEnv.closed
                and not made & LeakyToyEnv.handles)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(made) == n_made and not LeakyToyEnv.slow_calls
    assert made <= LeakyToyEnv.closed, f"made {sorted(made)}, closed only " \
                                       f"{sorted(made & LeakyToyEnv.closed)}"
    assert not made & LeakyToyEnv.handles, f"open handles: {sorted(made & LeakyToyEnv.handles)}"


def _ws(url: str) -> Any:
    return connect(url.replace("http://", "ws://") + "/ws", open_timeout=10,
                   additional_headers=AUTH)


def _ask(ws: Any, message: Any) -> dict[str, Any]:
    ws.send(message if isinstance(message, str) else json.dumps(message))
    return json.loads(ws.recv(timeout=10))


def test_bad_messages_get_clear_in_band_errors_and_the_session_goes_on(serve) -> None:
    server = serve("toy-digit", env_kwargs={"max_turns": 2})
    with _ws(server.url) as ws:
        r = _ask(ws, "{not json")
        assert r["type"] == "error" and r["data"]["code"] == "INVALID_JSON"
        r = _ask(ws, {"type": "teleport"})
        assert r["type"] == "error" and r["data"]["code"] == "UNKNOWN_TYPE"
        assert "teleport" in r["data"]["message"]
        r = _ask(ws, {"type": "step", "data": {"text": None, "tokens": [200005, 99999999]}})
        assert r["data"]["code"] == "VALIDATION_ERROR"
        (err,) = r["data"]["errors"]
        assert err["loc"] == ["tokens", 1] and err["input"] == 99999999
        assert "less than 201088" in err["msg"]
        r = _ask(ws, {"type": "step", "data": {}})
        assert r["data"]["code"] == "VALIDATION_ERROR"
        assert "a step action needs a 'text' field" in r["data"]["errors"][0]["msg"]
        r = _ask(ws, {"type": "step", "data": {"tokens": [17196]}})  # tokens, no text
        assert "or null when 'tokens' holds it" in r["data"]["errors"][0]["msg"]
        r = _ask(ws, {"type": "step", "data": {"text": None}})
        assert "exactly one of 'text'" in r["data"]["errors"][0]["msg"]
        r = _ask(ws, {"type": "step", "data": {"text": None, "tokens": [17196]}})  # no reset
        assert r["type"] == "observation"
        assert r["data"]["observation"]["error"]["type"] == "EnvStateError"
        assert "send a reset message" in r["data"]["observation"]["error"]["message"]
        r = _ask(ws, {"type": "reset", "data": {"seed": 1, "colour": "red"}})
        assert "unknown reset field(s) ['colour']" in r["data"]["observation"]["error"]["message"]
        r = _ask(ws, {"type": "reset", "data": {"env_id": "python-tool"}})
        msg = r["data"]["observation"]["error"]["message"]
        assert "serves 'toy-digit-v0', not 'python-tool'" in msg
        r = _ask(ws, {"type": "reset", "data": {"env_kwargs": {"max_turns": 5}}})
        msg = r["data"]["observation"]["error"]["message"]
        assert "['max_turns'] are pinned by the server" in msg
        # after all that, the same session still plays an episode
        r = _ask(ws, {"type": "reset", "data": {"seed": 1}})
        obs = r["data"]["observation"]
        assert obs["error"] is None and obs["tokens"]
        r = _ask(ws, {"type": "step", "data": {"text": None, "tokens": ANSWER}})
        assert r["data"]["reward"] == 1.0 and r["data"]["done"] is True


def test_remote_client_raises_the_in_process_exception_types(serve) -> None:
    server = serve("toy-digit")
    env = agent_envs.remote(server.url, "toy-digit")
    local = agent_envs.make("toy-digit")
    try:
        with pytest.raises(EnvStateError, match="before reset"):
            env.step([1, 2])
        with pytest.raises(ValueError, match="serves 'toy-digit-v0', not 'python-tool'"):
            agent_envs.remote(server.url, "python-tool").reset(seed=0)
        with pytest.raises(TypeError, match="(unknown|unexpected keyword) argument 'colour'"):
            agent_envs.remote(server.url, "toy-digit", colour="red").reset(seed=0)
        with pytest.raises(TypeError, match="not JSON: {'task_source': 'object'}"):
            agent_envs.remote(server.url, "toy-digit", task_source=object())
        env.reset(seed=0)
        local.reset(seed=0)
        with pytest.raises(InvalidActionError, match=r"201088.*300000|300000.*201088"):
            env.step([300000])  # checked by the client, or else by the server's schema
        with pytest.raises(InvalidActionError, match="found 1.5 of type float"):
            env.step([1.5])
        with pytest.raises(InvalidActionError, match="found 1.5 of type float"):
            local.step([1.5])
        # a text action is encoded by the server, as in-process
        obs, reward, *_ = env.step("7<|return|>")
        lobs, lreward, *_ = local.step("7<|return|>")
        assert obs.tolist() == lobs.tolist() and reward == lreward == 1.0
        with pytest.raises(EnvStateError, match="after the episode ended"):
            env.step([1])
    finally:
        env.close()
        local.close()


def test_at_the_session_cap_a_new_session_is_refused_in_band_or_waits(serve) -> None:
    server = serve("toy-digit", max_sessions=2)
    a, b = agent_envs.remote(server.url, "toy-digit"), agent_envs.remote(server.url, "toy-digit")
    a.reset(seed=0)
    b.reset(seed=1)
    with _ws(server.url) as ws:  # a raw third session: refused in-band, then closed
        r = json.loads(ws.recv(timeout=10))
        assert r["type"] == "error" and r["data"]["code"] == "CAPACITY_REACHED"
        assert r["data"]["max_sessions"] == 2
    c = agent_envs.remote(server.url, "toy-digit", busy_timeout_s=0.3)
    t0 = time.monotonic()
    with pytest.raises(ServerBusyError, match=r"session cap \(2 sessions, --max-sessions\)"):
        c.reset(seed=2)
    assert 0.3 <= time.monotonic() - t0 < 5
    # a patient client waits until a slot frees
    threading.Timer(0.8, a.close).start()
    d = agent_envs.remote(server.url, "toy-digit", busy_timeout_s=20)
    t0 = time.monotonic()
    _, info = d.reset(seed=3)
    waited = time.monotonic() - t0
    assert 0.6 < waited < 10 and info["env_id"] == "toy-digit-v0"
    assert server.env_server.active_sessions == 2
    for env in (b, d):
        env.close()


def test_idle_sessions_are_reaped_with_their_env_but_never_mid_step(serve) -> None:
    server = serve("toy-digit", env_factory=SlowToyEnv, idle_timeout_s=0.3, step_timeout_s=10)
    env = agent_envs.remote(server.url, "toy-digit", delay_s=1.0)
    env.reset(seed=0)
    # a step longer than the idle timeout is work, not idleness
    obs, reward, terminated, truncated, info = env.step(HANG)
    assert info["infra_error"] is None and not truncated and obs[-len(HANG):].tolist() != HANG
    before = len(SlowToyEnv.closed)
    time.sleep(1.5)
    assert server.env_server.active_sessions == 0
    assert len(SlowToyEnv.closed) == before + 1  # the session's env was closed
    assert env._ws.state.name == "CLOSED"  # and the server closed the socket
    _, reward, terminated, truncated, info = env.step(ANSWER)
    assert truncated and not terminated and reward == 0.0
    assert "idle for more than 0.3 s" in info["infra_error"]
    assert info["truncated_reason"] == "infra"
    # reset opens a new session by itself, also right after a reap it has not yet noticed
    _, info = env.reset(seed=0)
    time.sleep(1.0)
    _, info = env.reset(seed=0)
    assert info["infra_error"] is None
    _, reward, terminated, *_ = env.step(ANSWER)
    assert terminated and reward == 1.0
    env.close()


def test_a_hanging_step_times_out_in_band_and_the_session_recovers(serve) -> None:
    server = serve("toy-digit", env_factory=SlowToyEnv, step_timeout_s=0.5)
    env = agent_envs.remote(server.url, "toy-digit", delay_s=2.0)
    obs0, _ = env.reset(seed=0)
    closed = len(SlowToyEnv.closed)
    t0 = time.monotonic()
    obs, reward, terminated, truncated, info = env.step(HANG)
    assert time.monotonic() - t0 < 3
    assert truncated and not terminated and reward == 0.0
    assert "ran longer than the server's step timeout (0.5 s)" in info["infra_error"]
    assert obs.tolist() == obs0.tolist() + HANG
    assert server.env_server.active_sessions == 1  # same session, fresh env next reset
    with pytest.raises(EnvStateError):
        env.step(ANSWER)
    obs, info = env.reset(seed=4)
    _, reward, terminated, *_ = env.step(ANSWER)
    assert terminated and reward == 1.0
    deadline = time.monotonic() + 10
    while len(SlowToyEnv.closed) == closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(SlowToyEnv.closed) > closed  # the hung env was closed
    env.close()


def test_an_env_whose_making_timed_out_is_closed_once_made_and_the_session_goes_on(
        serve) -> None:
    server = serve("toy-digit", env_factory=LeakyToyEnv, step_timeout_s=0.5)
    first = len(LeakyToyEnv.made)
    with _ws(server.url) as ws:
        r = _ask(ws, {"type": "reset", "data": {"seed": 0, "env_kwargs": {"make_delay_s": 2.0}}})
        err = r["data"]["observation"]["error"]
        assert err["code"] == "step_timeout"
        assert "making the env ran longer than the server's step timeout (0.5 s)" in \
            err["message"]
        assert r["data"]["done"] is True and len(LeakyToyEnv.made) == first  # still making
        # the same session plays an episode with a fresh env while the slow make goes on
        r = _ask(ws, {"type": "reset", "data": {"seed": 0}})
        assert r["data"]["observation"]["error"] is None
        r = _ask(ws, {"type": "step", "data": {"text": None, "tokens": ANSWER}})
        assert r["data"]["reward"] == 1.0 and r["data"]["done"] is True
        assert server.env_server.active_sessions == 1
    _all_closed_eventually(first, n_made=2)  # the late env and the session's env


def test_envs_whose_reset_or_step_timed_out_are_closed_after_the_call_returns(serve) -> None:
    """The env is closed at the timeout and once more when the call returns, so a handle the
    call opened after the first close (a sandbox session, in python-tool) is released too."""
    server = serve("toy-digit", env_factory=LeakyToyEnv, step_timeout_s=0.5)
    first = len(LeakyToyEnv.made)
    with _ws(server.url) as ws:
        assert _ask(ws, {"type": "reset", "data": {"seed": 0}})["data"]["observation"][
            "error"] is None
        r = _ask(ws, {"type": "step", "data": {"text": None, "tokens": HANG}})
        assert r["data"]["observation"]["error"]["code"] == "step_timeout"
        assert "step ran longer" in r["data"]["observation"]["error"]["message"]
        assert _ask(ws, {"type": "reset", "data": {"seed": 0}})["data"]["observation"][
            "error"] is None  # a second env
        r = _ask(ws, {"type": "reset", "data": {"seed": SLOW_SEED}})
        assert r["data"]["observation"]["error"]["code"] == "step_timeout"
        assert "reset ran longer" in r["data"]["observation"]["error"]["message"]
        assert _ask(ws, {"type": "reset", "data": {"seed": 0}})["data"]["observation"][
            "error"] is None  # a third env
        r = _ask(ws, {"type": "step", "data": {"text": None, "tokens": ANSWER}})
        assert r["data"]["reward"] == 1.0 and r["data"]["done"] is True
    _all_closed_eventually(first, n_made=3)


_HUNG_SERVER = """
from agent_envs.server.app import ServerSettings
from tests.agent_envs.server.conftest import ThreadServer
from tests.agent_envs.server.test_faults import HANG, SlowToyEnv, _ask, _ws

server = ThreadServer(ServerSettings(env_id="toy-digit", env_factory=SlowToyEnv,
                                     step_timeout_s=0.3))
with _ws(server.url) as ws:
    _ask(ws, {"type": "reset", "data": {"seed": 0, "env_kwargs": {"delay_s": 3600}}})
    r = _ask(ws, {"type": "step", "data": {"text": None, "tokens": HANG}})
print(r["data"]["observation"]["error"]["code"], flush=True)
server.stop()
print("stopped", flush=True)
"""


def test_a_step_that_hangs_for_good_does_not_keep_the_server_process_from_exiting() -> None:
    """The hung step's thread stays behind (Python cannot stop it), but the process exits."""
    try:
        done = subprocess.run([sys.executable, "-c", _HUNG_SERVER], cwd=ROOT, timeout=60,
                              capture_output=True, text=True, check=False)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the server process did not exit: {e.stdout!r}") from None
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["step_timeout", "stopped"]


def test_a_delta_that_does_not_extend_the_clients_tokens_is_flagged(serve) -> None:
    server = serve("toy-digit", env_kwargs={"max_turns": 3})
    env = agent_envs.remote(server.url, "toy-digit")
    env.reset(seed=0)
    env._obs = env._obs.copy()
    env._obs[3] += 1  # this client's tokens (and their hash) no longer match the server's
    env._hash = RunningHash(env._obs)
    obs, reward, terminated, truncated, info = env.step(CODEC.encode("4"))  # cut: a delta
    assert truncated and not terminated and reward == 0.0 and obs[3] == env._obs[3]
    assert "observation delta does not match" in info["infra_error"]
    assert "hash" in info["infra_error"]
    env.close()


def test_killing_the_server_mid_episode_flags_the_step_and_reset_fails_fast(
        serve_process) -> None:
    server = serve_process("toy-digit", "--env-arg", "max_turns=3")
    env = agent_envs.remote(server.url, "toy-digit")
    obs0, _ = env.reset(seed=0)
    server.kill()
    t0 = time.monotonic()
    obs, reward, terminated, truncated, info = env.step(CODEC.encode("4"))
    assert time.monotonic() - t0 < 5
    assert truncated and not terminated and reward == 0.0
    assert "lost the connection to the env server" in info["infra_error"]
    assert np.array_equal(obs, np.concatenate([obs0, CODEC.encode("4")]))
    t0 = time.monotonic()
    with pytest.raises(ServerUnavailableError, match="no agent-envs server answers"):
        env.reset(seed=1)
    assert time.monotonic() - t0 < 5
