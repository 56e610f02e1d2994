"""Sessions spread over several servers (``agent_envs.server.fleet``): the URL list, least-
loaded routing, a server that dies mid-run, and the list wired through ``agent_envs.remote``,
the collector, ``rollout``, ``eval`` and the trainer config."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest

import agent_envs
from agent_envs.harmony import get_codec
from agent_envs.server.fleet import ServerFleet, parse_urls
from agent_envs.server.protocol import ServerBusyError, ServerUnavailableError
from tests.agent_envs.server.conftest import AUTH

CODEC = get_codec()
ANSWER = CODEC.encode("7") + [200002]  # toy-digit's default target, then <|return|>
DEAD = "http://127.0.0.1:9"  # nothing listens there


def _sessions(server: Any) -> int:
    return httpx.get(server.url + "/load", headers=AUTH, timeout=10).json()["sessions"]


def test_urls_come_as_a_list_or_one_string_with_commas() -> None:
    assert parse_urls("http://a:1") == ("http://a:1",)
    assert parse_urls(" http://a:1/ , ws://b:2,http://a:1") == ("http://a:1", "ws://b:2")
    assert parse_urls(["http://a:1", "http://b:2,http://c:3"]) == (
        "http://a:1", "http://b:2", "http://c:3")
    with pytest.raises(ValueError, match=r"'a:1' is not a server URL; each must look like "
                                         r"http://HOST:PORT"):
        parse_urls("http://b:2,a:1")
    with pytest.raises(ValueError, match="holds no server URL"):
        parse_urls(" , ")
    with pytest.raises(ValueError, match="env_url must be a server URL"):
        parse_urls(7, what="env_url")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a server URL"):
        agent_envs.remote("gpu-box:8000", "toy-digit")


def test_new_sessions_go_to_the_least_loaded_server(serve) -> None:
    a, b, c = (serve("toy-digit", max_sessions=32) for _ in range(3))
    # another client already holds 4 sessions on a: the fleet fills b and c first
    others = [agent_envs.remote(a.url, "toy-digit") for _ in range(4)]
    for i, e in enumerate(others):
        e.reset(seed=i)
    urls = [a.url, b.url, c.url]

    async def open_all(n: int) -> list[Any]:
        envs = [agent_envs.remote(urls, "toy-digit") for _ in range(n)]
        await asyncio.gather(*(e.areset(seed=i) for i, e in enumerate(envs)))
        return envs

    envs = asyncio.run(open_all(8))  # a burst: the picks spread before any connect lands
    assert [_sessions(s) for s in (a, b, c)] == [4, 4, 4]
    envs += asyncio.run(open_all(9))
    assert [_sessions(s) for s in (a, b, c)] == [7, 7, 7]
    assert {e.url for e in envs} == set(urls)
    fleet = envs[0].fleet
    assert fleet is ServerFleet.shared(urls, token=envs[0]._token)  # one per process
    assert [d["sessions"] for d in fleet.describe()] == [3, 7, 7]
    # an episode stays on its server; the env behaves as a single-server one
    obs, _ = envs[0].reset(seed=0)
    local = agent_envs.make("toy-digit")
    assert obs.tolist() == local.reset(seed=0)[0].tolist()
    assert envs[0].step(ANSWER)[1] == 1.0
    for e in envs + others:
        e.close()
    assert [d["sessions"] for d in fleet.describe()] == [0, 0, 0]


def test_a_dead_url_is_skipped_and_a_full_server_passes_sessions_on(serve) -> None:
    small, big = serve("toy-digit", max_sessions=2), serve("toy-digit", max_sessions=10)
    urls = [DEAD, small.url, big.url]
    envs = [agent_envs.remote(urls, "toy-digit", busy_timeout_s=5) for _ in range(12)]
    for i, e in enumerate(envs):
        e.reset(seed=i)
    assert (_sessions(small), _sessions(big)) == (2, 10)
    assert all(e.url != DEAD for e in envs)
    dead = envs[0].fleet.describe()[0]
    assert dead["down"] and "ConnectError" in dead["last_error"]
    extra = agent_envs.remote(urls, "toy-digit", busy_timeout_s=0.5)
    with pytest.raises(ServerBusyError, match="every one of the 3 servers stayed at its "
                                              "session cap"):
        extra.reset(seed=0)
    for e in envs:
        e.close()
    with pytest.raises(ServerUnavailableError, match=r"no agent-envs server answers at any "
                                                     r"of the 2 URLs \(http://127\.0\.0\.1:9: "):
        agent_envs.remote([DEAD, "http://127.0.0.1:10"], "toy-digit").reset(seed=0)


def test_a_server_that_comes_back_gets_new_sessions_again(serve) -> None:
    import socket

    from agent_envs.server.app import bind_socket, make_uvicorn_server
    from agent_envs.server.session import ServerSettings
    from tests.agent_envs.server.conftest import TOKEN

    with socket.socket() as probe:  # a free port, with nothing listening on it yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    late_url = f"http://127.0.0.1:{port}"
    b = serve("toy-digit")
    urls = [late_url, b.url]
    first = [agent_envs.remote(urls, "toy-digit") for _ in range(4)]
    for i, e in enumerate(first):
        e.reset(seed=i)
    assert _sessions(b) == 4 and first[0].fleet.describe()[0]["down"]
    late = make_uvicorn_server(ServerSettings(env_id="toy-digit", token=TOKEN))
    thread = threading.Thread(target=late.run, kwargs={"sockets": [bind_socket("127.0.0.1",
                                                                               port)]},
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not late.started and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.5)  # past its back-off: the next pick checks it again
        later = [agent_envs.remote(urls, "toy-digit") for _ in range(4)]
        for i, e in enumerate(later):
            e.reset(seed=i)
        loads = httpx.get(late_url + "/load", headers=AUTH, timeout=10).json()
        assert loads["sessions"] == 4 and _sessions(b) == 4  # the least loaded: the one back
        assert not later[0].fleet.describe()[0]["down"]
        for e in first + later:
            e.close()
    finally:
        late.should_exit = True
        thread.join(timeout=15)


def _episode_policy(delay_s: float = 0.003) -> Any:
    """toy-digit over three turns at most: a cut completion first (the env continues), then
    the answer; each sample takes ``delay_s``, so episodes overlap."""
    from agent_envs.rollout import FunctionPolicy

    def fn(req: Any) -> list[int]:
        time.sleep(delay_s)
        return CODEC.encode("4") if req.context.turn == 0 else ANSWER

    return FunctionPolicy(fn, wants_context=True, policy_id="cut-then-answer")


@pytest.mark.slow
def test_a_server_killed_mid_run_fails_only_its_episodes_and_none_is_lost(
        serve_process) -> None:
    """Three servers under the collector, one killed mid-run: every episode comes back once,
    the ones the dead server was running are flagged mid-episode, and every later episode
    runs on the other two (none is refused at reset)."""
    from agent_envs.rollout import RolloutCollector, RolloutConfig

    started: list[Any] = [None] * 3

    def start(i: int) -> None:
        started[i] = serve_process("toy-digit", "--max-sessions", "64", "--env-arg",
                                   "max_turns=3")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b, c = started
    n = 400
    cfg = RolloutConfig(env_id="toy-digit", env_url=[a.url, b.url, c.url], num_groups=n,
                        group_size=1, concurrency=48, progress=False, episode_timeout_s=60)
    done: list[Any] = []

    def on_episode(ep: Any) -> None:
        done.append(ep)
        if len(done) == 100:
            b.kill()  # about 16 sessions are open on b, most mid-episode

    t0 = time.monotonic()
    episodes = RolloutCollector(_episode_policy(), cfg, on_episode=on_episode).collect()
    wall = time.monotonic() - t0
    assert len(episodes) == n and len({e.episode_id for e in episodes}) == n  # once each
    flagged = [e for e in episodes if e.infra_error is not None]
    solved = [e for e in episodes if e.infra_error is None]
    assert all(e.reward == 1.0 and e.terminated for e in solved)
    assert flagged, "the killed server was running episodes"
    assert all(b.url in e.infra_error and "lost the connection" in e.infra_error
               for e in flagged), {e.infra_error for e in flagged}
    assert len(flagged) <= 48  # at most what was in flight there; the rest moved on
    late = [e for e in episodes[-200:] if e.infra_error is not None]
    assert not late  # long after the kill, every episode runs elsewhere
    assert _sessions(a) == _sessions(c) == 0
    print(f"\n{len(solved)} solved, {len(flagged)} flagged mid-episode on the killed "
          f"server, in {wall:.1f} s")
    assert wall < 60


def test_rollout_cli_spreads_episodes_over_a_url_list(serve, tmp_path, capsys) -> None:
    import json

    from agent_envs.cli import main

    made = {"a": 0, "b": 0}

    def factory(name: str) -> Any:
        def make(**kw: Any) -> Any:
            made[name] += 1
            return agent_envs.make("python-tool", **kw)
        return make

    a = serve("python-tool", env_kwargs={"sandbox": "local"}, env_factory=factory("a"))
    b = serve("python-tool", env_kwargs={"sandbox": "local"}, env_factory=factory("b"))
    out = tmp_path / "eps.jsonl"
    rc = main(["rollout", "python-tool", "--env-url", f"{a.url},{b.url}", "--episodes", "6",
               "--concurrency", "6", "--policy", "oracle", "--quiet", "--out", str(out)])
    assert rc == 0, capsys.readouterr()
    eps = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(eps) == 6 and all(e["reward"] == 1.0 and not e["infra_error"] for e in eps)
    assert made["a"] == made["b"] == 3  # six sessions at once: three on each server


def test_eval_runs_a_suite_over_two_servers(serve, tmp_path) -> None:
    """EvalConfig(env_url=[...]): the suite's episodes run on both servers, as on one."""
    from agent_envs.eval.runner import EvalConfig, run_eval
    from agent_envs.rollout import OraclePolicy

    made: dict[str, int] = {"a": 0, "b": 0}

    def factory(name: str) -> Any:
        def make(**kw: Any) -> Any:
            made[name] += 1
            return agent_envs.make("functions", **kw)
        return make

    a = serve("functions", env_factory=factory("a"), max_sessions=4)
    b = serve("functions", env_factory=factory("b"), max_sessions=4)
    bundle = run_eval("functions", OraclePolicy(), tmp_path / "bundle", EvalConfig(
        trials=1, concurrency=8, progress=False, env_url=[a.url, b.url], limit=16))
    import json

    metrics = json.loads((bundle / "metrics.json").read_text())["overall"]
    assert metrics["accuracy"]["value"] == 1.0 and metrics["accuracy"]["n_tasks"] == 16
    assert made["a"] >= 2 and made["b"] >= 2  # both servers ran the suite's envs


def test_trainer_config_takes_several_urls(serve) -> None:
    import torch

    from trainers.config import load_config
    from trainers.train import Trainer

    a, b = serve("toy-digit"), serve("toy-digit")
    cfg = load_config(None, [f"env.url={a.url},{b.url}", "env.id=toy-digit"])
    trainer = Trainer.__new__(Trainer)  # only _make_env is exercised: no model needed
    trainer.config, trainer.env_factory = cfg, None
    trainer.device = torch.device("cpu")
    envs = [trainer._make_env() for _ in range(4)]
    try:
        for i, env in enumerate(envs):
            obs, info = env.reset(seed=i)
            assert obs.dtype == np.int32 and info["env_id"] == "toy-digit-v0"
        assert a.env_server.active_sessions == b.env_server.active_sessions == 2
    finally:
        for env in envs:
            env.close()
