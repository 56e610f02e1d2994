"""``python-tool``: gpt-oss with its built-in, stateful python tool.

The model calls ``to=python`` with a code cell (``<|channel|>analysis to=python
code<|message|>CODE<|call|>``); the cell runs in one sandbox session per
episode (variables persist across calls, as in a notebook); the tool answers
with stdout, stderr, the value of the last expression and, when the cell
raised, the traceback's last lines. The episode ends when the model gives a
final answer, which the task's verifier judges.
"""

from __future__ import annotations

import atexit
import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import openai_harmony as oh

from agent_envs.core import EnvConfig, HarmonyEnv, ToolCall, ToolOutcome, check_field_types
from agent_envs.harmony import HarmonyCodec, SystemConfig
from agent_envs.tasks.base import Split, Task, TaskSource, check_procedural_only
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

__all__ = [
    "DEFAULT_INSTRUCTIONS", "MIN_MEMORY_MB", "PythonToolConfig", "PythonToolEnv", "python_tool_description",
    "shared_sandbox",
]

DEFAULT_INSTRUCTIONS = (
    "Solve the user's problem. Use the python tool to compute exact results rather than "
    "working them out by hand. End with the final answer written as \\boxed{ANSWER}."
)

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
                f"update agent_envs.envs.python_tool.env._TRAINED_FACTS (description: {text!r})")
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
        instructions: Developer instructions placed before the task.
    """

    sandbox: str = "auto"
    call_timeout_s: float = 10.0
    memory_mb: int = 2048
    max_code_bytes: int = 65_536
    max_output_chars: int = 4_000
    preimports: tuple[str, ...] = ()
    instructions: str = DEFAULT_INSTRUCTIONS

    def __post_init__(self) -> None:
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


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    PythonToolEnv.check_arguments(kwargs)
    env_fields = {f.name for f in dataclasses.fields(EnvConfig)}
    tool_fields = {f.name for f in dataclasses.fields(PythonToolConfig)}
    env_kw = {k: v for k, v in kwargs.items() if k in env_fields}
    tool_kw = {k: v for k, v in kwargs.items() if k in tool_fields}
    if "preimports" in tool_kw:
        tool_kw["preimports"] = tuple(tool_kw["preimports"])
    return env_kw, tool_kw


class PythonToolEnv(HarmonyEnv):
    """gpt-oss solving tasks with its stateful python tool.

    Args:
        task_source: A ``TaskSource`` or a spec string: ``"procedural"``
            (default), ``"jsonl:PATH"``, ``"gsm8k[:split]"``, ``"math[:split]"``.
        split: ``"train"`` or ``"test"``; the split seeded resets draw from.
        difficulty: Difficulty knob of the procedural source (1..5; default 1). Other
            sources have their own tasks: giving it with them is an error.
        families: Procedural families to draw from (default: all; procedural only).
        sandbox_instance: A ``Sandbox`` to open sessions from (you own it);
            default: a process-wide one for ``sandbox``/limits/preimports.
        render_mode: None or ``"ansi"``.
        **kwargs: Fields of :class:`~agent_envs.core.EnvConfig` (budgets,
            reward shaping) and of :class:`PythonToolConfig` (sandbox, limits).
    """

    env_id = "python-tool-v0"
    config_classes = (EnvConfig, PythonToolConfig)

    def __init__(self, *, task_source: str | TaskSource = "procedural", split: Split = "train",
                 difficulty: int | None = None, families: Sequence[str] | None = None,
                 sandbox_instance: Sandbox | None = None, render_mode: str | None = None,
                 codec: HarmonyCodec | None = None, **kwargs: Any) -> None:
        env_kw, tool_kw = _split_kwargs(kwargs)
        self.tool_config = PythonToolConfig(**tool_kw)
        if isinstance(task_source, str) and task_source == "procedural":
            from agent_envs.tasks import make_task_source
            task_source = make_task_source(task_source, difficulty=difficulty or 1,
                                           families=families)
        else:
            check_procedural_only(task_source, difficulty=difficulty, families=families)
            if isinstance(task_source, str):
                from agent_envs.tasks import make_task_source
                task_source = make_task_source(task_source)
        super().__init__(task_source=task_source, split=split, config=EnvConfig(**env_kw),
                         render_mode=render_mode, codec=codec)
        self._sandbox_instance = sandbox_instance
        self._session: Session | None = None

    # -- conversation -----------------------------------------------------------

    def initial_messages(self, task: Task) -> list[oh.Message]:
        system = SystemConfig(
            reasoning_effort=self.config.reasoning_effort,
            conversation_date=self.config.conversation_date, python_tool=True,
            python_description=python_tool_description(self.tool_config.call_timeout_s))
        return [self.codec.system_message(system),
                self.codec.developer_message(self.tool_config.instructions),
                self.codec.user_message(task.prompt)]

    def tool_names(self) -> list[str]:
        return ["python"]

    # -- the tool -------------------------------------------------------------

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox this env opens sessions from (created on first use)."""
        if self._sandbox_instance is None:
            cfg = self.tool_config
            limits = Limits(timeout_s=cfg.call_timeout_s, memory_mb=cfg.memory_mb)
            self._sandbox_instance = shared_sandbox(cfg.sandbox, limits, cfg.preimports)
        return self._sandbox_instance

    def _check_call(self, call: ToolCall) -> ToolOutcome | None:
        if call.recipient != "python":
            return self.unknown_recipient(call)
        size = len(call.text.encode("utf-8", "replace"))
        if size > self.tool_config.max_code_bytes:
            return ToolOutcome(
                text=f"Error: the code cell is {size} bytes; cells larger than "
                     f"{self.tool_config.max_code_bytes} bytes are not run. Send smaller cells.",
                ok=False, error=f"code cell too large ({size} bytes)")
        return None

    def call_tool(self, call: ToolCall) -> ToolOutcome:
        refused = self._check_call(call)
        if refused is not None:
            return refused
        try:
            if self._session is None or not self._session.alive:
                self._session = self.sandbox.open()
            result = self._session.run(call.text, timeout_s=self.tool_config.call_timeout_s)
        except SandboxError as e:
            return ToolOutcome(text="", ok=False, infra_error=f"{type(e).__name__}: {e}")
        return self._outcome(result)

    async def acall_tool(self, call: ToolCall) -> ToolOutcome:
        refused = self._check_call(call)
        if refused is not None:
            return refused
        try:
            if self._session is None or not self._session.alive:
                self._session = await self.sandbox.aopen()
            result = await self._session.arun(call.text,
                                              timeout_s=self.tool_config.call_timeout_s)
        except SandboxError as e:
            return ToolOutcome(text="", ok=False, infra_error=f"{type(e).__name__}: {e}")
        return self._outcome(result)

    def _outcome(self, result: ExecResult) -> ToolOutcome:
        # The marker counts everything left out, what the sandbox already cut included.
        text = result.render(max_chars=self.tool_config.max_output_chars)
        if not text:
            text = "[no output: print() values, or end the cell with an expression]"
        error = None
        if result.timed_out:
            error = f"timed out after {self.tool_config.call_timeout_s:g} s"
        elif result.dead:
            error = "the python session died"
        elif result.error is not None:
            lines = [ln for ln in result.error.strip().splitlines() if ln.strip()]
            error = lines[-1] if lines else "raised an exception"
        return ToolOutcome(text=text, ok=result.ok, error=error, timed_out=result.timed_out,
                           duration_s=result.duration_s)

    def end_episode(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    async def aend_episode(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.aclose()
