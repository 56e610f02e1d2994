"""Every exception agent_envs raises on purpose. Messages say what, the value, and the fix."""

from __future__ import annotations

__all__ = [
    "AgentEnvsError",
    "DatasetError",
    "EnvStateError",
    "InvalidActionError",
    "MissingDependencyError",
    "TaskFileError",
    "UnknownArgumentError",
    "UnknownEnvError",
    "UnknownTaskError",
    "VocabularyError",
]


class AgentEnvsError(Exception):
    """Base class of all agent_envs errors."""


class VocabularyError(AgentEnvsError):
    """The harmony vocabulary file (o200k_base.tiktoken) could not be found or loaded."""


class UnknownEnvError(AgentEnvsError, KeyError):
    """``make`` got an id that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownArgumentError(AgentEnvsError, TypeError):
    """An env got a keyword argument it does not take (the message suggests the closest one)."""


class UnknownTaskError(AgentEnvsError, KeyError):
    """A task id that its source never made."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TaskFileError(AgentEnvsError, ValueError):
    """A JSONL task file is malformed (the message names the file and line)."""


class DatasetError(AgentEnvsError):
    """A public dataset could not be loaded or has an unexpected layout."""


class InvalidActionError(AgentEnvsError, TypeError):
    """``step`` got an action that is not token ids or text, or token ids outside the
    vocabulary ``[0, VOCAB_SIZE)`` (no sampler can produce them).

    Malformed *content* is a model mistake and an observation; only what the caller's own
    code got wrong is an exception.
    """


class EnvStateError(AgentEnvsError, RuntimeError):
    """``step`` before ``reset``, or after the episode ended."""


class MissingDependencyError(AgentEnvsError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""
