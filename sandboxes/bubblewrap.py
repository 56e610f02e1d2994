"""The ``bubblewrap`` backend: the zygote runs inside a ``bwrap`` jail; sessions fork inside it.

The jail sees a read-only system (``/usr`` and the few ``/etc`` files Python needs), the
interpreter's prefixes read-only, a fresh ``/proc`` and ``/dev``, a private tmpfs ``/tmp`` that
holds the session scratch dirs, no network (``--unshare-all``), and none of the host's home or
project files. The only host directory it shares is a per-sandbox work dir holding the zygote
socket (mounted at ``/sandbox``). Inside, each session still gets the ``local`` protections
(PID namespace, own uid when root, rlimits, scrubbed env).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from sandboxes.base import Protections
from sandboxes.errors import SandboxUnavailable
from sandboxes.local import describe_features
from sandboxes.zygote import SERVER_PATH, Launch, ZygoteSandbox, minimal_env

__all__ = ["BubblewrapSandbox"]

_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group",
        "nsswitch.conf", "alternatives", "mime.types", "hosts", "host.conf")
_CGROUP_INSIDE = "/run/agent-envs-cgroup"
_INSIDE = "/sandbox"
_KEEPER_INSIDE = "/opt/agent-envs/ae-keeper"  # the C keeper, bound read-only


class BubblewrapSandbox(ZygoteSandbox):
    """Sessions forked from a zygote jailed by bubblewrap.

    Args:
        limits: Limits for every session.
        preimports: Modules imported once in the zygote (e.g. ``("numpy",)``).
        startup_timeout_s: How long to wait for the jailed zygote to start.
        python: Interpreter to run inside the jail (default: this one; its prefix and, for a
            venv's interpreter, the venv are mounted read-only).
        extra_ro_binds: More host paths to mount read-only at the same place.

    Raises:
        SandboxUnavailable: ``bwrap`` is not installed.
    """

    name = "bubblewrap"

    def __init__(self, *, python: str | None = None, extra_ro_binds: tuple[str, ...] = (),
                 **kwargs: object) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            raise SandboxUnavailable(reason)
        self.python = python or sys.executable
        self.extra_ro_binds = tuple(extra_ro_binds)
        super().__init__(**kwargs)  # type: ignore[arg-type]

    @staticmethod
    def unavailable_reason() -> str | None:
        """None if bwrap can run here, else why not (and how to fix it)."""
        if shutil.which("bwrap") is None:
            return ("the 'bwrap' binary is not on PATH; install the 'bubblewrap' package "
                    "(e.g. apt-get install -y bubblewrap).")
        return None

    def _venv(self) -> Path | None:
        """The venv ``python`` belongs to (its ``bin/`` holds it beside ``pyvenv.cfg``)."""
        root = Path(os.path.abspath(self.python)).parent.parent
        return root if (root / "pyvenv.cfg").is_file() else None

    def _prefixes(self) -> list[str]:
        if self.python == sys.executable:
            paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        else:
            paths = {str(Path(self.python).resolve().parent.parent)}
            venv = self._venv()
            if venv is not None:  # run as the venv's interpreter: it finds pyvenv.cfg there
                paths.add(str(venv))
        paths.update(self.extra_ro_binds)
        return sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})

    def _launch(self, workdir: Path, server_args: Callable[[str, str], list[str]]) -> Launch:
        shutil.copy(SERVER_PATH, workdir / SERVER_PATH.name)
        os.chmod(workdir / SERVER_PATH.name, 0o644)
        if os.geteuid() == 0:
            # As root, skip the user namespace (--unshare-all would map only uid 0): the zygote
            # then hands each session its own unprivileged host uid, without capabilities.
            unshare = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                       "--unshare-cgroup-try"]
        else:
            unshare = ["--unshare-all"]
        argv = ["bwrap", *unshare, "--new-session", "--proc", "/proc", "--dev", "/dev",
                "--tmpfs", "/tmp", "--ro-bind", "/usr", "/usr",
                # bwrap makes the dirs it needs 0700: /etc must be readable by session uids
                "--perms", "0755", "--dir", "/etc"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/") / top
            if host.is_symlink():
                argv += ["--symlink", os.readlink(host), f"/{top}"]
            elif host.is_dir():
                argv += ["--ro-bind", str(host), f"/{top}"]
        for name in _ETC:
            argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        for path in self._prefixes():
            argv += ["--ro-bind", path, path]
        argv += ["--bind", str(workdir), _INSIDE, "--chdir", "/tmp"]
        if self._keeper.binary is not None:
            argv += ["--ro-bind", str(self._keeper.binary), _KEEPER_INSIDE]
        for host, inside in zip(self._cgroups.dirs if self._cgroups else [],
                                self._cgroup_dirs_inside()):
            argv += ["--bind", host, inside]
        python = self.python if self.python == sys.executable or self._venv() is not None \
            else os.path.realpath(self.python)
        argv += [python, "-I", f"{_INSIDE}/{SERVER_PATH.name}",
                 *server_args(f"{_INSIDE}/zygote.sock", "/tmp/scratch")]
        return Launch(argv=argv, socket_path=str(workdir / "zygote.sock"), env=minimal_env())

    def _keeper_inside(self) -> str:
        return _KEEPER_INSIDE

    def _cgroup_dirs_inside(self) -> list[str]:
        n = len(self._cgroups.dirs) if self._cgroups is not None else 0
        return [f"{_CGROUP_INSIDE}/{i}" for i in range(n)]

    def protections(self) -> Protections:
        p = describe_features(self.features, cpu_reason=self.cpu_reason, jail=(
            "bubblewrap jail: read-only /usr and interpreter, private tmpfs /tmp and scratch, "
            "no host home or project files, own PID, IPC, UTS and network namespaces"))
        return Protections(**{**p.__dict__, "network_namespace": True})
