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
  ready (``pid`` as seen by the zygote's PID namespace) or ``{"ok": false, "error"}``. Limits
  keys: ``cpu_s``, ``memory_mb``, ``max_procs``, ``max_file_mb``, ``max_output_bytes``,
  ``network``, ``nofile``. After the hello the connection carries binary headers, so that the
  keeper (keeper.c) parses no JSON: each call is ``[len][max_output]`` (two 4-byte big-endian
  integers; ``max_output`` 0: the session's) and ``len`` bytes of UTF-8 code, answered by
  ``[len][kind]`` and ``len`` bytes: kind 0, the cell's result as the cell sent it (JSON
  ``{"stdout", "stderr", "value", "error", "truncated", "truncations"}``, which the host checks:
  anything else ends the session as ``malformed``); kind 1, the keeper's report
  ``{"died": {"exit_code", "signal", "cpu_s"} | {"malformed": str}}``, after which the session
  is gone. Closing the connection ends the session.
* ``{"op": "control"}`` -- a control connection. Requests, handled in order, each answered
  with one frame: ``{"op": "kill", "sid"}`` -> ``{"ok", "found"}`` kills the session's whole
  process tree (PID namespace init and process group; its scratch dir is deleted when it is
  reaped), and with ``"reply": false`` is not answered (the host's ``close``);
  ``{"op": "status", "sid", "wait_s"}`` -> ``{"ok", "alive", "exit_code", "signal", "cpu_s"}``,
  waiting up to ``wait_s`` for a dying session to be reaped; ``{"op": "ping"}`` -> ``{"ok",
  "sessions", "pid", "template"}`` (the fork template's pid, or null); ``{"op": "shutdown"}``
  kills every session and exits.

The zygote keeps ``--spares`` session processes pre-forked and fully prepared (namespaces,
/proc, scratch dir, environment, uid or capability drop, no_new_privs, a warm cell runner), so
``open`` only hands the connection to one over a socketpair (SCM_RIGHTS) and the session only
applies the request's rlimits before its hello. A replacement is forked once the session has
sent its hello and the zygote is idle (at once in a burst, when no spare is left). The host
never has to signal a pid itself (it may live in another PID namespace); killing goes through
the control connection. Sessions: own session/process group (setsid), private scratch
dir as cwd and HOME (deleted when the session ends), scrubbed environment, rlimits set in the
child after fork, stdout/stderr captured at both the Python and the file-descriptor level into
bounded head+tail buffers. Where the kernel allows: a new PID, mount (private /proc), network
and IPC namespace per session, and (when run as root) a distinct unprivileged uid per session
(from the block ``--uid-base``/``--uid-count`` the host reserved) so that RLIMIT_NPROC is per
session and sessions cannot signal each other or write to host files.

Hardening (issue 14). Each session is two processes: the *keeper* (PID 1 of the session's
namespace, not dumpable) holds the host connection and relays; the *cell* runs the code and
can only write to its own channel to the keeper. The keeper numbers each call and checks the
frames the cell sends (at most 3 x max_output + CELL_FRAME_SLACK bytes, else the session ends;
another call's number: dropped) and the host checks the result itself (a JSON object, field
types, truncation markers), so nothing the code writes can shift later calls or pass for the
keeper's own reports (their kind is the keeper's to set). ``--scratch-mb`` gives each session
one size-limited tmpfs (scratch, /tmp, /dev/shm, /var/tmp) freed by the kernel with its mount
namespace; ``--cgroup`` dirs get a child cgroup per session (memory incl. shm/memfd/tmpfs,
pids); ``--ro-root``/``--hide`` make the host read-only and hide trees. The zygote's loop
survives any handler error, never walks a session's tree itself (leftovers go to a forked,
iterative, time-bounded cleaner), and kills through the PID namespace or the cgroup.

Memory (issue 24). A session's two processes share the zygote's warm heap copy-on-write; what
each costs is the pages it (or its parent, after the fork) writes. So the zygote runs what
sessions run once before it forks (``_rehearse``: CPython 3.11 rewrites code objects on their
first calls), does not import ``threading`` (its at-fork handler writes in every child), and
sessions are forked by a *fork template*, a copy of the zygote made when it starts that only
forks (the zygote's event loop writes hundreds of pages per open), whose allocator pools have
no free blocks left (``fill_pool_holes``: a child's objects go to fresh pages, packed). The
template's children are re-parented to the zygote, a child subreaper, which reaps them as
before; without a subreaper, or once the template is gone, the zygote forks sessions itself.
The keeper, once the session is handed over, execs a small C relay (``--keeper``, built by the
host from keeper.c; ``open_keeper``): a few tens of kB where the CPython keeper kept 1.6 MB
(benchmarks/sandbox_memory.py). Without it (no compiler, ``AGENT_ENVS_KEEPER=python``) the
Python keeper relays the same way; ``features["keeper"]`` says which.
"""

from __future__ import annotations

import _thread
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
import signal
import socket
import struct
import sys
import termios
import time
import traceback
import uuid

_HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
# A session's frames after its hello (see "Protocol"; keeper.c speaks the same):
RUN_HEADER = struct.Struct(">II")        # host -> keeper: [len][max_output], then the code
CELL_RUN_HEADER = struct.Struct(">III")  # keeper -> cell: [len][seq][max_output], then the code
CELL_RESULT_HEADER = struct.Struct(">II")  # cell -> keeper: [len][seq], then the JSON result
REPLY_HEADER = struct.Struct(">II")      # keeper -> host: [len][kind], then the payload
KIND_RESULT, KIND_REPORT = 0, 1          # a cell's result as it sent it; the keeper's report
KEEPER_NAME = "ae-keeper"                # the C keeper's argv[0] and comm
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS")
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
CLONE_NEWIPC = 0x08000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 4096, 16384, 1 << 18
MS_REMOUNT = 32
_SOCKET_PATH = ""  # the control socket (set at start): never revealed to sessions
_KEEPER_FD: int | None = None  # the C keeper binary (O_PATH), when the zygote has one
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 4, 38, 36
SYS_MOUNT_SETATTR = {"x86_64": 442, "aarch64": 442}.get(os.uname().machine)
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)
AT_RECURSIVE, MOUNT_ATTR_RDONLY = 0x8000, 0x1
UID_BASE = 200_000  # default per-session uids when running as root: UID_BASE + n (see --uid-base)
CLEANUP_BUDGET_S = 20.0  # a cleaner process gives up on a scratch dir after this long
CELL_FRAME_SLACK = 65536  # bytes a cell's result may exceed 3 x max_output (error text, JSON)
MAX_OUTPUT_CAP = 0xFFFFFFFF // 4  # the largest max_output on the wire (keeper.c: 3x fits u32)
SESSION_FD = 1000   # the session's connection is moved here, away from low fds user code touches
HANDOFF_WAIT_S = 0.05  # longest a handed-over session may hold back refilling the spares
REFILL_DELAY_S = 0.003  # after a handover, while a spare is still ready, refill this much later
CPU_KNOBS = ("cpu.shares", "cpu.weight")  # v1, v2: the session's CPU weight (set by the host)
CFS_PERIOD_US = 100_000
LISTEN_BACKLOG = 4096  # opens queued in the kernel while the zygote hands out sessions


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


def encode_result(result: dict, seq: int) -> bytes:
    """A cell's result as a frame to its keeper: [len][seq] and the result as JSON."""
    data = json.dumps(result, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return CELL_RESULT_HEADER.pack(len(data), seq) + data


# ----------------------------------------------------------------------------- kernel helpers

_libc = ctypes.CDLL(None, use_errno=True)
for _name in ("unshare", "setns", "mount", "prctl", "capset", "syscall"):
    getattr(_libc, _name)  # resolved (and cached) before the zygote forks, not in each session


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns({nstype:#x})")


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


def try_rmdir(path: str) -> bool:
    """Remove an empty (or missing) dir; False if it still has content."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def remove_tree(path: str, budget_s: float = CLEANUP_BUDGET_S) -> bool:
    """Delete ``path`` without recursion and within ``budget_s``; True when it is gone.

    Works relative to directory fds, so neither depth (a 1500-deep chain) nor path length
    matters: each pass unlinks the files two levels down and moves grandchild directories up
    to the top, so the tree flattens pass by pass while at most two fds are open.
    """
    deadline = time.monotonic() + budget_s
    if try_rmdir(path):
        return True
    try:
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        try:
            os.unlink(path)
        except OSError:
            pass
        return not os.path.lexists(path)
    moved = 0
    try:
        while time.monotonic() < deadline:
            with os.scandir(top) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            if not entries:
                break
            for name, is_dir in entries:
                if time.monotonic() >= deadline:
                    break
                if not is_dir:
                    try:
                        os.unlink(name, dir_fd=top)
                    except OSError:
                        pass
                    continue
                try:
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
                except OSError:
                    continue
                try:
                    os.chmod(sub, 0o700)  # a session may have made it unreadable
                except OSError:
                    pass
                try:
                    with os.scandir(sub) as it2:
                        for e in it2:
                            if time.monotonic() >= deadline:
                                break
                            try:
                                if e.is_dir(follow_symlinks=False):
                                    moved += 1
                                    os.rename(e.name, f".up{moved}", src_dir_fd=sub,
                                              dst_dir_fd=top)
                                else:
                                    os.unlink(e.name, dir_fd=sub)
                            except OSError:
                                pass
                finally:
                    os.close(sub)
                try:
                    os.rmdir(name, dir_fd=top)
                except OSError:
                    pass
    finally:
        os.close(top)
    return try_rmdir(path)


def _clean(scratch: str | None, cgroups: list[str], budget_s: float = CLEANUP_BUDGET_S) -> None:
    """In a cleaner process: kill what is left in the cgroups, then delete the scratch tree
    and the cgroups, all within ``budget_s``."""
    deadline = time.monotonic() + budget_s
    for cg in cgroups:
        while time.monotonic() < deadline:
            try:
                with open(os.path.join(cg, "cgroup.procs")) as f:
                    pids = [int(x) for x in f.read().split()]
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)
    if scratch is not None:
        remove_tree(scratch, max(deadline - time.monotonic(), 0.1))
    for cg in cgroups:
        while not try_rmdir(cg) and time.monotonic() < deadline:
            time.sleep(0.05)


def _cpu_only(d: str) -> bool:
    """A v1 cgroup dir of the cpu hierarchy alone (no memory or pids files)."""
    try:
        files = set(os.listdir(d))
    except OSError:
        return False
    return bool(files & set(CPU_KNOBS)) and not any(
        f.startswith(("memory.", "pids.")) for f in files)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# ----------------------------------------------------------------------------- output capture

_UTF8_CONT = bytes(range(0x80, 0xC0))


def count_chars(data: bytes) -> int:
    """Characters in UTF-8 ``data``: its bytes that do not continue a multi-byte sequence."""
    if data.isascii():
        return len(data)
    return len(data.translate(None, _UTF8_CONT))


class BoundedBuffer:
    """Keeps the first and last ``limit // 2`` bytes written, and counts all bytes and
    characters written."""

    def __init__(self, limit: int) -> None:
        self.limit = max(2, limit)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.chars = 0
        self.lock = _thread.allocate_lock()

    def add(self, data: bytes, chars: int | None = None) -> None:
        """Keep what fits of ``data``; ``chars`` is its length in characters when known."""
        with self.lock:
            self.total += len(data)
            self.chars += count_chars(data) if chars is None else chars
            half = self.limit // 2
            room = half - len(self.head)
            if room > 0:
                self.head += data[:room]
                data = data[room:]
            if data:
                self.tail += data[-(self.limit - half):]
                if len(self.tail) > 2 * (self.limit - half):
                    del self.tail[: len(self.tail) - (self.limit - half)]

    def take(self) -> tuple[bytes, bytes, int, int]:
        """Return (head, tail, total bytes, total characters written) and reset."""
        with self.lock:
            keep = self.limit - self.limit // 2
            tail = bytes(self.tail[-keep:]) if self.tail else b""
            out = bytes(self.head), tail, self.total, self.chars
            self.head, self.tail, self.total, self.chars = bytearray(), bytearray(), 0, 0
            return out


def _whole_chars(head: bytes, tail: bytes) -> tuple[bytes, bytes]:
    """``head`` without a character cut off at its end, ``tail`` without one cut off at its
    start, so the characters kept (and so the count of those dropped) are exact."""
    i = len(head)
    while i > max(len(head) - 4, 0) and 0x80 <= head[i - 1] < 0xC0:
        i -= 1
    if i > 0 and head[i - 1] >= 0xC0:  # a lead byte: is its sequence complete?
        need = 2 if head[i - 1] < 0xE0 else 3 if head[i - 1] < 0xF0 else 4
        head = head[: i - 1] if len(head) - (i - 1) < need else head
    j = 0
    while j < min(len(tail), 3) and 0x80 <= tail[j] < 0xC0:
        j += 1
    return head, tail[j:]


def shrink(head: bytes, tail: bytes, total: int, chars: int, limit: int
           ) -> tuple[str, list[int] | None]:
    """Decode ``head`` + ``tail`` (what a BoundedBuffer kept of ``total`` bytes, ``chars``
    characters), keeping at most ``limit`` bytes around a marker that gives the true count of
    characters left out.

    Returns:
        (text, None) when nothing was cut, else (text, [marker start, marker length,
        characters left out]) with the positions in characters of ``text``.
    """
    dropped = total - len(head) - len(tail)
    if not dropped and total <= limit:
        return (head + tail).decode("utf-8", "replace"), None
    if not dropped:  # all kept so far, only too long for the budget this stream got
        whole = head + tail
        head, tail = whole[: limit // 2], whole[len(whole) - (limit - limit // 2):]
    else:
        head = head[: limit // 2]
        tail = tail[len(tail) - (limit - limit // 2):] if limit - limit // 2 else b""
    head, tail = _whole_chars(head, tail)
    omitted = max(chars - count_chars(head) - count_chars(tail), 0)
    head_text = head.decode("utf-8", "replace")
    marker = f"\n[... {omitted} characters truncated ...]\n"
    return head_text + marker + tail.decode("utf-8", "replace"), \
        [len(head_text), len(marker), omitted]


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
        self._buf.add(s.encode("utf-8", "replace"), len(s))
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
        self.busy = _thread.allocate_lock()
        self.sel = selectors.DefaultSelector()
        for r, buf in self.pairs:
            self.sel.register(r, selectors.EVENT_READ, buf)
        # A bare thread: the zygote does not import threading, whose at-fork handler would
        # dirty a few hundred kB of every forked session's copy-on-write pages.
        _thread.stack_size(256 * 1024)
        _thread.start_new_thread(self._loop, ())

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
        *out, out_total, out_chars = self.out.take()
        *err, err_total, err_chars = self.err.take()
        # Share the budget: stderr keeps at most half unless stdout leaves room.
        err_budget = max(max_output - min(out_total, max_output // 2), 0)
        cuts = {}
        err_text, cuts["stderr"] = shrink(*err, err_total, err_chars, max(err_budget, 2)) \
            if err_total else ("", None)
        out_budget = max(max_output - min(err_total, err_budget), 2)
        out_text, cuts["stdout"] = shrink(*out, out_total, out_chars, out_budget) \
            if out_total else ("", None)
        if value is not None and len(value) > max_output // 4:  # else it fits for sure
            data = value.encode("utf-8", "replace")
            value, cuts["value"] = shrink(data, b"", len(data), len(value), max_output)
        cuts = {k: v for k, v in cuts.items() if v is not None}
        return {"stdout": out_text, "stderr": err_text, "value": value, "error": error,
                "truncated": bool(cuts), "truncations": cuts}


def _format_traceback(e: BaseException, max_lines: int = 12) -> str:
    tb = e.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell-"):
        tb = tb.tb_next  # drop the server's own frames
    lines = "".join(traceback.format_exception(type(e), e, tb)).splitlines()
    if len(lines) > max_lines:
        lines = lines[:1] + ["  ..."] + lines[-(max_lines - 2):]
    return "\n".join(lines)


def _spare_main(gs: socket.socket, cfg: dict, mount_ns: bool) -> None:
    """A pre-forked session process. No return.

    Everything that does not depend on the request is done before a connection is handed
    over, while the spare waits: cgroup, namespaces and filesystem jail (private /proc, /tmp,
    /dev/shm and scratch on a size-limited tmpfs), environment, the drop to the session's uid
    (or of capabilities), no_new_privs, a fresh session keyring, and the split into two
    processes: this one, the *keeper*, which alone will hold the host connection, and the
    *cell* process that runs the model's code and talks only to the keeper. The keeper is not
    dumpable, so the cell (same uid) can neither ptrace it nor take its fds: the channel
    results travel on is out of the code's reach (see ``_keeper_main``).
    """
    try:
        pid = _outer_pid()  # before /proc is replaced by this namespace's
        os.setsid()
        for cg in cfg.get("cgroups") or ():
            _write(os.path.join(cg, "cgroup.procs"), "0")
        if mount_ns:
            _jail(cfg)
        try:
            _session_identity(cfg["features"], cfg["uid"], cfg["scratch"])
        except Exception as e:  # noqa: BLE001 - reported to the zygote, which tells the host
            send_frame(gs, {"error": f"session setup failed: {type(e).__name__}: {e}"})
            os._exit(1)
        keep, chan = socket.socketpair()
        cpid = os.fork()
        if cpid == 0:
            keep.close()
            gs.close()
            if _KEEPER_FD is not None:  # inherited across fork (O_CLOEXEC only acts on exec)
                os.close(_KEEPER_FD)
            _cell_main(chan, cfg)
        chan.close()
        prctl(PR_SET_DUMPABLE, 0)
        # Grow the fd table to SESSION_FD now (cheap while the keeper has no threads).
        os.dup2(gs.fileno(), SESSION_FD)
        if recv_frame(keep).get("ready") is not True:
            os._exit(1)
        send_frame(gs, {"pid": pid})
        msg, fds, _, _ = socket.recv_fds(gs, 1 << 20, 1)
        if not fds:
            os._exit(0)  # the zygote went away
        req = json.loads(msg)
        fd = os.dup2(fds[0], SESSION_FD)
        os.close(fds[0])
        conn = socket.socket(fileno=fd)
        conn.set_inheritable(False)
    except BaseException:  # noqa: BLE001
        os._exit(1)
    _keeper_main(conn, gs, keep, cpid, req["sid"], req["limits"], cfg, pid)


def _jail(cfg: dict) -> None:
    """The session's mount namespace: private propagation, optionally a read-only host with
    sensitive trees hidden, a fresh /proc, and one size-limited tmpfs for /tmp, /dev/shm,
    /var/tmp and the scratch dir (the scratch quota; freed by the kernel with the namespace)."""
    jail = cfg.get("jail") or {}
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    reveals = dict(cfg.get("reveals") or {})
    if jail.get("ro_root"):
        mount_setattr_ro("/")
        for path in jail.get("hide") or ():
            if os.path.isdir(path) and not os.path.islink(path):
                reveals.setdefault(path, [])
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if reveals and (cfg["features"].get("uid_drop") or jail.get("ro_root")):
        _reveal(reveals, readonly=bool(jail.get("ro_root")))
    size = int(jail.get("scratch_mb") or 0)
    if size:
        opts = f"mode=1777,size={size}m,nr_inodes={max(1024, size * 256)}"
        scratch_parent = os.path.dirname(cfg["scratch"])
        private = ["/tmp"] if scratch_parent.startswith("/tmp/") else ["/tmp", scratch_parent]
        for target in private:
            os.makedirs(target, exist_ok=True)
            keeps = _interpreter_under(target, avoid=(cfg["scratch"],))
            fds = [os.open(k, os.O_PATH | os.O_DIRECTORY) for k in keeps]
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, opts)
            for k, fd in zip(keeps, fds):  # the interpreter stays where sys.executable says
                os.makedirs(k, exist_ok=True)
                mount(f"/proc/self/fd/{fd}", k, None, MS_BIND | MS_REC)
                os.close(fd)
                _read_only(k)
        for d in ("/dev/shm", "/var/tmp"):
            if os.path.isdir(d) and not os.path.islink(d):
                src = "/tmp/.private" + d
                os.makedirs(src, exist_ok=True)
                os.chmod(src, 0o1777)
                mount(src, d, None, MS_BIND)
        os.makedirs(scratch_parent, mode=0o711, exist_ok=True)


def _interpreter_under(target: str, avoid: tuple[str, ...] = ()) -> list[str]:
    """The interpreter's prefixes (e.g. a venv in a checkout under /tmp) that a private tmpfs
    on ``target`` would hide: sessions get them back read-only, so ``sys.executable`` runs
    (``subprocess.Popen([sys.executable, ...])``) and imports after the fork still resolve.
    Never a prefix holding the server's own dir, its control socket's or ``avoid``."""
    private = [os.path.realpath(os.path.dirname(os.path.abspath(__file__))),
               *(os.path.realpath(a) for a in avoid)]
    if _SOCKET_PATH:
        private.append(os.path.realpath(os.path.dirname(_SOCKET_PATH)))
    found = set()
    for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix):
        real = os.path.realpath(p)
        if (real.startswith(target.rstrip("/") + "/") and os.path.isdir(real)
                and not any(x == real or x.startswith(real + "/") for x in private)):
            found.add(real)
    return [p for p in sorted(found) if not any(p.startswith(q + "/") for q in found)]


def _read_only(path: str) -> None:
    """``path`` and the mounts under it read-only. mount_setattr changes that flag alone; the
    remount fallback keeps noexec where the source has it (a user namespace may not clear it)."""
    try:
        mount_setattr_ro(path)
    except OSError:
        keep = MS_NOEXEC if os.statvfs(path).f_flag & os.ST_NOEXEC else 0
        mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | keep)


def mount_setattr_ro(path: str) -> None:
    """Make ``path`` and every mount under it read-only in this mount namespace."""
    if SYS_MOUNT_SETATTR is None:
        raise OSError("mount_setattr: unknown syscall number on this architecture")
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)
    ret = _libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(-100),
                        ctypes.c_char_p(path.encode()), ctypes.c_uint(AT_RECURSIVE),
                        attr, ctypes.c_size_t(32))
    _check(ret, f"mount_setattr({path})")


def _cell_main(chan: socket.socket, cfg: dict) -> None:
    """The process that runs the model's code; talks only to the keeper. No return.

    It applies the rlimits of the spare's expected limits before it reports ready; a request
    with other limits sends them first, as call 0 (see ``_keeper_main``). Each call is a
    frame [len][seq][max_output] and the code; the result goes back as [len][seq] and JSON.
    """
    code = 0
    try:
        cell = _prepare_cell()
        if cfg.get("limits"):
            _session_limits(cell, cfg["limits"], cfg)
        send_frame(chan, {"ready": True})
        while True:
            try:
                n, seq, max_output = CELL_RUN_HEADER.unpack(
                    _recv_exact(chan, CELL_RUN_HEADER.size))
                payload = _recv_exact(chan, n)
            except (EOFError, OSError):
                break
            if seq == 0:  # not a call: the session's limits, from the Python keeper
                _session_limits(cell, json.loads(payload), cfg)  # raises -> the session ends
                continue
            resp = cell.run(payload.decode("utf-8", "surrogatepass"), max_output or 16384)
            chan.sendall(encode_result(resp, seq))
    except BaseException:  # noqa: BLE001
        code = 1
    os._exit(code)


class _Malformed(Exception):
    pass


def _await_result(chan: socket.socket, sel: selectors.BaseSelector, cell_pid: int, seq: int,
                  limit: int) -> bytes | None:
    """The payload of the cell's result for call ``seq``, as the cell sent it; None when the
    cell is gone. The Python keeper's twin of keeper.c's ``relay_call``.

    Frames of other calls (a late result after a forged one, or forged frames) are dropped,
    so a forged frame can never shift later calls. Raises _Malformed on a frame larger than
    ``limit``. What the payload holds is checked by the host (``_zygote_client``).
    """
    while True:
        if not sel.select(0.05):
            # Died? (peek without reaping: the keeper reports how it ended). A descendant
            # may still hold the cell's end of the channel, so EOF alone is not enough.
            if _reap_orphans(cell_pid):
                return None
            continue
        try:
            n, got = CELL_RESULT_HEADER.unpack(_recv_exact(chan, CELL_RESULT_HEADER.size))
            if n > limit:
                raise _Malformed(f"a result frame of {n} bytes (at most {limit} allowed)")
            payload = _recv_exact(chan, n)
        except (EOFError, OSError):
            return None
        if got == seq:
            return payload


def check_result(resp: object) -> tuple[dict | None, str | None]:
    """A cell's result payload (decoded JSON), checked: (the result with every field of its
    type, None) or (None, what is wrong with it). Run by the host on every result."""
    if not isinstance(resp, dict):
        return None, f"a result frame that is a JSON {type(resp).__name__}, not an object"
    out = {}
    for key, (types, default) in _RESULT_FIELDS.items():
        value = resp.get(key, default)
        if not isinstance(value, types):
            return None, f"a result frame whose {key!r} is a {type(value).__name__}"
        out[key] = value
    problem = check_truncations(resp.get("truncations"), out)
    if problem is not None:
        return None, f"a result frame whose 'truncations' {problem}"
    out["truncations"] = resp.get("truncations") or {}
    return out, None


_RESULT_FIELDS = {"stdout": (str, ""), "stderr": (str, ""), "value": ((str, type(None)), None),
                  "error": ((str, type(None)), None), "truncated": (bool, False)}


def check_truncations(cuts: object, result: dict) -> str | None:
    """None when ``cuts`` is a valid ``truncations`` object for ``result`` (the part name ->
    [marker start, marker length, characters left out], each marker inside its part), else
    what is wrong with it."""
    if cuts is None:
        return None
    if not isinstance(cuts, dict):
        return f"is a {type(cuts).__name__}, not an object"
    for part, cut in cuts.items():
        if part not in ("stdout", "stderr", "value") or not isinstance(result.get(part), str):
            return f"names {str(part)[:20]!r}, which is not a text part of the result"
        if not (isinstance(cut, list) and len(cut) == 3
                and all(type(x) is int and x >= 0 for x in cut)):
            return f"has {str(cut)[:40]!r} for {part!r}, not three counts"
        if cut[0] + cut[1] > len(result[part]):
            return f"points past the end of {part!r}"
    return None


def _reap_orphans(cell_pid: int) -> bool:
    """Reap exited orphans re-parented to the keeper (the session's init), so their zombies do
    not use up the session's pids limit; True once the cell itself has exited (not reaped)."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        if info is None:
            return False
        if info.si_pid == cell_pid:
            return True
        try:
            os.waitpid(info.si_pid, 0)
        except ChildProcessError:
            pass


def _keeper_main(conn: socket.socket, gs: socket.socket, chan: socket.socket, cell_pid: int,
                 sid: str, limits: dict, cfg: dict, pid: int) -> None:
    """Runs in the keeper once it has its connection; never returns.

    It sends the cell the request's limits (when the spare was prepared for others) and the
    host its hello, ends the handover, and then execs the C keeper (keeper.c) when the zygote
    has one: the relay that does the rest for a few tens of kB instead of this CPython heap.
    The exec comes before any call is relayed, so the cell has run no model code while the
    new program is still dumpable (it makes itself not dumpable first thing). Without the C
    keeper (or if the exec fails), this process relays, the same way (``_keeper_loop``).
    """
    try:
        if limits != cfg.get("limits"):  # not what the spare prepared for: no wait needed,
            data = json.dumps(limits).encode()  # the cell applies them first (call 0)
            chan.sendall(CELL_RUN_HEADER.pack(len(data), 0, 0) + data)
        send_frame(conn, {"ok": True, "sid": sid, "pid": pid, "scratch": cfg["scratch"],
                          "cgroup": cfg["token"] if cfg.get("cgroups") else None})
        gs.close()  # tells the zygote the handover is over (it refills spares after that)
    except BaseException:  # noqa: BLE001 - the session ends
        _end_session(conn, cell_pid, None, False)
    max_default = int(limits["max_output_bytes"])
    if _KEEPER_FD is not None:
        try:
            os.set_inheritable(conn.fileno(), True)
            os.set_inheritable(chan.fileno(), True)
            os.execve(_KEEPER_FD, [KEEPER_NAME, str(conn.fileno()), str(chan.fileno()),
                                   str(cell_pid), str(max_default)], {})
        except OSError:  # e.g. the session's uid may not execute it: relay in Python
            os.set_inheritable(conn.fileno(), False)
            os.set_inheritable(chan.fileno(), False)
    _keeper_loop(conn, chan, cell_pid, max_default)


def _keeper_loop(conn: socket.socket, chan: socket.socket, cell_pid: int, max_default: int
                 ) -> None:
    """The Python keeper's relay; never returns. Speaks what keeper.c speaks (see there):
    each call goes to the cell numbered, the cell's result for that number (size-checked)
    goes to the host unchanged, frames of other numbers are dropped; a frame too large ends
    the session with a ``malformed`` report; when the cell dies, a ``died`` report with its
    exit code, signal and CPU seconds."""
    died: dict | None = None
    seq = 0
    try:
        sel = selectors.PollSelector() if hasattr(selectors, "PollSelector") else \
            selectors.DefaultSelector()
        sel.register(chan, selectors.EVENT_READ)
        while True:
            try:
                n, max_output = RUN_HEADER.unpack(_recv_exact(conn, RUN_HEADER.size))
                if n > MAX_FRAME:
                    break  # not our host
                code = _recv_exact(conn, n)
            except (EOFError, OSError):
                break
            seq += 1
            max_output = min(max_output or max_default, MAX_OUTPUT_CAP)
            try:
                chan.sendall(CELL_RUN_HEADER.pack(n, seq, max_output) + code)
                payload = _await_result(chan, sel, cell_pid, seq,
                                        3 * max_output + CELL_FRAME_SLACK)
            except _Malformed as e:
                died = {"malformed": f"the session's runner sent {e}"}
                break
            except OSError:
                payload = None
            if payload is None:
                break
            conn.sendall(REPLY_HEADER.pack(len(payload), KIND_RESULT) + payload)
            _reap_orphans(cell_pid)
    except BaseException:  # noqa: BLE001, S110 - the session ends either way
        pass
    _end_session(conn, cell_pid, died, bool(seq))


def _end_session(conn: socket.socket, cell_pid: int, died: dict | None, called: bool) -> None:
    """Kill the cell and, when a call was made (or the cell broke the protocol), tell the
    host how it ended. No return: this process's exit ends the session's PID namespace."""
    try:
        os.kill(cell_pid, signal.SIGKILL)
    except OSError:
        pass
    if died or called:
        try:
            _, status, usage = os.wait4(cell_pid, 0)
            if not died:
                died = {"exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}
            data = json.dumps({"died": died}).encode()
            conn.sendall(REPLY_HEADER.pack(len(data), KIND_REPORT) + data)
        except (OSError, ChildProcessError):
            pass
    os._exit(0)


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


def _session_identity(feats: dict, uid: int | None, scratch: str) -> None:
    """Scratch dir (cwd and HOME), scrubbed environment, uid or capability drop, no_new_privs,
    and a fresh session keyring with the uid's user keyrings emptied.

    Runs in a spare before it is handed a connection, while it is still single-threaded.
    """
    os.mkdir(scratch, 0o700)
    if uid is not None:
        os.chown(scratch, uid, uid)
    os.chdir(scratch)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
           "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}
    env.update({k: "1" for k in THREAD_VARS})
    os.environ.clear()
    os.environ.update(env)
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        _fresh_keyrings()
    elif feats.get("user_ns"):
        drop_capabilities()
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def _fresh_keyrings() -> None:
    """A new anonymous session keyring, and the uid's user keyrings cleared (best effort:
    keyctl may be filtered, e.g. by a container's seccomp profile)."""
    if SYS_KEYCTL is None:
        return
    keyctl = _libc.syscall
    KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_CLEAR = 1, 7
    KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -4, -5
    keyctl(ctypes.c_long(SYS_KEYCTL), ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING),
           ctypes.c_char_p(None))
    for ring in (KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING):
        keyctl(ctypes.c_long(SYS_KEYCTL), ctypes.c_int(KEYCTL_CLEAR), ctypes.c_int(ring))


def _session_limits(cell: Cell, limits: dict, cfg: dict) -> None:
    """The request's rlimits (only lowered: the spare already runs as the session's uid)."""
    feats, uid = cfg["features"], cfg["uid"]
    cell.out.limit = cell.err.limit = max(2, limits["max_output_bytes"])
    mb = 1024 * 1024
    rl = [(resource.RLIMIT_CPU, limits["cpu_s"], limits["cpu_s"] + 1),
          (resource.RLIMIT_AS, limits["memory_mb"] * mb, limits["memory_mb"] * mb),
          (resource.RLIMIT_FSIZE, limits["max_file_mb"] * mb, limits["max_file_mb"] * mb),
          (resource.RLIMIT_NOFILE, limits.get("nofile", 256), limits.get("nofile", 256)),
          (resource.RLIMIT_CORE, 0, 0)]
    if uid is not None or feats.get("user_ns"):
        # RLIMIT_NPROC counts per (user namespace, uid): only per-session with a private uid or
        # user namespace; otherwise it would count every process of the shared uid. The
        # keeper counts as one more process of the uid.
        rl.append((resource.RLIMIT_NPROC, limits["max_procs"] + 1, limits["max_procs"] + 1))
    for which, soft, hard in rl:
        _, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        resource.setrlimit(which, (soft, hard))


def python_reveals(under: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Dirs the interpreter needs that a dropped uid cannot traverse (e.g. a pyenv under /root)
    or that lie in a tree the jail hides (``under``, e.g. a checkout holding the venv).

    Returns {ancestor to hide: [needed paths under it]}. Sessions mount a tmpfs over the
    ancestor (hiding the rest of it, e.g. root's home) and bind the needed paths back.
    """
    needed = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    needed.update(p for p in sys.path if p and os.path.isdir(p))
    needed.discard(os.path.dirname(os.path.abspath(__file__)))  # the server's own dir
    hidden = [os.path.realpath(h) for h in under if os.path.isdir(h)]
    out: dict[str, list[str]] = {}
    for path in sorted({os.path.realpath(p) for p in needed}):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            anc = "/" + "/".join(parts[:i])
            try:
                blocked = anc in hidden or not os.stat(anc).st_mode & 0o001
            except OSError:
                break
            if blocked:
                keep = out.setdefault(anc, [])
                if not any(path == k or path.startswith(k + "/") for k in keep):
                    keep[:] = [k for k in keep if not k.startswith(path + "/")] + [path]
                break
    return out


def _reveal(reveals: dict[str, list[str]], readonly: bool = False) -> None:
    for hide, keeps in sorted(reveals.items()):
        fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keeps]
        mount("tmpfs", hide, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
        for p, fd in zip(keeps, fds):
            os.makedirs(p, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
            os.close(fd)
        if readonly:
            mount_setattr_ro(hide)


def _outer_pid() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return os.getpid()



# ----------------------------------------------------------------------------- the zygote

class Spare:
    """A pre-forked session process, before it is handed a connection."""

    __slots__ = ("cgroups", "pid", "scratch", "token", "uid", "zs")

    def __init__(self, token: str, scratch: str, uid: int | None) -> None:
        self.token, self.scratch, self.uid = token, scratch, uid
        self.cgroups: list[str] = []
        self.pid: int | None = None  # in the zygote's PID namespace; None once reaped
        self.zs: socket.socket | None = None


class Zygote:
    def __init__(self, args: argparse.Namespace) -> None:
        self.socket_path = args.socket
        global _SOCKET_PATH
        _SOCKET_PATH = args.socket
        self.scratch_root = args.scratch_root
        self.watch_stdin = args.watch_stdin
        self.is_root = os.geteuid() == 0
        self.sessions: dict[str, dict] = {}   # sid -> {"pid", "scratch", "uid"}
        self.by_pid: dict[int, str] = {}
        self.exits: dict[str, tuple[int | None, int | None, float]] = {}
        self.helpers: set[int] = set()
        self.next_uid = 0
        self.uid_base, self.uid_count = args.uid_base, max(1, args.uid_count)
        self.cgroup_dirs: list[str] = list(args.cgroup or [])
        self.cgroup_version = args.cgroup_version
        self.cg_limits = {"memory_mb": args.memory_mb, "max_procs": args.max_procs}
        self.cpu_cores = float(args.cpu_cores or 0)
        self.backlog = max(1, args.backlog)
        self.jail = {"ro_root": args.ro_root, "hide": list(args.hide or []),
                     "scratch_mb": args.scratch_mb}
        self.features: dict = {}
        self.reveals: dict[str, list[str]] = {}
        self.spares: list[Spare] = []                  # ready, waiting for a connection
        self.pending: dict[socket.socket, Spare] = {}  # forked, not reported in yet
        self.spare_pids: dict[int, Spare] = {}  # spares (ready or pending) by known pid
        self.handoffs: dict[socket.socket, float] = {}  # handed over, hello not sent: deadline
        self.spare_target = args.spares
        self.refill_after = 0.0
        self.pidns_fd: int | None = None  # this process's PID namespace, when forking direct
        self.inflight: int | None = None  # fd of the connection open_session is handling
        self.late_cgroups: dict[int, list[str]] = {}  # discarded spare pid -> its cgroups
        self.spare_limits: dict | None = None  # limits of the last open: spares pre-apply them
        self.subreaper = False  # whether orphaned descendants are re-parented to this process
        self.use_template = not args.no_fork_template
        self.template: socket.socket | None = None  # the fork template's socket, when it runs
        self.template_pid: int | None = None

    # -- feature probe: try in a throwaway child what sessions will do
    def probe(self) -> dict:
        if self.is_root:
            # Root in a user namespace that maps only uid 0 cannot switch to other uids.
            self.is_root = self._try_child(lambda: (os.setgid(UID_BASE), os.setuid(UID_BASE)))
        attempts = []
        full = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC
        if self.is_root:
            attempts.append(("root", full))
        attempts.append(("userns", CLONE_NEWUSER | full))
        for mode, flags in attempts:
            if self._try_child(lambda m=mode, f=flags: self._enter_namespaces(m, f, probe=True)):
                feats = {"ns_mode": mode, "user_ns": mode == "userns", "pid_ns": True,
                         "mount_ns": True, "net_ns": True, "ipc_ns": True,
                         "uid_drop": self.is_root,
                         "pid_direct": mode == "root" and self._try_child(self._probe_direct)}
                feats.update(self._probe_jail())
                return feats
        # Network namespace alone (e.g. pid namespaces forbidden).
        for mode, flags in ([("root", CLONE_NEWNET)] if self.is_root else []) + \
                [("userns", CLONE_NEWUSER | CLONE_NEWNET)]:
            if self._try_child(lambda m=mode, f=flags: self._enter_namespaces(m, f, probe=True)):
                return {"ns_mode": mode, "ns_flags": flags, "user_ns": mode == "userns",
                        "pid_ns": False, "mount_ns": False, "net_ns": True,
                        "uid_drop": self.is_root}
        return {"ns_mode": None, "user_ns": False, "pid_ns": False, "mount_ns": False,
                "net_ns": False, "uid_drop": self.is_root}

    def _probe_jail(self) -> dict:
        """Which parts of the session filesystem jail the kernel allows (tried in a child)."""
        def tmpfs() -> None:
            unshare(CLONE_NEWNS)
            mount("none", "/", None, MS_REC | MS_PRIVATE)
            mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=64")

        def ro_root() -> None:
            unshare(CLONE_NEWNS)
            mount("none", "/", None, MS_REC | MS_PRIVATE)
            mount_setattr_ro("/")

        out = {"scratch_quota": bool(self.jail["scratch_mb"]) and self._try_child(tmpfs)}
        if self.jail["ro_root"]:
            out["ro_root"] = self._try_child(ro_root)
        return out

    def _probe_cgroups(self) -> None:
        """Keep the delegated cgroup dirs only if a child cgroup can be made and joined."""
        if not self.cgroup_dirs:
            return

        def join() -> None:
            for d in made:
                _write(os.path.join(d, "cgroup.procs"), "0")

        def attempt(dirs: list[str]) -> str | None:
            """None when a child joins a probe cgroup in each of ``dirs``, else why not."""
            made.clear()
            try:
                for d in dirs:
                    path = os.path.join(d, "probe")
                    os.mkdir(path)
                    made.append(path)
                if not self._try_child(join):
                    return "a process could not join a child cgroup"
                knobs = {f for path in made for f in os.listdir(path)} & set(CPU_KNOBS)
                if knobs:
                    self.features["cpu_share"] = min(knobs)
                return None
            except OSError as e:
                return f"{type(e).__name__}: {e}"
            finally:
                for path in made:
                    try_rmdir(path)

        made: list[str] = []
        error = attempt(self.cgroup_dirs)
        if error is not None:
            # A v1 cpu hierarchy is optional: keep memory and pids without it.
            rest = [d for d in self.cgroup_dirs if not _cpu_only(d)]
            if len(rest) < len(self.cgroup_dirs) and attempt(rest) is None:
                self.features["cpu_error"] = error
                self.features.pop("cpu_share", None)
                self.cgroup_dirs = rest
                error = None
        if error is None:
            self.features["cgroup"] = f"v{self.cgroup_version}"
            if "cpu_share" not in self.features:
                self.features.setdefault("cpu_error", "no cpu controller in the delegated "
                                         "cgroups")
        else:
            self.features["cgroup_error"] = error
            self.cgroup_dirs = []

    def _session_cgroups(self, token: str) -> list[str]:
        """Make the session's cgroups (memory incl. tmpfs/shm/memfd, and pids) with limits."""
        out = []
        for d in self.cgroup_dirs:
            path = os.path.join(d, token)
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            out.append(path)
        self._cgroup_limits(out, self.cg_limits)
        return out

    def _cgroup_limits(self, paths: list[str], limits: dict) -> None:
        mem = int(limits["memory_mb"]) * 1024 * 1024
        pids = int(limits["max_procs"]) + 4  # keeper, cell, its output thread, slack
        for path in paths:
            files = os.listdir(path)
            if self.cgroup_version == 2:
                writes = [("memory.max", mem), ("memory.swap.max", 0), ("pids.max", pids)]
            else:
                # v1 wants memory <= memory+swap at every step: raising needs memsw first,
                # lowering needs memory first; the first memsw write may fail either way.
                if "memory.memsw.limit_in_bytes" in files:
                    try:
                        _write(os.path.join(path, "memory.memsw.limit_in_bytes"), str(mem))
                    except OSError:
                        pass
                writes = [("memory.limit_in_bytes", mem), ("memory.memsw.limit_in_bytes", mem),
                          ("pids.max", pids)]
            if self.cpu_cores > 0:  # a cap on the cores one session may use at once
                quota = max(1000, int(self.cpu_cores * CFS_PERIOD_US))
                writes += [("cpu.max", f"{quota} {CFS_PERIOD_US}"),
                           ("cpu.cfs_period_us", CFS_PERIOD_US), ("cpu.cfs_quota_us", quota)]
            for name, value in writes:
                if name in files:
                    _write(os.path.join(path, name), str(value))

    @staticmethod
    def _probe_direct() -> None:
        """Can this process fork straight into a new PID namespace and then set its children's
        PID namespace back to its own (see ``_fork_spare``)? Raises if not."""
        own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        unshare(CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if os.getpid() == 1 else 1)
        setns(own, CLONE_NEWPID)
        _, status = os.waitpid(pid, 0)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            raise OSError("the child was not PID 1 of a new PID namespace")
        pid = os.fork()
        if pid == 0:
            os._exit(0 if os.getpid() != 1 else 1)
        _, status = os.waitpid(pid, 0)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            raise OSError("setns did not restore the PID namespace for children")

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
        if f.get("ipc_ns"):
            flags |= CLONE_NEWIPC
        if f.get("user_ns"):
            flags |= CLONE_NEWUSER
        return flags

    def open_keeper(self, path: str | None) -> None:
        """Open the C keeper binary that sessions' keepers exec, if it runs here; set
        ``features["keeper"]`` ("c" or "python") and, for "python", ``keeper_error``.

        The binary may be out of the sessions' sight (a hidden tree, or a dir their uid
        cannot search), so it is opened once, here, and executed by fd (execveat with
        AT_EMPTY_PATH): O_PATH, a handle to execute, never to read or write, and close-on-
        exec, which is right for an ELF binary executed by fd (the kernel has the file before
        it closes the fd; only a ``#!`` script would need it after). Close-on-exec does
        nothing across fork, though: every process forked from here inherits the fd, so the
        cell closes it before it runs any code (``_spare_main``), and the C keeper closes
        every fd but its two.
        """
        global _KEEPER_FD
        self.features["keeper"] = "python"
        if not path:
            return
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as e:
            self.features["keeper_error"] = f"cannot open the C keeper {path!r}: {e}"
            return

        def probe() -> None:
            os.execve(fd, [KEEPER_NAME, "--probe"], {})

        if not self._try_child(probe):
            os.close(fd)
            self.features["keeper_error"] = f"the C keeper {path!r} does not run here"
            return
        _KEEPER_FD = fd
        self.features["keeper"] = "c"

    # -- sessions
    def _new_uid(self) -> int | None:
        if not self.features.get("uid_drop"):
            return None
        uid = self.uid_base + self.next_uid
        self.next_uid = (self.next_uid + 1) % self.uid_count
        return uid

    def _fork_spare(self, flags: int) -> Spare:
        """Fork a spare session process (namespaces, /proc, scratch dir, uid drop; see
        ``_spare_main``). It reports its pid on the zygote's end of a socketpair (``zs``) and
        later receives its connection there.

        With a fork template (see ``_template_main``) the template forks it, and it reports
        its pid when it is ready; else this process forks it."""
        token = uuid.uuid4().hex[:12]
        spare = Spare(token, os.path.join(self.scratch_root, token), self._new_uid())
        spare.cgroups = self._session_cgroups(token) if self.cgroup_dirs else []
        zs, gs = socket.socketpair()
        if self.template is not None:
            req = json.dumps({"flags": flags, "uid": spare.uid, "scratch": spare.scratch,
                              "token": token, "limits": self.spare_limits,
                              "cgroups": spare.cgroups}).encode()
            try:
                socket.send_fds(self.template, [req], [gs.fileno()])
            except OSError as e:
                print(f"zygote: the fork template is gone ({e}); forking sessions here",
                      file=sys.stderr, flush=True)
                self._drop_template()
            else:
                gs.close()
                spare.zs = zs
                return spare
        # Root can fork the session straight into a new PID namespace (unshare here, fork,
        # setns back), which saves the intermediate process and its copy of this big heap.
        direct = bool(flags & CLONE_NEWPID) and self.pidns_fd is not None
        try:
            if direct:
                unshare(CLONE_NEWPID)  # for this process's next child only (setns below)
            try:
                pid = os.fork()
            except BaseException:
                if direct:
                    self._restore_pidns()
                raise
        except BaseException:
            zs.close()
            gs.close()
            raise
        if direct and pid != 0:
            self._restore_pidns()
        if pid == 0:  # ---- child C (becomes the session unless C must make a PID ns for it)
            try:
                zs.close()
                self._child_reset(keep=gs.fileno())
            except BaseException:  # noqa: BLE001
                os._exit(1)
            self._become_spare(gs, flags, {"uid": spare.uid, "scratch": spare.scratch,
                                           "token": token, "limits": self.spare_limits,
                                           "cgroups": spare.cgroups}, direct=direct)
        gs.close()
        if flags & CLONE_NEWPID and not direct:
            self.helpers.add(pid)
        else:
            self._set_spare_pid(spare, pid)
        spare.zs = zs
        return spare

    def _become_spare(self, gs: socket.socket, flags: int, per: dict, *, direct: bool = False,
                      detach: bool = False) -> None:
        """In a child C: enter the session's namespaces and run the spare. No return.

        C itself becomes the spare unless it must fork it: into the new PID namespace it
        made, or (``detach``, the fork template's children) so that the spare is re-parented
        to the zygote, a child subreaper, which reaps it and reads how it ended.
        """
        try:
            left = flags & ~CLONE_NEWPID if direct else flags
            if left:
                self._enter_namespaces(self.features["ns_mode"], left)
            if (detach or left & CLONE_NEWPID) and os.fork() != 0:
                os._exit(0)  # C is done: the session G is PID 1 of the new namespace
        except BaseException:  # noqa: BLE001
            os._exit(1)
        _spare_main(gs, {"features": self.features, "reveals": self.reveals, **per,
                         "jail": {"ro_root": self.features.get("ro_root"),
                                  "hide": self.jail["hide"],
                                  "scratch_mb": self.jail["scratch_mb"]
                                  if self.features.get("scratch_quota") else 0}},
                    bool(flags & CLONE_NEWNS))

    # -- the fork template: a pristine copy of this process that only forks spares
    def start_template(self) -> None:
        """Fork the template that forks every spare from now on (see ``_template_main``).

        A session forked from this process keeps its own copy of every page this process
        writes after the fork, and the event loop writes about 300 pages per open (its
        objects' reference counts, allocations); the template's loop writes about 50. That
        took about 0.3 MB of PSS off each python session (benchmarks/sandbox_memory.py).
        Needs this process to be a child subreaper (the template's grandchildren are
        re-parented to it); else sessions are forked here.
        """
        ts, zt = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            try:
                zt.close()
                self._child_reset(keep=ts.fileno())
                self._template_main(ts)
            finally:
                os._exit(1)
        ts.close()
        self.template, self.template_pid = zt, pid
        self.features["fork_template"] = True

    def _template_main(self, ts: socket.socket) -> None:
        """The template's loop: for each request (the spare's uid, scratch dir, token, limits
        and cgroups, with its socketpair end), fork C, which enters the namespaces and forks
        the spare G (re-parented to the zygote when C exits). Exits with the zygote.

        Every page this loop writes after a fork is copied for the spare just forked, so it
        does as little as it can: one recvmsg into a reused buffer, fork, close, reap; the
        child parses the request.
        """
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:
            os._exit(0)  # the zygote died before the line above
        buf = bytearray(65536)
        space = socket.CMSG_SPACE(4)
        fillers = fill_pool_holes()  # noqa: F841 - kept alive: see fill_pool_holes
        while True:
            try:
                n, anc, _, _ = ts.recvmsg_into((buf,), space)
            except OSError:
                break
            if not n or not anc:
                break
            fd = int.from_bytes(anc[0][2][:4], sys.byteorder)
            try:
                pid = os.fork()
            except OSError:
                os.close(fd)  # the zygote sees the spare's socket close: it did not report in
                continue
            if pid == 0:
                try:
                    ts.close()
                    req = json.loads(bytes(buf[:n]))
                    gs = socket.socket(fileno=fd)
                except BaseException:  # noqa: BLE001
                    os._exit(1)
                self._become_spare(gs, int(req.pop("flags")), req, detach=True)
            os.close(fd)
            # C exits as soon as it has forked the spare; not waited for here (its namespaces
            # take a while to make, and the next spare's fork need not wait for them).
            while True:
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
        os._exit(0)

    def _drop_template(self) -> None:
        if self.template is not None:
            self.template.close()
            self.template = None
        if self.template_pid is not None:
            try:
                os.kill(self.template_pid, signal.SIGKILL)
            except OSError:
                pass
            self.helpers.add(self.template_pid)  # reaped by reap()
            self.template_pid = None
        self.features.pop("fork_template", None)

    def _set_spare_pid(self, spare: Spare, pid: int) -> None:
        spare.pid = pid
        self.spare_pids[pid] = spare  # so that reap() knows when it is gone (see _discard)

    def _restore_pidns(self) -> None:
        """Put this process's future children back in its own PID namespace."""
        try:
            setns(self.pidns_fd, CLONE_NEWPID)
        except OSError as e:
            # Every later child would land in the last session's namespace: fail closed.
            print(f"zygote: cannot restore the PID namespace for children ({e}); exiting",
                  file=sys.stderr, flush=True)
            os._exit(70)

    def _report_in(self, spare: Spare, timeout_s: float) -> None:
        """Read the spare's first frame: its pid, or why its setup failed (raises OSError)."""
        assert spare.zs is not None
        try:
            spare.zs.settimeout(timeout_s)
            msg = recv_frame(spare.zs)
            spare.zs.settimeout(None)
            pid = None if "error" in msg else int(msg["pid"])
        except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
            self._discard(spare)
            raise OSError(f"a new session process did not report in ({e})") from e
        if pid is None:
            self._discard(spare)
            raise OSError(str(msg["error"]))
        self._set_spare_pid(spare, pid)

    def _discard(self, spare: Spare) -> None:
        """Forget a spare that never became a session: kill it, delete its scratch dir."""
        if spare.zs is not None:
            spare.zs.close()
            spare.zs = None
        if spare.pid is not None:  # not reaped yet, so the pid cannot have been reused
            for fn in (os.kill, os.killpg):
                try:
                    fn(spare.pid, signal.SIGKILL)
                except OSError:
                    pass
            if spare.cgroups:  # its cgroups can only go once it is reaped: see reap()
                self.late_cgroups[spare.pid] = spare.cgroups
                spare.cgroups = []
        self.cleanup(spare.scratch, spare.cgroups)

    def _spawn(self, flags: int) -> Spare:
        """Fork a spare and wait until it is ready."""
        spare = self._fork_spare(flags)
        self._report_in(spare, 10.0)
        return spare

    def refill(self) -> None:
        """Fork a spare without waiting for it; ``on_spare_ready`` adds it to ``spares``."""
        try:
            spare = self._fork_spare(self.ns_flags())
        except OSError as e:
            print(f"zygote: cannot pre-fork spare sessions, disabling them: {e}",
                  file=sys.stderr, flush=True)
            self.spare_target = 0
            return
        assert spare.zs is not None
        self.pending[spare.zs] = spare
        self.sel.register(spare.zs, selectors.EVENT_READ, "spare")

    def on_spare_ready(self, zs: socket.socket) -> None:
        spare = self.pending.pop(zs, None)
        if spare is None:
            return  # already taken by open_session in this round of events
        self.sel.unregister(zs)
        try:
            self._report_in(spare, 5.0)
        except OSError as e:
            print(f"zygote: a spare session failed before it was ready ({e}); disabling spares",
                  file=sys.stderr, flush=True)
            self.spare_target = 0
            return
        self.spares.append(spare)

    def on_handoff_done(self, zs: socket.socket) -> None:
        """The session sent its hello (or died): spares may be refilled again."""
        if self.handoffs.pop(zs, None) is not None:
            self.sel.unregister(zs)
            zs.close()
            self.refill_after = time.monotonic() + REFILL_DELAY_S

    def _expire_handoffs(self, now: float) -> float | None:
        """Drop handovers past their deadline; the seconds until the next deadline, if any."""
        for zs, deadline in list(self.handoffs.items()):
            if deadline <= now:
                self.on_handoff_done(zs)
        return min(self.handoffs.values()) - now if self.handoffs else None

    def _next_timeout(self) -> tuple[float | None, bool]:
        """(How long the loop may block, whether a spare is to be forked now).

        Forking this big process takes about a millisecond of CPU (more for the spare to get
        ready). While another spare is still ready, a refill waits until handed-over sessions
        have sent their hello, and a little longer, until the host has its session; with none
        ready (a burst of opens), it starts at once.
        """
        now = time.monotonic()
        handoff = self._expire_handoffs(now)
        if len(self.spares) + len(self.pending) >= self.spare_target:
            return handoff, False
        if self.spares:
            if handoff is not None:
                return handoff, False
            if self.refill_after > now:
                return self.refill_after - now, False
        return 0.0, True

    def _take_spare(self, flags: int) -> Spare:
        """A ready session process for ``flags``: a spare if one fits, else a new one."""
        if flags == self.ns_flags():
            if not self.spares and self.pending:
                # One is on its way: waiting for it is quicker than forking another. Keep the
                # pipeline full meanwhile (a burst of opens).
                while self.spare_target and len(self.pending) < self.spare_target:
                    self.refill()
                self.on_spare_ready(next(iter(self.pending)))
            if self.spares:
                return self.spares.pop(0)
        return self._spawn(flags)

    def open_session(self, conn: socket.socket, req: dict) -> None:
        sid = req.get("sid")
        if sid is not None:
            sid = str(sid)
            if sid in self.sessions or not sid.replace("-", "").replace("_", "").isalnum():
                send_frame(conn, {"ok": False, "error": f"bad or duplicate session id {sid!r}"})
                return
        limits = dict(req.get("limits") or {})
        for key, default in (("cpu_s", 60), ("memory_mb", 2048), ("max_procs", 64),
                             ("max_file_mb", 64), ("max_output_bytes", 16384)):
            limits[key] = int(limits.get(key) or default)
        limits["max_output_bytes"] = min(limits["max_output_bytes"], MAX_OUTPUT_CAP)
        if limits != self.spare_limits:
            # Spares apply their rlimits while they wait; ones made for other limits go.
            self.spare_limits = limits
            for spare in self.spares:
                self._discard(spare)
            self.spares.clear()
        flags = self.ns_flags()
        if limits.get("network"):
            if self.features.get("net_shared"):
                send_frame(conn, {"ok": False, "error": "network=True sessions need a zygote "
                                  "started without --shared-netns"})
                return
            flags &= ~CLONE_NEWNET
        for _ in range(len(self.spares) + len(self.pending) + 1):
            spare = self._take_spare(flags)
            assert spare.zs is not None and spare.pid is not None
            if sid is None:  # name it after its scratch dir
                sid = spare.token if spare.token not in self.sessions else uuid.uuid4().hex[:12]
            payload = json.dumps({"sid": sid, "limits": limits}).encode()
            try:
                socket.send_fds(spare.zs, [payload], [conn.fileno()])
                break
            except OSError:
                self._discard(spare)  # that spare died; try the next or a fresh one
                if req.get("sid") is None:
                    sid = None
        else:
            raise OSError("no session process could take the connection")
        conn.close()
        assert sid is not None
        self.sessions[sid] = {"pid": spare.pid, "scratch": spare.scratch, "uid": spare.uid,
                              "cgroups": spare.cgroups}
        if spare.cgroups and any(int(limits[k]) != int(v) for k, v in self.cg_limits.items()):
            try:
                self._cgroup_limits(spare.cgroups, limits)
            except OSError as e:  # the session keeps the sandbox's cgroup limits
                print(f"zygote: cannot set cgroup limits for {sid}: {e}", file=sys.stderr,
                      flush=True)
        self.spare_pids.pop(spare.pid, None)
        self.by_pid[spare.pid] = sid
        # Keep the socketpair until the session closes its end after its hello: refilling the
        # spares (a fork of this big process) waits until then rather than compete for CPU
        # with the session the host is waiting for.
        self.handoffs[spare.zs] = time.monotonic() + HANDOFF_WAIT_S
        self.sel.register(spare.zs, selectors.EVENT_READ, "handoff")
        spare.zs = None

    def _child_reset(self, keep: int) -> None:
        signal.set_wakeup_fd(-1)
        os.close(self._wake_w)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        fds = [fobj.fd for fobj in self.sel.get_map().values()]
        fds += [spare.zs.fileno() for spare in self.spares if spare.zs is not None]
        if self.pidns_fd is not None:
            fds.append(self.pidns_fd)
        if self.template is not None:
            fds.append(self.template.fileno())
        if self.inflight is not None:
            fds.append(self.inflight)  # a connection being handed to a session
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

    def cleanup(self, scratch: str | None, cgroups: list[str], wait: bool = False) -> None:
        """Remove a finished session's scratch dir and cgroups, off the main loop.

        The usual case costs one rmdir each (the scratch tmpfs died with the session's mount
        namespace). Anything left (no mount namespace, stragglers in a cgroup) goes to a
        forked cleaner: it kills what is left in the cgroups first, then deletes the tree
        iteratively within CLEANUP_BUDGET_S; the zygote never walks a tree itself.
        """
        left_cg = [cg for cg in cgroups if not try_rmdir(cg)]
        left_dir = scratch if scratch is not None and not try_rmdir(scratch) else None
        if not left_cg and left_dir is None:
            return
        try:
            pid = os.fork()
        except OSError as e:
            print(f"zygote: cannot fork a cleaner ({e}); leaving {left_dir} {left_cg}",
                  file=sys.stderr, flush=True)
            return
        if pid == 0:
            code = 0
            try:
                self._child_reset(keep=-1)
                os.nice(10)
                _clean(left_dir, left_cg)
            except BaseException:  # noqa: BLE001
                code = 1
            os._exit(code)
        self.helpers.add(pid)
        if wait:
            try:
                os.waitpid(pid, 0)
                self.helpers.discard(pid)
            except ChildProcessError:
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
            if pid == self.template_pid:
                print("zygote: the fork template died; forking sessions here", file=sys.stderr,
                      flush=True)
                self.template_pid = None
                self._drop_template()
                continue
            late = self.late_cgroups.pop(pid, None)
            if late:
                self.cleanup(None, late)
            spare = self.spare_pids.pop(pid, None)
            if spare is not None:  # a spare died before it was used
                spare.pid = None
                if spare in self.spares:
                    self.spares.remove(spare)
                    self._discard(spare)
                continue
            sid = self.by_pid.pop(pid, None)
            if sid is None:
                continue
            info = self.sessions.pop(sid)
            try:
                os.killpg(pid, signal.SIGKILL)  # leftovers in its process group
            except (ProcessLookupError, PermissionError):
                pass
            self.cleanup(info["scratch"], info.get("cgroups") or [])
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
            if req.get("reply") is False:
                return True
        elif op == "status":
            resp = self.status(str(req.get("sid")), float(req.get("wait_s") or 0))
        elif op == "ping":
            self.reap()
            resp = {"ok": True, "sessions": sorted(self.sessions), "pid": os.getpid(),
                     "template": self.template_pid, "keeper": self.features.get("keeper")}
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
        listener.listen(self.backlog)
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
        if self.subreaper and self.use_template:
            try:
                self.start_template()
            except OSError as e:
                print(f"zygote: no fork template ({e}); forking sessions here", file=sys.stderr,
                      flush=True)
        print(json.dumps({"ready": True, "pid": os.getpid(), "features": self.features,
                          "python": sys.version.split()[0]}), flush=True)
        try:
            while True:
                timeout, refill = self._next_timeout()
                events = sel.select(timeout)
                if not events:
                    if refill:
                        self.refill()
                    continue
                for key, _ in events:
                    try:
                        if self._dispatch(key, listener, wake_r):
                            return
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as e:  # noqa: BLE001 - no session may end the zygote
                        print(f"zygote: handling {key.data!r} failed: {type(e).__name__}: {e}",
                              file=sys.stderr, flush=True)
                        if key.data == "control":
                            self._drop(key.fileobj)
        finally:
            self.shutdown()

    def _drop(self, conn: socket.socket) -> None:
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def _dispatch(self, key: selectors.SelectorKey, listener: socket.socket, wake_r: int
                  ) -> bool:
        """Handle one ready event; True when the zygote is to exit."""
        tag = key.data
        if tag == "spare":
            self.on_spare_ready(key.fileobj)
        elif tag == "handoff":
            self.on_handoff_done(key.fileobj)
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
                return True
        else:
            if not self.handle_control(key.fileobj):
                self._drop(key.fileobj)
        return False

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
            # Forks made while this connection is open (spares, a fresh session) must not
            # inherit it: see _child_reset.
            self.inflight = conn.fileno()
            try:
                self.open_session(conn, req)
            except OSError as e:
                try:
                    send_frame(conn, {"ok": False, "error": f"could not start a session: {e}"})
                except OSError:
                    pass
                conn.close()
            finally:
                self.inflight = None
        elif op == "control":
            send_frame(conn, {"ok": True, "pid": os.getpid()})
            self.sel.register(conn, selectors.EVENT_READ, "control")
        else:
            send_frame(conn, {"ok": False, "error": f"unknown first op {op!r}"})
            conn.close()

    def shutdown(self) -> None:
        self._drop_template()  # no new spares; the ones it forked are this process's
        # Spares still starting have made, or are about to make, their scratch dirs: wait for
        # them briefly so they can be killed and their dirs deleted too.
        deadline = time.monotonic() + 1.0
        for spare in list(self.pending.values()):
            try:
                self._report_in(spare, max(deadline - time.monotonic(), 0.01))
            except OSError:
                continue  # discarded
            self._discard(spare)
        self.pending.clear()
        for spare in self.spares:
            self._discard(spare)
        self.spares.clear()
        for zs in list(self.handoffs):
            zs.close()
        self.handoffs.clear()
        for sid in list(self.sessions):
            self.kill(sid)
        deadline = time.monotonic() + 2.0
        while self.sessions and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.005)
        for info in self.sessions.values():
            self.cleanup(info["scratch"], info.get("cgroups") or [], wait=True)
        deadline = time.monotonic() + 2.0
        while self.late_cgroups and time.monotonic() < deadline:  # discarded spares' cgroups
            self.reap()
            time.sleep(0.005)
        deadline = time.monotonic() + 2.0
        while self.helpers and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.005)
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass


def _pool_holes() -> dict[int, int]:
    """Free blocks in the allocator's partly used pools: {block size: count}, from
    ``sys._debugmallocstats`` (CPython's small-object allocator; empty where it is absent)."""
    if not hasattr(sys, "_debugmallocstats") or not hasattr(os, "memfd_create"):
        return {}
    fd = os.memfd_create("mallocstats")
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    holes = {}
    for line in b"".join(chunks).decode("ascii", "replace").splitlines():
        cols = line.split()
        if len(cols) == 5 and all(c.isdigit() for c in cols) and int(cols[4]):
            holes[int(cols[1])] = int(cols[4])
    return holes


def fill_pool_holes(rounds: int = 4) -> list:
    """Fill the free blocks of the allocator's partly used pools; returns what fills them.

    A forked child allocates its first objects in those free blocks, which lie on pages it
    shares with its parent and its siblings: each first write there copies a 4 kB page.
    With the holes filled (by objects kept alive, in the parent only), the child's objects go
    to fresh pools, packed together. Done once in the fork template, it took about 0.2 MB of
    PSS off each session (a keeper and a cell; benchmarks/sandbox_memory.py).
    """
    keep: list = []
    for _ in range(rounds):
        holes = _pool_holes()
        if not holes:
            break
        for size, n in sorted(holes.items()):
            if size <= 48:  # a bytearray's buffer is a block of exactly len + 1 bytes
                keep.extend(bytearray(size - 1) for _ in range(n))
            else:  # a bytes object of len n is a block of n + 33 bytes
                keep.extend(bytes(size - 33) for _ in range(n))
    return keep


class _NoDrainer:
    def sync(self) -> None:
        pass


def _rehearse(rounds: int = 10) -> None:
    """Run what every session runs (cells, result framing) here, before the fork.

    CPython 3.11 counts a function's first calls in its code object and then rewrites its
    bytecode in place (quickening): done here once, it is not done again in every session's
    copy-on-write copy of the pages those code objects live on (about 0.25 MB of PSS per
    session; benchmarks/sandbox_memory.py).
    """
    out, err = BoundedBuffer(16384), BoundedBuffer(16384)
    cell = Cell(out, err, _NoDrainer())  # type: ignore[arg-type]
    a, b = socket.socketpair()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = TextCapture(out, 1), TextCapture(err, 2)
    try:
        for i in range(rounds):
            for code in ("x = 1", "x += 1\nx", "print(x)", "1/0", "def f(:"):
                data = code.encode()
                a.sendall(CELL_RUN_HEADER.pack(len(data), i + 1, 100 + 20 * i) + data)
                n, seq, max_output = CELL_RUN_HEADER.unpack(
                    _recv_exact(b, CELL_RUN_HEADER.size))
                payload = _recv_exact(b, n)
                result = cell.run(payload.decode("utf-8", "surrogatepass"), max_output)
                b.sendall(encode_result(result, seq))
                n, _ = CELL_RESULT_HEADER.unpack(_recv_exact(a, CELL_RESULT_HEADER.size))
                _recv_exact(a, n)
            out.add(b"y" * 300)
            shrink(*out.take(), 40)
    finally:
        sys.stdout, sys.stderr = saved
        a.close()
        b.close()
        for name in [k for k in linecache.cache if k.startswith("<cell-")]:
            del linecache.cache[name]  # sessions number their cells from 1 again


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
    p.add_argument("--uid-base", type=int, default=UID_BASE,
                   help="first session uid (a block allocated to this zygote by the host)")
    p.add_argument("--uid-count", type=int, default=60_000, help="session uids in the block")
    p.add_argument("--cgroup", action="append", default=[],
                   help="a delegated cgroup dir (one per v1 hierarchy, or one v2 dir) in which "
                        "each session gets a child cgroup")
    p.add_argument("--cgroup-version", type=int, default=1, choices=(1, 2))
    p.add_argument("--memory-mb", type=int, default=2048, help="session cgroup memory limit")
    p.add_argument("--max-procs", type=int, default=64, help="session cgroup pids limit")
    p.add_argument("--cpu-cores", type=float, default=0.0,
                   help="cap each session cgroup at this many cores (cpu.max); 0: no cap")
    p.add_argument("--backlog", type=int, default=LISTEN_BACKLOG,
                   help="listen backlog of the socket: opens that may queue while the zygote "
                        "is busy (the kernel caps it at net.core.somaxconn)")
    p.add_argument("--scratch-mb", type=int, default=0,
                   help="size of each session's private tmpfs (/tmp, /dev/shm, scratch); 0: none")
    p.add_argument("--ro-root", action="store_true",
                   help="sessions see the host read-only, with the --hide trees hidden")
    p.add_argument("--hide", action="append", default=[], help="a tree sessions do not see")
    p.add_argument("--no-fork-template", action="store_true",
                   help="fork sessions from the zygote itself (more memory per session; for "
                        "measuring, see benchmarks/sandbox_memory.py)")
    p.add_argument("--keeper", default=None,
                   help="the C keeper binary (built by the host from keeper.c): sessions' "
                        "keepers exec it after the handover; without it (or if it does not "
                        "run here) they stay Python")
    p.add_argument("--no-rehearse", action="store_true",
                   help="do not run a session's code paths in the zygote before forking (more "
                        "memory per session; for measuring)")
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
            z.subreaper = True
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
    if z.features.get("pid_direct"):
        z.pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    if z.features.get("mount_ns") and (z.features.get("uid_drop") or z.features.get("ro_root")):
        z.reveals = python_reveals(tuple(z.jail["hide"]) if z.features.get("ro_root") else ())
    elif z.features.get("uid_drop") and python_reveals():
        z.features["python_unreadable"] = True  # no mount namespace to bind it back
    if z.is_root:
        z._probe_cgroups()
    z.open_keeper(args.keeper)
    if not args.no_rehearse:
        _rehearse()
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
