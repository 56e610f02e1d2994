"""Errors of the rollout layer (policies, the collector, episode files).

Every one derives from :class:`agent_envs.errors.AgentEnvsError` and keeps the builtin base
it always had (``ValueError``, ``ImportError``), so ``except ValueError`` still catches a bad
setting. ``trainers`` re-exports them under their old paths (``trainers.policies.errors``,
``trainers.rollout``, ``trainers.episode``). Messages say what was wrong, the value, and the fix.
"""

from __future__ import annotations

from agent_envs.errors import AgentEnvsError

__all__ = [
    "EpisodeFormatError",
    "PolicyConfigError",
    "PolicyError",
    "PolicyRequestError",
    "PolicyServerError",
    "PolicyUnavailableError",
    "RolloutConfigError",
]


class PolicyError(AgentEnvsError):
    """Base class of every error a policy raises on purpose."""


class PolicyConfigError(PolicyError, ValueError):
    """A policy or a request was configured with an invalid value."""


class PolicyRequestError(PolicyError):
    """The server rejected a request (HTTP 4xx): retrying will not help.

    Attributes:
        status: The HTTP status code.
        body: The first characters of the response body.
    """

    def __init__(self, message: str, *, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class PolicyServerError(PolicyError):
    """The server kept failing (HTTP 5xx, connection errors, timeouts) after all retries."""


class PolicyUnavailableError(PolicyError, ImportError):
    """An optional dependency a policy needs is not installed (or no plugin provides it)."""


class RolloutConfigError(AgentEnvsError, ValueError):
    """A rollout setting or policy spec is invalid (the message gives the value and the fix)."""


class EpisodeFormatError(AgentEnvsError, ValueError):
    """An episode file is malformed, of an unknown schema version, or of an unknown type."""
