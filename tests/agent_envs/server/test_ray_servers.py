"""Env servers as Ray actors on a local three-node Ray cluster: one per node, driven as one
fleet by the collector, one killed mid-run without losing an episode."""

from __future__ import annotations

import time
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'agent-envs[ray]'")

import agent_envs
from agent_envs.server.protocol import TOKEN_ENV_VAR
from agent_envs.server.ray_servers import start_env_servers
from tests.agent_envs.server.test_fleet import _episode_policy

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TOKEN = "ray-token-81c2"


@pytest.fixture(scope="module")
def three_nodes() -> Any:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_env_servers_as_ray_actors_one_per_node_and_one_killed_mid_run(
        three_nodes, monkeypatch) -> None:
    from agent_envs.rollout import RolloutCollector, RolloutConfig

    monkeypatch.setenv(TOKEN_ENV_VAR, TOKEN)
    with pytest.raises(ValueError, match="placement must be 'spread' or 'strict-spread'"):
        start_env_servers("toy-digit", 3, placement="pack")  # type: ignore[arg-type]
    servers = start_env_servers("toy-digit", 3, env_kwargs={"max_turns": 3},
                                max_sessions=64, placement="strict-spread")
    try:
        assert servers.token == TOKEN and len(servers.urls) == 3
        assert len(set(servers.nodes)) == 3  # one server per node
        env = servers.remote()
        obs, _ = env.reset(seed=0)
        local = agent_envs.make("toy-digit", max_turns=3)
        assert obs.tolist() == local.reset(seed=0)[0].tolist()
        env.close()

        n = 300
        cfg = RolloutConfig(env_id="toy-digit", env_url=servers.urls, num_groups=n,
                            group_size=1, concurrency=24, progress=False,
                            episode_timeout_s=60)
        done: list[Any] = []
        killed = servers.urls[1]

        def on_episode(ep: Any) -> None:
            done.append(ep)
            if len(done) == 80:
                ray.kill(servers.actors[1])  # its node keeps running; the server is gone

        t0 = time.monotonic()
        episodes = RolloutCollector(_episode_policy(), cfg, on_episode=on_episode).collect()
        wall = time.monotonic() - t0
        assert len(episodes) == n and len({e.episode_id for e in episodes}) == n
        flagged = [e for e in episodes if e.infra_error is not None]
        assert all(killed in e.infra_error and "lost the connection" in e.infra_error
                   for e in flagged), {e.infra_error for e in flagged}
        assert len(flagged) <= 24
        assert all(e.reward == 1.0 for e in episodes if e.infra_error is None)
        assert not [e for e in episodes[-150:] if e.infra_error is not None]
        loads = servers.loads()
        assert "error" in loads[1] and loads[0]["sessions"] == loads[2]["sessions"] == 0
        print(f"\n{n - len(flagged)} solved, {len(flagged)} flagged on the killed server, "
              f"in {wall:.1f} s")
    finally:
        servers.stop()


def test_a_placement_that_cannot_be_met_leaves_no_placement_group_behind(three_nodes,
                                                                         monkeypatch) -> None:
    """Before: the strict-spread group that timed out stayed pending, holding its claim on
    the cluster's CPUs for good (nothing else could remove it: the caller never got it)."""
    from ray.util import placement_group_table

    from agent_envs.server.protocol import ServerStartError

    monkeypatch.setenv(TOKEN_ENV_VAR, TOKEN)
    before = {k for k, v in placement_group_table().items() if v["state"] != "REMOVED"}
    with pytest.raises(ServerStartError, match=r"could not place 4 env servers on 4 different "
                                               r"nodes within 2 s"):
        start_env_servers("toy-digit", 4, placement="strict-spread", timeout_s=2)
    left = {k for k, v in placement_group_table().items() if v["state"] != "REMOVED"}
    assert left <= before, {k: placement_group_table()[k]["state"] for k in left - before}
