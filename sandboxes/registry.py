"""Backend registry: ``make_sandbox(name)`` and ``available_backends()``.

Backends are registered by import path and imported lazily, so a missing optional backend
(``docker`` lives in ``sandboxes.docker_backend``, written separately) costs nothing.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import shutil
from collections.abc import Callable, Sequence
from typing import Any

from sandboxes.base import Limits, Sandbox
from sandboxes.errors import SandboxUnavailable, UnknownBackend

__all__ = ["available_backends", "make_sandbox", "register_backend"]

# name -> "module:Class"
_BACKENDS: dict[str, str] = {
    "local": "sandboxes.local:LocalSandbox",
    "bubblewrap": "sandboxes.bubblewrap:BubblewrapSandbox",
    "docker": "sandboxes.docker_backend:DockerSandbox",
}


def register_backend(name: str, entry_point: str) -> None:
    """Register (or replace) a backend by import path ``"package.module:Class"``."""
    if ":" not in entry_point:
        raise ValueError(f"entry_point must look like 'package.module:Class', got "
                         f"{entry_point!r}.")
    _BACKENDS[name] = entry_point


def _unknown(name: str) -> UnknownBackend:
    close = difflib.get_close_matches(name, list(_BACKENDS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return UnknownBackend(f"unknown sandbox backend {name!r}{hint} "
                          f"Known backends: {', '.join(sorted(_BACKENDS))}.")


def _load(name: str) -> type[Sandbox]:
    if name not in _BACKENDS:
        raise _unknown(name)
    module, _, cls = _BACKENDS[name].partition(":")
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # a missing parent package
        spec = None
    if spec is None:
        raise SandboxUnavailable(f"sandbox backend {name!r} is not installed here: module "
                                 f"{module!r} was not found.")
    try:
        return getattr(importlib.import_module(module), cls)
    except AttributeError as e:
        raise SandboxUnavailable(f"sandbox backend {name!r}: module {module!r} has no class "
                                 f"{cls!r} ({e}).") from e


def make_sandbox(name: str = "local", *, limits: Limits | None = None,
                 preimports: Sequence[str] = (), **backend_kwargs: Any) -> Sandbox:
    """Create a sandbox.

    Args:
        name: Backend: ``"local"``, ``"bubblewrap"`` or ``"docker"``.
        limits: Limits for every session (default :class:`~sandboxes.base.Limits`).
        preimports: Modules imported once in the warm parent, e.g. ``("numpy",)``.
        **backend_kwargs: Passed to the backend class.

    Raises:
        UnknownBackend: ``name`` is not a registered backend (the message suggests one).
        SandboxUnavailable: the backend cannot run on this machine (the message says why).
    """
    cls = _load(name)
    return cls(limits=limits, preimports=tuple(preimports), **backend_kwargs)


def _check(name: str) -> str | None:
    try:
        cls = _load(name)
    except SandboxUnavailable as e:
        return str(e)
    except ImportError as e:
        return f"importing the {name!r} backend failed: {e}"
    check: Callable[[], str | None] | None = getattr(cls, "unavailable_reason", None)
    return check() if check is not None else None


def available_backends() -> dict[str, str | None]:
    """Map each registered backend to None if usable here, else the reason it is not."""
    return {name: _check(name) for name in _BACKENDS}


def _which(binary: str) -> str | None:
    return shutil.which(binary)
