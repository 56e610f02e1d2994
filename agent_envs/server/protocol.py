"""What the server and the client agree on, with no server dependency (no pydantic, no OpenEnv).

The wire format is OpenEnv's WebSocket protocol (``/ws``: ``reset``/``step``/``state``/``close``
messages; ``observation``/``state``/``error`` replies). Our payloads carry token ids:

``step`` data (an *action*)
    ``{"tokens": [ids...]}`` (the sampled completion) or ``{"text": "..."}`` (encoded by the
    server with harmony's special tokens allowed).

``observation`` data (see ``agent_envs.server.models.TokenObservation`` for the schema)
    ``tokens``: the whole observation, sent on reset, at a segment break and after a text
    action; otherwise None and the client rebuilds it as ``previous_obs + action +
    appended``, after checking that ``prefix_len`` and ``prefix_hash`` (BLAKE2b-128 of the
    prefix as int32 little-endian bytes) match what it holds. ``reward``, ``done``,
    ``terminated``, ``truncated`` and ``info`` (the env's info dict as JSON) as in gymnasium.
    ``error`` is None or ``{"code", "type", "message"}``: a failure reported in-band.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from agent_envs.core import to_jsonable  # re-exported: the wire's JSON view of info dicts
from agent_envs.errors import AgentEnvsError

__all__ = [
    "ERROR_BAD_REQUEST", "ERROR_INFRA", "ERROR_SESSION_CLOSED", "ERROR_STEP_TIMEOUT",
    "RemoteEnvError", "RunningHash", "ServerBusyError", "ServerUnavailableError", "prefix_hash",
    "to_jsonable",
]

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

