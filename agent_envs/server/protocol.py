"""What the server and the client agree on, with no server dependency (no pydantic, no OpenEnv).

The wire format is OpenEnv's WebSocket protocol (``/ws``: ``reset``/``step``/``state``/``close``
messages; ``observation``/``state``/``error`` replies). Our payloads carry token ids:

``step`` data (an *action*)
    ``{"text": null, "tokens": [ids...]}`` (the sampled completion) or ``{"text": "..."}``
    (encoded by the server with harmony's special tokens allowed). ``text`` is the one
    required field, so a generic harness (verifiers' ``OpenEnvTaskset``) sends a raw model
    reply as ``{"text": reply}``; a reply that parsed as JSON (``2``) is rendered back as text.

``observation`` data (see ``agent_envs.server.models.TokenObservation`` for the schema)
    ``tokens``: the whole observation, sent on reset, at a segment break and after a text
    action; otherwise None and the client rebuilds it as ``previous_obs + action +
    appended``, after checking that ``prefix_len`` and ``prefix_hash`` (BLAKE2b-128 of the
    prefix as int32 little-endian bytes) match what it holds. ``text``: the decoded text of
    ``tokens`` (or of ``appended``), special tokens written out. ``reward``, ``done``,
    ``terminated``, ``truncated`` and ``info`` (the env's info dict as JSON, the verdict's
    reason withheld) as in gymnasium. ``task_meta`` (on reset): the task's public metadata.
    ``error`` is None or ``{"code", "type", "message"}``: a failure reported in-band.

What never leaves the server: the task's answer, solution, expected calls, evidence and
hidden world state, and a verdict's reason (it may name the answer). Only a client holding
the server's token (``--token``) that asks for it (``full_task``) gets the full task and the
verdict's reason, e.g. a scripted oracle or a logger; a model's harness never should.

Authentication: a server started with a token refuses every request but ``/health`` unless
it carries ``Authorization: Bearer TOKEN`` (or HTTP Basic auth with the token as password,
which URLs like ``http://agent-envs:TOKEN@HOST:PORT`` make any HTTP or WebSocket client send).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from agent_envs.core import to_jsonable  # re-exported: the wire's JSON view of info dicts
from agent_envs.errors import AgentEnvsError

__all__ = [
    "ERROR_BAD_REQUEST", "ERROR_INFRA", "ERROR_SESSION_CLOSED", "ERROR_STEP_TIMEOUT",
    "TOKEN_ENV_VAR", "RemoteEnvError", "RunningHash", "ServerAuthError", "ServerBusyError",
    "ServerStartError", "ServerUnavailableError", "prefix_hash", "to_jsonable",
]

#: The environment variable both sides read the server token from when none is passed
#: (``agent-envs serve --token``, ``agent_envs.remote(..., token=...)``).
TOKEN_ENV_VAR = "AGENT_ENVS_SERVER_TOKEN"

#: The caller's mistake (a bad action type, step before reset, an unknown env kwarg): the
#: client raises the same exception type the env raised in-process.
ERROR_BAD_REQUEST = "bad_request"
#: The env failed for reasons that are not the model's (it raised, its sandbox died): the
#: episode ends truncated with ``info["infra_error"]`` set.
ERROR_INFRA = "infra"
#: A step (or reset) ran past the server's ``--step-timeout``; the episode ended and the
#: session's env was closed (the next reset builds a fresh one).
ERROR_STEP_TIMEOUT = "step_timeout"
#: The session was closed by the server (idle longer than ``--idle-timeout``); reset again
#: to get a new one (``agent_envs.remote`` reconnects by itself).
ERROR_SESSION_CLOSED = "session_closed"


class RemoteEnvError(AgentEnvsError):
    """The environment server refused a request or could not be reached."""


class ServerBusyError(RemoteEnvError):
    """Every session slot of the server stayed taken for the whole wait (``--max-sessions``)."""


class ServerUnavailableError(RemoteEnvError, ConnectionError):
    """No environment server answers at the URL."""


class ServerAuthError(RemoteEnvError, PermissionError):
    """The server refused the client's token (missing or wrong), or the client asked for
    what only a token holder gets (the full task) from a server started without one."""


class ServerStartError(AgentEnvsError):
    """``agent-envs serve`` cannot start: a bad port, a port in use, or env arguments the
    served env refuses (found at start-up, before any client connects)."""


def prefix_hash(tokens: Any) -> str:
    """BLAKE2b-128 hex digest of token ids as int32 little-endian bytes (what both sides hash)."""
    return RunningHash(tokens).hexdigest()


class RunningHash:
    """``prefix_hash`` of a growing token stream, fed only the new tokens (O(delta) a step).

    ``RunningHash(a).update(b).hexdigest() == prefix_hash(a + b)``.
    """

    __slots__ = ("_h", "n")

    def __init__(self, tokens: Any = ()) -> None:
        self._h = hashlib.blake2b(digest_size=16)
        self.n = 0
        self.update(tokens)

    def update(self, tokens: Any) -> RunningHash:
        """Feed more tokens; returns self."""
        arr = np.ascontiguousarray(np.asarray(tokens, dtype="<i4"))
        self._h.update(arr.tobytes())
        self.n += len(arr)
        return self

    def copy(self) -> RunningHash:
        """An independent copy (to hash a prefix and go on from it)."""
        other = RunningHash.__new__(RunningHash)
        other._h, other.n = self._h.copy(), self.n
        return other

    def hexdigest(self) -> str:
        """The digest of every token fed so far."""
        return self._h.hexdigest()

