"""Isolated, stateful code execution for agentic RL.

``sandboxes`` knows nothing about harmony or language models: it runs Python
cells in long-lived sessions with enforced limits.

    >>> from sandboxes import make_sandbox
    >>> with make_sandbox("local") as sb, sb.open() as s:
    ...     s.run("x = 41").ok, s.run("x + 1").value
    (True, '42')
"""

from __future__ import annotations

from sandboxes.base import ExecResult, Limits, Protections, Sandbox, Session, Truncation
from sandboxes.errors import SandboxError, SandboxUnavailable, SessionDead, UnknownBackend
from sandboxes.pool import PoolClosed, PoolTimeout, SessionPool
from sandboxes.registry import available_backends, make_sandbox, register_backend

__all__ = [
    "ExecResult", "Limits", "PoolClosed", "PoolTimeout", "Protections", "Sandbox",
    "SandboxError", "SandboxUnavailable", "Session", "SessionDead", "SessionPool", "Truncation",
    "UnknownBackend", "available_backends", "make_sandbox", "register_backend",
]
