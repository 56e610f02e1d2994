"""Policy errors, re-exported from :mod:`agent_envs.rollout.errors` (their home).

They derive from ``agent_envs.errors.AgentEnvsError`` (the policy interface lives in
``agent_envs.rollout``), not from ``trainers.errors.TrainersError``.
"""

from __future__ import annotations

from agent_envs.rollout.errors import (
    PolicyConfigError,
    PolicyError,
    PolicyRequestError,
    PolicyServerError,
    PolicyUnavailableError,
)

__all__ = [
    "PolicyConfigError",
    "PolicyError",
    "PolicyRequestError",
    "PolicyServerError",
    "PolicyUnavailableError",
]
