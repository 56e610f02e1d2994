"""``functions``: gpt-oss calling developer-provided functions, natively in harmony.

A preset of the composed env (:class:`~agent_envs.envs.agent.env.AgentEnv`) with one tool,
:class:`~agent_envs.tools.functions.FunctionsPart`. The functions are declared in the developer message (``namespace functions``, rendered by
openai-harmony) and the model calls them as
``<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{...}<|call|>``.
Each call is parsed (recipient, constrain type, JSON arguments), validated against the
function's schema *before* it runs, run with a time limit, and answered with a tool
message from ``functions.NAME`` on the call's channel. Every failure (malformed JSON,
unknown function, schema violation with field paths, an exception inside the function,
a timeout, an oversized argument string) is such a message, is counted in
``info["functions"]["errors"]``, and never raises. Calls run one at a time, in the order
the model made them. Nothing the model writes is passed to ``eval``.

Tasks may have several user turns: after each final answer the next user message comes
(a new segment) until the last, which is judged on the whole episode (calls, final state,
answers) by the task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import openai_harmony as oh

from agent_envs.core import EnvConfig
from agent_envs.envs.agent.env import AgentEnv, one_spec
from agent_envs.envs.functions import verifier
from agent_envs.envs.functions.runtime import FunctionRunner, RunnerConfig
from agent_envs.envs.functions.tasks import EpisodeState, FunctionsTask
from agent_envs.envs.functions.tools import StatefulTools, Tool, ToolSet
from agent_envs.harmony import HarmonyCodec
from agent_envs.tasks.base import Split, Task, TaskSource, Verdict, check_procedural_only

__all__ = ["DEFAULT_INSTRUCTIONS", "FunctionsEnv", "ToolLike", "make_functions_source"]

DEFAULT_INSTRUCTIONS = (
    "Use the functions to do what the user asks. Call a function by addressing it "
    "(to=functions.NAME) with its arguments as one JSON object. When the task is done, "
    "answer the user briefly.")

ToolLike = Callable[..., Any] | Tool | StatefulTools | Mapping[str, Any]


def make_functions_source(spec: str | TaskSource, *, difficulty: int | None = None,
                          sets: Sequence[str] | None = None) -> TaskSource:
    """A task source from a spec.

    Specs: ``procedural`` (kwargs ``difficulty``, default 1, and ``sets``), ``bfcl`` (every
    category served), ``bfcl:CAT[,CAT...]`` (a category such as ``simple_python``, or a group:
    ``non_live``, ``live``, ``multi_turn``, ``single_turn``, ``ast``), ``jsonl:PATH``, or a
    ready ``TaskSource``.

    Raises:
        UnknownTaskError: the spec names no known source.
        ValueError: ``difficulty`` or ``sets`` with a source that is not procedural.
    """
    from agent_envs.errors import UnknownTaskError
    if isinstance(spec, TaskSource):
        check_procedural_only(spec, difficulty=difficulty, sets=sets)
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"task_source must be a spec string or a TaskSource, got "
                        f"{type(spec).__name__}")
    kind, _, rest = spec.partition(":")
    if kind == "procedural":
        from agent_envs.envs.functions.procedural import ProceduralFunctionTasks
        return ProceduralFunctionTasks(difficulty=difficulty or 1,
                                       sets=sets if sets is not None else
                                       (rest.split(",") if rest else None))
    if kind in ("bfcl", "jsonl"):
        check_procedural_only(spec, difficulty=difficulty, sets=sets)
    if kind == "bfcl":
        from agent_envs.envs.functions.bfcl.tasks import BfclTasks
        return BfclTasks(rest.split(",") if rest else None)
    if kind == "jsonl":
        if not rest:
            raise UnknownTaskError(f"task source spec {spec!r} has no path; write 'jsonl:PATH'")
        from agent_envs.envs.functions.tasks import calls_tasks_from_jsonl
        return calls_tasks_from_jsonl(rest)
    raise UnknownTaskError(f"unknown functions task source {spec!r}; use 'procedural', "
                           "'bfcl', 'bfcl:CATEGORY', or 'jsonl:PATH'")


class FunctionsEnv(AgentEnv):
    """gpt-oss calling developer functions.

    Args:
        task_source: ``"procedural"`` (default), ``"bfcl"``, ``"bfcl:simple_python"``,
            ``"jsonl:PATH"`` or a ``TaskSource``.
        tasks: Alias of ``task_source`` (``make("functions", tasks="bfcl:live_simple")``).
        tools: The user's own tools, available in every episode: functions (sync or
            async), :class:`Tool` objects, JSON Schema dicts (with an optional ``"fn"``),
            classes or :class:`StatefulTools` (a fresh instance per episode).
        split: Split seeded resets draw from.
        difficulty: Procedural difficulty (1..5; default 1). BFCL and JSONL tasks have their
            own: giving it with them is an error.
        sets: Procedural tool sets to draw from (default: all; procedural only).
        instructions: Developer instructions (a task's own take precedence).
        render_mode: None or ``"ansi"``.
        **kwargs: Fields of :class:`~agent_envs.core.EnvConfig` (budgets; here
            ``max_turns=64`` and ``max_tokens=65536`` by default) and of
            :class:`~agent_envs.envs.functions.runtime.RunnerConfig` (``validation``,
            ``call_timeout_s``, ``max_argument_chars``, ``max_result_chars``, ...).
    """

    env_id = "functions-v0"
    config_classes = (EnvConfig, RunnerConfig)
    #: Budgets that suit function calling (multi-turn BFCL needs more steps than python-tool).
    budget_defaults: Mapping[str, Any] = {"max_turns": 64, "max_tokens": 65_536}
    default_instructions = DEFAULT_INSTRUCTIONS

    def __init__(self, *, task_source: str | TaskSource | None = None,
                 tasks: str | TaskSource | None = None, tools: Sequence[ToolLike] = (),
                 split: Split = "train", difficulty: int | None = None,
                 sets: Sequence[str] | None = None, instructions: str | None = None,
                 render_mode: str | None = None, codec: HarmonyCodec | None = None,
                 **kwargs: Any) -> None:
        from agent_envs.tools.functions import FunctionsPart

        spec = one_spec(task_source, tasks)
        configs, _ = self.split_kwargs(kwargs)
        part = FunctionsPart(RunnerConfig(**configs[RunnerConfig]), tools=tools)
        source = make_functions_source(spec if spec is not None else "procedural",
                                       difficulty=difficulty, sets=sets)
        self._next_turn_pending = False
        self._compose(parts=(part,), source=source, split=split, configs=configs,
                      instructions=instructions or None, render_mode=render_mode, codec=codec)

    # -- the functions tool's state, by the names subclasses (tau2) use -------------------

    @property
    def functions(self) -> Any:
        """The functions tool (:class:`~agent_envs.tools.functions.FunctionsPart`)."""
        return self.tools[0]

    @property
    def user_tools(self) -> list[Tool | StatefulTools]:
        """The user's own tools, in every episode."""
        return self.functions.user_tools

    @property
    def runner_config(self) -> RunnerConfig:
        """How calls are checked and run."""
        return self.functions.config

    @property
    def episode(self) -> EpisodeState:
        """This episode's tools, instances and calls."""
        return self.functions.episode

    @episode.setter
    def episode(self, value: EpisodeState) -> None:
        self.functions.episode = value

    @property
    def toolset(self) -> ToolSet:
        """The functions the model sees this episode."""
        return self.functions.toolset

    @toolset.setter
    def toolset(self, value: ToolSet) -> None:
        self.functions.toolset = value

    @property
    def _runner(self) -> FunctionRunner:
        return self.functions.runner

    @_runner.setter
    def _runner(self, value: FunctionRunner) -> None:
        self.functions.runner = value

    @property
    def _errors(self) -> dict[str, int]:
        return self.functions.errors

    @_errors.setter
    def _errors(self, value: dict[str, int]) -> None:
        self.functions.errors = value

    @property
    def _user_turn(self) -> int:
        return self.functions.turn

    @_user_turn.setter
    def _user_turn(self, value: int) -> None:
        self.functions.turn = value

    # -- the conversation ---------------------------------------------------------------

    def instructions_for(self, task: Task) -> str | None:
        """The task's own instructions, else the env's."""
        if isinstance(task, FunctionsTask) and task.instructions is not None:
            return task.instructions
        return self.instructions

    def _developer_message(self) -> oh.Message:
        assert self.task is not None
        return self.codec.developer_message(self.instructions_for(self.task),
                                            self.toolset.harmony_specs())

    def history(self, task: Task) -> list[oh.Message]:
        """The task's earlier messages (BFCL's multi-turn history), before its prompt."""
        out = []
        for m in task.history if isinstance(task, FunctionsTask) else ():
            if m.get("role") == "assistant":
                out.append(oh.Message.from_role_and_content(
                    oh.Role.ASSISTANT, m["content"]).with_channel("final"))
            else:
                out.append(self.codec.user_message(m["content"]))
        return out

    def initial_messages(self, task: Task) -> list[oh.Message]:
        self._next_turn_pending = False
        return super().initial_messages(task)

    # -- turns and the verdict ----------------------------------------------------

    def _more_turns(self, task: Task) -> bool:
        return isinstance(task, FunctionsTask) and self._user_turn + 1 < task.n_turns

    def record_final(self, final_text: str) -> None:
        """The answer ends the user turn (stateful tasks snapshot their state)."""
        self.episode.finals.append(final_text)
        self.episode.end_turn(self._user_turn)

    def verify(self, task: Task, final_text: str) -> Verdict:
        """Pure (:func:`agent_envs.envs.functions.verifier.verify`): a turn that is not the
        last is not judged; the last judges the whole episode (calls, final state, answers)
        by the task."""
        return verifier.verify(task, self.episode, final_text, self._user_turn)

    def follow_up(self, verdict: Verdict, retries_used: int) -> str | None:
        task = self.task
        if task is None or not self._more_turns(task):
            return super().follow_up(verdict, retries_used)
        assert isinstance(task, FunctionsTask)
        self._user_turn += 1
        added = self.episode.added.get(self._user_turn)
        if added:
            self.functions.add_tools(added)
            # The history is re-rendered for the new segment: declare the new functions.
            self._messages[1] = self._developer_message()
        return task.more_turns[self._user_turn - 1]
