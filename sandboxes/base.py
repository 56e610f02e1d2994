"""The sandbox interface: a ``Sandbox`` opens stateful ``Session``s that run code.

This module is the whole contract every backend implements; it is kept small on
purpose (compare httpx's transport base) so that swapping ``local`` for
``bubblewrap`` or ``docker`` changes nothing for the caller.

Semantics, shared by every backend:

* A ``Session`` is one long-lived interpreter. Variables, imports and files in
  its scratch directory persist across ``run`` calls, as in a notebook.
* ``run(code)`` returns an :class:`ExecResult`: what the code printed, the
  ``repr`` of the last expression's value (notebook style), and, when the code
  raised, the tail of the traceback. Code that raises is *not* an exception for
  the caller; it is data in the result.
* Limits are enforced, not advisory. When the wall-clock timeout expires the
  session's whole process group is killed, the result has ``timed_out=True``
  and ``dead=True``, and every later ``run`` on it raises
  :class:`~sandboxes.errors.SessionDead`. The caller opens a fresh session.
* Infrastructure faults (the backend cannot start a session, the worker
  crashed for a reason that is not a limit) raise
  :class:`~sandboxes.errors.SandboxError` subclasses. Those are the only
  exceptions ``run`` raises.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ExecResult", "Limits", "Protections", "Sandbox", "Session", "Truncation",
           "truncation_marker"]


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resource limits applied to every session of a sandbox.

    Attributes:
        timeout_s: Wall-clock seconds one ``run`` may take before the session's
            process group is killed.
        cpu_s: CPU seconds for the whole session (RLIMIT_CPU).
        memory_mb: Address-space limit of the session in MiB (RLIMIT_AS), or
            the container memory limit for docker.
        max_procs: Processes/threads the session may have (RLIMIT_NPROC or the
            pids cgroup); contains fork bombs.
        max_file_mb: Largest file the session may write (RLIMIT_FSIZE).
        max_output_bytes: Bytes of stdout+stderr kept per call; the head and
            the tail are kept around a truncation marker.
        network: Whether the session may use the network. Off by default.
        scratch_mb: Size of the session's private tmpfs holding its scratch dir, /tmp and
            /dev/shm (a quota; its pages count against the session's memory cgroup), where
            the kernel allows a mount namespace per session.
    """

    timeout_s: float = 10.0
    cpu_s: int = 60
    memory_mb: int = 2048
    max_procs: int = 64
    max_file_mb: int = 64
    max_output_bytes: int = 16_384
    network: bool = False
    scratch_mb: int = 512

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "memory_mb", "max_procs", "max_file_mb",
                     "max_output_bytes", "scratch_mb"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(
                    f"Limits.{name} must be positive, got {value!r}; "
                    f"pass a positive number (defaults: {Limits.__dataclass_fields__[name].default})."
                )


@dataclass(frozen=True, kw_only=True)
class Truncation:
    """Where the sandbox cut one part of a result, and how much it left out.

    Attributes:
        part: ``"stdout"``, ``"stderr"`` or ``"value"``.
        start: Index (in characters) of the marker ``[... N characters truncated ...]`` in
            that part.
        length: Length of the marker, in characters.
        omitted: Characters the marker stands for (``N``).
    """

    part: str
    start: int
    length: int
    omitted: int


def truncation_marker(omitted: int) -> str:
    """The line that stands for ``omitted`` characters left out of an output."""
    return f"\n[... {omitted} characters truncated ...]\n"


@dataclass(frozen=True, kw_only=True)
class ExecResult:
    """What one ``Session.run`` call produced.

    Attributes:
        stdout: Captured standard output (possibly truncated, see ``truncated``).
        stderr: Captured standard error (possibly truncated).
        value: ``repr`` of the value of the last expression statement, or None
            when the cell did not end in an expression or it evaluated to None.
        error: The last lines of the traceback when the code raised, else None.
        timed_out: The wall-clock limit expired and the session was killed.
        dead: The session is gone (killed on timeout, or it exceeded a limit
            that killed the process, or the code exited the interpreter).
        truncated: Output was longer than ``Limits.max_output_bytes``.
        duration_s: Wall-clock seconds the call took, as seen by the caller.
        truncations: Where the parts were cut (see :class:`Truncation`), so that a shorter
            rendering (``render(max_chars=...)``) still states the true count left out.
    """

    stdout: str = ""
    stderr: str = ""
    value: str | None = None
    error: str | None = None
    timed_out: bool = False
    dead: bool = False
    truncated: bool = False
    duration_s: float = 0.0
    truncations: tuple[Truncation, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the code ran to completion without raising."""
        return self.error is None and not self.timed_out and not self.dead

    def render(self, max_chars: int | None = None) -> str:
        """The notebook-style text a model sees: stdout, stderr, value, error.

        Args:
            max_chars: Keep about this many characters: the head and the tail, around a
                marker ``[... N characters truncated ...]`` whose ``N`` counts everything
                the code wrote that is not shown (what the sandbox already left out
                included). None: no limit beyond the sandbox's own.
        """
        parts: list[str] = []
        marks: list[tuple[int, int, int]] = []  # sandbox markers: (start, end, omitted)
        offset = 0
        for name, text in (("stdout", self.stdout.rstrip("\n") if self.stdout else None),
                           ("stderr", self.stderr.rstrip("\n") if self.stderr else None),
                           ("value", self.value),
                           ("error", self.error.rstrip("\n") if self.error is not None
                            else None)):
            if text is None:
                continue
            for t in self.truncations:
                if t.part == name and t.start + t.length <= len(text):
                    marks.append((offset + t.start, offset + t.start + t.length, t.omitted))
            parts.append(text)
            offset += len(text) + 1
        if self.timed_out:
            parts.append("[execution timed out; the session was restarted and its state is lost]")
        elif self.dead:
            parts.append("[the python session died; its state is lost]")
        full = "\n".join(parts)
        if max_chars is None or len(full) <= max_chars:
            return full
        head, tail = max_chars // 2, len(full) - (max_chars - max_chars // 2)
        for a, b, _ in marks:  # never keep half a marker: cut it out whole
            if a < head < b:
                head = a
            if a < tail < b:
                tail = b
        omitted = tail - head
        for a, b, n in marks:
            if head <= a and b <= tail:  # a marker inside the cut counts what it stood for
                omitted += n - (b - a)
        return full[:head] + truncation_marker(omitted) + full[tail:]


class Session(abc.ABC):
    """One stateful interpreter. Use as a (async) context manager.

    Implementations provide ``run`` and ``close``; ``arun``/``aclose`` default to
    running those in a worker thread and may be overridden with native async.
    """

    id: str
    info: dict[str, Any]

    @property
    @abc.abstractmethod
    def alive(self) -> bool:
        """Whether the session can still run code."""

    @abc.abstractmethod
    def run(self, code: str, *, timeout_s: float | None = None) -> ExecResult:
        """Run ``code`` in the session and return what it produced.

        Args:
            code: Python source, one notebook cell.
            timeout_s: Overrides ``Limits.timeout_s`` for this call.

        Raises:
            SessionDead: the session was killed earlier; open a new one.
            SandboxError: an infrastructure fault (not the code's fault).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Kill the session and free everything it held. Idempotent."""

    async def arun(self, code: str, *, timeout_s: float | None = None) -> ExecResult:
        """Async twin of :meth:`run`."""
        return await asyncio.to_thread(self.run, code, timeout_s=timeout_s)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@dataclass(frozen=True, kw_only=True)
class Protections:
    """Which isolation mechanisms are active on a sandbox (reported, not assumed).

    ``cpu_share``: each session has a cpu cgroup whose weight is the default while it runs a
    call and the minimum between calls, so background processes a cell leaves running cannot
    starve other sessions' calls (see :class:`~sandboxes.hostres.CpuShare`).
    """

    rlimits: bool = False
    process_group_kill: bool = False
    user_namespace: bool = False
    pid_namespace: bool = False
    network_namespace: bool = False
    mount_namespace: bool = False
    readonly_root: bool = False
    scrubbed_env: bool = False
    private_scratch: bool = False
    cpu_share: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


class Sandbox(abc.ABC):
    """A factory of sessions that share one backend and one set of limits."""

    name: str
    limits: Limits

    @abc.abstractmethod
    def open(self) -> Session:
        """Start a new, empty session.

        Raises:
            SandboxError: the backend could not start one.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Close every session this sandbox opened and release the backend."""

    @abc.abstractmethod
    def protections(self) -> Protections:
        """Which protections are actually active on this machine."""

    async def aopen(self) -> Session:
        """Async twin of :meth:`open`."""
        return await asyncio.to_thread(self.open)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
