"""The C keeper: build ``keeper.c`` once per machine, and choose which keeper sessions use.

A session's keeper starts as a forked CPython process and, once it has handed the session to
the host, execs a small C relay (``sandboxes/keeper.c``; see the "Memory" part of
``_zygote_server.py``), which costs a few tens of kB where the Python keeper cost about
1.6 MB of PSS. The host builds it before it starts a zygote, with ``$CC`` (default ``cc``)
and ``-O2``, into a cache dir outside the checkout keyed by the source, the compiler and the
flags (``$XDG_CACHE_HOME/agent-envs/keeper/<key>/ae-keeper``, else ``~/.cache/...``), by an
atomic rename, so concurrent builds and a half-written file are harmless. It links it
statically where the C library allows (so that the same binary runs in a container of
another distribution), else dynamically.

``AGENT_ENVS_KEEPER`` chooses: ``auto`` (default: the C keeper where it builds, else the
Python keeper, and the sandbox's ``features["keeper_error"]`` says why), ``c`` (the C keeper
or an error) or ``python`` (the Python keeper).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandboxes.errors import SandboxError

__all__ = ["ENV_VAR", "SOURCE", "KeeperChoice", "build_keeper", "choose_keeper"]

SOURCE = Path(__file__).with_name("keeper.c")
ENV_VAR = "AGENT_ENVS_KEEPER"
MODES = ("auto", "c", "python")
FLAGS = ("-O2", "-Wall")
BUILD_TIMEOUT_S = 120.0
PROBE_TIMEOUT_S = 10.0
# Execute-only, for everyone (its owner included: sessions may run as the owner's uid). An
# exec of a file its uid cannot read leaves the process not dumpable from its first
# instruction; a readable one would be dumpable until keeper.c's prctl, a window in which
# a process of that uid could ptrace it or take its host connection (pidfd_getfd).
MODE = 0o111

_lock = threading.Lock()
_built: dict[tuple, tuple[Path, bool] | str] = {}  # key -> (binary, static) or why not


@dataclass(frozen=True, kw_only=True)
class KeeperChoice:
    """Which keeper a sandbox's sessions use.

    Attributes:
        binary: The built C keeper, or None for the Python keeper.
        static: Whether ``binary`` is statically linked (it then runs in any container).
        reason: Why the Python keeper is used ("" when ``binary`` is set).
    """

    binary: Path | None
    static: bool = False
    reason: str = ""

    def settle(self, features: dict[str, Any], where: str) -> str | None:
        """Merge this choice into the ``features`` a zygote reported (the reason the Python
        keeper is used, if any), and say what is wrong when ``AGENT_ENVS_KEEPER=c`` but the
        zygote (``where``) could not use the C keeper built here; None when all is well."""
        if features.get("keeper", "python") == "python" and self.reason:
            features.setdefault("keeper_error", self.reason)
        if self.binary is not None and features.get("keeper") != "c" and keeper_mode() == "c":
            return (f"{ENV_VAR}=c, but the {where} cannot use the C keeper: "
                    f"{features.get('keeper_error') or 'no reason given'}; unset {ENV_VAR} to "
                    "fall back to the Python keeper.")
        return None


def cache_root() -> Path:
    """Where built keepers are kept: ``$XDG_CACHE_HOME/agent-envs/keeper`` (else ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "agent-envs" / "keeper"


def _compile(cc: list[str], flags: list[str], out: Path) -> str | None:
    """Compile SOURCE to ``out``; None on success, else why not."""
    try:
        r = subprocess.run([*cc, *flags, "-o", str(out), str(SOURCE)], capture_output=True,
                           text=True, timeout=BUILD_TIMEOUT_S, check=False,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{type(e).__name__}: {e}"
    if r.returncode != 0 or not out.is_file():
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        return f"exit code {r.returncode}" + (f": {' | '.join(tail)}" if tail else "")
    return None


def build_keeper() -> tuple[Path, bool]:
    """The C keeper binary (built, or found in the cache) and whether it is static.

    Raises:
        SandboxError: no compiler, or the build failed (the message says which and why).
    """
    try:
        cc = shlex.split(os.environ.get("CC") or "cc")
    except ValueError as e:  # e.g. an unbalanced quote
        raise SandboxError(f"CC={os.environ.get('CC')!r} is not a command line ({e}); set CC "
                           "to a compiler command, e.g. CC=gcc, or unset it") from e
    if not cc or shutil.which(cc[0]) is None:
        raise SandboxError(f"no C compiler: {cc[0] if cc else '$CC'!r} is not on PATH "
                           "(install gcc or clang, or set CC)")
    try:
        source = SOURCE.read_bytes()
    except OSError as e:
        raise SandboxError(f"the C keeper's source {SOURCE} cannot be read ({e}); reinstall "
                           "agent-envs") from e
    root = cache_root()
    key = (tuple(cc), source, str(root))
    with _lock:
        hit = _built.get(key)
        if hit is None or (isinstance(hit, tuple) and not hit[0].is_file()):  # cache wiped
            hit = _build(cc, source, root)
            _built[key] = hit
    if isinstance(hit, str):
        raise SandboxError(hit)
    return hit


def _build(cc: list[str], source: bytes, root: Path) -> tuple[Path, bool] | str:
    errors = []
    for static in (True, False):
        flags = [*FLAGS, "-static"] if static else list(FLAGS)
        digest = hashlib.sha256(source + b"\0" + " ".join(cc + flags).encode()).hexdigest()
        binary = root / digest[:16] / "ae-keeper"
        if binary.is_file() and _runs(binary):  # else truncated or replaced: built again
            if stat.S_IMODE(binary.stat().st_mode) != MODE:
                try:  # (a cache entry from before execute-only)
                    os.chmod(binary, MODE)
                except OSError:
                    pass
            return binary, static
        try:
            binary.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=binary.parent, prefix=".build-") as tmp:
                out = Path(tmp) / "ae-keeper"
                why = _compile(cc, flags, out)
                if why is None:
                    os.chmod(out, MODE)  # session uids exec it (by fd), never read it
                    if not _runs(out):
                        why = "the built binary does not run (ae-keeper --probe failed)"
                    else:
                        os.replace(out, binary)  # atomic: a concurrent build wins or loses
                        return binary, static
        except OSError as e:
            why = f"{type(e).__name__}: {e}"
        errors.append(f"{'static' if static else 'dynamic'}: {why}")
    return (f"the C compiler {' '.join(cc)!r} could not build {SOURCE.name} "
            f"({'; '.join(errors)})")


def _runs(binary: Path) -> bool:
    """Whether ``binary --probe`` exits 0 (a cached file is trusted only once it runs)."""
    try:
        r = subprocess.run([str(binary), "--probe"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def keeper_mode() -> str:
    """``AGENT_ENVS_KEEPER``, checked: auto, c or python.

    Raises:
        SandboxError: any other value (the message names the variable and the choices).
    """
    raw = os.environ.get(ENV_VAR, "")
    mode = raw.strip().lower() or "auto"
    if mode not in MODES:
        close = difflib.get_close_matches(mode, MODES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SandboxError(f"{ENV_VAR}={raw!r} is not one of {', '.join(MODES)}{hint}; "
                           f"unset it for the default (auto: the C keeper where it builds).")
    return mode


def choose_keeper() -> KeeperChoice:
    """The keeper for a new sandbox, per ``AGENT_ENVS_KEEPER`` (see the module docstring).

    Raises:
        SandboxError: a bad ``AGENT_ENVS_KEEPER``, or ``c`` where the C keeper cannot be
            built.
    """
    mode = keeper_mode()
    if mode == "python":
        return KeeperChoice(binary=None, reason=f"{ENV_VAR}=python")
    try:
        binary, static = build_keeper()
    except SandboxError as e:
        if mode == "c":
            raise SandboxError(f"{ENV_VAR}=c, but the C keeper is not available: {e}. Install "
                               f"a C compiler or set CC, or unset {ENV_VAR} to fall back to "
                               "the Python keeper.") from e
        return KeeperChoice(binary=None, reason=str(e))
    return KeeperChoice(binary=binary, static=static)
