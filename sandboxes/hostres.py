"""Host resources a sandbox reserves for its sessions: a block of uids and delegated cgroups.

* :class:`UidBlock` -- a block of session uids unique on this host, across sandboxes in one
  process, Ray workers and separate jobs: each block is claimed by an ``flock`` on a lock file
  (``$AGENT_ENVS_UID_LOCK_DIR``, default ``/run/lock/agent-envs-uids``), held for the
  sandbox's lifetime and released by the kernel if the process dies.
* :class:`CgroupDelegation` -- a cgroup dir per hierarchy (v1: ``memory`` and ``pids``; v2: one
  dir with both controllers) under this process's own cgroup, in which the zygote makes one
  child cgroup per session. ``None`` with a reason when the kernel or the container refuses.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from dataclasses import dataclass, field

__all__ = ["BLOCK_SIZE", "UID_BASE", "CgroupDelegation", "UidBlock", "reap_stale"]

UID_BASE = 200_000
BLOCK_SIZE = 1024
MAX_BLOCKS = 256  # uids 200000 .. 462143


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


@dataclass
class CgroupDelegation:
    """Cgroup dirs the zygote may create per-session children in."""

    version: int
    dirs: list[str]
    notes: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, root: str = "/sys/fs/cgroup") -> tuple[CgroupDelegation | None, str]:
        """Make the dirs (as root); (None, why not) when the machine does not allow it."""
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
                return cls(version=2, dirs=made), ""
            for ctrl in ("memory", "pids"):
                mnt = os.path.join(root, ctrl)
                if not os.path.isdir(mnt):
                    raise OSError(f"no cgroup v1 {ctrl} hierarchy at {mnt}")
                base = os.path.join(mnt, own.get(ctrl, "/").lstrip("/"))
                if not os.path.isdir(base):
                    base = mnt
                reap_stale(base)
                d = os.path.join(base, name)
                os.mkdir(d)
                made.append(d)
            return cls(version=1, dirs=made), ""
        except OSError as e:
            for d in made:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            return None, f"cannot create a cgroup here ({e})"

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
