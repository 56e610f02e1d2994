"""Backend registry: ``make_sandbox(name)`` and ``available_backends()``.

Backends are registered by import path and imported lazily, so a missing optional backend
(``docker`` lives in ``sandboxes.docker_backend``, written separately) costs nothing.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import shutil
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from sandboxes.base import Limits, Sandbox
from sandboxes.errors import SandboxError, SandboxUnavailable, UnknownBackend

__all__ = ["AUTO_ORDER", "IsolationWarning", "available_backends", "backend_names",
           "check_backend_name", "make_sandbox", "protection_report", "register_backend"]

AUTO_ORDER = ("bubblewrap", "docker", "local")
"""What ``make_sandbox("auto")`` tries, most isolated first."""


class IsolationWarning(RuntimeWarning):
    """``auto`` fell back to a backend that does not isolate everything."""

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
    close = difflib.get_close_matches(name, [*_BACKENDS, "auto"], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return UnknownBackend(f"unknown sandbox backend {name!r}{hint} "
                          f"Known backends: {', '.join(sorted(_BACKENDS))} (or 'auto').")


def backend_names() -> tuple[str, ...]:
    """Every name ``make_sandbox`` takes: the registered backends and ``auto``."""
    return (*sorted(_BACKENDS), "auto")


def check_backend_name(name: object) -> None:
    """Fail now, with a did-you-mean, for a name ``make_sandbox`` would not take, e.g. in a
    config that makes its sandbox later. Whether the backend works here is not checked.

    Raises:
        UnknownBackend: ``name`` is not a registered backend or ``auto``.
    """
    if not isinstance(name, str) or name not in backend_names():
        raise _unknown(str(name))


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
        name: Backend: ``"auto"`` (the most isolated one that works here: bubblewrap, then
            docker, then local with an :class:`IsolationWarning` naming what is not
            isolated), ``"local"``, ``"bubblewrap"`` or ``"docker"``.
        limits: Limits for every session (default :class:`~sandboxes.base.Limits`).
        preimports: Modules imported once in the warm parent, e.g. ``("numpy",)``.
        **backend_kwargs: Passed to the backend class.

    Raises:
        UnknownBackend: ``name`` is not a registered backend (the message suggests one).
        SandboxUnavailable: the backend cannot run on this machine (the message says why).
    """
    if name == "auto":
        return _make_auto(limits, tuple(preimports), backend_kwargs)
    cls = _load(name)
    return cls(limits=limits, preimports=tuple(preimports), **backend_kwargs)


def _make_auto(limits: Limits | None, preimports: tuple[str, ...],
               backend_kwargs: dict[str, Any]) -> Sandbox:
    """The first backend of AUTO_ORDER that starts; a warning when it is ``local`` and does
    not isolate everything."""
    skipped: list[str] = []
    for name in AUTO_ORDER:
        if name not in _BACKENDS:
            continue
        problem = _check(name)
        if problem is None:
            try:
                sb = _load(name)(limits=limits, preimports=preimports, **backend_kwargs)
            except SandboxError as e:
                problem = str(e)
            else:
                if name == "local":
                    missing = _not_isolated(sb) or [
                        ("world-readable host files outside the hidden trees (/etc, /usr, "
                        "/var, /opt) stay readable, and sessions share the host kernel's view "
                        "of them")]
                    warnings.warn(
                        f"sandbox 'auto' fell back to 'local' ({'; '.join(skipped)}); not "
                        f"isolated here: {'; '.join(missing)}", IsolationWarning, stacklevel=3)
                return sb
        skipped.append(f"{name} unavailable: {problem}")
    raise SandboxUnavailable("no sandbox backend works here: " + "; ".join(skipped))


def _not_isolated(sb: Sandbox) -> list[str]:
    """The protections() notes that name something missing (written in capitals: NO ...)."""
    try:
        notes = sb.protections().notes
    except Exception as e:  # noqa: BLE001 - the warning is best effort
        return [f"protections() failed: {e}"]
    return [n for n in notes if "NO " in n or n.startswith("no ")]


def protection_report(name: str, *, limits: Limits | None = None) -> dict[str, Any]:
    """Start backend ``name`` here and report what it protects, as measured by its probes.

    Returns {"backend": resolved name, "available": bool, "reason": str | None, "protections":
    Protections | None} (for ``agent-envs list`` and the README).
    """
    try:
        sb = make_sandbox(name, limits=limits, spares=0) if name != "docker" else \
            make_sandbox(name, limits=limits)
    except SandboxError as e:
        return {"backend": name, "available": False, "reason": str(e), "protections": None}
    try:
        sb.open().close()  # backends that probe in their first container (docker) have now
        return {"backend": sb.name, "available": True, "reason": None,
                "protections": sb.protections()}
    finally:
        sb.close()


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
