"""``OraclePolicy``, re-exported from :mod:`agent_envs.rollout.scripted` (its home)."""

from __future__ import annotations

from agent_envs.rollout.scripted import EpisodeContext, OraclePolicy

__all__ = ["EpisodeContext", "OraclePolicy"]
