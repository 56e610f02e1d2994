"""Exceptions raised by sandboxes. All are infrastructure faults, never the code's fault."""

from __future__ import annotations

__all__ = ["SandboxError", "SandboxUnavailable", "SessionDead", "UnknownBackend"]


class SandboxError(RuntimeError):
    """An infrastructure fault: the sandbox could not do what was asked."""


class SandboxUnavailable(SandboxError):
    """The backend cannot run here (missing binary, daemon unreachable, ...)."""


class SessionDead(SandboxError):
    """``run`` was called on a session that was killed or crashed; open a new one."""


class UnknownBackend(SandboxError, ValueError):
    """``make_sandbox`` got a backend name it does not know."""
