"""The ``python`` tool: gpt-oss's built-in, stateful python tool, on a sandbox session.

The model calls ``to=python`` with a code cell; the cell runs in one sandbox session per
episode (variables persist across calls, as in a notebook), opened at the first call from a
process-wide sandbox (one zygote serves every env with the same settings). The tool answers
with stdout, stderr, the value of the last expression and, when the cell raised, the
traceback's last lines. A session that cannot be started or dies for reasons that are not
the model's is an infrastructure fault.
"""

from __future__ import annotations

import atexit
import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import openai_harmony as oh

from agent_envs.core import check_field_types
from agent_envs.tools.base import Declaration, ToolCall, ToolOutcome, ToolPart
from sandboxes import (
    ExecResult,
    Limits,
    Sandbox,
    SandboxError,
    Session,
    UnknownBackend,
    make_sandbox,
)
from sandboxes.registry import check_backend_name

__all__ = ["MIN_MEMORY_MB", "PythonPart", "PythonToolConfig", "python_tool_description",
           "shared_sandbox"]

# The facts in openai-harmony's python tool description (the text gpt-oss was trained with)
# that are not true here, and what they become. Everything else is kept word for word.
_TRAINED_FACTS = (
    ("or time out after 120.0 seconds.", "or time out after {timeout} seconds."),
    ("The drive at '/mnt/data' can be used to save and persist user files.",
     "The current directory can be used to save and persist user files."),
    ("Internet access for this session is UNKNOWN. Depends on the cluster.",
     "Internet access for this session is disabled."),
)


def python_tool_description(call_timeout_s: float) -> str:
    """openai-harmony's ``ToolNamespaceConfig.python()`` description, with the facts that
    differ here: the real per-call timeout, the session's scratch directory instead of
    ``/mnt/data``, and internet access disabled.

    Raises:
        RuntimeError: openai-harmony's text changed, so a fact can no longer be replaced
            (pin openai-harmony, or update ``_TRAINED_FACTS``).
    """
    text = oh.ToolNamespaceConfig.python().description
    for trained, here in _TRAINED_FACTS:
        if trained not in text:
            raise RuntimeError(
                f"openai-harmony's python tool description no longer contains {trained!r}; "
                f"update agent_envs.tools.python._TRAINED_FACTS (description: {text!r})")
        text = text.replace(trained, here.format(timeout=f"{float(call_timeout_s)}"))
    return text


#: The least ``memory_mb`` a session is given: below ~192 MiB of address space numpy (and
#: with it most of what models import) fails to import in the sandbox.
MIN_MEMORY_MB = 256


@dataclasses.dataclass(frozen=True, kw_only=True)
class PythonToolConfig:
    """Settings of the python tool.

    Attributes:
        sandbox: Sandbox backend name: ``auto`` (default: the most isolated backend that
            works here, bubblewrap, then docker, then local with a warning), ``local``,
            ``bubblewrap`` or ``docker``.
        call_timeout_s: Wall-clock limit of one code cell; on expiry the
            session is killed and the next call starts a fresh one.
        memory_mb: Memory (address-space) limit of a session in MiB, at least
            :data:`MIN_MEMORY_MB`.
        max_code_bytes: Largest code cell that is run; larger cells are refused
            with an error message to the model.
        max_output_chars: Characters of tool output the model sees; longer
            output keeps its head and tail around a marker.
        preimports: Modules the sandbox imports before forking sessions.
    """

    sandbox: str = "auto"
    call_timeout_s: float = 10.0
    memory_mb: int = 2048
    max_code_bytes: int = 65_536
    max_output_chars: int = 4_000
    preimports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.preimports, list):
            object.__setattr__(self, "preimports", tuple(self.preimports))
        check_field_types(self)
        try:
            check_backend_name(self.sandbox)
        except UnknownBackend as e:  # also a ValueError; name the argument
            raise UnknownBackend(f"sandbox={self.sandbox!r}: {e}") from None
        if not self.call_timeout_s > 0:
            raise ValueError(f"call_timeout_s must be > 0, got {self.call_timeout_s!r}")
        for name in ("max_code_bytes", "max_output_chars"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.memory_mb) < MIN_MEMORY_MB:
            raise ValueError(
                f"memory_mb={self.memory_mb!r} is too small: a python session needs at least "
                f"{MIN_MEMORY_MB} MiB (its limit is on address space, and importing numpy "
                f"alone maps ~200 MiB), or every call fails. Use e.g. memory_mb=2048 (the "
                f"default).")


_SANDBOXES: dict[tuple[Any, ...], Sandbox] = {}
_SANDBOX_LOCK = threading.Lock()


def shared_sandbox(backend: str, limits: Limits, preimports: Sequence[str] = ()) -> Sandbox:
    """The process-wide sandbox for these settings (one zygote serves many envs)."""
    key = (backend, limits, tuple(preimports))
    with _SANDBOX_LOCK:
        sb = _SANDBOXES.get(key)
        if sb is None:
            sb = make_sandbox(backend, limits=limits, preimports=tuple(preimports))
            _SANDBOXES[key] = sb
        return sb


@atexit.register
def _close_shared_sandboxes() -> None:
    with _SANDBOX_LOCK:
        for sb in _SANDBOXES.values():
            try:
                sb.close()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        _SANDBOXES.clear()


class PythonPart(ToolPart):
    """The python tool (see the module docstring).

    Args:
        config: Its settings.
        sandbox_instance: A ``Sandbox`` to open sessions from (you own it); default: the
            process-wide one for the config's backend, limits and preimports.
    """

    name = "python"
    config_class = PythonToolConfig

    def __init__(self, config: PythonToolConfig | None = None, *,
                 sandbox_instance: Sandbox | None = None) -> None:
        self.config = config or PythonToolConfig()
        self._sandbox_instance = sandbox_instance
        self.session: Session | None = None
        self._declaration: Declaration | None = None

    def __repr__(self) -> str:
        return f"PythonPart(sandbox={self.config.sandbox!r})"

    def declaration(self) -> Declaration:
        """The ``python`` namespace with openai-harmony's description, its facts made true."""
        if self._declaration is None:
            self._declaration = Declaration(builtin=oh.ToolNamespaceConfig(
                name="python", description=python_tool_description(self.config.call_timeout_s),
                tools=[]))
        return self._declaration

    def recipients(self) -> list[str]:
        return ["python"]

    def answers(self, recipient: str) -> bool:
        return recipient == "python"

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox sessions are opened from (created on first use)."""
        if self._sandbox_instance is None:
            cfg = self.config
            limits = Limits(timeout_s=cfg.call_timeout_s, memory_mb=cfg.memory_mb)
            self._sandbox_instance = shared_sandbox(cfg.sandbox, limits, cfg.preimports)
        return self._sandbox_instance

    def _refuse(self, call: ToolCall) -> ToolOutcome | None:
        size = len(call.text.encode("utf-8", "replace"))
        if size > self.config.max_code_bytes:
            return ToolOutcome(
                text=f"Error: the code cell is {size} bytes; cells larger than "
                     f"{self.config.max_code_bytes} bytes are not run. Send smaller cells.",
                ok=False, error=f"code cell too large ({size} bytes)")
        return None

    def call(self, call: ToolCall) -> ToolOutcome:
        refused = self._refuse(call)
        if refused is not None:
            return refused
        try:
            if self.session is None or not self.session.alive:
                self.session = self.sandbox.open()
            result = self.session.run(call.text, timeout_s=self.config.call_timeout_s)
        except SandboxError as e:
            return ToolOutcome(text="", ok=False, infra_error=f"{type(e).__name__}: {e}")
        return self._outcome(result)

    async def acall(self, call: ToolCall) -> ToolOutcome:
        refused = self._refuse(call)
        if refused is not None:
            return refused
        try:
            if self.session is None or not self.session.alive:
                self.session = await self.sandbox.aopen()
            result = await self.session.arun(call.text, timeout_s=self.config.call_timeout_s)
        except SandboxError as e:
            return ToolOutcome(text="", ok=False, infra_error=f"{type(e).__name__}: {e}")
        return self._outcome(result)

    def _outcome(self, result: ExecResult) -> ToolOutcome:
        # The marker counts everything left out, what the sandbox already cut included.
        text = result.render(max_chars=self.config.max_output_chars)
        if not text:
            text = "[no output: print() values, or end the cell with an expression]"
        error = None
        if result.timed_out:
            error = f"timed out after {self.config.call_timeout_s:g} s"
        elif result.dead:
            error = "the python session died"
        elif result.error is not None:
            lines = [ln for ln in result.error.strip().splitlines() if ln.strip()]
            error = lines[-1] if lines else "raised an exception"
        return ToolOutcome(text=text, ok=result.ok, error=error, timed_out=result.timed_out,
                           duration_s=result.duration_s)

    def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.close()

    async def aclose(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.aclose()
