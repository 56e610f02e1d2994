"""``agent``: gpt-oss with any mix of its tools in one episode.

    >>> import agent_envs
    >>> env = agent_envs.make("agent", tools=["python", "browser"])   # research tasks
    >>> env = agent_envs.make("agent", tools=["python", "functions"])  # data-ops tasks
    >>> env = agent_envs.make("agent", tools=["python", "browser", my_function])

As in OpenAI's reference ``gpt_oss/chat.py``: the built-in tools are declared in the system
message (``browser``, then ``python``: the reference's order, whatever order ``tools``
lists them in), developer functions in the developer message (``namespace functions``), and
each call goes to the tool that answers its recipient (``browser.*``, ``python``,
``functions.*``). A call to a tool the env does not have is an observation that names every
tool it has.

``python-tool``, ``browser`` and ``functions`` are presets of this env (one tool each, their
own tasks, verifier and budgets), with the same tokens as before they were.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import openai_harmony as oh

from agent_envs.core import EnvConfig, HarmonyEnv
from agent_envs.harmony import HarmonyCodec, SystemConfig
from agent_envs.tasks.base import Split, Task, TaskSource, Verdict
from agent_envs.tools import PART_NAMES, ToolPart, config_class, make_part, part_class

__all__ = ["DEFAULT_INSTRUCTIONS", "AgentEnv", "compose_tools", "one_spec"]

DEFAULT_INSTRUCTIONS = (
    "Solve the user's task with your tools: find the facts you need with them (they are not "
    "in your memory), and compute exact results with python rather than by hand. End with "
    "the final answer written as \\boxed{ANSWER}."
)


def one_spec(task_source: Any, tasks: Any) -> Any:
    """``task_source`` or its alias ``tasks`` (None when neither is given).

    Raises:
        TypeError: both were given, differently.
    """
    if task_source is not None and tasks is not None and task_source != tasks:
        raise TypeError(f"got task_source={task_source!r} and tasks={tasks!r}; they are "
                        "the same argument, pass one")
    return task_source if task_source is not None else tasks


def compose_tools(tools: Sequence[Any], configs: Mapping[type, Mapping[str, Any]], *,
                  backend: Any = None, sandbox_instance: Any = None) -> tuple[ToolPart, ...]:
    """The tool parts for ``tools``: names (``"python"``, ``"browser"``, ``"functions"``),
    ready :class:`ToolPart` objects, and the user's own developer functions (callables,
    ``Tool``, ``StatefulTools``, classes, JSON Schema dicts), which join the ``functions``
    tool (made for them when ``"functions"`` is not named).

    Raises:
        UnknownArgumentError: an unknown tool name (with a did-you-mean).
        TypeError: ``tools`` is a string, or an item is none of the above.
        ValueError: a tool is named twice, or ``backend``/``sandbox_instance`` without the
            tool that uses it.
    """
    if isinstance(tools, str):
        raise TypeError(f"tools must be a list of tools, got the string {tools!r}; write "
                        f"tools=[{tools!r}]" + (f" or tools={tools.split(',')!r}"
                                                if "," in tools else ""))
    names: list[str] = []
    parts: list[ToolPart] = []
    functions: list[Any] = []
    for item in tools:
        if isinstance(item, str):
            part_class(item)  # an unknown name fails here, with a did-you-mean
            if item in names:
                raise ValueError(f"tools names {item!r} twice; name each tool once")
            names.append(item)
        elif isinstance(item, ToolPart):
            parts.append(item)
        else:
            functions.append(item)
    if functions and "functions" not in names:
        names.append("functions")
    for name, option, value in (("browser", "backend", backend),
                                ("python", "sandbox_instance", sandbox_instance)):
        if value is not None and name not in names:
            raise ValueError(f"{option}= is for the {name} tool, which is not in tools "
                             f"({', '.join(names) or 'none'}); add {name!r} to tools or drop "
                             f"{option}=")
    options = {"browser": {"backend": backend}, "python": {"sandbox_instance": sandbox_instance},
               "functions": {"tools": functions}}
    made = [make_part(n, configs, **options[n]) for n in PART_NAMES if n in names]
    out = tuple(made + parts)
    _check_unused(configs, out)
    seen: set[str] = set()
    for part in out:
        if part.name in seen:
            raise ValueError(f"tools has two {part.name!r} tools; give each tool once")
        seen.add(part.name)
    return out


def _check_unused(configs: Mapping[type, Mapping[str, Any]], parts: Sequence[ToolPart]) -> None:
    """A setting of a tool that is not in ``tools`` would be ignored: refuse it."""
    used = {EnvConfig} | {p.config_class for p in parts if p.config_class is not None}
    known = {f for c in used for f in _fields(c)}
    for config, values in configs.items():
        if config in used:
            continue
        for key in values:
            if key not in known:
                owner = next((n for n in PART_NAMES if config_class(n) is config), "another")
                raise ValueError(f"{key}={values[key]!r} is a setting of the {owner} tool, "
                                 f"which is not in tools ({', '.join(p.name for p in parts)}"
                                 f"); add {owner!r} to tools or drop {key}=")


def _fields(config: type) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(config)}


@functools.cache
def _agent_configs() -> tuple[type, ...]:
    found = [config_class(n) for n in PART_NAMES]
    return (EnvConfig, *dict.fromkeys(c for c in found if c is not None))


class AgentEnv(HarmonyEnv):
    """gpt-oss with any mix of its tools (see the module docstring).

    Args:
        tools: The tools: ``"python"``, ``"browser"``, ``"functions"`` (the task's own
            developer functions), :class:`~agent_envs.tools.base.ToolPart` objects, and your
            own developer functions (callables, ``Tool`` objects, JSON Schema dicts, classes
            or ``StatefulTools``: a fresh instance per episode). Default: python and browser.
        task_source: ``"research"`` (browse a procedural world, then compute), ``"dataops"``
            (fetch records with developer functions, then compute), ``"jsonl:PATH"``, or a
            ``TaskSource`` of any family. Default: research with the browser, else dataops
            with functions, else python-tool's procedural problems.
        tasks: Alias of ``task_source``.
        split: ``"train"`` or ``"test"``; the split seeded resets draw from.
        difficulty: Difficulty of the procedural tasks (1..5; default 1).
        instructions: Developer instructions (default: :data:`DEFAULT_INSTRUCTIONS`).
        backend: A browser backend for every task instead of the task source's pages.
        sandbox_instance: A ``Sandbox`` the python tool opens sessions from (you own it).
        render_mode: None or ``"ansi"``.
        **kwargs: Fields of :class:`~agent_envs.core.EnvConfig` (budgets; here
            ``max_turns=32`` and ``max_tokens=65536`` by default) and of each tool's config
            (:class:`~agent_envs.tools.python.PythonToolConfig`,
            :class:`~agent_envs.envs.browser.tool.BrowserToolConfig`,
            :class:`~agent_envs.envs.functions.runtime.RunnerConfig`); a field several of
            them have (``call_timeout_s``) goes to each.
    """

    env_id = "agent-v0"
    budget_defaults: ClassVar[Mapping[str, Any]] = {"max_turns": 32, "max_tokens": 65_536}
    #: Developer instructions when none are given.
    default_instructions: ClassVar[str] = DEFAULT_INSTRUCTIONS

    @classmethod
    def keyword_configs(cls) -> tuple[type, ...] | None:
        return cls.config_classes if cls.config_classes is not None else _agent_configs()

    def __init__(self, *, tools: Sequence[Any] = ("python", "browser"),
                 task_source: str | TaskSource | None = None,
                 tasks: str | TaskSource | None = None, split: Split = "train",
                 difficulty: int | None = None, instructions: str | None = None,
                 backend: Any = None, sandbox_instance: Any = None,
                 render_mode: str | None = None, codec: HarmonyCodec | None = None,
                 **kwargs: Any) -> None:
        from agent_envs.envs.agent.tasks import default_spec, make_agent_tasks

        spec = one_spec(task_source, tasks)
        configs, _ = self.split_kwargs(kwargs)
        parts = compose_tools(tools, configs, backend=backend, sandbox_instance=sandbox_instance)
        source = make_agent_tasks(spec if spec is not None else default_spec(parts),
                                  difficulty=difficulty)
        self._compose(parts=parts, source=source, split=split, configs=configs,
                      instructions=instructions, render_mode=render_mode, codec=codec)

    def _compose(self, *, parts: Sequence[ToolPart], source: TaskSource, split: Split,
                 configs: Mapping[type, Mapping[str, Any]], instructions: str | None,
                 render_mode: str | None, codec: HarmonyCodec | None) -> None:
        """Finish construction (every preset's constructor ends here)."""
        self.instructions = self.default_instructions if instructions is None else instructions
        HarmonyEnv.__init__(self, task_source=source, split=split,
                            config=self.env_config(configs.get(EnvConfig, {})),
                            render_mode=render_mode, codec=codec, tools=parts)

    # -- the conversation ---------------------------------------------------------------

    def instructions_for(self, task: Task) -> str | None:
        """The developer instructions of an episode on ``task``."""
        return self.instructions

    def history(self, task: Task) -> list[oh.Message]:
        """Messages between the developer message and the task's prompt (default: none)."""
        return []

    def system_config(self, builtins: Sequence[oh.ToolNamespaceConfig]) -> SystemConfig:
        """The system message's settings, with the built-in tools to declare."""
        return SystemConfig(reasoning_effort=self.config.reasoning_effort,
                            conversation_date=self.config.conversation_date,
                            tools=tuple(builtins))

    def initial_messages(self, task: Task) -> list[oh.Message]:
        """Open every tool on ``task``, then: the system message (built-in tools), the
        developer message (instructions, developer functions), the history, the prompt."""
        for part in self.tools:
            part.open(task, self.task_source)
        decls = [p.declaration() for p in self.tools]
        builtins = [d.builtin for d in decls if d.builtin is not None]
        functions = [f for d in decls for f in d.functions]
        return [self.codec.system_message(self.system_config(builtins)),
                self.codec.developer_message(self.instructions_for(task), functions),
                *self.history(task), self.codec.user_message(task.prompt)]

    def verify(self, task: Task, final_text: str) -> Verdict:
        """The task's family verifier (pure): research and data-ops answers are exact."""
        from agent_envs.envs.agent.verifier import verify

        return verify(task, final_text)
