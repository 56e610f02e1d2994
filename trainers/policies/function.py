"""``FunctionPolicy``, re-exported from :mod:`agent_envs.rollout.scripted` (its home)."""

from __future__ import annotations

from agent_envs.rollout.scripted import FunctionPolicy

__all__ = ["FunctionPolicy"]
