"""``functions``: gpt-oss calling developer-provided functions, natively in harmony.

The functions are declared in the developer message (``namespace functions``, rendered by
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

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import openai_harmony as oh

from agent_envs.core import EnvConfig, HarmonyEnv, ToolCall, ToolOutcome
from agent_envs.envs.functions.runtime import CallRecord, FunctionRunner, RunnerConfig
from agent_envs.envs.functions.tasks import EpisodeState, FunctionsTask
from agent_envs.envs.functions.tools import StatefulTools, Tool, ToolSet, tool, tool_from_schema
from agent_envs.harmony import HarmonyCodec, SystemConfig
from agent_envs.tasks.base import Split, Task, TaskSource, Verdict, check_procedural_only

__all__ = ["DEFAULT_INSTRUCTIONS", "FunctionsEnv", "ToolLike", "make_functions_source"]

DEFAULT_INSTRUCTIONS = (
    "Use the functions to do what the user asks. Call a function by addressing it "
    "(to=functions.NAME) with its arguments as one JSON object. When the task is done, "
    "answer the user briefly.")

ToolLike = Callable[..., Any] | Tool | StatefulTools | Mapping[str, Any]

#: Budgets that suit function calling (multi-turn BFCL needs more steps than python-tool).
_FUNCTIONS_DEFAULTS: dict[str, Any] = {"max_turns": 64, "max_tokens": 65_536}


def _as_tool(item: Any) -> Tool | StatefulTools:
    if isinstance(item, (Tool, StatefulTools)):
        return item
    if isinstance(item, type):
        return StatefulTools(item)
    if isinstance(item, Mapping):
        spec = dict(item)
        fn = spec.pop("fn", None)
        return tool_from_schema(spec, fn)
    if callable(item):
        return tool(item)
    raise TypeError(f"tools must be callables, Tool, StatefulTools, classes or schema dicts; "
                    f"got {type(item).__name__}: {item!r:.100}")


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


class FunctionsEnv(HarmonyEnv):
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

    def __init__(self, *, task_source: str | TaskSource | None = None,
                 tasks: str | TaskSource | None = None, tools: Sequence[ToolLike] = (),
                 split: Split = "train", difficulty: int | None = None,
                 sets: Sequence[str] | None = None, instructions: str | None = None,
                 render_mode: str | None = None, codec: HarmonyCodec | None = None,
                 **kwargs: Any) -> None:
        if task_source is not None and tasks is not None and task_source != tasks:
            raise TypeError(f"got task_source={task_source!r} and tasks={tasks!r}; they are "
                            "the same argument, pass one")
        spec = task_source if task_source is not None else tasks
        env_kw, run_kw = self._split_kwargs(kwargs)
        self.runner_config = RunnerConfig(**run_kw)
        self.instructions = instructions or DEFAULT_INSTRUCTIONS
        self.user_tools = [_as_tool(t) for t in tools]
        source = make_functions_source(spec if spec is not None else "procedural",
                                       difficulty=difficulty, sets=sets)
        super().__init__(task_source=source, split=split,
                         config=EnvConfig(**{**_FUNCTIONS_DEFAULTS, **env_kw}),
                         render_mode=render_mode, codec=codec)
        self.episode: EpisodeState = EpisodeState(())
        self.toolset = ToolSet(())
        self._runner = FunctionRunner(self.toolset, self.runner_config)
        self._user_turn = 0
        self._next_turn_pending = False
        self._errors: dict[str, int] = {}
        self._skipped: list[str] = []

    @classmethod
    def _split_kwargs(cls, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        cls.check_arguments(kwargs)
        env_fields = {f.name for f in dataclasses.fields(EnvConfig)}
        run_fields = {f.name for f in dataclasses.fields(RunnerConfig)}
        return ({k: v for k, v in kwargs.items() if k in env_fields},
                {k: v for k, v in kwargs.items() if k in run_fields})

    # -- the episode ----------------------------------------------------------

    def _new_episode(self, task: Task) -> EpisodeState:
        episode = task.episode() if isinstance(task, FunctionsTask) else EpisodeState(())
        for item in self.user_tools:
            if isinstance(item, StatefulTools):
                inst, bound = item.bind()
                episode.tools.extend(bound)
                episode.instances.setdefault(item.cls.__name__, inst)
            else:
                episode.tools.append(item)
        return episode

    def _developer_message(self) -> oh.Message:
        task = self.task
        instructions = self.instructions
        if isinstance(task, FunctionsTask) and task.instructions is not None:
            instructions = task.instructions
        return self.codec.developer_message(instructions, self.toolset.harmony_specs())

    def initial_messages(self, task: Task) -> list[oh.Message]:
        self.episode = self._new_episode(task)
        self.toolset = ToolSet(self.episode.tools)
        self._runner = FunctionRunner(self.toolset, self.runner_config)
        self._user_turn = 0
        self._next_turn_pending = False
        self._errors = {}
        system = SystemConfig(reasoning_effort=self.config.reasoning_effort,
                              conversation_date=self.config.conversation_date)
        history = []
        for m in task.history if isinstance(task, FunctionsTask) else ():
            if m.get("role") == "assistant":
                history.append(oh.Message.from_role_and_content(
                    oh.Role.ASSISTANT, m["content"]).with_channel("final"))
            else:
                history.append(self.codec.user_message(m["content"]))
        return [self.codec.system_message(system), self._developer_message(), *history,
                self.codec.user_message(task.prompt)]

    def tool_names(self) -> list[str]:
        return [f"functions.{n}" for n in self.toolset.harmony_names()]

    # -- calls ------------------------------------------------------------------

    def _plan(self, action: Any) -> Any:
        # A completion is meant to hold one call, ended by <|call|>. If one holds several
        # (a call ended by <|end|>, then another), only the last can be answered in place:
        # the earlier ones are not run, and the model and info are told so.
        plan = super()._plan(action)
        self._skipped = []
        if plan.call is not None:
            self._skipped = [m.recipient for m in plan.parsed.messages[:-1]
                             if m.recipient not in (None, "assistant")]
            if self._skipped:
                plan.model_error = (f"{len(self._skipped)} earlier call(s) in the same "
                                    f"completion were not run: {', '.join(self._skipped)}")
        return plan

    def _record(self, record: CallRecord) -> ToolOutcome:
        self.episode.calls.append(record)
        if record.error_kind is not None:
            self._errors[record.error_kind] = self._errors.get(record.error_kind, 0) + 1
        outcome = FunctionRunner.outcome(record)
        if self._skipped:
            self._errors["not_run"] = self._errors.get("not_run", 0) + len(self._skipped)
            note = (f"Note: only the last call of a message runs; {', '.join(self._skipped)} "
                    "did not run. End each call with <|call|> and wait for its result.\n")
            outcome = dataclasses.replace(outcome, text=note + outcome.text)
        return outcome

    def call_tool(self, call: ToolCall) -> ToolOutcome:
        if not call.recipient.startswith("functions."):
            return self.unknown_recipient(call)
        return self._record(self._runner.run(call, self._user_turn))

    async def acall_tool(self, call: ToolCall) -> ToolOutcome:
        if not call.recipient.startswith("functions."):
            return self.unknown_recipient(call)
        return self._record(await self._runner.arun(call, self._user_turn))

    # -- turns and the verdict ----------------------------------------------------

    def verify(self, task: Task, final_text: str) -> Verdict:
        self.episode.finals.append(final_text)
        self.episode.end_turn(self._user_turn)
        if isinstance(task, FunctionsTask) and self._user_turn + 1 < task.n_turns:
            self._next_turn_pending = True
            return Verdict(correct=False, extracted=None,
                           reason=f"turn {self._user_turn + 1} of {task.n_turns} answered")
        if isinstance(task, FunctionsTask):
            return task.judge(self.episode)
        return super().verify(task, final_text)

    def follow_up(self, verdict: Verdict, retries_used: int) -> str | None:
        if not self._next_turn_pending:
            return super().follow_up(verdict, retries_used)
        self._next_turn_pending = False
        assert isinstance(self.task, FunctionsTask)
        self._user_turn += 1
        added = self.episode.added.get(self._user_turn)
        if added:
            self.toolset.add(added)
            # The history is re-rendered for the new segment: declare the new functions.
            self._messages[1] = self._developer_message()
        return self.task.more_turns[self._user_turn - 1]

    # -- info -----------------------------------------------------------------------

    def _info(self, **overrides: Any) -> dict[str, Any]:
        info = super()._info(**overrides)
        info["functions"] = {
            "user_turn": getattr(self, "_user_turn", 0),
            "calls": len(self.episode.calls) if hasattr(self, "episode") else 0,
            "errors": dict(sorted(getattr(self, "_errors", {}).items())),
            "renamed": self.toolset.names.renamed if hasattr(self, "toolset") else {},
        }
        return info
