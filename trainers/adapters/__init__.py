"""Adapters that let external trainers train on agent_envs environments.

- ``trainers.adapters.trl``: TRL's ``GRPOTrainer`` (``rollout_func`` +
  a reward function that reads the episode reward); ``[train]`` extra.
- ``trainers.adapters.verl``: verl's agent loop (``AgentEnvsAgentLoop``, registered
  as ``"agent_envs"``); its own venv (``scripts/setup_verl.sh``), not imported here.

Importing this package imports nothing heavy; each adapter module imports its
trainer library itself.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "EnvRollout", "HarmonyTokenizer", "TRLAdapterConfig", "TRLAdapterError", "episode_reward",
    "episodes_to_trl", "sampling_from_trl_args", "task_dataset",
]

_TRL = set(__all__)


def __getattr__(name: str) -> Any:
    if name not in _TRL:
        raise AttributeError(f"module 'trainers.adapters' has no attribute {name!r}")
    return getattr(importlib.import_module("trainers.adapters.trl"), name)
