"""Load: 256 concurrent sessions on one ``agent-envs serve`` process, every episode checked
token for token against the in-process env; then the server is killed mid-run."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
import pytest

import agent_envs
from agent_envs.harmony import get_codec
from agent_envs.server.protocol import to_jsonable

CODEC = get_codec()
SESSIONS = 256
EPISODES = 3  # per session
ENV_KW = {"fixed_target": None, "max_turns": 3}


def _policy(session: int, episode: int) -> Any:
    """A scripted policy that differs per session: some cut completions, some wrong answers."""
    cut_first = (session + episode) % 2 == 1
    right = (session * 7 + episode) % 3 != 0

    def act(obs: np.ndarray, task: Any, turn: int) -> list[int]:
        if cut_first and turn == 0:
            return CODEC.encode(str(session % 10))  # no stop token: the env appends a notice
        answer = task.answer if right else str((int(task.answer) + 1) % 10)
        return CODEC.encode(answer) + [200002]

    return act


def _seed(session: int, episode: int) -> int:
    return session * 1000 + episode


def _local_trace(session: int, episode: int) -> list[Any]:
    env = agent_envs.make("toy-digit", **ENV_KW)
    try:
        act = _policy(session, episode)
        obs, info = env.reset(seed=_seed(session, episode))
        trace = [obs.tolist(), json.loads(json.dumps(to_jsonable(info)))]
        turn, done = 0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(act(obs, env.task, turn))
            trace.append((obs.tolist(), reward, terminated, truncated,
                          json.loads(json.dumps(to_jsonable(info)))))
            turn, done = turn + 1, terminated or truncated
        return trace
    finally:
        env.close()


async def _session(url: str, session: int, episodes: int) -> list[list[Any]]:
    env = agent_envs.remote(url, "toy-digit", full_task=True, busy_timeout_s=120)
    traces = []
    try:
        for e in range(episodes):
            act = _policy(session, e)
            obs, info = await env.areset(seed=_seed(session, e))
            trace = [obs.tolist(), info]
            turn, done = 0, False
            while not done:
                obs, reward, terminated, truncated, info = await env.astep(
                    act(obs, env.task, turn))
                trace.append((obs.tolist(), reward, terminated, truncated, info))
                turn, done = turn + 1, terminated or truncated
            traces.append(trace)
    finally:
        await env.aclose()
    return traces


@pytest.mark.slow
def test_256_concurrent_sessions_lose_and_mix_up_nothing(serve_process) -> None:
    server = serve_process("toy-digit", "--max-sessions", str(SESSIONS), "--env-arg",
                           "fixed_target=null", "--env-arg", "max_turns=3")

    async def main() -> list[list[list[Any]]]:
        return await asyncio.gather(*(_session(server.url, s, EPISODES)
                                      for s in range(SESSIONS)))

    t0 = time.monotonic()
    got = asyncio.run(main())
    wall = time.monotonic() - t0
    rewards = []
    for s, traces in enumerate(got):
        assert len(traces) == EPISODES
        for e, trace in enumerate(traces):
            assert trace == _local_trace(s, e), f"session {s} episode {e} differs"
            rewards.append(trace[-1][1])
    assert 0 < sum(rewards) < len(rewards)  # right and wrong answers both happened
    print(f"\n{SESSIONS} sessions x {EPISODES} episodes in {wall:.1f} s")


@pytest.mark.slow
def test_killing_the_server_mid_run_flags_episodes_and_the_run_ends(serve_process) -> None:
    """The collector over a server that dies mid-run: flagged episodes, a bounded run."""
    from agent_envs.rollout import OraclePolicy, RolloutCollector, RolloutConfig

    server = serve_process("python-tool", "--max-sessions", "64", "--env-arg", "sandbox=local")
    cfg = RolloutConfig(env_id="python-tool", env_url=server.url, num_groups=400, group_size=1,
                        concurrency=32, progress=False, episode_timeout_s=60)
    done: list[Any] = []

    def on_episode(ep: Any) -> None:
        done.append(ep)
        if len(done) == 20:
            server.kill()  # mid-run: about 32 episodes are in flight

    t0 = time.monotonic()
    episodes = RolloutCollector(OraclePolicy(), cfg, on_episode=on_episode).collect()
    wall = time.monotonic() - t0
    assert len(episodes) == 400  # none lost
    solved = [e for e in episodes if e.infra_error is None]
    flagged = [e for e in episodes if e.infra_error is not None]
    assert len(solved) >= 20 and all(e.reward == 1.0 for e in solved)
    assert all(e.truncated and e.truncated_reason == "infra" for e in flagged)
    assert len(flagged) >= 300
    lost = [e for e in flagged if "lost the connection" in e.infra_error]
    refused = [e for e in flagged if "no agent-envs server answers" in e.infra_error]
    assert lost, "episodes in flight when the server died must be flagged mid-episode"
    assert len(lost) + len(refused) == len(flagged)
    assert wall < 90


@pytest.mark.slow
def test_killing_the_server_under_256_concurrent_sessions(serve_process) -> None:
    """The same at the load test's scale: 256 sessions in flight when the server dies."""
    from agent_envs.rollout import FunctionPolicy, RolloutCollector, RolloutConfig

    right = FunctionPolicy(lambda req: CODEC.encode("7") + [200002])  # toy-digit's target: 7
    server = serve_process("toy-digit", "--max-sessions", "256")
    cfg = RolloutConfig(env_id="toy-digit", env_url=server.url, num_groups=1024, group_size=1,
                        concurrency=256, progress=False, episode_timeout_s=60)
    done: list[Any] = []

    def on_episode(ep: Any) -> None:
        done.append(ep)
        if len(done) == 300:
            server.kill()  # ~256 sessions are open, most mid-episode

    t0 = time.monotonic()
    episodes = RolloutCollector(right, cfg, on_episode=on_episode).collect()
    wall = time.monotonic() - t0
    assert len(episodes) == 1024  # none lost
    assert len({e.episode_id for e in episodes}) == 1024  # none duplicated
    solved = [e for e in episodes if e.infra_error is None]
    flagged = [e for e in episodes if e.infra_error is not None]
    assert len(solved) >= 300 and all(e.reward == 1.0 for e in solved)
    assert all(e.truncated and e.truncated_reason == "infra" for e in flagged)
    assert len(solved) + len(flagged) == 1024 and len(flagged) >= 500
    lost = [e for e in flagged if "lost the connection" in e.infra_error]
    assert lost, "sessions open when the server died must be flagged, not hang"
    print(f"\n{len(solved)} solved, {len(lost)} lost mid-episode, {len(flagged) - len(lost)} "
          f"refused, in {wall:.1f} s")
    assert wall < 120


@pytest.mark.slow
def test_every_session_waits_its_turn_at_a_small_cap(serve_process) -> None:
    """64 clients on a server capped at 8 sessions: all finish (waiting), none mixed up."""
    server = serve_process("toy-digit", "--max-sessions", "8", "--env-arg",
                           "fixed_target=null", "--env-arg", "max_turns=3")

    async def main() -> list[list[list[Any]]]:
        return await asyncio.gather(*(_session(server.url, s, 1) for s in range(64)))

    got = asyncio.run(main())
    for s, traces in enumerate(got):
        assert traces[0] == _local_trace(s, 0)

