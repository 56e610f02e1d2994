"""RolloutCollector on the real python-tool env: groups, seeding, batching, faults."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Sequence

import pytest

from agent_envs.harmony import get_codec
from agent_envs.rollout import (
    FunctionPolicy,
    OraclePolicy,
    RolloutCollector,
    RolloutConfig,
    RolloutConfigError,
    Sample,
    SampleRequest,
    derive_seed,
    load_episodes,
    policy_from_spec,
    run_rollout_cli,
)


def _cfg(**kw) -> RolloutConfig:  # type: ignore[no-untyped-def]
    kw.setdefault("env_id", "python-tool")
    kw.setdefault("progress", False)
    return RolloutConfig(**kw)


def _tokens(eps):  # type: ignore[no-untyped-def]
    return [[(s.prompt, s.completion, s.loss_mask) for s in e.segments] for e in eps]


def test_oracle_groups_share_task_and_seed_and_runs_are_reproducible() -> None:
    cfg = _cfg(num_groups=3, group_size=3, concurrency=9, seed=5)
    eps = RolloutCollector(OraclePolicy(), cfg).collect()
    assert [e.episode_id for e in eps] == [f"g{g}-e{i}" for g in range(3) for i in range(3)]
    assert all(e.reward == 1.0 and e.solved and e.terminated and not e.infra for e in eps)
    for g in range(3):
        grp = [e for e in eps if e.group_id == g]
        assert len({e.task_id for e in grp}) == 1 and len({e.seed for e in grp}) == 1
        assert len({e.sample_seed for e in grp}) == 3
        assert grp[0].seed == derive_seed(5, "env", g)
    assert len({e.task_id for e in eps}) == 3
    assert eps[0].env_id == "python-tool-v0" and eps[0].env_version == "v0"
    assert eps[0].policy_id == "oracle" and eps[0].turns[0].tool_outcome["ok"] is True
    again = RolloutCollector(OraclePolicy(), cfg).collect()
    assert _tokens(again) == _tokens(eps)
    other = RolloutCollector(OraclePolicy(), _cfg(num_groups=3, group_size=3, seed=6)).collect()
    assert [e.task_id for e in other] != [e.task_id for e in eps]


def test_wrong_oracle_gets_reward_zero_and_explicit_task_ids() -> None:
    first = RolloutCollector(OraclePolicy(), _cfg(num_groups=2)).collect()
    ids = tuple(e.task_id for e in first)
    eps = RolloutCollector(OraclePolicy(wrong=True), _cfg(num_groups=2, task_ids=ids)).collect()
    assert [e.task_id for e in eps] == list(ids)
    assert all(e.reward == 0.0 and not e.solved and not e.infra for e in eps)


class BatchRecorder(OraclePolicy):
    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []

    async def asample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        self.batch_sizes.append(len(requests))
        return await super().asample(requests)


def test_requests_are_batched_across_envs_and_capped() -> None:
    pol = BatchRecorder()
    eps = RolloutCollector(pol, _cfg(num_groups=12, concurrency=12, max_batch_size=5,
                                     batch_window_s=0.5)).collect()
    assert sum(pol.batch_sizes) == sum(len(e.turns) for e in eps) == 24
    assert max(pol.batch_sizes) == 5 and len(pol.batch_sizes) < 24


def test_policy_errors_and_timeouts_flag_episodes_and_the_run_finishes() -> None:
    oracle = OraclePolicy()

    async def fn_async(requests):  # type: ignore[no-untyped-def]
        out = []
        for r in requests:
            if r.context.episode_id == "g1-e0":
                out.append(Sample.failed("scripted policy failure"))
            elif r.context.episode_id == "g2-e0":
                await asyncio.sleep(3)  # past the episode wall-time limit
                out.append(oracle.sample([r])[0])
            else:
                out.append(oracle.sample([r])[0])
        return out

    class Flaky(OraclePolicy):
        async def asample(self, requests):  # type: ignore[no-untyped-def]
            return await fn_async(requests)

    t0 = time.perf_counter()
    eps = RolloutCollector(Flaky(), _cfg(num_groups=4, concurrency=4, max_batch_size=1,
                                         episode_timeout_s=1.5)).collect()
    assert time.perf_counter() - t0 < 20
    by = {e.episode_id: e for e in eps}
    assert len(eps) == 4
    assert by["g1-e0"].infra_error == "policy error: scripted policy failure"
    assert "wall-time limit (episode_timeout_s=1.5)" in by["g2-e0"].infra_error
    assert not by["g0-e0"].infra and not by["g3-e0"].infra and by["g3-e0"].reward == 1.0


def test_env_exception_flags_only_that_episode() -> None:
    import agent_envs

    class Exploding:
        def __init__(self) -> None:
            self.env = agent_envs.make("python-tool")
            self.task = None

        async def areset(self, *, seed, options):  # type: ignore[no-untyped-def]
            out = await self.env.areset(seed=seed, options=options)
            self.task = self.env.task
            self.seed = seed
            return out

        async def astep(self, action):  # type: ignore[no-untyped-def]
            if self.seed == derive_seed(0, "env", 1):
                raise RuntimeError("env blew up")
            return await self.env.astep(action)

        async def aclose(self) -> None:
            await self.env.aclose()

    eps = RolloutCollector(OraclePolicy(), _cfg(num_groups=3), env_factory=Exploding).collect()
    assert [e.infra for e in eps] == [False, True, False]
    assert eps[1].infra_error == "env raised RuntimeError: env blew up"
    assert eps[0].reward == eps[2].reward == 1.0


def test_killing_the_sandbox_mid_run_loses_nothing_and_blames_no_model() -> None:
    """The zygote dies under a running episode (after its python call, before a second one).
    The run finishes with every episode; none is scored 0 for it: the running episode's
    session either keeps working (its keeper holds its own connection) or ends with an infra
    error, and the sandbox starts a fresh zygote for the episodes after it."""
    from sandboxes import make_sandbox

    sb = make_sandbox("local")
    oracle = OraclePolicy()
    killed: list[int] = []

    def fn(req: SampleRequest) -> Sample:
        if req.context.episode_id == "g3-e0" and req.context.turn == 1 and not killed:
            killed.append(sb.zygote_pid)
            os.kill(sb.zygote_pid, signal.SIGKILL)  # the sandbox dies under the run
            # the solution again, as a second call on the session the dead zygote hosted
            again = get_codec().encode("<|channel|>analysis to=python code<|message|>"
                                       f"{req.context.task.solution_code}<|call|>")
            return Sample(token_ids=again, logprobs=[0.0] * len(again), finish_reason="stop")
        return oracle.sample([req])[0]

    pol = FunctionPolicy(fn, wants_context=True, policy_id="oracle")
    try:
        eps = RolloutCollector(pol, _cfg(num_groups=6, concurrency=1,
                                         env_kwargs={"sandbox_instance": sb})).collect()
        assert sb.restarts == 1 and sb.zygote_pid != killed[0]
    finally:
        sb.close()
    assert killed and len(eps) == 6
    assert all(e.reward == 1.0 for e in eps if not e.infra)  # nothing blamed on the model
    assert [e.episode_id for e in eps if e.infra] in ([], ["g3-e0"])
    assert all(not e.infra for e in eps if e.episode_id != "g3-e0")


def test_cli_writes_file_and_summary(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "eps.parquet"
    summary = run_rollout_cli("python-tool", "oracle", 4, out, concurrency=4, group_size=2,
                              seed=3, progress=False)
    eps = load_episodes(out)
    assert summary["episodes"] == len(eps) == 4 and summary["out"] == str(out)
    assert summary["mean_reward"] == 1.0 and summary["solved_frac"] == 1.0
    assert summary["infra_flagged"] == 0 and summary["turns"] == 8 and summary["tool_calls"] == 4
    assert summary["sampled_tokens"] == sum(e.num_sampled_tokens for e in eps)
    assert summary["episodes_per_s"] > 0
    with pytest.raises(RolloutConfigError, match=re.escape("--episodes (5) must be a positive multiple of --group-size (2)")):
        run_rollout_cli("python-tool", "oracle", 5, None, group_size=2)


def test_policy_specs_and_config_errors() -> None:
    assert policy_from_spec("oracle-wrong").policy_id == "oracle-wrong"
    with pytest.raises(RolloutConfigError, match=re.escape("unknown policy spec 'gpt5'")):
        policy_from_spec("gpt5")
    with pytest.raises(RolloutConfigError, match=re.escape("RolloutConfig.group_size must be >= 1, got 0")):
        _cfg(group_size=0)
    assert derive_seed(1, "a") == derive_seed(1, "a") != derive_seed(1, "b")


def test_summary_of_an_all_infra_run_is_strict_json() -> None:
    # issue 18: the --out summary said "mean_reward": NaN, which is not JSON.
    import json

    from agent_envs.rollout import Episode, summarize

    eps = [Episode(episode_id=f"g{i}-e0", env_id="toy-digit-v0", env_version="v0",
                   task_id=None, group_id=i, index=0, seed=i, sample_seed=i, policy_id="p",
                   policy_version="0", infra_error="sandbox down") for i in range(2)]
    summary = summarize(eps, 0.0)
    assert summary["mean_reward"] is None and summary["solved_frac"] is None
    assert summary["episodes_per_s"] is None and summary["infra_flagged"] == 2
    json.dumps(summary, allow_nan=False)


def test_derive_seed_is_the_one_in_agent_envs() -> None:
    from agent_envs.core import derive_seed as core_derive_seed

    assert derive_seed is core_derive_seed
    assert derive_seed(5, "env", 0) == core_derive_seed(5, "env", 0) != derive_seed(5, "env", 1)
