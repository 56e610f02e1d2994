"""Zygote server: a warm, pre-imported Python parent that forks one stateful session per request.

Stdlib only and importable from nothing else in the ``sandboxes`` package, so it can be
copied or bind-mounted into a container or a bubblewrap jail and run by path::

    python3 -I _zygote_server.py --socket DIR/zygote.sock --scratch-root DIR/scratch \
        [--preimport numpy --preimport sympy] [--watch-stdin]

When it listens it prints one JSON line on stdout, ``{"ready": true, "pid": ..., "features":
{...}}`` (or ``{"ready": false, "error": "..."}`` and exits 1).

Protocol. Every message is a frame: a 4-byte big-endian length, then that many bytes of UTF-8
JSON (an object). The first frame on a new connection to the socket decides what it is:

* ``{"op": "open", "sid": str | null, "limits": {...}}`` -- the zygote forks a session and hands
  it this connection. The session answers ``{"ok": true, "sid", "pid", "scratch"}`` when it is
  ready (``pid`` as seen by the zygote's PID namespace) or ``{"ok": false, "error"}``. Then the
  host sends ``{"op": "run", "code": str, "max_output": int}`` and gets back ``{"stdout",
  "stderr", "value", "error", "truncated"}`` for each cell. Closing the connection ends the
  session. Limits keys: ``cpu_s``, ``memory_mb``, ``max_procs``, ``max_file_mb``,
  ``max_output_bytes``, ``network``, ``nofile``.
* ``{"op": "control"}`` -- a control connection. Requests, each answered with one frame:
  ``{"op": "kill", "sid"}`` -> ``{"ok", "found"}`` kills the session's whole process tree
  (PID namespace init and process group) and deletes its scratch dir;
  ``{"op": "status", "sid", "wait_s"}`` -> ``{"ok", "alive", "exit_code", "signal", "cpu_s"}``,
  waiting up
  to ``wait_s`` for a dying session to be reaped; ``{"op": "ping"}`` -> ``{"ok", "sessions"}``;
  ``{"op": "shutdown"}`` kills every session and exits.

The zygote keeps ``--spares`` session processes pre-forked (namespaces made, /proc mounted) and
hands a new connection to one of them over a socketpair (SCM_RIGHTS), then forks a replacement
while idle. The host never has to signal a pid itself (it may live in another PID namespace); killing goes
through the control connection. Sessions: own session/process group (setsid), private scratch
dir as cwd and HOME (deleted when the session ends), scrubbed environment, rlimits set in the
child after fork, stdout/stderr captured at both the Python and the file-descriptor level into
bounded head+tail buffers. Where the kernel allows: a new PID, mount (private /proc) and network
namespace per session, and (when run as root) a distinct unprivileged uid per session so that
RLIMIT_NPROC is per session and sessions cannot signal each other or write to host files.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import ctypes
import fcntl
import importlib
import io
import json
import linecache
import os
import resource
import selectors
import shutil
import signal
import socket
import struct
import sys
import termios
import threading
import time
import traceback
import uuid

_HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS")
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 38, 36
UID_BASE = 200_000  # per-session uids when running as root: UID_BASE + n
SESSION_FD = 1000   # the session's connection is moved here, away from low fds user code touches


# ----------------------------------------------------------------------------- framing

def send_frame(sock: socket.socket, obj: dict) -> None:
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> dict:
    (n,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if n > MAX_FRAME:
        raise ValueError(f"frame of {n} bytes exceeds {MAX_FRAME}")
    return json.loads(_recv_exact(sock, n).decode("utf-8", "surrogatepass"))


# ----------------------------------------------------------------------------- kernel helpers

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def mount(src: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    _check(_libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0)), f"prctl({option})")


def drop_capabilities() -> None:
    """Clear effective/permitted/inheritable capability sets (capset v3)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.capset(header, data), "capset")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# ----------------------------------------------------------------------------- output capture

class BoundedBuffer:
    """Keeps the first and last ``limit // 2`` bytes written, and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = max(2, limit)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.lock = threading.Lock()

    def add(self, data: bytes) -> None:
        with self.lock:
            self.total += len(data)
            half = self.limit // 2
            room = half - len(self.head)
            if room > 0:
                self.head += data[:room]
                data = data[room:]
            if data:
                self.tail += data[-(self.limit - half):]
                if len(self.tail) > 2 * (self.limit - half):
                    del self.tail[: len(self.tail) - (self.limit - half)]

    def take(self) -> tuple[bytes, int]:
        """Return (kept bytes, total bytes written) and reset."""
        with self.lock:
            keep = self.limit - self.limit // 2
            tail = bytes(self.tail[-keep:]) if self.tail else b""
            out, total = bytes(self.head) + tail, self.total
            self.head, self.tail, self.total = bytearray(), bytearray(), 0
            return out, total


def shrink(data: bytes, total: int, limit: int) -> tuple[str, bool]:
    """Decode ``data`` (head+tail of ``total`` bytes), keeping at most ``limit`` bytes."""
    if total <= limit and len(data) == total:
        return data.decode("utf-8", "replace"), False
    if total <= len(data):  # nothing dropped yet, only too long for the shared budget
        head, tail = data[: limit // 2], data[len(data) - (limit - limit // 2):]
    else:
        half = len(data) // 2 if len(data) < 2 * (limit // 2) else None
        split = half if half is not None else len(data) - (len(data) - len(data) // 2)
        head, tail = data[:split], data[split:]
        head, tail = head[: limit // 2], tail[len(tail) - (limit - limit // 2):] if tail else b""
    dropped = total - len(head) - len(tail)
    text = (head.decode("utf-8", "replace") + f"\n[... {dropped} bytes truncated ...]\n"
            + tail.decode("utf-8", "replace"))
    return text, True


class TextCapture(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` replacement writing into a BoundedBuffer."""

    def __init__(self, buf: BoundedBuffer, fd: int) -> None:
        self._buf, self._fd = buf, fd

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self._buf.add(s.encode("utf-8", "replace"))
        return len(s)

    def flush(self) -> None:
        pass


class FdDrainer:
    """Points fd 1 and 2 at pipes drained by a thread, so subprocess and C output is captured."""

    def __init__(self, out: BoundedBuffer, err: BoundedBuffer) -> None:
        self.pairs = []
        for fd, buf in ((1, out), (2, err)):
            r, w = os.pipe()
            os.dup2(w, fd)
            os.close(w)
            os.set_blocking(r, False)
            self.pairs.append((r, buf))
        self.busy = threading.Lock()
        self.sel = selectors.DefaultSelector()
        for r, buf in self.pairs:
            self.sel.register(r, selectors.EVENT_READ, buf)
        threading.stack_size(256 * 1024)
        threading.Thread(target=self._loop, name="output-drainer", daemon=True).start()

    def _loop(self) -> None:
        while True:
            for key, _ in self.sel.select():
                with self.busy:
                    self._drain(key.fd, key.data)

    @staticmethod
    def _drain(fd: int, buf: BoundedBuffer) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            buf.add(chunk)

    def sync(self) -> None:
        """Wait until everything already written to the pipes has been read."""
        for _ in range(200):
            with self.busy:
                pending = 0
                for r, buf in self.pairs:
                    n = struct.unpack("i", fcntl.ioctl(r, termios.FIONREAD, b"\0\0\0\0"))[0]
                    if n:
                        self._drain(r, buf)
                    pending += n
                if not pending:
                    return


# ----------------------------------------------------------------------------- the session

class Cell:
    """Runs notebook cells in one namespace, capturing output."""

    def __init__(self, out: BoundedBuffer, err: BoundedBuffer, drainer: FdDrainer) -> None:
        self.ns = {"__name__": "__main__", "__builtins__": builtins}
        self.out, self.err, self.drainer = out, err, drainer
        self.count = 0
        self.pid = os.getpid()

    def run(self, code: str, max_output: int) -> dict:
        self.count += 1
        name = f"<cell-{self.count}>"
        value = error = None
        try:
            tree = ast.parse(code, filename=name, mode="exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            linecache.cache[name] = (len(code), None, code.splitlines(True), name)
            exec(compile(tree, name, "exec"), self.ns)  # noqa: S102 - running cells is the job
            if last is not None:
                result = eval(compile(last, name, "eval"), self.ns)
                if result is not None:
                    self.ns["_"] = result
                    value = repr(result)
        except SyntaxError as e:
            error = "".join(traceback.format_exception_only(type(e), e))
        except BaseException as e:  # noqa: BLE001 - the cell's exception is data
            error = _format_traceback(e)
        if os.getpid() != self.pid:
            os._exit(0)  # a child the cell forked (os.fork without exec) ends with the cell
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110 - a cell may leave a broken sys.stdout
                pass
        self.drainer.sync()
        out, out_total = self.out.take()
        err, err_total = self.err.take()
        # Share the budget: stderr keeps at most half unless stdout leaves room.
        err_budget = max(max_output - min(out_total, max_output // 2), 0)
        err_text, t2 = shrink(err, err_total, max(err_budget, 2)) if err_total else ("", False)
        out_budget = max(max_output - min(err_total, err_budget), 2)
        out_text, t1 = shrink(out, out_total, out_budget) if out_total else ("", False)
        truncated = t1 or t2
        if value is not None and len(value) > max_output:
            value, _ = shrink(value.encode("utf-8", "replace"), len(value.encode()), max_output)
            truncated = True
        return {"stdout": out_text, "stderr": err_text, "value": value, "error": error,
                "truncated": truncated}


def _format_traceback(e: BaseException, max_lines: int = 12) -> str:
    tb = e.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell-"):
        tb = tb.tb_next  # drop the server's own frames
    lines = "".join(traceback.format_exception(type(e), e, tb)).splitlines()
    if len(lines) > max_lines:
        lines = lines[:1] + ["  ..."] + lines[-(max_lines - 2):]
    return "\n".join(lines)


def _spare_main(gs: socket.socket, cfg: dict, mount_ns: bool) -> None:
    """A pre-forked session process: set up namespaces, then wait for a connection. No return."""
    try:
        pid = _outer_pid()  # before /proc is replaced by this namespace's
        os.setsid()
        if mount_ns:
            mount("none", "/", None, MS_REC | MS_PRIVATE)
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            if cfg["features"].get("uid_drop"):
                _reveal(cfg.get("reveals", {}))
        # Grow the fd table to SESSION_FD now, while single-threaded: growing it later, with
        # the output thread running, costs an RCU grace period (~10 ms) on the open path.
        os.dup2(gs.fileno(), SESSION_FD)
        cell = _prepare_cell()
        send_frame(gs, {"pid": pid})
        msg, fds, _, _ = socket.recv_fds(gs, 1 << 20, 1)
        if not fds:
            os._exit(0)  # the zygote went away
        req = json.loads(msg)
        fd = os.dup2(fds[0], SESSION_FD)
        os.close(fds[0])
        gs.close()
        conn = socket.socket(fileno=fd)
        conn.set_inheritable(False)
    except BaseException:  # noqa: BLE001
        os._exit(1)
    _session_main(conn, cell, req["sid"], req["limits"], cfg, req["uid"], req["scratch"], pid)


def _prepare_cell() -> Cell:
    """Output capture and a warmed-up cell runner, made before the session is assigned.

    Running a throwaway cell here takes the copy-on-write page faults of the first use off the
    ``open`` latency.
    """
    devnull = os.open(os.devnull, os.O_RDONLY)
    if devnull != 0:
        os.dup2(devnull, 0)
        os.close(devnull)
    out, err = BoundedBuffer(16384), BoundedBuffer(16384)
    drainer = FdDrainer(out, err)
    sys.stdout, sys.stderr = TextCapture(out, 1), TextCapture(err, 2)
    sys.stdin = open(os.devnull)  # noqa: SIM115
    cell = Cell(out, err, drainer)
    json.dumps(cell.run("print(1)\n(lambda: 1)()", 100))
    cell.count = 0
    cell.ns = {"__name__": "__main__", "__builtins__": builtins}
    return cell


def _session_setup(cell: Cell, sid: str, limits: dict, cfg: dict, uid: int | None,
                   scratch: str) -> Cell:
    feats = cfg["features"]
    cell.out.limit = cell.err.limit = max(2, limits["max_output_bytes"])
    os.mkdir(scratch, 0o700)
    if uid is not None:
        os.chown(scratch, uid, uid)
    os.chdir(scratch)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
           "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update({k: "1" for k in THREAD_VARS})
    os.environ.clear()
    os.environ.update(env)
    mb = 1024 * 1024
    rl = [(resource.RLIMIT_CPU, limits["cpu_s"], limits["cpu_s"] + 1),
          (resource.RLIMIT_AS, limits["memory_mb"] * mb, limits["memory_mb"] * mb),
          (resource.RLIMIT_FSIZE, limits["max_file_mb"] * mb, limits["max_file_mb"] * mb),
          (resource.RLIMIT_NOFILE, limits.get("nofile", 256), limits.get("nofile", 256)),
          (resource.RLIMIT_CORE, 0, 0)]
    if uid is not None or feats.get("user_ns"):
        # RLIMIT_NPROC counts per (user namespace, uid): only per-session with a private uid or
        # user namespace; otherwise it would count every process of the shared uid.
        rl.append((resource.RLIMIT_NPROC, limits["max_procs"], limits["max_procs"]))
    for which, soft, hard in rl:
        _, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        resource.setrlimit(which, (soft, hard))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    elif feats.get("user_ns"):
        drop_capabilities()
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    return cell


def python_reveals() -> dict[str, list[str]]:
    """Dirs the interpreter needs that a dropped uid cannot traverse (e.g. a pyenv under /root).

    Returns {blocking ancestor: [needed paths under it]}. Sessions mount a tmpfs over the
    ancestor (hiding the rest of it, e.g. root's home) and bind the needed paths back.
    """
    needed = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    needed.update(p for p in sys.path if p and os.path.isdir(p))
    out: dict[str, list[str]] = {}
    for path in sorted({os.path.realpath(p) for p in needed}):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            anc = "/" + "/".join(parts[:i])
            try:
                if not os.stat(anc).st_mode & 0o001:
                    keep = out.setdefault(anc, [])
                    if not any(path == k or path.startswith(k + "/") for k in keep):
                        keep[:] = [k for k in keep if not k.startswith(path + "/")] + [path]
                    break
            except OSError:
                break
    return out


def _reveal(reveals: dict[str, list[str]]) -> None:
    for hide, keeps in reveals.items():
        fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keeps]
        mount("tmpfs", hide, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
        for p, fd in zip(keeps, fds):
            os.makedirs(p, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
            os.close(fd)


def _outer_pid() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return os.getpid()


def _session_main(conn: socket.socket, cell: Cell, sid: str, limits: dict, cfg: dict,
                  uid: int | None, scratch: str, pid: int) -> None:
    """Runs in the forked session process; never returns."""
    code = 0
    try:
        try:
            cell = _session_setup(cell, sid, limits, cfg, uid, scratch)
        except Exception as e:  # noqa: BLE001
            send_frame(conn, {"ok": False, "error": f"session setup failed: {type(e).__name__}: {e}"})
            os._exit(1)
        send_frame(conn, {"ok": True, "sid": sid, "pid": pid, "scratch": scratch})
        max_default = limits["max_output_bytes"]
        while True:
            try:
                req = recv_frame(conn)
            except (EOFError, OSError, ValueError):
                break
            if req.get("op") == "run":
                resp = cell.run(str(req.get("code", "")), int(req.get("max_output") or max_default))
            else:
                resp = {"error": f"unknown op {req.get('op')!r}"}
            send_frame(conn, resp)
    except BaseException:  # noqa: BLE001
        code = 1
    os._exit(code)


# ----------------------------------------------------------------------------- the zygote

class Zygote:
    def __init__(self, args: argparse.Namespace) -> None:
        self.socket_path = args.socket
        self.scratch_root = args.scratch_root
        self.watch_stdin = args.watch_stdin
        self.is_root = os.geteuid() == 0
        self.sessions: dict[str, dict] = {}   # sid -> {"pid", "scratch", "uid"}
        self.by_pid: dict[int, str] = {}
        self.exits: dict[str, tuple[int | None, int | None, float]] = {}
        self.helpers: set[int] = set()
        self.next_uid = 0
        self.features: dict = {}
        self.reveals: dict[str, list[str]] = {}
        self.spares: list[tuple[int, socket.socket]] = []
        self.spare_target = args.spares
        self.pending_spares = 0

    # -- feature probe: try in a throwaway child what sessions will do
    def probe(self) -> dict:
        if self.is_root:
            # Root in a user namespace that maps only uid 0 cannot switch to other uids.
            self.is_root = self._try_child(lambda: (os.setgid(UID_BASE), os.setuid(UID_BASE)))
        attempts = []
        if self.is_root:
            attempts.append(("root", CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET))
        attempts.append(("userns", CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET))
        for mode, flags in attempts:
            if self._try_child(lambda m=mode, f=flags: self._enter_namespaces(m, f, probe=True)):
                return {"ns_mode": mode, "user_ns": mode == "userns", "pid_ns": True,
                        "mount_ns": True, "net_ns": True, "uid_drop": self.is_root}
        # Network namespace alone (e.g. pid namespaces forbidden).
        for mode, flags in ([("root", CLONE_NEWNET)] if self.is_root else []) + \
                [("userns", CLONE_NEWUSER | CLONE_NEWNET)]:
            if self._try_child(lambda m=mode, f=flags: self._enter_namespaces(m, f, probe=True)):
                return {"ns_mode": mode, "ns_flags": flags, "user_ns": mode == "userns",
                        "pid_ns": False, "mount_ns": False, "net_ns": True,
                        "uid_drop": self.is_root}
        return {"ns_mode": None, "user_ns": False, "pid_ns": False, "mount_ns": False,
                "net_ns": False, "uid_drop": self.is_root}

    @staticmethod
    def _try_child(fn) -> bool:
        pid = os.fork()
        if pid == 0:
            try:
                fn()
                os._exit(0)
            except BaseException:  # noqa: BLE001
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0

    def _enter_namespaces(self, mode: str, flags: int, probe: bool = False) -> None:
        uid, gid = os.getuid(), os.getgid()
        unshare(flags)
        if mode == "userns":
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        if probe and flags & CLONE_NEWPID:
            ok = self._try_child(lambda: (
                mount("none", "/", None, MS_REC | MS_PRIVATE),
                mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)))
            if not ok:
                raise OSError("cannot mount /proc in a new PID namespace")

    def ns_flags(self) -> int:
        f = self.features
        if "ns_flags" in f:
            return f["ns_flags"]
        flags = 0
        if f.get("pid_ns"):
            flags |= CLONE_NEWPID | CLONE_NEWNS
        if f.get("net_ns"):
            flags |= CLONE_NEWNET
        if f.get("user_ns"):
            flags |= CLONE_NEWUSER
        return flags

    # -- sessions
    def _fork_spare(self, flags: int) -> tuple[int, socket.socket]:
        """Fork a spare session process (it enters namespaces, mounts /proc, waits for work).

        Returns the forked pid and the zygote's end of a socketpair on which the spare first
        reports its pid and later receives its connection.
        """
        zs, gs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # ---- intermediate child C (becomes the session unless a PID ns is made)
            try:
                zs.close()
                self._child_reset(keep=gs.fileno())
                if flags:
                    self._enter_namespaces(self.features["ns_mode"], flags)
                if flags & CLONE_NEWPID and os.fork() != 0:
                    os._exit(0)  # C is done: the session G is PID 1 of the new namespace
            except BaseException:  # noqa: BLE001
                os._exit(1)
            _spare_main(gs, {"features": self.features, "reveals": self.reveals},
                        bool(flags & CLONE_NEWNS))
        gs.close()
        if flags & CLONE_NEWPID:
            self.helpers.add(pid)
        return pid, zs

    def _spawn(self, flags: int) -> tuple[int, socket.socket]:
        """Fork a spare and wait until it is ready; returns (session pid, socketpair end)."""
        _, zs = self._fork_spare(flags)
        zs.settimeout(10.0)
        try:
            gpid = int(recv_frame(zs)["pid"])
        except (OSError, EOFError, ValueError, KeyError) as e:
            zs.close()
            raise OSError(f"a new session process did not report in ({e})") from e
        zs.settimeout(None)
        return gpid, zs

    def refill(self) -> None:
        """Fork a spare without waiting for it; ``on_spare_ready`` adds it to ``spares``."""
        try:
            _, zs = self._fork_spare(self.ns_flags())
        except OSError as e:
            print(f"zygote: cannot pre-fork spare sessions, disabling them: {e}",
                  file=sys.stderr, flush=True)
            self.spare_target = 0
            return
        self.pending_spares += 1
        self.sel.register(zs, selectors.EVENT_READ, "spare")

    def on_spare_ready(self, zs: socket.socket) -> None:
        self.sel.unregister(zs)
        self.pending_spares -= 1
        try:
            zs.settimeout(5.0)
            gpid = int(recv_frame(zs)["pid"])
            zs.settimeout(None)
        except (OSError, EOFError, ValueError, KeyError) as e:
            zs.close()
            print(f"zygote: a spare session died before it was ready ({e}); disabling spares",
                  file=sys.stderr, flush=True)
            self.spare_target = 0
            return
        self.spares.append((gpid, zs))

    def open_session(self, conn: socket.socket, req: dict) -> None:
        sid = str(req.get("sid") or uuid.uuid4().hex[:12])
        if sid in self.sessions or not sid.replace("-", "").replace("_", "").isalnum():
            send_frame(conn, {"ok": False, "error": f"bad or duplicate session id {sid!r}"})
            return
        limits = dict(req.get("limits") or {})
        for key, default in (("cpu_s", 60), ("memory_mb", 2048), ("max_procs", 64),
                             ("max_file_mb", 64), ("max_output_bytes", 16384)):
            limits[key] = int(limits.get(key) or default)
        uid = None
        if self.features.get("uid_drop"):
            uid = UID_BASE + self.next_uid
            self.next_uid = (self.next_uid + 1) % 60_000
        scratch = os.path.join(self.scratch_root, sid)
        flags = self.ns_flags()
        if limits.get("network"):
            if self.features.get("net_shared"):
                send_frame(conn, {"ok": False, "error": "network=True sessions need a zygote "
                                  "started without --shared-netns"})
                return
            flags &= ~CLONE_NEWNET
        payload = json.dumps({"sid": sid, "limits": limits, "uid": uid,
                              "scratch": scratch}).encode()
        for _ in range(len(self.spares) + 1):
            if flags == self.ns_flags() and self.spares:
                gpid, zs = self.spares.pop(0)
            else:
                gpid, zs = self._spawn(flags)
            try:
                socket.send_fds(zs, [payload], [conn.fileno()])
                break
            except OSError:
                continue  # that spare died; try the next or a fresh one
            finally:
                zs.close()
        else:
            raise OSError("no session process could take the connection")
        conn.close()
        self.sessions[sid] = {"pid": gpid, "scratch": scratch, "uid": uid}
        self.by_pid[gpid] = sid

    def _child_reset(self, keep: int) -> None:
        signal.set_wakeup_fd(-1)
        os.close(self._wake_w)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        fds = [fobj.fd for fobj in self.sel.get_map().values()]
        fds += [zs.fileno() for _, zs in self.spares]
        for fd in fds:
            if fd != keep and fd > 2:  # 0-2 are replaced, never left free for a pipe to take
                try:
                    os.close(fd)
                except OSError:
                    pass
        try:
            os.close(self.sel.fileno())  # the zygote's epoll instance
        except OSError:
            pass

    def kill(self, sid: str) -> bool:
        info = self.sessions.get(sid)
        if info is None:
            return False
        pid = info["pid"]
        for fn in (os.kill, os.killpg):
            try:
                fn(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return True

    def reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.helpers.discard(pid)
            sid = self.by_pid.pop(pid, None)
            if sid is None:
                continue
            info = self.sessions.pop(sid)
            try:
                os.killpg(pid, signal.SIGKILL)  # leftovers in its process group
            except (ProcessLookupError, PermissionError):
                pass
            shutil.rmtree(info["scratch"], ignore_errors=True)
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            self.exits[sid] = (code, sig, round(usage.ru_utime + usage.ru_stime, 3))
            if len(self.exits) > 4096:
                self.exits.pop(next(iter(self.exits)))

    def status(self, sid: str, wait_s: float) -> dict:
        deadline = time.monotonic() + min(max(wait_s, 0.0), 5.0)
        while True:
            self.reap()
            if sid in self.exits:
                code, sig, cpu = self.exits[sid]
                return {"ok": True, "alive": False, "exit_code": code, "signal": sig,
                        "cpu_s": cpu}
            if sid not in self.sessions:
                return {"ok": True, "alive": False, "exit_code": None, "signal": None,
                        "unknown": True}
            if time.monotonic() >= deadline:
                return {"ok": True, "alive": True, "exit_code": None, "signal": None}
            time.sleep(0.002)

    def handle_control(self, conn: socket.socket) -> bool:
        try:
            req = recv_frame(conn)
        except (EOFError, OSError, ValueError):
            return False
        op = req.get("op")
        if op == "kill":
            resp = {"ok": True, "found": self.kill(str(req.get("sid")))}
        elif op == "status":
            resp = self.status(str(req.get("sid")), float(req.get("wait_s") or 0))
        elif op == "ping":
            self.reap()
            resp = {"ok": True, "sessions": sorted(self.sessions), "pid": os.getpid()}
        elif op == "shutdown":
            send_frame(conn, {"ok": True})
            raise SystemExit(0)
        else:
            resp = {"ok": False, "error": f"unknown control op {op!r}"}
        send_frame(conn, resp)
        return True

    def serve(self) -> None:
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        os.makedirs(self.scratch_root, exist_ok=True)
        os.chmod(self.scratch_root, 0o711)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        listener.listen(256)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
        signal.set_wakeup_fd(wake_w)
        self.sel = sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, "listen")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        if self.watch_stdin:
            sel.register(0, selectors.EVENT_READ, "stdin")
        self._wake_w = wake_w
        print(json.dumps({"ready": True, "pid": os.getpid(), "features": self.features,
                          "python": sys.version.split()[0]}), flush=True)
        try:
            while True:
                need = len(self.spares) + self.pending_spares < self.spare_target
                events = sel.select(0.0 if need else None)
                if not events and need:
                    self.refill()
                    continue
                for key, _ in events:
                    tag = key.data
                    if tag == "spare":
                        self.on_spare_ready(key.fileobj)
                    elif tag == "listen":
                        conn, _ = listener.accept()
                        self._on_connect(conn)
                    elif tag == "wake":
                        try:
                            while os.read(wake_r, 512):
                                pass
                        except BlockingIOError:
                            pass
                        self.reap()
                    elif tag == "stdin":
                        if not os.read(0, 4096):
                            return
                    else:
                        if not self.handle_control(key.fileobj):
                            sel.unregister(key.fileobj)
                            key.fileobj.close()
        finally:
            self.shutdown()

    def _on_connect(self, conn: socket.socket) -> None:
        conn.settimeout(5.0)
        try:
            req = recv_frame(conn)
        except (EOFError, OSError, ValueError):
            conn.close()
            return
        conn.settimeout(None)
        op = req.get("op")
        if op == "open":
            try:
                self.open_session(conn, req)
            except OSError as e:
                try:
                    send_frame(conn, {"ok": False, "error": f"fork failed: {e}"})
                except OSError:
                    pass
                conn.close()
        elif op == "control":
            send_frame(conn, {"ok": True, "pid": os.getpid()})
            self.sel.register(conn, selectors.EVENT_READ, "control")
        else:
            send_frame(conn, {"ok": False, "error": f"unknown first op {op!r}"})
            conn.close()

    def shutdown(self) -> None:
        for pid, zs in self.spares:
            zs.close()
            for fn in (os.kill, os.killpg):
                try:
                    fn(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.spares.clear()
        for sid in list(self.sessions):
            self.kill(sid)
        deadline = time.monotonic() + 2.0
        while self.sessions and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.005)
        for info in self.sessions.values():
            shutil.rmtree(info["scratch"], ignore_errors=True)
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--socket", required=True, help="Unix socket path to listen on")
    p.add_argument("--scratch-root", required=True, help="directory for session scratch dirs")
    p.add_argument("--preimport", action="append", default=[], help="module to import warm")
    p.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches EOF")
    p.add_argument("--no-namespaces", action="store_true", help="skip namespace isolation")
    p.add_argument("--skip-netns", action="store_true",
                   help="no per-session network namespace: the outer jail already has none")
    p.add_argument("--shared-netns", action="store_true",
                   help="put the zygote (and so every session) in one empty network namespace "
                        "instead of one per session")
    p.add_argument("--spares", type=int, default=2, help="pre-forked sessions kept ready")
    args = p.parse_args(argv)
    for var in THREAD_VARS:
        os.environ[var] = "1"
    z = Zygote(args)
    try:
        for name in args.preimport:
            importlib.import_module(name)
    except BaseException as e:  # noqa: BLE001
        print(json.dumps({"ready": False, "error": f"preimport {name!r} failed: "
                          f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    if os.geteuid() == 0 or not args.no_namespaces:
        try:
            prctl(PR_SET_CHILD_SUBREAPER, 1)
        except OSError:
            pass
    z.features = ({"ns_mode": None, "user_ns": False, "pid_ns": False, "mount_ns": False,
                   "net_ns": False, "uid_drop": z.is_root}
                  if args.no_namespaces else z.probe())
    if args.shared_netns and z.features.get("net_ns") and z.features.get("ns_mode") == "root":
        try:
            unshare(CLONE_NEWNET)  # one empty network namespace for all sessions: cheaper
            z.features.update(net_ns=False, net_shared=True)
        except OSError:
            pass
    if args.skip_netns and z.features.get("net_ns"):
        z.features.update(net_ns=False, net_outer=True)
        z.features.pop("ns_flags", None) if z.features.get("pid_ns") else None
    if z.features.get("uid_drop") and z.features.get("mount_ns"):
        z.reveals = python_reveals()
    import gc
    gc.collect()
    gc.freeze()  # keep the warm heap shared copy-on-write across forks
    try:
        z.serve()
    except SystemExit:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
