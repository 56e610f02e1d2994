"""The base class of every error ``trainers`` raises on purpose.

Each part keeps its own named errors (``ConfigError``, ``RolloutCorrectionError``, the
adapters' errors, ...), and every one of them derives from :class:`TrainersError`, so
``except TrainersError`` catches whatever the trainers refuse. The policy, rollout and
episode-file errors (``PolicyError`` and its kin, ``RolloutConfigError``,
``EpisodeFormatError``) live with the rollout layer in ``agent_envs.rollout.errors`` and
derive from ``agent_envs.errors.AgentEnvsError``; ``trainers`` re-exports them.
Messages say what was wrong, the value, and the fix.
"""

from __future__ import annotations

__all__ = ["TrainersError"]


class TrainersError(Exception):
    """Base class of all trainers errors."""
