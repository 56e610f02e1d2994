"""Environment registry: ``make``, ``register``, ``list_envs``.

Ids are versioned (``python-tool-v0``); a version changes whenever reward,
observation or tool behaviour changes, and a released version is never changed
in place. ``make("python-tool")`` resolves to the newest version. Every id is
also registered with gymnasium as ``agent_envs/<id>``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from agent_envs.errors import MissingDependencyError, UnknownEnvError

__all__ = ["GYM_NAMESPACE", "EnvSpec", "check_env_kwargs", "list_envs", "make", "register",
           "spec"]

GYM_NAMESPACE = "agent_envs"
_ID = re.compile(r"^(?P<name>[a-z][a-z0-9_-]*?)-v(?P<version>\d+)$")


@dataclass(frozen=True, kw_only=True)
class EnvSpec:
    """A registered environment.

    Attributes:
        id: Versioned id, e.g. ``python-tool-v0``.
        entry_point: ``"package.module:Class"``, imported lazily by ``make``.
        kwargs: Default constructor arguments (``make`` kwargs override them).
        description: One line for listings.
        extra: The ``agent-envs[EXTRA]`` its dependencies come with, if any.
    """

    id: str
    entry_point: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    extra: str | None = None

    @property
    def name(self) -> str:
        """The id without its version (``python-tool``)."""
        m = _ID.match(self.id)
        assert m is not None
        return m.group("name")

    @property
    def version(self) -> int:
        """The version number."""
        m = _ID.match(self.id)
        assert m is not None
        return int(m.group("version"))

    @property
    def gym_id(self) -> str:
        """The id under which gymnasium knows it."""
        return f"{GYM_NAMESPACE}/{self.id}"

    def load(self) -> type:
        """Import and return the environment class.

        Raises:
            MissingDependencyError: A module it needs is not installed (names the extra).
        """
        module, _, attr = self.entry_point.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            if self.extra is None or e.name is None or e.name.split(".")[0] == "agent_envs":
                raise
            raise MissingDependencyError(
                f"environment {self.id!r} needs the {e.name!r} module, which comes with the "
                f"[{self.extra}] extra: pip install 'agent-envs[{self.extra}]'") from e


_REGISTRY: dict[str, EnvSpec] = {}


def register(id: str, entry_point: str, *, kwargs: dict[str, Any] | None = None,
             description: str = "", extra: str | None = None) -> EnvSpec:
    """Register an environment (and its gymnasium twin ``agent_envs/<id>``).

    Raises:
        ValueError: the id is not ``name-vN`` or is already registered.
    """
    m = _ID.match(id)
    if m is None:
        raise ValueError(f"environment id {id!r} must look like 'name-vN' (lower case, "
                         f"e.g. 'python-tool-v0')")
    if ":" not in entry_point:
        raise ValueError(f"entry_point {entry_point!r} must be 'package.module:ClassName'")
    if id in _REGISTRY:
        next_id = f"{m.group('name')}-v{int(m.group('version')) + 1}"
        raise ValueError(f"environment {id!r} is already registered; released versions are "
                         f"never changed in place: register a new version (e.g. {next_id!r})")
    env_spec = EnvSpec(id=id, entry_point=entry_point, kwargs=dict(kwargs or {}),
                       description=description, extra=extra)
    _REGISTRY[id] = env_spec
    if env_spec.gym_id not in gymnasium.registry:
        gymnasium.register(id=env_spec.gym_id, entry_point=entry_point,
                           kwargs=dict(env_spec.kwargs))
    return env_spec


def list_envs() -> list[EnvSpec]:
    """Every registered environment, sorted by id."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def spec(id: str) -> EnvSpec:
    """The spec for ``id`` (versioned, unversioned = newest, or ``agent_envs/``-prefixed).

    Raises:
        UnknownEnvError: no such environment; the message suggests close ids.
    """
    key = id.removeprefix(f"{GYM_NAMESPACE}/")
    if key in _REGISTRY:
        return _REGISTRY[key]
    versions = [s for s in _REGISTRY.values() if s.name == key]
    if versions:
        return max(versions, key=lambda s: s.version)
    names = sorted(set(_REGISTRY) | {s.name for s in _REGISTRY.values()})
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownEnvError(f"no environment {id!r} is registered.{hint} Registered: "
                          f"{', '.join(sorted(_REGISTRY)) or 'none'} "
                          f"(see `agent-envs list`).")


def _check_names(cls: type, names: Any) -> None:
    check = getattr(cls, "check_arguments", None)
    if callable(check):  # a HarmonyEnv: its constructor's arguments are known
        check(names)


def check_env_kwargs(id: str, kwargs: Mapping[str, Any]) -> None:
    """Check the argument *names* an env would be made with, without making it.

    For configs and servers that make envs later: a misspelt argument fails now, with the
    closest name (``max_turnz`` -> ``max_turns``). Values are checked when the env is made.

    Raises:
        UnknownEnvError: no such environment.
        UnknownArgumentError: an argument the env does not take.
        MissingDependencyError: the env's extra is not installed.
    """
    env_spec = spec(id)
    _check_names(env_spec.load(), kwargs)


def make(id: str, **kwargs: Any) -> Any:
    """Create an environment by id, e.g. ``make("python-tool", difficulty=2)``.

    Unlike ``gymnasium.make`` this returns the environment itself, with no
    wrappers, so its async twins (``areset``/``astep``) are directly reachable.

    Raises:
        UnknownEnvError: no such environment (the message suggests close ids).
        UnknownArgumentError: an argument the env does not take (with a did-you-mean).
        ValueError: an argument value the env rejects (the message names it and the fix).
    """
    env_spec = spec(id)
    cls = env_spec.load()
    _check_names(cls, kwargs)
    merged = {**env_spec.kwargs, **kwargs}
    env = cls(**merged)
    # gymnasium tools (check_env, wrappers) read env.spec; give them ours, with these kwargs.
    env.spec = dataclasses.replace(gymnasium.spec(env_spec.gym_id), kwargs=merged)
    return env
