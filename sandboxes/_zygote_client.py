"""Host side of the zygote protocol (see ``_zygote_server.py`` for the wire format).

Backends that run the zygote somewhere (a local process, a bubblewrap jail, a container) build
a :class:`ZygoteClient` from the host-visible path of its Unix socket; ``client.open(...)``
returns a :class:`ZygoteSession`, a full :class:`~sandboxes.base.Session` (sync and native async
``run``, wall-clock timeout that kills through the zygote, dead-session bookkeeping).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from sandboxes._zygote_server import (
    CELL_FRAME_SLACK,
    KIND_REPORT,
    KIND_RESULT,
    MAX_OUTPUT_CAP,
    REPLY_HEADER,
    RUN_HEADER,
    check_result,
)
from sandboxes.base import ExecResult, Limits, Session, Truncation
from sandboxes.errors import SandboxError, SessionDead
from sandboxes.hostres import CpuShare

__all__ = ["ZygoteClient", "ZygoteSession", "limits_to_wire"]

_HEADER = struct.Struct(">I")
_MAX_FRAME = 64 * 1024 * 1024
#: The most bytes of code one call carries (keeper.c's MAX_REQUEST, the Python keeper's frame cap).
MAX_REQUEST = 64 * 1024 * 1024

_SIGNAL_REASONS = {
    signal.SIGKILL: "it was killed with SIGKILL (memory, process or time limit, or killed by "
                    "the host)",
    signal.SIGXCPU: "it exceeded its CPU time limit",
    signal.SIGXFSZ: "it wrote a file larger than the file size limit",
    signal.SIGSEGV: "it crashed with a segmentation fault",
    signal.SIGABRT: "it aborted (SIGABRT)",
}


class _Timeout(Exception):
    pass


class _Oversized(ValueError):
    pass


def limits_to_wire(limits: Limits) -> dict[str, Any]:
    """The ``limits`` object of an ``open`` request."""
    return {"cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb, "max_procs": limits.max_procs,
            "max_file_mb": limits.max_file_mb, "max_output_bytes": limits.max_output_bytes,
            "network": limits.network}


def _frame(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return _HEADER.pack(len(data)) + data


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Timeout
            sock.settimeout(left)
        else:
            sock.settimeout(None)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except TimeoutError as e:
            raise _Timeout from e
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


def _recv_frame(sock: socket.socket, deadline: float | None) -> dict[str, Any]:
    (n,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if n > _MAX_FRAME:
        raise _Oversized(f"a frame of {n} bytes (at most {_MAX_FRAME})")
    return json.loads(_recv_exact(sock, n, deadline).decode("utf-8", "surrogatepass"))


def _reply_limit(max_output: int) -> int:
    """The largest reply a session may send for a call: the keeper lets through a cell's
    result of up to 3 x max_output + CELL_FRAME_SLACK bytes (a larger one ends the session),
    and anything up to that is the cell's doing, not a protocol fault."""
    return max(_MAX_FRAME, 3 * max_output + CELL_FRAME_SLACK)


def _recv_reply(sock: socket.socket, deadline: float | None, limit: int = _MAX_FRAME
                ) -> tuple[int, bytes]:
    """A session's reply to a call: (kind, payload)."""
    n, kind = REPLY_HEADER.unpack(_recv_exact(sock, REPLY_HEADER.size, deadline))
    if n > limit:
        raise _Oversized(f"a frame of {n} bytes (at most {limit})")
    return kind, _recv_exact(sock, n, deadline)


async def _arecv_exact(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


async def _arecv_reply(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                       limit: int = _MAX_FRAME) -> tuple[int, bytes]:
    n, kind = REPLY_HEADER.unpack(await _arecv_exact(loop, sock, REPLY_HEADER.size))
    if n > limit:
        raise _Oversized(f"a frame of {n} bytes (at most {limit})")
    return kind, await _arecv_exact(loop, sock, n)


def describe_exit(st: dict[str, Any], cpu_limit_s: float | None = None) -> str:
    """Why a session ended, in words, from its exit status (``signal``, ``exit_code``,
    ``cpu_s``), or from a ``malformed`` report of its keeper."""
    if st.get("malformed"):
        return (f"the session was killed: {st['malformed']} (its code wrote to the runner's "
                "result channel)")
    sig, code = st.get("signal"), st.get("exit_code")
    cpu = st.get("cpu_s") or 0.0
    if sig in (signal.SIGKILL, signal.SIGXCPU) and cpu_limit_s and cpu >= cpu_limit_s - 0.05:
        # A PID-namespace init ignores SIGXCPU; the hard limit then sends SIGKILL.
        return (f"the session process died: it exceeded its CPU time limit of "
                f"{cpu_limit_s:g} s (used {cpu:.2f} s)")
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return "the session process died: " + _SIGNAL_REASONS.get(sig, f"killed by {name}")
    if code is not None:
        return f"the session process exited with code {code}"
    return "the session process ended"


class ZygoteClient:
    """Talks to one zygote server over its Unix socket.

    A burst of opens can fill the zygote's listen backlog while it is busy handing out
    sessions (the kernel then refuses a connect with EAGAIN): the client retries with backoff
    and waits as long as the zygote keeps handing out sessions, and says the zygote died only
    when ``alive`` says so.

    Args:
        socket_path: Host-visible path of the zygote's socket.
        backend: Backend name used in error messages and ``Session.info``.
        connect_timeout_s: How long an open (or the control connection) may wait for the
            zygote to accept it and answer while the zygote makes no progress: as long as it
            hands out other sessions within this time (a burst queued in its backlog), the
            wait goes on.
        alive: Whether the zygote process still exists (checked while waiting, so a dead
            zygote fails an open at once and a busy one is waited for); None: not known, the
            wait ends at the deadline.
        cpu: Switches each session's CPU weight around its calls (see
            :class:`~sandboxes.hostres.CpuShare`); None where there is no per-session cgroup.
    """

    def __init__(self, socket_path: str, *, backend: str = "zygote",
                 connect_timeout_s: float = 60.0, alive: Callable[[], bool] | None = None,
                 cpu: CpuShare | None = None) -> None:
        self.socket_path = socket_path
        self.backend = backend
        self.connect_timeout_s = connect_timeout_s
        self.alive_check = alive
        self.cpu = cpu
        self._ctl: socket.socket | None = None
        self._ctl_lock = threading.Lock()
        self._closed = False
        self._progress_at = 0.0  # when the zygote last handed out a session or answered

    def _extend(self, deadline: float) -> float:
        """``deadline``, pushed back while the zygote makes progress (see connect_timeout_s)."""
        return max(deadline, self._progress_at + self.connect_timeout_s)

    def _process_alive(self) -> bool | None:
        """True/False from the ``alive`` check; None when there is none (or it failed)."""
        if self.alive_check is None:
            return None
        try:
            return bool(self.alive_check())
        except Exception:  # noqa: BLE001 - a failing check tells nothing either way
            return None

    def _gone(self, what: str, cause: object) -> SandboxError:
        """The error for a zygote that did not take a connection or answer."""
        alive = self._process_alive()
        if alive is False:
            return SandboxError(
                f"{what} the {self.backend} zygote at {self.socket_path!r} ({cause}): its "
                "zygote process died or the sandbox was closed; the next open starts a fresh "
                "one (or make a new sandbox).")
        state = "is alive but" if alive else "(state unknown)"
        return SandboxError(
            f"{what} the {self.backend} zygote at {self.socket_path!r} ({cause}): the zygote "
            f"{state} did not take the connection, nor hand out any session, within "
            f"connect_timeout_s={self.connect_timeout_s:g} s; it is stuck or overloaded: open "
            "fewer sessions at a time (e.g. through a SessionPool) or raise connect_timeout_s.")

    def _connect(self, deadline: float | None = None) -> socket.socket:
        """A connection to the zygote, retried with backoff while its backlog is full."""
        if deadline is None:
            deadline = time.monotonic() + self.connect_timeout_s
        delay, next_check = 0.001, time.monotonic() + 0.25
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                sock.connect(self.socket_path)
                return sock
            except (BlockingIOError, InterruptedError) as e:
                # EAGAIN: the listen backlog is full; the zygote is busy handing out sessions.
                sock.close()
                err: OSError = e
            except OSError as e:
                sock.close()
                # ECONNREFUSED or ENOENT: no one listens there. A zygote listens from before
                # its ready line until it exits, so this is retried only while its process is
                # known to be alive (it may be about to exit, or stopped).
                if not isinstance(e, (ConnectionRefusedError, FileNotFoundError)) \
                        or self._process_alive() is not True:
                    raise self._gone("cannot connect to", e) from e
                err = e
            now = time.monotonic()
            if now >= deadline:
                deadline = self._extend(deadline)
                if now >= deadline:
                    raise self._gone("cannot connect to", err) from err
            if now >= next_check:
                next_check = now + 0.25
                if self._process_alive() is False:
                    raise self._gone("cannot connect to", err) from err
            time.sleep(min(delay, max(deadline - now, 0.0)))
            delay = min(delay * 2, 0.05)

    def _wait_readable(self, sock: socket.socket, deadline: float) -> None:
        """Block until ``sock`` has data, checking every 0.25 s that the zygote lives.

        Raises:
            _Timeout: the deadline passed (and the zygote made no progress meanwhile).
            SandboxError: the zygote process is gone.
        """
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                deadline = self._extend(deadline)
                left = deadline - time.monotonic()
            if left <= 0:
                raise _Timeout
            poller = select.poll()  # not select(): fds past 1024 with thousands of sessions
            poller.register(sock, select.POLLIN)
            if poller.poll(min(left, 0.25) * 1000):
                return
            if self._process_alive() is False:
                raise self._gone("no answer from", "connection open, no reply")

    def _control_socket(self) -> socket.socket:
        """The control connection, made on first use (call with ``_ctl_lock`` held)."""
        if self._ctl is None:
            ctl = self._connect()
            try:
                ctl.sendall(_frame({"op": "control"}))
                _recv_frame(ctl, time.monotonic() + self.connect_timeout_s)
            except BaseException:
                ctl.close()  # the zygote died mid-handshake: do not leak the socket
                raise
            self._ctl = ctl
        return self._ctl

    def control(self, req: dict[str, Any], *, timeout_s: float = 10.0) -> dict[str, Any]:
        """Send one control request (kill, status, ping, shutdown) and return the answer."""
        with self._ctl_lock:
            try:
                ctl = self._control_socket()
                ctl.sendall(_frame(req))
                answer = _recv_frame(ctl, time.monotonic() + timeout_s)
                self._progress_at = time.monotonic()
                return answer
            except (OSError, EOFError, ValueError, _Timeout) as e:
                if self._ctl is not None:
                    self._ctl.close()
                    self._ctl = None
                raise SandboxError(
                    f"{self.backend} zygote control request {req.get('op')!r} failed: "
                    f"{type(e).__name__}: {e}"
                ) from e

    def kill(self, sid: str) -> bool:
        """Kill session ``sid``'s whole process tree through the zygote."""
        return bool(self.control({"op": "kill", "sid": sid}).get("found"))

    def kill_nowait(self, sid: str) -> None:
        """Queue a kill of session ``sid`` on the control connection without waiting for it.

        The zygote handles requests in order, so the kill is done before any later control
        request is answered (``kill``, ``status``, ``shutdown``). If the zygote is gone, so is
        the session (it ends on EOF).
        """
        with self._ctl_lock:
            try:
                self._control_socket().sendall(_frame({"op": "kill", "sid": sid,
                                                       "reply": False}))
            except (OSError, EOFError, ValueError, _Timeout, SandboxError):
                if self._ctl is not None:
                    self._ctl.close()
                    self._ctl = None

    def exit_reason(self, sid: str, *, wait_s: float = 0.5, cpu_limit_s: float | None = None
                    ) -> str:
        """Why session ``sid`` ended, in words (for ``ExecResult.error``).

        Raises:
            SandboxError: the zygote did not answer (it died, or is stuck): an
                infrastructure fault, not something the session's code did.
        """
        try:
            st = self.control({"op": "status", "sid": sid, "wait_s": wait_s})
        except SandboxError as e:
            state = {False: "the zygote died; the next open starts a fresh one",
                     True: "the zygote is alive but did not answer"}.get(
                self._process_alive(), "the zygote died or is stuck")
            raise SandboxError(f"session {sid} ended and its {self.backend} zygote did not "
                               f"answer: {state} ({e}).") from e
        return describe_exit(st, cpu_limit_s)

    def alive(self) -> bool:
        """Whether the zygote answers a ping."""
        try:
            self.control({"op": "ping"}, timeout_s=2.0)
        except SandboxError:
            return False
        return True

    def ping(self) -> dict[str, Any]:
        """The zygote's pid and live session ids."""
        return self.control({"op": "ping"})
    def open(self, limits: Limits, *, sid: str | None = None,
             info: dict[str, Any] | None = None) -> ZygoteSession:
        """Fork a new session in the zygote.

        Waits while the zygote is alive and busy (a burst of opens queues in its backlog),
        up to ``connect_timeout_s``.

        Raises:
            SandboxError: the zygote is gone, did not answer in time, or could not start
                the session.
        """
        if self._closed:
            raise SandboxError(f"the {self.backend} sandbox is closed; make a new one.")
        deadline = time.monotonic() + self.connect_timeout_s
        sock = self._connect(deadline)
        try:
            sock.sendall(_frame({"op": "open", "sid": sid, "limits": limits_to_wire(limits)}))
            self._wait_readable(sock, deadline)
            # The hello is one small frame, sent at once: it is here, or about to be.
            hello = _recv_frame(sock, time.monotonic() + 10.0)
        except _Timeout as e:
            sock.close()
            raise self._gone("no session from", "no hello") from e
        except (OSError, EOFError, ValueError) as e:
            sock.close()
            raise SandboxError(
                f"the {self.backend} zygote did not start a session: {type(e).__name__}: {e}"
            ) from e
        except BaseException:
            sock.close()
            raise
        if not hello.get("ok"):
            sock.close()
            raise SandboxError(f"the {self.backend} zygote refused to start a session: "
                               f"{hello.get('error')}")
        self._progress_at = time.monotonic()
        meta = {"backend": self.backend, "pid": hello.get("pid"), "scratch": hello.get("scratch")}
        meta.update(info or {})
        session = ZygoteSession(self, sock, str(hello["sid"]), limits, meta)
        if self.cpu is not None and isinstance(hello.get("cgroup"), str):
            session.cpu_weight = self.cpu.path(hello["cgroup"])
            session._cpu_fd = self.cpu.open(session.cpu_weight)
            session._weigh(False)  # idle until its first call
        return session

    def close(self) -> None:
        """Drop the control connection (does not stop the zygote)."""
        self._closed = True
        with self._ctl_lock:
            if self._ctl is not None:
                self._ctl.close()
                self._ctl = None


class ZygoteSession(Session):
    """A session forked by a zygote; see :class:`~sandboxes.base.Session` for semantics."""

    def __init__(self, client: ZygoteClient, sock: socket.socket, sid: str, limits: Limits,
                 info: dict[str, Any], on_close: Callable[[ZygoteSession], None] | None = None
                 ) -> None:
        self.id = sid
        self.info = info
        self.limits = limits
        self._client = client
        self._sock = sock
        self._lock = threading.Lock()
        self._dead_reason: str | None = None
        self._closed = False
        self.on_close = on_close
        #: The session cgroup's CPU weight file: raised for each call, idle between calls.
        self.cpu_weight: str | None = None
        self._cpu_fd: int | None = None
        self._cpu_lock = threading.Lock()  # close() may run while a call is in flight

    @property
    def alive(self) -> bool:
        return self._dead_reason is None and not self._closed

    @property
    def pid(self) -> int | None:
        """The session's pid in the zygote's PID namespace."""
        return self.info.get("pid")

    def _check_usable(self) -> None:
        if self._closed:
            raise SessionDead(f"session {self.id} was closed; open a new session.")
        if self._dead_reason is not None:
            raise SessionDead(f"session {self.id} is dead ({self._dead_reason}); its state is "
                              "lost; open a new session.")

    def _max_output(self) -> int:
        """Limits takes any positive number; the header an integer up to MAX_OUTPUT_CAP."""
        return min(max(int(self.limits.max_output_bytes), 1), MAX_OUTPUT_CAP)

    def _request(self, code: str) -> bytes:
        data = code.encode("utf-8", "surrogatepass")
        return RUN_HEADER.pack(len(data), self._max_output()) + data

    @staticmethod
    def _too_long(code: str) -> ExecResult | None:
        """The answer to code longer than a call carries (the keeper takes requests of up to
        ``MAX_REQUEST`` bytes), without sending it: the session stays as it was."""
        n = len(code)  # characters: at most 4 bytes each in UTF-8
        if 4 * n <= MAX_REQUEST:
            return None
        size = len(code.encode("utf-8", "surrogatepass"))
        if size <= MAX_REQUEST:
            return None
        return ExecResult(error=f"ValueError: the code is {size:,} bytes; a call takes at most "
                                f"{MAX_REQUEST:,} bytes of code (nothing ran; the session is "
                                "unchanged)")

    def attach_pidfd(self, pidfd: int) -> None:
        """Kill through this pidfd (no zygote round trip, immune to pid reuse).

        Only for sessions that are PID-namespace inits in the host's PID namespace: killing
        the init kills every process of the session.
        """
        self._pidfd = pidfd

    def _kill(self, wait: bool = True) -> None:
        """SIGKILL the session's whole process tree; the zygote reaps it and deletes its
        scratch dir. ``wait=False`` (close) does not wait for the zygote's answer."""
        pidfd = getattr(self, "_pidfd", None)
        if pidfd is not None:
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                return
            except OSError:
                pass
        if not wait:
            self._client.kill_nowait(self.id)
            return
        try:
            self._client.kill(self.id)
        except SandboxError:
            pass  # the zygote is gone, and with it (by EOF) the session

    def _timed_out(self, timeout: float, t0: float) -> ExecResult:
        self._dead_reason = f"killed after the wall-clock limit of {timeout:g} s"
        self._kill()
        return ExecResult(error=f"TimeoutError: the cell ran longer than {timeout:g} s and the "
                          "session was killed", timed_out=True, dead=True,
                          duration_s=time.monotonic() - t0)

    def _died(self, t0: float) -> ExecResult:
        try:
            reason = self._client.exit_reason(self.id, cpu_limit_s=self.limits.cpu_s)
        except SandboxError as e:
            self._dead_reason = str(e)
            self._kill()
            raise
        self._dead_reason = reason
        self._kill()
        return ExecResult(error=reason, dead=True, duration_s=time.monotonic() - t0)

    def _infra(self, what: str) -> SandboxError:
        """A frame from the session that breaks the protocol: end the session, infra error."""
        self._dead_reason = f"its connection carried {what}"
        self._kill()
        return SandboxError(f"session {self.id} ({self._client.backend}) sent {what}; the "
                            "session was killed (infrastructure fault: only the session's "
                            "keeper process writes to this connection).")

    def _result(self, reply: tuple[int, bytes], t0: float) -> ExecResult:
        """The ExecResult of a reply: the cell's result (checked here: the keeper forwards
        what the cell sent), or how the session died (the keeper's report)."""
        kind, payload = reply
        if kind == KIND_RESULT:
            try:
                resp = json.loads(payload.decode("utf-8", "surrogatepass"))
                out, problem = check_result(resp)
            except (ValueError, RecursionError) as e:  # UnicodeDecodeError included;
                # RecursionError: JSON nested deeper than the interpreter's recursion limit
                return self._malformed(f"an undecodable result frame ({type(e).__name__})", t0)
            if out is None:
                return self._malformed(str(problem), t0)
            cuts = tuple(Truncation(part=part, start=a, length=n, omitted=k)
                         for part, (a, n, k) in out["truncations"].items())
            return ExecResult(stdout=out["stdout"], stderr=out["stderr"], value=out["value"],
                              error=out["error"], truncated=out["truncated"],
                              duration_s=time.monotonic() - t0, truncations=cuts)
        try:
            resp = json.loads(payload.decode("utf-8", "surrogatepass")) \
                if kind == KIND_REPORT else None
        except (ValueError, RecursionError):
            resp = None
        died = resp.get("died") if isinstance(resp, dict) else None
        if not isinstance(died, dict):
            raise self._infra(f"a reply of kind {kind} that is not the keeper's report"
                              if kind == KIND_REPORT else f"a reply of unknown kind {kind}")
        self._dead_reason = describe_exit(died, self.limits.cpu_s)
        self._kill()
        return ExecResult(error=self._dead_reason, dead=True, duration_s=time.monotonic() - t0)

    def _malformed(self, what: str, t0: float) -> ExecResult:
        """The cell sent a result that is not one: its code wrote to the result channel. The
        session ends, as the model's doing (an observation, not an infra error)."""
        self._dead_reason = describe_exit({"malformed": f"the session's runner sent {what}"})
        self._kill()
        return ExecResult(error=self._dead_reason, dead=True, duration_s=time.monotonic() - t0)

    def _weigh(self, active: bool) -> None:
        """The session's CPU weight: the default during a call, idle between calls."""
        cpu = self._client.cpu
        if self.cpu_weight is None or cpu is None:
            return
        with self._cpu_lock:  # never write through an fd number close() has given back
            if self._cpu_fd is not None:
                cpu.write(self._cpu_fd, active)
            elif not self._closed:  # no fd could be kept (out of fds): by path
                cpu.set(self.cpu_weight, active)

    def run(self, code: str, *, timeout_s: float | None = None) -> ExecResult:
        timeout = self.limits.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            self._check_usable()
            too_long = self._too_long(code)
            if too_long is not None:
                return too_long
            t0 = time.monotonic()
            self._weigh(True)
            try:
                self._sock.settimeout(timeout)
                self._sock.sendall(self._request(code))
                resp = _recv_reply(self._sock, t0 + timeout, _reply_limit(self._max_output()))
            except _Timeout:
                return self._timed_out(timeout, t0)
            except TimeoutError:
                return self._timed_out(timeout, t0)
            except _Oversized as e:
                raise self._infra(str(e)) from e
            except ValueError as e:
                raise self._infra(f"an undecodable frame ({type(e).__name__})") from e
            except (OSError, EOFError):
                return self._died(t0)
            finally:
                self._weigh(False)
            return self._result(resp, t0)

    async def arun(self, code: str, *, timeout_s: float | None = None) -> ExecResult:
        timeout = self.limits.timeout_s if timeout_s is None else timeout_s
        if not self._lock.acquire(blocking=False):
            raise SandboxError(f"session {self.id} is already running a cell; a session runs "
                               "one cell at a time: await the first call or open another.")
        try:
            self._check_usable()
            too_long = self._too_long(code)
            if too_long is not None:
                return too_long
            loop = asyncio.get_running_loop()
            t0 = time.monotonic()
            self._sock.setblocking(False)
            self._weigh(True)  # a write of a few bytes through an open fd: no thread hop
            try:
                await loop.sock_sendall(self._sock, self._request(code))
                resp = await asyncio.wait_for(
                    _arecv_reply(loop, self._sock, _reply_limit(self._max_output())), timeout)
            except asyncio.TimeoutError:
                return await asyncio.to_thread(self._timed_out, timeout, t0)
            except asyncio.CancelledError:
                # The reply is still pending: the session's state is unknown, so end it.
                self._dead_reason = "the call was cancelled and the session killed"
                await asyncio.shield(asyncio.to_thread(self._kill))
                raise
            except _Oversized as e:
                raise await asyncio.to_thread(self._infra, str(e)) from e
            except ValueError as e:
                raise await asyncio.to_thread(
                    self._infra, f"an undecodable frame ({type(e).__name__})") from e
            except (OSError, EOFError):
                return await asyncio.to_thread(self._died, t0)
            finally:
                self._weigh(False)
            return self._result(resp, t0)
        finally:
            self._lock.release()

    def close(self) -> None:
        """Kill the session and release it. Never raises."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._dead_reason is None:
                self._kill(wait=False)
        except Exception:  # noqa: BLE001, S110 - close must not raise; the zygote reaps it
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        pidfd, self._pidfd = getattr(self, "_pidfd", None), None
        if pidfd is not None:
            try:
                os.close(pidfd)
            except OSError:
                pass
        with self._cpu_lock:
            cpu_fd, self._cpu_fd = self._cpu_fd, None
        if cpu_fd is not None:
            os.close(cpu_fd)
        if self.on_close is not None:
            try:
                self.on_close(self)
            except Exception:  # noqa: BLE001, S110 - bookkeeping only
                pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("dead" if self._dead_reason else "alive")
        return f"<ZygoteSession {self.id} {self.info.get('backend')} pid={self.pid} {state}>"
