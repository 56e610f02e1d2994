"""Exceptions raised by policies. Messages say what was wrong, the value, and the fix."""

from __future__ import annotations

from trainers.errors import TrainersError

__all__ = [
    "PolicyConfigError",
    "PolicyError",
    "PolicyRequestError",
    "PolicyServerError",
    "PolicyUnavailableError",
]


class PolicyError(TrainersError):
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
    """An optional dependency a policy needs is not installed."""
