"""The rollout collector, re-exported from :mod:`agent_envs.rollout` (its home).

``RolloutCollector``, ``RolloutConfig``, ``summarize``, ``run_rollout_cli`` and
``policy_from_spec`` need no torch, so they live below the trainers, where the eval runner and
the command line use them; this module keeps the old import path working.
"""

from __future__ import annotations

from agent_envs.rollout.collector import (
    LocalEnvHandle,
    RolloutCollector,
    RolloutConfig,
    derive_seed,
    draw_tasks,
    run_rollout_cli,
    summarize,
)
from agent_envs.rollout.errors import RolloutConfigError
from agent_envs.rollout.specs import policy_from_spec

__all__ = [
    "LocalEnvHandle", "RolloutCollector", "RolloutConfig", "RolloutConfigError", "derive_seed",
    "draw_tasks", "policy_from_spec", "run_rollout_cli", "summarize",
]
