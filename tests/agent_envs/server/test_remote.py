"""``agent_envs.remote`` against a real server on loopback: the same episodes as in-process,
gymnasium's checker, OpenEnv's own client, the collector, the CLI and the trainer config."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import agent_envs
from agent_envs.harmony import get_codec
from agent_envs.oracle import Oracle
from agent_envs.server.protocol import prefix_hash, to_jsonable
from agent_envs.tasks.base import Task
from tests.agent_envs.server.conftest import AUTH, TOKEN


def _jsonish(info: dict[str, Any]) -> dict[str, Any]:
    """An info dict as it comes back over JSON, less wall-clock values (tool call duration)."""
    out = json.loads(json.dumps(to_jsonable(info)))
    if out.get("tool_outcome"):
        out["tool_outcome"].pop("duration_s")
    return out


def _run(env: Any, seed: int, act: Any) -> list[tuple[Any, ...]]:
    """Every (obs, reward, terminated, truncated, info) of one episode, reset included."""
    obs, info = env.reset(seed=seed)
    trace: list[tuple[Any, ...]] = [(obs.tolist(), None, False, False, _jsonish(info))]
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(act(obs, env.task))
        assert obs.dtype == np.int32
        trace.append((obs.tolist(), reward, terminated, truncated, _jsonish(info)))
        done = terminated or truncated
    return trace


@pytest.mark.parametrize("wrong", [False, True])
def test_remote_python_tool_gives_the_in_process_episode_token_for_token(serve, wrong) -> None:
    server = serve("python-tool", env_kwargs={"sandbox": "local"})
    oracle = Oracle(wrong=wrong)
    remote = agent_envs.remote(server.url, "python-tool", full_task=True)
    local = agent_envs.make("python-tool", sandbox="local")
    try:
        for seed in (0, 5, 11):
            got = _run(remote, seed, oracle.act)
            want = _run(local, seed, oracle.act)
            assert got == want
            assert got[-1][1] == (0.0 if wrong else 1.0)
            assert len(got) >= 3  # a tool call, its result appended, then the final answer
            assert got[1][4]["env_token_count"] > 0
    finally:
        remote.close()
        local.close()


def test_remote_toy_digit_segments_and_cut_completions_match(serve) -> None:
    """Cut completions (a notice appended) and answers, over deltas, equal in-process."""
    server = serve("toy-digit", env_kwargs={"fixed_target": None})
    codec = get_codec()

    def act(obs: np.ndarray, task: Task) -> list[int]:
        if obs[-1] == codec.encode("<|message|>")[0] and len(obs) < 120:
            return codec.encode("4")  # no stop token: cut, the env appends a notice
        return codec.encode(task.answer) + [200002]

    remote = agent_envs.remote(server.url, "toy-digit", full_task=True, max_turns=3)
    local = agent_envs.make("toy-digit", fixed_target=None, max_turns=3)
    try:
        for seed in range(6):
            got, want = _run(remote, seed, act), _run(local, seed, act)
            assert got == want
            assert got[-1][1] == 1.0
    finally:
        remote.close()
        local.close()


@pytest.mark.parametrize("env_id", ["toy-digit", "python-tool"])
def test_remote_env_passes_gymnasiums_env_checker(serve, env_id) -> None:
    kw = {"sandbox": "local"} if env_id == "python-tool" else {}
    server = serve(env_id, env_kwargs=kw)
    env = agent_envs.remote(server.url, env_id)
    try:
        check_env(env, skip_render_check=True)
        if env_id == "toy-digit":
            assert env.allowed_token_ids() == agent_envs.make(env_id).allowed_token_ids()
        else:
            with pytest.raises(agent_envs.RemoteEnvError, match="has no allowed_token_ids"):
                env.allowed_token_ids()
    finally:
        env.close()


def test_openenv_generic_client_drives_a_python_tool_episode_to_its_reward(serve) -> None:
    """OpenEnv's own GenericEnvClient, unmodified, speaks our protocol; it presents the token
    as the Authorization header its WebSocket library builds from the URL's credentials."""
    from openenv.core.generic_client import GenericEnvClient

    server = serve("python-tool", env_kwargs={"sandbox": "local"})
    oracle = Oracle()
    local = agent_envs.make("python-tool", sandbox="local")
    with (pytest.raises(ConnectionError, match="HTTP 403"),  # no token: no session
          GenericEnvClient(base_url=server.url).sync() as client):
        client.reset(seed=3)
    assert server.env_server.active_sessions == 0
    authed = server.url.replace("http://", f"http://agent-envs:{TOKEN}@")
    with GenericEnvClient(base_url=authed).sync() as client:
        result = client.reset(seed=3, full_task=True)  # a scripted oracle needs the task
        obs = result.observation
        tokens = obs["tokens"]
        task = Task(**obs["task"])
        assert obs["text"] == get_codec().decode(tokens)
        lobs, _ = local.reset(seed=3)
        assert tokens == lobs.tolist() and task == local.task
        assert not result.done
        steps = 0
        while not result.done:
            action = oracle.act(tokens, task)
            result = client.step({"text": None, "tokens": action})
            obs = result.observation
            if obs["tokens"] is not None:
                tokens = obs["tokens"]
                assert obs["text"] == get_codec().decode(tokens)
            else:  # a delta: check the prefix the server extended, then append
                prefix = tokens + action
                assert obs["prefix_len"] == len(prefix)
                assert obs["prefix_hash"] == prefix_hash(prefix)
                tokens = prefix + obs["appended"]
                assert obs["text"] == get_codec().decode(obs["appended"])  # only what is new
            lobs, *_ = local.step(action)
            assert tokens == lobs.tolist()
            steps += 1
        assert result.reward == 1.0 and obs["terminated"] and steps == 2
        state = client.state()
        assert state["env_id"] == "python-tool-v0" and state["obs_hash"] == prefix_hash(tokens)
    local.close()


def test_health_metadata_and_schema_describe_the_token_protocol(serve) -> None:
    server = serve("toy-digit")
    assert httpx.get(server.url + "/health").json() == {"status": "healthy"}  # no token needed
    meta = httpx.get(server.url + "/metadata", headers=AUTH).json()
    assert meta["name"] == "toy-digit-v0" and meta["version"] == agent_envs.__version__
    schema = httpx.get(server.url + "/schema", headers=AUTH).json()
    ids = schema["action"]["properties"]["tokens"]["anyOf"][0]["items"]
    assert ids == {"type": "integer", "minimum": 0, "exclusiveMaximum": 201088}
    # one required field, so a harness wraps a raw reply as {"text": reply}
    assert schema["action"]["required"] == ["text"]
    assert {"text", "task_meta"} <= set(schema["observation"]["properties"])
    assert {"appended", "prefix_len", "prefix_hash", "info", "error"} <= set(
        schema["observation"]["properties"])
    assert {"env_id", "obs_hash", "active"} <= set(schema["state"]["properties"])
    import inspect

    from agent_envs.server.app import HarmonyEnvironment

    takes = set(inspect.signature(HarmonyEnvironment.reset_async).parameters) - {"self", "extra"}
    assert set(schema["reset"]["properties"]) == takes  # the documented fields are the real ones


def test_collector_and_cli_run_episodes_on_the_server(serve, capsys) -> None:
    """RolloutConfig.env_url and `agent-envs rollout --env-url` give the local episodes."""
    from agent_envs.cli import main
    from agent_envs.rollout import OraclePolicy, RolloutCollector, RolloutConfig

    server = serve("python-tool", env_kwargs={"sandbox": "local"})
    cfg = RolloutConfig(env_id="python-tool", num_groups=3, group_size=2, concurrency=4,
                        progress=False)
    remote_eps = RolloutCollector(OraclePolicy(), RolloutConfig(
        **{**cfg.__dict__, "env_url": server.url})).collect()
    local_eps = RolloutCollector(OraclePolicy(), RolloutConfig(
        **{**cfg.__dict__, "env_kwargs": {"sandbox": "local"}})).collect()
    assert [e.reward for e in remote_eps] == [1.0] * 6
    assert [e.infra_error for e in remote_eps] == [None] * 6
    for a, b in zip(remote_eps, local_eps, strict=True):
        assert [(s.prompt, s.completion) for s in a.segments] == [
            (s.prompt, s.completion) for s in b.segments]

    rc = main(["rollout", "python-tool", "--env-url", server.url, "--episodes", "3",
               "--transcripts", "1", "--quiet", "--no-color"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "solved         3/3" in out and "infra errors   0" in out
    assert "-> python:" in out  # the transcript, parsed from the remote tokens


def test_trainer_config_env_url_makes_remote_envs(serve) -> None:
    torch = pytest.importorskip("torch")
    from trainers.config import load_config
    from trainers.train import Trainer

    server = serve("toy-digit")
    cfg = load_config(None, [f"env.url={server.url}", "env.id=toy-digit",
                             "rollout.allowed_tokens=env"])
    assert cfg.env.url == server.url
    trainer = Trainer.__new__(Trainer)  # only _make_env is exercised: no model needed
    trainer.config, trainer.env_factory = cfg, None
    trainer.device = torch.device("cpu")
    local = agent_envs.make("toy-digit")
    assert trainer._allowed_tokens().tolist() == sorted(local.allowed_token_ids())
    env = trainer._make_env()
    try:
        assert type(env).__name__ == "RemoteEnv"
        obs, info = env.reset(seed=1)
        assert info["env_id"] == "toy-digit-v0" and obs.dtype == np.int32
        assert server.env_server.active_sessions == 1
    finally:
        env.close()


def test_async_twins_drive_many_sessions_from_one_loop(serve) -> None:
    server = serve("toy-digit", env_kwargs={"fixed_target": None})
    codec = get_codec()

    async def episode(seed: int) -> float:
        env = agent_envs.remote(server.url, "toy-digit", full_task=True)
        try:
            await env.areset(seed=seed)
            _, reward, terminated, _, _ = await env.astep(codec.encode(env.task.answer)
                                                          + [200002])
            assert terminated
            return reward
        finally:
            await env.aclose()

    async def main() -> list[float]:
        return await asyncio.gather(*(episode(s) for s in range(16)))

    assert asyncio.run(main()) == [1.0] * 16


def test_serve_cli_rejects_bad_settings_with_the_fix(capsys) -> None:
    from agent_envs.cli import main

    assert main(["serve", "toy-digits"]) == 2
    assert "Did you mean 'toy-digit'" in capsys.readouterr().err
    assert main(["serve", "toy-digit", "--max-sessions", "0"]) == 2
    assert "max_sessions must be >= 1, got 0" in capsys.readouterr().err
    assert main(["serve", "toy-digit", "--env-arg", "oops"]) == 2
    assert "--env-arg expects KEY=VALUE, got 'oops'" in capsys.readouterr().err


@pytest.mark.parametrize("env_id", ["functions", "browser"])
def test_other_families_match_in_process_and_rebuild_their_task_types(serve, env_id) -> None:
    """Tasks of family subclasses come back as those classes, so family oracles work remotely."""
    server = serve(env_id)
    oracle = Oracle()
    remote = agent_envs.remote(server.url, env_id, full_task=True)
    local = agent_envs.make(env_id)
    try:
        for seed in (0, 1):
            got, want = _run(remote, seed, oracle.act), _run(local, seed, oracle.act)
            assert type(remote.task) is type(local.task) and remote.task == local.task
            assert type(remote.task) is not Task
            assert got == want and got[-1][1] == 1.0
    finally:
        remote.close()
        local.close()


def test_the_collector_reads_the_env_url_from_the_environment(monkeypatch) -> None:
    """AGENT_ENVS_ENV_URL (what `agent-envs eval --env-url` sets) sends envs to the server."""
    from agent_envs.rollout import OraclePolicy, RolloutCollector, RolloutConfig

    monkeypatch.setenv("AGENT_ENVS_ENV_URL", "http://127.0.0.1:9")  # nothing listens there
    eps = RolloutCollector(OraclePolicy(), RolloutConfig(
        env_id="toy-digit", num_groups=2, progress=False)).collect()
    assert [e.truncated_reason for e in eps] == ["infra", "infra"]
    assert all("no agent-envs server answers at http://127.0.0.1:9" in e.infra_error
               for e in eps)


def test_the_env_url_from_the_environment_is_refused_with_the_ray_backend(monkeypatch) -> None:
    """As RolloutConfig.env_url is: Ray workers would run the envs locally, not on the server."""
    from agent_envs.rollout import OraclePolicy, RolloutCollector, RolloutConfig, RolloutConfigError

    monkeypatch.setenv("AGENT_ENVS_ENV_URL", "http://127.0.0.1:9")
    collector = RolloutCollector(OraclePolicy(), RolloutConfig(
        env_id="toy-digit", num_groups=1, backend="ray", progress=False))
    with pytest.raises(RolloutConfigError, match=r"AGENT_ENVS_ENV_URL environment variable is "
                       r"set \('http://127\.0\.0\.1:9'\).*Unset AGENT_ENVS_ENV_URL, or use "
                       r"backend='local'"):
        collector.collect()
    with pytest.raises(RolloutConfigError, match="RolloutConfig.env_url"):
        RolloutConfig(env_id="toy-digit", backend="ray", env_url="http://127.0.0.1:9")


@pytest.mark.slow
def test_eval_cli_runs_a_suite_on_the_server(serve, tmp_path, capsys) -> None:
    import os

    from agent_envs.cli import main

    made: list[dict[str, Any]] = []

    def factory(**kw: Any) -> Any:
        made.append(kw)
        return agent_envs.make("functions", **kw)

    server = serve("functions", env_factory=factory)
    rc = main(["eval", "functions", "--env-url", server.url, "--trials", "1", "--quiet",
               "--out", str(tmp_path / "bundle")])
    out = capsys.readouterr().out
    assert rc == 0 and "functions: accuracy 1.000" in out and "100 episodes" in out
    assert made and all(kw["task_source"] for kw in made)  # the suite's envs ran remotely
    assert "AGENT_ENVS_ENV_URL" not in os.environ


def test_eval_cli_says_so_when_nothing_was_scored(tmp_path, capsys) -> None:
    """A dead --env-url excludes every episode as infra: a clear error and exit 1, not a crash."""
    from agent_envs.cli import main

    rc = main(["eval", "functions", "--env-url", "http://127.0.0.1:9", "--retries", "0",
               "--quiet", "--out", str(tmp_path / "bundle")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "no task of functions was scored: all 200 episode(s) were excluded" in err
    assert (tmp_path / "bundle" / "metrics.json").exists()  # the run's record is kept
