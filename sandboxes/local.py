"""The ``local`` backend: a zygote process on this machine, isolated with what the kernel allows.

Each session is forked from a warm zygote and gets: its own process group, a scrubbed
environment and rlimits, and a keeper process that alone holds the host connection (the cell
that runs the code talks only to it). Where the kernel allows (probed, never assumed): PID,
mount, network and IPC namespaces per session (killing it kills every descendant, setsid or
not; SysV IPC dies with it), a filesystem jail (the host read-only, home dirs, /run, the
checkout and the current directory hidden), one size-limited tmpfs for its scratch dir, /tmp,
/dev/shm and /var/tmp (the scratch quota), a cgroup for memory (memfd, shm and tmpfs
included) and pids, and (as root) its own unprivileged uid from a host-unique block.
:meth:`LocalSandbox.protections` reports what is active.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from sandboxes.base import Protections
from sandboxes.zygote import SERVER_PATH, Launch, ZygoteSandbox, minimal_env

__all__ = ["LocalSandbox", "describe_features"]


def describe_features(features: dict, *, jail: str | None = None,
                      cpu_reason: str | None = None) -> Protections:
    """Turn the zygote's probed feature flags into a :class:`Protections` report.

    Args:
        features: The zygote's ready-line features.
        jail: The filesystem jail in words, when the backend provides one.
        cpu_reason: Why the host switches no session CPU weights ("" or None: it does, when
            the zygote found a cpu controller).
    """
    notes: list[str] = []
    uid_drop = bool(features.get("uid_drop"))
    user_ns = bool(features.get("user_ns"))
    if uid_drop:
        notes.append("running as root: each session runs as its own unprivileged uid, from a "
                     "block of uids reserved for this sandbox on this host (flock in "
                     "/run/lock/agent-envs-uids), so RLIMIT_NPROC is per session, no other "
                     "sandbox or job shares its uids, keyrings or files, and host files that "
                     "are not world-readable/writable are out of reach; each session starts "
                     "with a fresh session keyring and the uid's user keyrings cleared")
    elif user_ns:
        notes.append("not root: each session has its own user namespace, so RLIMIT_NPROC is "
                     "counted per session; capabilities are dropped")
    else:
        notes.append("RLIMIT_NPROC not applied: sessions share the host uid and no user "
                     "namespace is available, so a fork bomb is bounded only by the PID "
                     "namespace kill and the CPU/wall limits")
    if features.get("python_unreadable"):
        notes.append("the interpreter lives in a dir the session uid cannot traverse (e.g. "
                     "/root/.pyenv) and there is no mount namespace to reveal it: only modules "
                     "the zygote imported (preimports) can be used")
    if features.get("pid_ns"):
        notes.append("PID namespace per session: killing its init kills every descendant; "
                     "host processes are invisible (private /proc)")
    else:
        notes.append("no PID namespace: the timeout kills the session's process group, which "
                     "a child that calls setsid() can leave")
    if features.get("ipc_ns"):
        notes.append("IPC namespace per session: SysV shared memory, semaphores and message "
                     "queues are private and destroyed with the session")
    else:
        notes.append("NO IPC namespace: SysV shared memory is shared with the host and can "
                     "outlive the session")
    if features.get("cgroup"):
        notes.append(f"cgroup {features['cgroup']} per session: memory (memfd, SysV shm and "
                     "tmpfs pages included) and pids are limited for the whole session")
    else:
        notes.append("NO per-session cgroup ("
                     f"{features.get('cgroup_error') or 'the host could not delegate one'}): "
                     "memory is limited per process (RLIMIT_AS), so forked children, memfds "
                     "and shared memory add up beyond memory_mb")
    cpu_share = bool(features.get("cpu_share")) and not cpu_reason
    if cpu_share:
        notes.append(f"CPU share per session (cgroup {features.get('cgroup')} "
                     f"{features['cpu_share']}): a session's cgroup has the default weight "
                     "while it runs a call and the minimum between calls, so processes a cell "
                     "leaves running in the background get only CPU time no running call "
                     "wants, and running calls share the CPU fairly however many processes "
                     "each starts")
    else:
        why = (cpu_reason or features.get("cpu_error") or features.get("cgroup_error")
               or "the host could not delegate a cpu cgroup")
        notes.append(f"NO CPU share per session ({why}): a process a cell leaves running "
                     "keeps competing for the CPU with other sessions' calls until its "
                     "session ends")
    if features.get("scratch_quota"):
        notes.append("scratch quota: /tmp, /dev/shm, /var/tmp and the scratch dir are one "
                     "private size-limited tmpfs per session, freed with it")
    else:
        notes.append("NO scratch quota: the scratch dir is on the host filesystem (bounded "
                     "only by RLIMIT_FSIZE per file)")
    if features.get("net_shared"):
        notes.append("network: the sandbox's sessions share one network namespace with no "
                     "interfaces up (no IP at all; they could only meet over abstract Unix "
                     "sockets)")
    elif features.get("net_outer"):
        notes.append("network: the jail has its own network namespace with no interfaces")
    elif features.get("net_ns"):
        notes.append("network namespace per session with no interface up: no route to the "
                     "host, the network or other sessions (127.0.0.1 and abstract Unix "
                     "sockets included)")
    else:
        notes.append("NO network isolation: the kernel refused a network namespace")
    if features.get("keeper") == "c":
        notes.append("keeper: the C relay (ae-keeper, exec'd after the handover, not "
                     "dumpable, holding only the host connection and the cell's channel)")
    elif features.get("keeper"):
        notes.append("keeper: the Python fallback (same protocol and checks, a CPython "
                     "process's memory per session): "
                     f"{features.get('keeper_error') or 'no C keeper'}")
    if jail is None and features.get("ro_root"):
        jail = ("filesystem jail (own mount namespace): the host is read-only, home dirs, "
                "/run (host sockets), the checkout and the current directory are hidden, "
                "/tmp and /dev/shm are private")
    if jail is None:
        notes.append("no filesystem jail: world-readable host files (e.g. under /tmp, /etc) "
                     "are readable and world-writable dirs (/tmp) are writable")
    else:
        notes.append(jail)
    return Protections(
        rlimits=True, process_group_kill=True, user_namespace=user_ns,
        pid_namespace=bool(features.get("pid_ns")),
        network_namespace=bool(features.get("net_ns") or features.get("net_shared")
                               or features.get("net_outer")),
        mount_namespace=bool(features.get("mount_ns")) or jail is not None,
        readonly_root=jail is not None, scrubbed_env=True, private_scratch=True,
        cpu_share=cpu_share, notes=tuple(notes))


def hidden_trees() -> list[str]:
    """Host trees a local session does not see: home dirs, /run (host sockets), /mnt, /media,
    /srv, and the checkout this package runs from and the current directory."""
    out = ["/home", "/root", "/run", "/mnt", "/media", "/srv", "/var/lib/docker",
           str(Path(__file__).resolve().parents[1]), os.getcwd()]
    seen: list[str] = []
    for p in out:
        real = os.path.realpath(p)
        if real != "/" and os.path.isdir(real) and real not in seen:
            seen.append(real)
    # A tree inside another hidden tree (the current directory inside the checkout) is hidden
    # with it; mounting over it as well would fail, as it no longer exists under the cover.
    return [p for p in seen if not any(p.startswith(q.rstrip("/") + "/") for q in seen)]


class LocalSandbox(ZygoteSandbox):
    """Sessions forked from a zygote running directly on this machine.

    Args:
        limits: Limits for every session.
        preimports: Modules imported once in the zygote (e.g. ``("numpy",)``).
        startup_timeout_s: How long to wait for the zygote to start.
        python: Interpreter for the zygote (default: this one, so its packages import).
    """

    name = "local"
    host_pids = True

    def __init__(self, *, python: str | None = None, **kwargs: object) -> None:
        self.python = python or sys.executable
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def _launch(self, workdir: Path, server_args: Callable[[str, str], list[str]]) -> Launch:
        sock = str(workdir / "zygote.sock")
        argv = [self.python, "-I", str(SERVER_PATH), *server_args(sock, str(workdir / "scratch")),
                "--ro-root"]
        for path in hidden_trees():
            argv += ["--hide", path]
        return Launch(argv=argv, socket_path=sock, env=minimal_env())

    def protections(self) -> Protections:
        return describe_features(self.features, cpu_reason=self.cpu_reason)
