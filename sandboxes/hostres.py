"""Host resources a sandbox reserves for its sessions: a block of uids and delegated cgroups.

* :class:`UidBlock` -- a block of session uids unique on this host, across sandboxes in one
  process, Ray workers and separate jobs: each block is claimed by an ``flock`` on a lock file
  (``$AGENT_ENVS_UID_LOCK_DIR``, default ``/run/lock/agent-envs-uids``), held for the
  sandbox's lifetime and released by the kernel if the process dies.
* :class:`CgroupDelegation` -- a cgroup dir per hierarchy (v1: ``memory``, ``pids`` and, where
  the host allows, ``cpu``; v2: one dir with those controllers) under this process's own
  cgroup, in which the zygote makes one child cgroup per session. ``None`` with a reason when
  the kernel or the container refuses; without the cpu controller it still delegates memory and
  pids and says why there is no CPU share (``cpu_reason``).
* :class:`CpuShare` -- the CPU share of a session: its cgroup's weight is the default while it
  runs a call and the minimum between calls, so background work a cell left behind runs only
  on CPU time no running call wants.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from dataclasses import dataclass, field

__all__ = ["BLOCK_SIZE", "UID_BASE", "CgroupDelegation", "CpuShare", "UidBlock", "reap_stale"]

UID_BASE = 200_000
BLOCK_SIZE = 1024
MAX_BLOCKS = 256  # uids 200000 .. 462143
# cgroup v1 cpu.shares / v2 cpu.weight: (file, kernel default, minimum, maximum).
_CPU_KNOBS = {1: ("cpu.shares", 1024, 2, 262_144), 2: ("cpu.weight", 100, 1, 10_000)}
_CPU_OFF = "turned off for this sandbox (cpu_share=False)"


@dataclass
class UidBlock:
    """``count`` uids from ``base``, reserved on this host while the block is open."""

    base: int
    count: int
    _fd: int = -1

    @classmethod
    def acquire(cls, lock_dir: str | None = None) -> UidBlock:
        """Claim the first free block.

        Raises:
            OSError: every block is taken, or the lock dir cannot be made.
        """
        lock_dir = lock_dir or os.environ.get("AGENT_ENVS_UID_LOCK_DIR",
                                              "/run/lock/agent-envs-uids")
        os.makedirs(lock_dir, mode=0o755, exist_ok=True)
        for i in range(MAX_BLOCKS):
            fd = os.open(os.path.join(lock_dir, f"block-{i}"), os.O_RDWR | os.O_CREAT
                         | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return cls(base=UID_BASE + i * BLOCK_SIZE, count=BLOCK_SIZE, _fd=fd)
        raise OSError(f"all {MAX_BLOCKS} session uid blocks in {lock_dir} are taken; close "
                      "sandboxes you no longer use")

    def release(self) -> None:
        """Give the block back (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _own_cgroups() -> dict[str, str]:
    """{controller or "" (v2): path of this process's cgroup} from /proc/self/cgroup."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c] = path
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale(base: str) -> list[str]:
    """Remove ``agent-envs-PID-*`` cgroup dirs under ``base`` whose owner process is gone
    (left by a process that was killed before it could clean up) and that hold no process.

    Returns:
        The dirs removed.
    """
    removed = []
    try:
        entries = os.listdir(base)
    except OSError:
        return removed
    for entry in entries:
        parts = entry.split("-")
        if len(parts) != 4 or parts[:2] != ["agent", "envs"] or not parts[2].isdigit():
            continue
        if _pid_alive(int(parts[2])):
            continue
        d = os.path.join(base, entry)
        try:
            for child in os.listdir(d):
                if os.path.isdir(os.path.join(d, child)):
                    os.rmdir(os.path.join(d, child))
            os.rmdir(d)
            removed.append(d)
        except OSError:
            continue  # still busy (its sessions are dying): a later sandbox retries
    return removed


def _make_v1(root: str, ctrl: str, own: dict[str, str], name: str,
             made: dict[str, str] | None = None) -> str:
    """Make ``name`` under this process's cgroup in the v1 ``ctrl`` hierarchy.

    ``made`` maps hierarchies already made (by mount point) to their dir: controllers mounted
    together (``cpu,memory``) share one dir.
    """
    mnt = os.path.join(root, ctrl)
    if not os.path.isdir(mnt):
        raise OSError(f"no cgroup v1 {ctrl} hierarchy at {mnt}")
    real = os.path.realpath(mnt)
    if made is not None and real in made:
        return made[real]
    base = os.path.join(mnt, own.get(ctrl, "/").lstrip("/"))
    if not os.path.isdir(base):
        base = mnt
    reap_stale(base)
    d = os.path.join(base, name)
    os.mkdir(d)
    if made is not None:
        made[real] = d
    return d


def _weigh_parent(version: int, d: str) -> None:
    """Give the sandbox's cgroup the weight of one task per core against the host's other
    processes (default: one task), so sessions together can still fill the machine as they
    did when each process counted on its own; the sessions split it among themselves."""
    knob, default, _, top = _CPU_KNOBS[version]
    try:
        with open(os.path.join(d, knob), "w") as f:
            f.write(str(min(default * (os.cpu_count() or 1), top)))
    except OSError:
        pass  # the default weight: a share, if a smaller one


@dataclass(frozen=True, kw_only=True)
class CpuShare:
    """How a session's CPU weight is switched between calls (host side).

    While a session runs a call its cgroup has the default weight (``active``), so running
    calls share the CPU fairly, one session against another however many processes each
    starts. Between calls it has the minimum weight (``idle``): what a cell left running in the
    background (a ``while True`` in a thread or a child process) then gets only CPU time that
    no running call wants. The scheduler stays work-conserving: on an idle machine background
    work runs at full speed.

    Attributes:
        parent: Host path of the delegated cgroup dir holding the session cgroups.
        knob: ``cpu.shares`` (v1) or ``cpu.weight`` (v2).
        active: Weight while a call runs (the kernel default).
        idle: Weight between calls (the kernel minimum).
    """

    parent: str
    knob: str
    active: int
    idle: int

    @classmethod
    def for_version(cls, version: int, parent: str) -> CpuShare:
        """The share for cgroup ``version`` (1 or 2) with sessions under ``parent``."""
        knob, active, idle, _ = _CPU_KNOBS[version]
        return cls(parent=parent, knob=knob, active=active, idle=idle)

    def path(self, cgroup: str) -> str | None:
        """The weight file of session cgroup ``cgroup`` (a name the zygote chose), or None
        for a name that is not a plain dir name."""
        if not cgroup or not cgroup.replace("-", "").replace("_", "").isalnum():
            return None
        return os.path.join(self.parent, cgroup, self.knob)

    def open(self, path: str | None) -> int | None:
        """An fd to write the weight through (two writes per call cost microseconds; an
        open and close each time would cost tens), or None when the cgroup is gone."""
        if path is None:
            return None
        try:
            return os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def set(self, path: str, active: bool) -> None:
        """Write the weight by path (an open, a write and a close: the slow way, for a
        session that could not keep an fd)."""
        fd = self.open(path)
        if fd is not None:
            try:
                self.write(fd, active)
            finally:
                os.close(fd)

    def write(self, fd: int, active: bool) -> None:
        """Write the active or idle weight through ``fd`` (best effort: a session that
        already ended has no cgroup left to weigh)."""
        try:
            os.write(fd, b"%d" % (self.active if active else self.idle))
        except OSError:
            pass


@dataclass
class CgroupDelegation:
    """Cgroup dirs the zygote may create per-session children in.

    Attributes:
        version: 1 or 2.
        dirs: The delegated dirs (v1: memory, pids and, when ``cpu`` is set, cpu; v2: one).
        cpu: How sessions' CPU weights are switched, or None when the host has no cpu
            controller to delegate (``cpu_reason`` says why).
        cpu_reason: Why there is no per-session CPU share ("" when there is one).
    """

    version: int
    dirs: list[str]
    notes: list[str] = field(default_factory=list)
    cpu: CpuShare | None = None
    cpu_reason: str = ""

    @classmethod
    def create(cls, root: str = "/sys/fs/cgroup", *, cpu: bool = True
               ) -> tuple[CgroupDelegation | None, str]:
        """Make the dirs (as root); (None, why not) when the machine does not allow it.

        Args:
            root: Where the cgroup filesystems are mounted.
            cpu: Delegate the cpu controller too (for :class:`CpuShare`).
        """
        if os.geteuid() != 0:
            return None, "not root: cannot create cgroups (no systemd delegation is used)"
        name = f"agent-envs-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            own = _own_cgroups()
        except OSError as e:
            return None, f"cannot read /proc/self/cgroup: {e}"
        made: list[str] = []
        try:
            if os.path.exists(os.path.join(root, "cgroup.controllers")):  # pure v2
                base = os.path.join(root, own.get("", "/").lstrip("/"))
                reap_stale(base)
                d = os.path.join(base, name)
                os.mkdir(d)
                made.append(d)
                with open(os.path.join(d, "cgroup.subtree_control"), "w") as f:
                    f.write("+memory +pids")
                out = cls(version=2, dirs=made)
                if cpu:
                    out._delegate_cpu_v2(base, d)
                else:
                    out.cpu_reason = _CPU_OFF
                return out, ""
            by_mount: dict[str, str] = {}
            for ctrl in ("memory", "pids"):
                d = _make_v1(root, ctrl, own, name, by_mount)
                if d not in made:
                    made.append(d)
            out = cls(version=1, dirs=made)
            try:
                if not cpu:
                    out.cpu_reason = _CPU_OFF
                    return out, ""
                cpu_dir = _make_v1(root, "cpu", own, name, by_mount)
            except OSError as e:
                out.cpu_reason = f"no cgroup v1 cpu controller to delegate ({e})"
            else:
                if cpu_dir not in out.dirs:
                    out.dirs.append(cpu_dir)
                out.cpu = CpuShare.for_version(1, cpu_dir)
                _weigh_parent(1, cpu_dir)
            return out, ""
        except OSError as e:
            for d in made:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            return None, f"cannot create a cgroup here ({e})"

    def _delegate_cpu_v2(self, base: str, d: str) -> None:
        """Enable the cpu controller for the session cgroups under ``d`` (v2), if allowed."""
        try:
            with open(os.path.join(base, "cgroup.controllers")) as f:
                if "cpu" not in f.read().split():
                    self.cpu_reason = (f"the cgroup v2 cpu controller is not available in "
                                       f"{base} (cgroup.controllers)")
                    return
            with open(os.path.join(d, "cgroup.controllers")) as f:
                if "cpu" not in f.read().split():
                    # Only possible where ``base`` holds no processes (the root, a delegated
                    # subtree); elsewhere the kernel refuses and there is no CPU share.
                    with open(os.path.join(base, "cgroup.subtree_control"), "w") as f2:
                        f2.write("+cpu")
            with open(os.path.join(d, "cgroup.subtree_control"), "w") as f:
                f.write("+cpu")
        except OSError as e:
            self.cpu_reason = (f"cannot enable the cgroup v2 cpu controller under {base} ({e}); "
                               "enable it in its parent's cgroup.subtree_control")
            return
        self.cpu = CpuShare.for_version(2, d)
        _weigh_parent(2, d)

    def remove(self, timeout_s: float = 2.0) -> None:
        """Remove the dirs and any session cgroups left in them (best effort)."""
        deadline = time.monotonic() + timeout_s
        for d in self.dirs:
            while True:
                try:
                    for child in os.listdir(d):
                        if os.path.isdir(os.path.join(d, child)):
                            try:
                                os.rmdir(os.path.join(d, child))
                            except OSError:
                                pass
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.02)
