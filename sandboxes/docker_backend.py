"""The ``docker`` backend: the zygote runs inside long-lived, locked-down containers.

A :class:`DockerSandbox` starts one container per ``sessions_per_container``
live sessions (lazily, on ``open``). Each container runs the same stdlib-only
zygote server as the ``local`` backend, bind-mounted read-only from the host,
listening on a Unix socket in a host directory that is bind-mounted into the
container. Sessions are forked inside the container by that zygote, so opening
a session costs a fork (milliseconds), not a container start (hundreds of ms),
and a call costs a round trip over the socket.

Container settings (see :meth:`DockerSandbox.protections`): no network
(``network_mode="none"``), read-only root filesystem, a size-capped tmpfs at
``/tmp/scratch`` for session scratch directories, capabilities dropped,
``no-new-privileges``, memory/CPU/pids cgroup limits sized from
:class:`~sandboxes.base.Limits`, and an init process that reaps zombies. Code
never runs as root: by default (``session_uids``, when the host process is
root) each session gets its own unprivileged uid from a zygote that keeps only
the six capabilities needed for that, so sessions sharing a container cannot
signal or read each other; otherwise the whole container runs as one non-root
uid. Per-session limits (wall time, rlimits, output size) are enforced by the
zygote inside the container exactly as in the ``local`` backend.

Every container carries labels naming its owner process. Containers are
removed on :meth:`DockerSandbox.close`, at interpreter exit, and, when a run
crashed before it could clean up, by the next ``DockerSandbox`` on the same
host (owner pid gone, or reused by another process).

Needs the ``docker`` Python package (``pip install 'agent-envs[docker]'``), a
reachable Docker engine on the same kernel (the socket directory is shared by
bind mount, so a remote ``DOCKER_HOST`` or Docker Desktop's VM will not do),
and the image (``.ci/docker-up.sh`` builds it offline).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandboxes._zygote_client import ZygoteClient, ZygoteSession
from sandboxes.base import Limits, Protections, Sandbox, Session
from sandboxes.errors import SandboxError, SandboxUnavailable
from sandboxes.hostres import CgroupDelegation, CpuShare, UidBlock
from sandboxes.keeper import KeeperChoice, choose_keeper, keeper_mode

if TYPE_CHECKING:  # the SDK is an optional extra, imported lazily
    import docker
    from docker.models.containers import Container

__all__ = ["DEFAULT_IMAGE", "DockerSandbox", "reap_orphans"]

DEFAULT_IMAGE = os.environ.get("AGENT_ENVS_DOCKER_IMAGE", "agent-envs-sandbox:latest")
"""Image used when none is given; override with ``$AGENT_ENVS_DOCKER_IMAGE``."""

LABEL_SANDBOX = "agent-envs.sandbox"
LABEL_OWNER_PID = "agent-envs.owner-pid"
LABEL_OWNER_START = "agent-envs.owner-start"
LABEL_OWNER_HOST = "agent-envs.owner-host"
LABEL_RUN = "agent-envs.run"

SANDBOX_UID = 10001  # the `sandbox` user of both images (build_image.sh, Dockerfile)
_SOCK_DIR_IN = "/run/agent-envs"  # bind mount of the host's socket directory
_ZYGOTE_IN = "/opt/agent-envs/_zygote_server.py"
_KEEPER_IN = "/opt/agent-envs/ae-keeper"  # the host's C keeper, when statically linked
_SCRATCH_IN = "/tmp/scratch"
_CGROUP_IN = "/run/agent-envs-cgroup"  # bind mounts of the sandbox's delegated cgroup dirs
_ZYGOTE_HOST = Path(__file__).with_name("_zygote_server.py")
_START_TIMEOUT_S = 30.0


def _container_keeper() -> KeeperChoice:
    """The C keeper for containers: the host's build, bind-mounted, when it is statically
    linked (it then runs whatever the image's C library); else the Python keeper (the image
    needs no compiler either way)."""
    choice = choose_keeper()
    if choice.binary is not None and not choice.static:
        why = ("the C keeper could only be linked dynamically here (no static C library), "
               "and a container's image may not have this host's C library")
        if keeper_mode() == "c":
            raise SandboxError(f"AGENT_ENVS_KEEPER=c, but {why}; install the static C "
                               "library (libc6-dev / glibc-static) or unset AGENT_ENVS_KEEPER.")
        return KeeperChoice(binary=None, reason=why)
    return choice


# -- owner identity and orphan reaping ----------------------------------------------------------

def _proc_start_time(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    if start is None:
        return True
    current = _proc_start_time(pid)
    return current is None or current == start  # a different start time: the pid was reused


def reap_orphans(client: docker.DockerClient) -> list[str]:
    """Remove sandbox containers on this host whose owner process is gone.

    A container is an orphan when it carries ``agent-envs.sandbox=1``, its
    ``agent-envs.owner-host`` is this host, and the process named by
    ``agent-envs.owner-pid`` no longer exists (or the pid now belongs to a
    process started at another time). Containers of live owners, and of other
    hosts sharing the daemon, are left alone.

    Args:
        client: A connected Docker client.

    Returns:
        The ids of the containers removed.
    """
    import docker.errors

    removed: list[str] = []
    host = socket.gethostname()
    for c in client.containers.list(all=True, filters={"label": f"{LABEL_SANDBOX}=1"}):
        labels = c.labels or {}
        if labels.get(LABEL_OWNER_HOST, host) != host:
            continue
        try:
            pid = int(labels.get(LABEL_OWNER_PID, ""))
        except ValueError:
            continue  # not ours to judge
        if _owner_alive(pid, labels.get(LABEL_OWNER_START)):
            continue
        try:
            c.remove(force=True)
            removed.append(c.id)
        except docker.errors.NotFound:
            pass  # another process reaped it first
        except docker.errors.APIError as e:
            if "already in progress" not in str(e):
                raise
    return removed


# -- connecting ---------------------------------------------------------------------------------

def _connect(docker_host: str | None, timeout_s: float) -> docker.DockerClient:
    try:
        import docker
    except ImportError as e:
        raise SandboxUnavailable(
            "the docker backend needs the `docker` Python package, which is not installed; "
            "fix: pip install 'agent-envs[docker]'"
        ) from e
    where = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not where.startswith("unix://"):
        raise SandboxUnavailable(
            f"the docker backend needs an engine on this machine reached by a unix socket, "
            f"got {where!r}: the zygote's socket is shared by bind mount, which a remote engine "
            "cannot do; fix: run dockerd locally (.ci/docker-up.sh) and unset DOCKER_HOST"
        )
    # Probe the socket first: the SDK leaks its socket when the connect fails.
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout_s)
    try:
        probe.connect(where[len("unix://"):])
    except OSError as e:
        raise SandboxUnavailable(
            f"cannot reach the Docker engine at {where!r} ({e}); fix: start dockerd "
            "(as root: .ci/docker-up.sh), or point DOCKER_HOST at a running engine"
        ) from e
    finally:
        probe.close()
    client = None
    try:
        if docker_host:
            client = docker.DockerClient(base_url=docker_host, timeout=timeout_s)
        else:
            client = docker.from_env(timeout=timeout_s)
        client.ping()
    except (docker.errors.DockerException, OSError) as e:  # requests' errors are OSErrors
        if client is not None:
            client.close()
        raise SandboxUnavailable(
            f"cannot reach the Docker engine at {where!r} ({e}); fix: start dockerd "
            "(as root: .ci/docker-up.sh), or point DOCKER_HOST at a running engine"
        ) from e
    return client


def _check_image(client: docker.DockerClient, image: str) -> None:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound as e:
        raise SandboxUnavailable(
            f"docker image {image!r} not found; fix: build it offline with "
            f"sandboxes/docker/build_image.sh {image} (or .ci/docker-up.sh), or with a registry: "
            f"docker build -f sandboxes/docker/Dockerfile -t {image} ."
        ) from e


# -- one container ------------------------------------------------------------------------------

class _Container:
    """One long-lived container running the zygote; sessions fork inside it."""

    def __init__(self, client: docker.DockerClient, *, image: str, command: list[str],
                 labels: dict[str, str], limits: Limits, sessions: int, cpus: float,
                 scratch_mb: int, sock_root: Path, session_uids: bool,
                 cgroup_dirs: Sequence[str] = (), keeper: Path | None = None) -> None:
        import docker.errors

        self.uids: UidBlock | None = None  # set by the sandbox: this container's uid block
        self._status_lock = threading.Lock()
        self._status_at, self._running = 0.0, True
        self.sock_dir = Path(tempfile.mkdtemp(prefix="c-", dir=sock_root))
        self.socket_path = self.sock_dir / "zygote.sock"
        os.chmod(self.sock_dir, 0o700)
        # The zygote creates its socket (mode 0600) in sock_dir; the host must connect to it
        # and sessions must not (a session that reaches it could kill its neighbours).
        if session_uids:
            # The zygote runs as container root with only the capabilities it needs to hand
            # each session its own unprivileged uid (host-unique block), chown its scratch dir, and
            # kill and clean up after it. setuid() to the session uid clears the session's
            # capabilities; the socket dir (host root, 0700) is out of the sessions' reach.
            # SYS_ADMIN lets the zygote give each session its own PID, mount, network and IPC
            # namespaces, a size-limited tmpfs and a cgroup (the same jail as the local
            # backend); sessions never hold it (setuid clears it, no_new_privs keeps it off).
            self.user = "0:0"
            cap_add = ["SETUID", "SETGID", "CHOWN", "KILL", "DAC_OVERRIDE", "FOWNER",
                       "SYS_ADMIN"]
        else:
            # Every process runs as one non-root uid: the image's `sandbox` user when the
            # host is root (root connects to any socket), else the host user, who then owns
            # the socket.
            uid, gid = ((SANDBOX_UID, SANDBOX_UID) if os.geteuid() == 0
                        else (os.geteuid(), os.getegid()))
            if os.geteuid() == 0:
                os.chown(self.sock_dir, uid, gid)
            self.user = f"{uid}:{gid}"
            cap_add = []
        # cgroup limits bound the container as a whole; the zygote's rlimits bound each
        # session, so the container gets room for `sessions` of them plus the zygote.
        mem_bytes = (limits.memory_mb * sessions + 256) * 2**20
        volumes = {str(self.sock_dir): {"bind": _SOCK_DIR_IN, "mode": "rw"}}
        if _ZYGOTE_HOST.exists():
            volumes[str(_ZYGOTE_HOST)] = {"bind": _ZYGOTE_IN, "mode": "ro"}
        if keeper is not None:
            volumes[str(keeper)] = {"bind": _KEEPER_IN, "mode": "ro"}
        for i, d in enumerate(cgroup_dirs if session_uids else ()):
            volumes[d] = {"bind": f"{_CGROUP_IN}/{i}", "mode": "rw"}
        try:
            self.container: Container = client.containers.run(
                image, command, detach=True, labels=labels,
                user=self.user, working_dir=_SCRATCH_IN,
                environment={"HOME": _SCRATCH_IN, "TMPDIR": _SCRATCH_IN,
                             "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"},
                network_mode="host" if limits.network else "none",
                read_only=True,
                tmpfs={_SCRATCH_IN: f"rw,nosuid,nodev,size={scratch_mb}m,mode=1777"},
                volumes=volumes,
                mem_limit=mem_bytes, memswap_limit=mem_bytes,
                nano_cpus=int(cpus * 1e9),
                pids_limit=limits.max_procs * sessions + 16,
                cap_drop=["ALL"], cap_add=cap_add, security_opt=["no-new-privileges"],
                init=True, ipc_mode="private", hostname="sandbox",
            )
        except docker.errors.DockerException as e:
            shutil.rmtree(self.sock_dir, ignore_errors=True)
            raise SandboxError(f"could not start a sandbox container from {image!r}: {e}") from e

    @property
    def id(self) -> str:
        return self.container.id

    def wait_ready(self, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Block until the zygote's socket accepts connections, or raise with its logs."""
        deadline = time.monotonic() + timeout_s
        next_check = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if self.socket_path.exists():
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(str(self.socket_path))
                    return
                except OSError:
                    pass
                finally:
                    probe.close()
            time.sleep(0.005)
            if time.monotonic() > next_check:  # a crashed zygote never makes its socket
                next_check = time.monotonic() + 0.5
                self.container.reload()
                if self.container.status in ("exited", "dead"):
                    break
        logs = self._logs()
        self.remove()
        raise SandboxError(
            f"the zygote in container {self.id[:12]} did not come up within {timeout_s:.0f}s; "
            f"container output:\n{logs}"
        )

    def running(self) -> bool:
        """Whether the container still runs (asked of the engine at most once a second)."""
        import docker.errors

        with self._status_lock:
            now = time.monotonic()
            if now - self._status_at >= 1.0:
                try:
                    self.container.reload()
                    self._running = self.container.status == "running"
                except docker.errors.NotFound:
                    self._running = False
                self._status_at = now
            return self._running

    def ready_line(self, timeout_s: float = 2.0) -> dict[str, Any]:
        """The zygote's JSON ready line (its probed features), or {} if it is not printed."""
        import json

        deadline = time.monotonic() + timeout_s
        while True:
            out = self.container.logs(stdout=True, stderr=False).decode(errors="replace")
            for line in out.splitlines():
                if line.startswith("{"):
                    try:
                        return json.loads(line)
                    except ValueError:
                        break
            if time.monotonic() > deadline:
                return {}
            time.sleep(0.005)

    def _logs(self) -> str:
        try:
            return self.container.logs(tail=30).decode(errors="replace")
        except Exception as e:  # noqa: BLE001 - the logs are diagnostics only
            return f"<no logs: {e}>"

    def remove(self) -> None:
        _remove_container(self.container.client, self.id, self.sock_dir)


def _remove_container(client: docker.DockerClient, container_id: str, sock_dir: Path) -> None:
    import docker.errors

    try:
        client.api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as e:
        if "already in progress" not in str(e):
            raise
    shutil.rmtree(sock_dir, ignore_errors=True)


# -- the sandbox --------------------------------------------------------------------------------

def _cleanup(client: docker.DockerClient, containers: list[tuple[str, Path]],
             sock_root: Path, uid_blocks: list[UidBlock] | None = None,
             cgroups: CgroupDelegation | None = None) -> None:
    """Remove containers and socket dirs, and release the uid blocks and cgroups; runs on
    close, on garbage collection and at exit."""
    for container_id, sock_dir in containers:
        try:
            _remove_container(client, container_id, sock_dir)
        except Exception:  # noqa: BLE001, S110 - best effort; the next run reaps orphans
            pass
    containers.clear()
    shutil.rmtree(sock_root, ignore_errors=True)
    for block in uid_blocks or ():
        block.release()
    if cgroups is not None:
        cgroups.remove()
    client.close()


class DockerSandbox(Sandbox):
    """Sessions forked by a zygote inside long-lived, locked-down Docker containers.

    Containers start lazily: the first :meth:`open` starts one, and another starts
    whenever every running container already holds ``sessions_per_container``
    live sessions. The zygote's start (including ``preimports``) is paid once per
    container; a session start is a fork inside it.

    Args:
        limits: Limits for every session (default :class:`~sandboxes.base.Limits`).
            ``memory_mb`` and ``max_procs`` are enforced per session by the zygote's
            rlimits and, summed over ``sessions_per_container``, by the container's
            cgroup.
        preimports: Modules the zygote imports once (e.g. ``("numpy",)``); they must
            be installed in the image.
        image: Image with ``python3`` and a uid-10001 user (build it with
            ``sandboxes/docker/build_image.sh``).
        sessions_per_container: Live sessions one container holds before another starts.
        cpus: CPU quota of each container (``nano_cpus``); default: all host cores. Where
            sessions have cgroups of their own (``session_uids``, as root), which live outside
            the container's, it caps each session instead (``cpu.max``).
        scratch_mb: Size of the tmpfs holding the sessions' scratch directories.
        docker_host: Engine URL (default: ``$DOCKER_HOST`` or the local socket).
        reap: Remove orphaned containers of crashed runs on construction.
        startup_timeout_s: How long a container's zygote may take to come up.
        session_uids: Give every session its own unprivileged uid (the zygote runs as
            container root with SETUID/SETGID/CHOWN/KILL/DAC_OVERRIDE/FOWNER only), so
            sessions sharing a container cannot signal, read or disturb each other or
            reach the zygote's socket, and RLIMIT_NPROC holds per session. With False,
            every process in the container runs as one non-root uid, and one session's
            ``os.kill(-1, 9)`` takes down the zygote and its neighbours. Default: True
            when this process is root (needed to connect to a root-owned socket).
        cpu_share: With ``session_uids``, give each session a cpu cgroup whose weight is the
            default during its calls and the minimum between them (see
            :class:`~sandboxes.hostres.CpuShare`); False: background work a cell leaves
            running competes with every session's calls.

    Attributes:
        reaped: Ids of orphaned containers (of crashed runs) removed on construction.
        run_id: The ``agent-envs.run`` label of this sandbox's containers.
        features: What the zygote probed inside the container (namespaces, uid drop).

    Raises:
        SandboxUnavailable: the ``docker`` package is missing, the engine is
            unreachable, or the image does not exist (the message gives the fix).
    """

    name = "docker"

    def __init__(self, *, limits: Limits | None = None, preimports: Sequence[str] = (),
                 image: str | None = None, sessions_per_container: int = 32,
                 cpus: float | None = None, scratch_mb: int = 512,
                 docker_host: str | None = None, reap: bool = True,
                 startup_timeout_s: float = _START_TIMEOUT_S,
                 session_uids: bool | None = None, cpu_share: bool = True) -> None:
        if sessions_per_container < 1:
            raise ValueError(f"sessions_per_container must be >= 1, got "
                             f"{sessions_per_container!r}; pass a positive integer.")
        if session_uids is None:
            session_uids = os.geteuid() == 0
        elif session_uids and os.geteuid() != 0:
            raise ValueError(
                "session_uids=True needs this process to run as root: the zygote then runs as "
                "root in the container and owns its socket, which only root on the host can "
                "connect to; pass session_uids=False (all sessions share one non-root uid).")
        self.session_uids = session_uids
        self._keeper = _container_keeper()
        if not _ZYGOTE_HOST.exists():
            raise SandboxUnavailable(f"the zygote server {_ZYGOTE_HOST} is missing; "
                                     "reinstall agent-envs.")
        self.limits = limits or Limits()
        self.preimports = tuple(preimports)
        self.image = image or DEFAULT_IMAGE
        self.sessions_per_container = sessions_per_container
        self.cpus = float(cpus or os.cpu_count() or 1)
        self.scratch_mb = scratch_mb
        self.startup_timeout_s = startup_timeout_s
        self.run_id = uuid.uuid4().hex
        self.client = _connect(docker_host, timeout_s=30.0)
        try:
            _check_image(self.client, self.image)
            self.reaped = reap_orphans(self.client) if reap else []
        except BaseException:
            self.client.close()
            raise
        self._sock_root = Path(tempfile.mkdtemp(prefix="agent-envs-docker-"))
        os.chmod(self._sock_root, 0o711)  # the container uid must traverse it to its socket
        self._containers: list[tuple[_Container, ZygoteClient, set[ZygoteSession]]] = []
        self._retired: list[tuple[_Container, ZygoteClient, set[ZygoteSession]]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.features: dict[str, Any] = {}
        # What the finalizer removes; shared with it, so it must not reference self.
        self._cleanup_list: list[tuple[str, Path]] = []
        self._uid_blocks: list[UidBlock] = []
        self._cgroups, self.cgroup_reason = (CgroupDelegation.create(cpu=cpu_share)
                                             if session_uids
                                             else (None, "sessions share one uid"))
        self._finalizer = weakref.finalize(self, _cleanup, self.client, self._cleanup_list,
                                           self._sock_root, self._uid_blocks, self._cgroups)

    # -- containers
    def _labels(self) -> dict[str, str]:
        pid = os.getpid()
        return {LABEL_SANDBOX: "1", LABEL_OWNER_PID: str(pid),
                LABEL_OWNER_START: _proc_start_time(pid) or "",
                LABEL_OWNER_HOST: socket.gethostname(), LABEL_RUN: self.run_id}

    def _command(self, uids: UidBlock | None) -> list[str]:
        lim = self.limits
        cmd = ["python3", "-I", _ZYGOTE_IN, "--socket", f"{_SOCK_DIR_IN}/zygote.sock",
               "--scratch-root", f"{_SCRATCH_IN}/sessions", "--scratch-mb", str(lim.scratch_mb),
               "--memory-mb", str(lim.memory_mb), "--max-procs", str(lim.max_procs)]
        if uids is not None:
            cmd += ["--uid-base", str(uids.base), "--uid-count", str(uids.count)]
        if self._cgroups is not None and self.session_uids:
            cmd += ["--cgroup-version", str(self._cgroups.version)]
            for i in range(len(self._cgroups.dirs)):
                cmd += ["--cgroup", f"{_CGROUP_IN}/{i}"]
            if self.cpus < (os.cpu_count() or 1):
                # Session cgroups are not under the container's: the quota goes on each.
                cmd += ["--cpu-cores", f"{self.cpus:g}"]
        for mod in self.preimports:
            cmd += ["--preimport", mod]
        if self._keeper.binary is not None:
            cmd += ["--keeper", _KEEPER_IN]
        return cmd

    def _start_container(self) -> tuple[_Container, ZygoteClient, set[ZygoteSession]]:
        uids = None
        if self.session_uids:
            # A block of uids per container, unique on this host (see sandboxes.hostres).
            try:
                uids = UidBlock.acquire()
            except OSError as e:
                raise SandboxError(f"no session uids for a docker container: {e}") from e
            self._uid_blocks.append(uids)
        c = _Container(self.client, image=self.image, command=self._command(uids),
                       labels=self._labels(), limits=self.limits,
                       sessions=self.sessions_per_container, cpus=self.cpus,
                       scratch_mb=self.scratch_mb, sock_root=self._sock_root,
                       session_uids=self.session_uids,
                       cgroup_dirs=self._cgroups.dirs if self._cgroups is not None else (),
                       keeper=self._keeper.binary)
        c.uids = uids
        self._cleanup_list.append((c.id, c.sock_dir))
        c.wait_ready(self.startup_timeout_s)
        self.features = c.ready_line().get("features", self.features)
        problem = self._keeper.settle(self.features, "docker container's zygote")
        if problem is not None:  # AGENT_ENVS_KEEPER=c, built here, but the container cannot
            c.remove()
            raise SandboxError(problem)
        client = ZygoteClient(str(c.socket_path), backend=self.name, alive=c.running,
                              cpu=self.cpu_share)
        return c, client, set()

    @property
    def cpu_share(self) -> CpuShare | None:
        """How sessions' CPU weights are switched around calls, or None where the host
        gives this sandbox no cpu cgroup (``cpu_reason`` says why)."""
        if self._cgroups is None or not self.features.get("cpu_share"):
            return None
        return self._cgroups.cpu

    @property
    def cpu_reason(self) -> str:
        """Why sessions have no CPU share here ("" when they have one; "not probed yet"
        before the first container has started)."""
        if self.cpu_share is not None:
            return ""
        if self._cgroups is None:
            return self.cgroup_reason or "no per-session cgroup"
        if not self.features:
            return "not probed yet (no container has started)"
        return (self._cgroups.cpu_reason or self.features.get("cpu_error")
                or self.features.get("cgroup_error") or "no cpu controller")

    @property
    def container_ids(self) -> list[str]:
        """Ids of the containers this sandbox runs now."""
        with self._lock:
            return [c.id for c, _, _ in self._containers]

    # -- sessions
    def open(self) -> Session:
        with self._lock:
            if self._closed:
                raise SandboxError("this docker sandbox is closed; make a new one with "
                                   "make_sandbox('docker').")
            try:
                return self._open_locked()
            except SandboxError:
                # A container killed from outside (OOM, `docker kill`) refuses connections:
                # retire the dead ones and try once more in a fresh container.
                if not self._retire_dead_containers():
                    raise
                return self._open_locked()

    def _open_locked(self) -> ZygoteSession:
        slot = None
        for entry in self._containers:
            # Dead (timed-out) sessions stay tracked until closed, but free their slot.
            if sum(s.alive for s in entry[2]) < self.sessions_per_container:
                slot = entry
                break
        if slot is None:
            slot = self._start_container()
            self._containers.append(slot)
        container, client, sessions = slot
        s = client.open(self.limits, info={"container": container.id[:12]})
        s.on_close = lambda s, _set=sessions: self._forget(_set, s)
        sessions.add(s)
        return s

    def _retire_dead_containers(self) -> bool:
        """Drop containers that are no longer running; True if any was dropped."""
        import docker.errors

        dead = []
        for entry in self._containers:
            try:
                entry[0].container.reload()
                running = entry[0].container.status == "running"
            except docker.errors.NotFound:
                running = False
            if running:  # the container may outlive its zygote by a moment
                try:
                    entry[1].ping()
                except SandboxError:
                    running = False
            if not running:
                dead.append(entry)
        for entry in dead:
            self._containers.remove(entry)
            # Its sessions see EOF and report themselves dead on their next run; they are
            # still the caller's to close, and close() closes those left over.
            self._retired.append(entry)
            entry[0].remove()
            if entry[0].uids is not None:
                entry[0].uids.release()  # its sessions are gone with the container
        return bool(dead)

    def _forget(self, sessions: set[ZygoteSession], s: ZygoteSession) -> None:
        with self._lock:
            sessions.discard(s)

    def session_count(self) -> int:
        """Sessions opened and not yet closed."""
        with self._lock:
            return sum(len(entry[2]) for entry in self._containers)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            entries = self._containers + self._retired
            self._containers, self._retired = [], []
        for _, client, sessions in entries:
            for s in list(sessions):
                s.on_close = None
                s.close()
            client.close()
        self._finalizer()  # removes the containers (SIGKILL) and the socket dirs

    # -- reporting
    def protections(self) -> Protections:
        if self.session_uids:
            user = "their own non-root uids (a block per container, unique on this host)"
        else:
            user = f"non-root uid {SANDBOX_UID if os.geteuid() == 0 else os.geteuid()}"
        notes = [
            (f"docker container from {self.image!r}: network_mode="
             f"{'host' if self.limits.network else 'none'}, read-only root filesystem, "
             f"tmpfs scratch ({self.scratch_mb} MiB), cap_drop=ALL, no-new-privileges, "
             f"sessions run as {user}, "
             "memory/pids/cpu cgroup limits per container"),
        ]
        if self.session_uids:
            notes.append(
                f"up to {self.sessions_per_container} sessions share one container, each as its "
                "own unprivileged uid with no capabilities: they cannot signal each other's "
                "processes (nor see them, with a PID namespace each), cannot read each other's "
                "scratch dirs, and RLIMIT_NPROC is "
                "per session; the zygote runs as container root with SETUID, SETGID, CHOWN, "
                "KILL, DAC_OVERRIDE, FOWNER and SYS_ADMIN only (SYS_ADMIN for the per-session "
                "namespaces, tmpfs and cgroup; sessions hold no capabilities)")
        else:
            notes.append(
                f"up to {self.sessions_per_container} sessions share one container and one "
                "uid: a session can signal (kill) its neighbours and the zygote, and reach "
                "the zygote's socket; RLIMIT_NPROC is not set (the pids cgroup bounds a fork "
                "bomb); use session_uids=True (as root) or sessions_per_container=1")
        if self.features and not self.features.get("pid_ns"):
            notes.append("no PID namespace per session inside the container (docker's seccomp "
                         "profile forbids unshare): the timeout kills the session's process "
                         "group through the zygote")
        if self.features:
            from sandboxes.local import describe_features

            inner = describe_features({**self.features, "cgroup_error": self.cgroup_reason
                                       or self.features.get("cgroup_error")},
                                      jail="inside the container, as above",
                                      cpu_reason=self.cpu_reason)
            notes += [n for n in inner.notes if not n.startswith(("running as root",
                                                                   "inside the container"))]
        return Protections(
            rlimits=True, process_group_kill=True,
            user_namespace=bool(self.features.get("user_ns")),
            pid_namespace=True, network_namespace=not self.limits.network,
            mount_namespace=True, readonly_root=True, scrubbed_env=True,
            private_scratch=True, cpu_share=self.cpu_share is not None, notes=tuple(notes))

    @staticmethod
    def unavailable_reason() -> str | None:
        """None when the docker backend can run here with the default image, else why not."""
        try:
            client = _connect(None, timeout_s=5.0)
            try:
                _check_image(client, DEFAULT_IMAGE)
            finally:
                client.close()
        except SandboxUnavailable as e:
            return str(e)
        return None

    def __repr__(self) -> str:
        return (f"<DockerSandbox image={self.image!r} containers={len(self._containers)} "
                f"closed={self._closed}>")
