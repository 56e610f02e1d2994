"""``python-tool``: gpt-oss with its built-in, stateful python tool.

A preset of the composed env (:class:`~agent_envs.envs.agent.env.AgentEnv`) with one tool,
:class:`~agent_envs.tools.python.PythonPart`. The model calls ``to=python`` with a code cell
(``<|channel|>analysis to=python code<|message|>CODE<|call|>``); the cell runs in one
sandbox session per episode (variables persist across calls, as in a notebook); the tool
answers with stdout, stderr, the value of the last expression and, when the cell raised,
the traceback's last lines. The episode ends when the model gives a final answer, which
the family's verifier judges (:mod:`~agent_envs.envs.python_tool.verifier`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent_envs.core import EnvConfig
from agent_envs.envs.agent.env import AgentEnv, one_spec
from agent_envs.envs.python_tool import verifier
from agent_envs.envs.python_tool.tasks import make_python_tasks
from agent_envs.harmony import HarmonyCodec
from agent_envs.tasks.base import Split, Task, TaskSource, Verdict
from agent_envs.tools.python import (
    MIN_MEMORY_MB,
    PythonPart,
    PythonToolConfig,
    python_tool_description,
    shared_sandbox,
)
from sandboxes import Sandbox, Session

__all__ = [
    "DEFAULT_INSTRUCTIONS", "MIN_MEMORY_MB", "PythonToolConfig", "PythonToolEnv",
    "python_tool_description", "shared_sandbox",
]

DEFAULT_INSTRUCTIONS = (
    "Solve the user's problem. Use the python tool to compute exact results rather than "
    "working them out by hand. End with the final answer written as \\boxed{ANSWER}."
)


class PythonToolEnv(AgentEnv):
    """gpt-oss solving tasks with its stateful python tool.

    Args:
        task_source: A ``TaskSource`` or a spec string: ``"procedural"``
            (default), ``"jsonl:PATH"``, ``"gsm8k[:split]"``, ``"math[:split]"``.
        tasks: Alias of ``task_source``.
        split: ``"train"`` or ``"test"``; the split seeded resets draw from.
        difficulty: Difficulty knob of the procedural source (1..5; default 1). Other
            sources have their own tasks: giving it with them is an error.
        families: Procedural families to draw from (default: all; procedural only).
        sandbox_instance: A ``Sandbox`` to open sessions from (you own it);
            default: a process-wide one for ``sandbox``/limits/preimports.
        instructions: Developer instructions placed before the task.
        render_mode: None or ``"ansi"``.
        **kwargs: Fields of :class:`~agent_envs.core.EnvConfig` (budgets,
            reward shaping) and of :class:`PythonToolConfig` (sandbox, limits).
    """

    env_id = "python-tool-v0"
    config_classes = (EnvConfig, PythonToolConfig)
    budget_defaults: dict[str, Any] = {}
    default_instructions = DEFAULT_INSTRUCTIONS

    def __init__(self, *, task_source: str | TaskSource | None = None,
                 tasks: str | TaskSource | None = None, split: Split = "train",
                 difficulty: int | None = None, families: Sequence[str] | None = None,
                 sandbox_instance: Sandbox | None = None, instructions: str | None = None,
                 render_mode: str | None = None, codec: HarmonyCodec | None = None,
                 **kwargs: Any) -> None:
        configs, _ = self.split_kwargs(kwargs)
        part = PythonPart(PythonToolConfig(**configs[PythonToolConfig]),
                          sandbox_instance=sandbox_instance)
        spec = one_spec(task_source, tasks)
        source = make_python_tasks("procedural" if spec is None else spec,
                                   difficulty=difficulty, families=families)
        self._compose(parts=(part,), source=source, split=split, configs=configs,
                      instructions=instructions, render_mode=render_mode, codec=codec)

    @property
    def python(self) -> PythonPart:
        """The python tool."""
        return self.tools[0]  # type: ignore[return-value]

    @property
    def tool_config(self) -> PythonToolConfig:
        """The python tool's settings."""
        return self.python.config

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox this env opens sessions from (created on first use)."""
        return self.python.sandbox

    @property
    def _session(self) -> Session | None:
        return self.python.session

    def verify(self, task: Task, final_text: str) -> Verdict:
        """python-tool's verifier (:func:`agent_envs.envs.python_tool.verifier.verify`)."""
        return verifier.verify(task, final_text)
