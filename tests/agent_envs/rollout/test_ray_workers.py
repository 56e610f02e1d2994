"""The collector with its envs in Ray actors (local Ray instance)."""

from __future__ import annotations

import os
import signal

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'agent-envs[ray]'")

from agent_envs.rollout import (
    FunctionPolicy,
    OraclePolicy,
    RolloutCollector,
    RolloutConfig,
    SampleRequest,
)

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _cfg(**kw) -> RolloutConfig:  # type: ignore[no-untyped-def]
    return RolloutConfig(env_id="python-tool", progress=False, **kw)


def test_ray_backend_matches_local_backend(local_ray) -> None:  # type: ignore[no-untyped-def]
    cfg = {"num_groups": 3, "group_size": 2, "concurrency": 6, "seed": 21}
    remote = RolloutCollector(OraclePolicy(), _cfg(backend="ray", ray_workers=2, **cfg)).collect()
    local = RolloutCollector(OraclePolicy(), _cfg(**cfg)).collect()
    assert all(e.reward == 1.0 and not e.infra for e in remote)
    assert [e.task_id for e in remote] == [e.task_id for e in local]
    assert [[(s.prompt, s.completion, s.loss_mask) for s in e.segments] for e in remote] == \
        [[(s.prompt, s.completion, s.loss_mask) for s in e.segments] for e in local]


def test_killed_ray_worker_flags_episodes_and_run_finishes(local_ray) -> None:  # type: ignore[no-untyped-def]
    oracle = OraclePolicy()
    state = {"killed": False}

    def fn(req: SampleRequest):  # type: ignore[no-untyped-def]
        if req.context.episode_id == "g2-e0" and not state["killed"]:
            state["killed"] = True
            for pid in collector.ray_pool.worker_pids():  # the env worker process dies
                os.kill(pid, signal.SIGKILL)
        return oracle.sample([req])[0]

    pol = FunctionPolicy(fn, wants_context=True, policy_id="oracle")
    collector = RolloutCollector(pol, _cfg(backend="ray", ray_workers=1, num_groups=5,
                                           concurrency=1))
    eps = collector.collect()
    assert state["killed"] and len(eps) == 5
    assert [e.infra for e in eps[:2]] == [False, False]
    assert eps[2].infra and "env raised" in eps[2].infra_error
    assert eps[-1].reward == 1.0 and not eps[-1].infra  # the restarted worker serves again

