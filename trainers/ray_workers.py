"""Ray env workers, re-exported from :mod:`agent_envs.rollout.ray_workers` (their home)."""

from __future__ import annotations

from agent_envs.rollout.ray_workers import EnvWorker, RayEnvHandle, RayEnvPoolFactory

__all__ = ["EnvWorker", "RayEnvHandle", "RayEnvPoolFactory"]
