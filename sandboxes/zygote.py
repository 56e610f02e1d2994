"""``ZygoteSandbox``: a sandbox whose sessions are forked by a warm zygote process.

Subclasses only say how to launch the zygote (``_launch``): directly (``local``), inside
bubblewrap, or inside a container. Everything else (waiting for it, opening sessions, killing
them, shutting down without leaking processes) lives here.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandboxes._zygote_client import ZygoteClient, ZygoteSession
from sandboxes._zygote_server import remove_tree
from sandboxes.base import Limits, Sandbox, Session
from sandboxes.errors import SandboxError
from sandboxes.hostres import CgroupDelegation, CpuShare, UidBlock
from sandboxes.keeper import KeeperChoice, choose_keeper

__all__ = ["SERVER_PATH", "Launch", "ZygoteSandbox"]

SERVER_PATH = Path(__file__).with_name("_zygote_server.py")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS")


@dataclass(frozen=True, kw_only=True)
class Launch:
    """How a subclass starts the zygote.

    Attributes:
        argv: The command; it must end by running the server with ``server_args``.
        socket_path: Where the zygote's socket appears on the host.
        env: Environment of the launched command (already scrubbed).
    """

    argv: list[str]
    socket_path: str
    env: dict[str, str]


def minimal_env() -> dict[str, str]:
    """The scrubbed environment a zygote starts with: no host variables beyond these."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    env.update({k: "1" for k in THREAD_VARS})
    return env


class ZygoteSandbox(Sandbox):
    """Base for zygote-backed sandboxes.

    Args:
        limits: Limits for every session (defaults: :class:`~sandboxes.base.Limits`).
        preimports: Modules the zygote imports once so sessions start warm (e.g.
            ``("numpy", "sympy")``); BLAS thread counts are pinned to 1 first.
        startup_timeout_s: How long to wait for the zygote (and its preimports) to start.
        spares: Sessions the zygote keeps pre-forked and prepared (namespaces, scratch dir,
            uid drop, warm cell runner), so that ``open`` only hands one over and applies the
            rlimits; 0 forks on demand.
        cpu_share: Give each session a cpu cgroup whose weight is the default during its
            calls and the minimum between them (see :class:`~sandboxes.hostres.CpuShare`),
            where the host allows; False: no cpu cgroup, so work a cell leaves running in
            the background competes with every session's calls.
    """

    name = "zygote"
    #: Whether session pids reported by the zygote are pids in the host's PID namespace.
    host_pids = False

    def __init__(self, *, limits: Limits | None = None, preimports: Sequence[str] = (),
                 startup_timeout_s: float = 60.0, spares: int = 2,
                 cpu_share: bool = True) -> None:
        self.limits = limits or Limits()
        if spares < 0:
            raise ValueError(f"spares must be >= 0, got {spares!r}.")
        self.spares = spares
        self.preimports = tuple(preimports)
        self._sessions: set[ZygoteSession] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.startup_timeout_s = startup_timeout_s
        self.restarts = 0
        self._uids: UidBlock | None = None
        if os.geteuid() == 0:
            try:
                self._uids = UidBlock.acquire()
            except OSError as e:
                raise SandboxError(f"no session uids for the {self.name} sandbox: {e}") from e
        self._cgroups, self.cgroup_reason = CgroupDelegation.create(cpu=cpu_share)
        try:
            self._start()
        except BaseException:
            self._release_host()
            raise

    def _start(self) -> None:
        """Launch a zygote in a fresh work dir and wait until it is ready."""
        startup_timeout_s = self.startup_timeout_s
        self._keeper: KeeperChoice = choose_keeper()  # built once per machine, then cached
        self._workdir = Path(tempfile.mkdtemp(prefix=f"agent-envs-{self.name}-"))
        os.chmod(self._workdir, 0o711)  # session uids must reach their scratch dirs
        self._log_path = self._workdir / "zygote.log"
        launch = self._launch(self._workdir, self._server_args)
        self._log = open(self._log_path, "wb")  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                launch.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                env=launch.env, start_new_session=True, close_fds=True)
        except OSError as e:
            self._log.close()
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise SandboxError(f"could not start the {self.name} zygote ({launch.argv[0]!r}): "
                               f"{e}") from e
        try:
            self.ready = self._wait_ready(startup_timeout_s)
        except BaseException:
            self._stop_process()
            raise
        self.features: dict[str, Any] = self.ready.get("features", {})
        problem = self._keeper.settle(self.features, f"{self.name} zygote")
        if problem is not None:  # AGENT_ENVS_KEEPER=c, built here, but the zygote cannot run it
            self._stop_process()
            raise SandboxError(problem)
        proc = self._proc
        self._client = ZygoteClient(launch.socket_path, backend=self.name,
                                    alive=lambda: proc.poll() is None, cpu=self.cpu_share)

    @property
    def cpu_share(self) -> CpuShare | None:
        """How sessions' CPU weights are switched around calls, or None where the host
        gives this sandbox no cpu cgroup (``cpu_reason`` says why)."""
        if self._cgroups is None or not self.features.get("cpu_share"):
            return None
        return self._cgroups.cpu

    @property
    def cpu_reason(self) -> str:
        """Why sessions have no CPU share here ("" when they have one)."""
        if self.cpu_share is not None:
            return ""
        if self._cgroups is None:
            return self.cgroup_reason or "no per-session cgroup"
        return (self._cgroups.cpu_reason or self.features.get("cpu_error")
                or self.features.get("cgroup_error") or "no cpu controller")

    # -- for subclasses
    def _server_args(self, socket_path: str, scratch_root: str) -> list[str]:
        """Arguments after the server path (socket, scratch root, preimports)."""
        args = ["--socket", socket_path, "--scratch-root", scratch_root, "--watch-stdin",
                "--spares", str(self.spares), "--scratch-mb", str(self.limits.scratch_mb),
                "--memory-mb", str(self.limits.memory_mb),
                "--max-procs", str(self.limits.max_procs)]
        if self._uids is not None:
            args += ["--uid-base", str(self._uids.base), "--uid-count", str(self._uids.count)]
        if self._cgroups is not None:
            args += ["--cgroup-version", str(self._cgroups.version)]
            for d in self._cgroup_dirs_inside():
                args += ["--cgroup", d]
        for mod in self.preimports:
            args += ["--preimport", mod]
        if self._keeper.binary is not None:
            args += ["--keeper", self._keeper_inside()]
        return args

    def _keeper_inside(self) -> str:
        """The C keeper's path as the zygote sees it (jails bind it elsewhere)."""
        return str(self._keeper.binary)

    @property
    def keeper(self) -> str:
        """Which keeper this sandbox's sessions use: ``"c"`` (the C relay) or ``"python"``
        (``features["keeper_error"]`` says why)."""
        return str(self.features.get("keeper") or "python")

    def _cgroup_dirs_inside(self) -> list[str]:
        """The delegated cgroup dirs as the zygote sees them (jails bind them elsewhere)."""
        return list(self._cgroups.dirs) if self._cgroups is not None else []

    def _release_host(self) -> None:
        if self._cgroups is not None:
            self._cgroups.remove()
            self._cgroups = None
        if self._uids is not None:
            self._uids.release()
            self._uids = None

    def _launch(self, workdir: Path, server_args: Any) -> Launch:  # pragma: no cover
        raise NotImplementedError

    # -- lifecycle
    def _wait_ready(self, timeout_s: float) -> dict[str, Any]:
        import json

        assert self._proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self._proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise SandboxError(f"the {self.name} zygote did not start within {timeout_s:g} s"
                                   f"{self._log_tail()}; raise startup_timeout_s if preimports "
                                   "are slow.")
            chunk = os.read(self._proc.stdout.fileno(), 4096)
            if not chunk:
                code = self._proc.wait()
                raise SandboxError(f"the {self.name} zygote exited with code {code} before it "
                                   f"was ready{self._log_tail()}")
            line += chunk
        sel.close()
        try:
            ready = json.loads(line.decode())
        except ValueError as e:
            raise SandboxError(f"the {self.name} zygote printed {line[:200]!r} instead of its "
                               f"ready line{self._log_tail()}") from e
        if not ready.get("ready"):
            raise SandboxError(f"the {self.name} zygote failed to start: {ready.get('error')}; "
                               "check that the preimported modules are installed.")
        return ready

    def _log_tail(self) -> str:
        try:
            text = self._log_path.read_text(errors="replace").strip()
        except OSError:
            return ""
        return f" (its log ends: {text[-800:]!r})" if text else ""

    def _restart_if_dead(self) -> None:
        """A zygote whose process exited (killed from outside, or a bug) is replaced by a fresh
        one; the sessions it hosted get infra errors (see ``ZygoteSession._died``)."""
        with self._lock:
            if self._closed:
                raise SandboxError(f"this {self.name} sandbox is closed; make a new one with "
                                   f"make_sandbox({self.name!r}).")
            if self._proc.poll() is None:
                # Alive, if busy (a burst of opens, a slow fork): never replaced, which
                # would kill every session it holds.
                return
            old_client = self._client
            old_client.close()
            self._stop_process()
            self.restarts += 1
            self._start()

    def open(self) -> Session:
        self._restart_if_dead()
        try:
            s = self._client.open(self.limits)
        except SandboxError:
            if self._proc.poll() is None:
                raise  # alive: the error says why (overloaded, refused), no restart
            self._restart_if_dead()
            s = self._client.open(self.limits)
        s.on_close = self._forget
        if self.host_pids:
            s.info["host_pid"] = s.pid
            if self.features.get("pid_ns") and hasattr(os, "pidfd_open"):
                try:
                    s.attach_pidfd(os.pidfd_open(s.pid))
                except OSError:
                    pass  # fall back to killing through the zygote
        with self._lock:
            self._sessions.add(s)
        return s

    def _forget(self, s: ZygoteSession) -> None:
        with self._lock:
            self._sessions.discard(s)

    @property
    def zygote_pid(self) -> int:
        """Pid of the launched zygote command (the host-side process)."""
        return self._proc.pid

    def session_count(self) -> int:
        """Sessions opened and not yet closed."""
        with self._lock:
            return len(self._sessions)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sessions = list(self._sessions)
        for s in sessions:
            s.close()
        try:
            self._client.control({"op": "shutdown"}, timeout_s=5.0)
        except SandboxError:
            pass
        try:
            self._client.close()
            self._stop_process()
        finally:
            self._release_host()

    def _stop_process(self) -> None:
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()  # the zygote exits on stdin EOF
            except OSError:
                pass
        try:
            self._proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self._proc.pid, 9)
            except OSError:
                pass
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()
        remove_tree(str(self._workdir))  # iterative: a session's deep tree cannot break it
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and hasattr(self, "_proc"):
            try:
                self.close()
            except Exception:  # noqa: BLE001, S110 - best effort at interpreter exit
                pass

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} zygote_pid={self._proc.pid} "
                f"sessions={len(self._sessions)} closed={self._closed}>")


def python_executable() -> str:
    """The interpreter that runs a local zygote (the host's, so its packages are importable)."""
    return sys.executable
