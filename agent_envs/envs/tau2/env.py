"""``tau2``: τ²-bench in harmony. gpt-oss serves a simulated customer under a domain policy.

The episode is τ²'s conversation, token for token in harmony:

* the developer message holds τ²'s agent prompt (its instructions and the domain policy) and
  the domain's tools as ``namespace functions`` (schemas from τ²'s own tool definitions);
* the conversation opens with τ²'s greeting (an assistant ``final`` message) and the simulated
  user's first message, or with the task's own message history;
* the model calls tools (``to=functions.NAME``); each call runs on this episode's fresh τ²
  database exactly as τ²'s orchestrator runs it, and the model sees τ²'s tool message;
* a ``final`` message goes to the user; the user's reply comes as the next user message (a new
  segment, as after any finished turn);
* the conversation ends as τ²'s does: the user's ``###STOP###``, ``###TRANSFER###`` or
  ``###OUT-OF-SCOPE###`` (``terminated``, judged), ``max_steps`` messages (``truncated``,
  ``turns``) or ``max_errors`` failed tool calls (``truncated``, ``errors``); both score 0.

The reward is what τ²'s evaluator gives the conversation (:mod:`~agent_envs.envs.tau2.verifier`):
1.0 or 0.0. A user simulator or judge that fails is an infrastructure fault
(``info["infra_error"]``), not the agent's. At the end ``info["episode"]`` holds the τ²
record of the conversation (``tau2``), the user simulator's identity (``user_simulator``) and
the judge's (``judge``; off by default); ``agent-envs eval export --format tau2`` turns a
bundle of them into τ²'s results JSON.

Steps are counted as τ² counts them: every agent message, every tool result and every user
message is one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import json
from typing import Any, ClassVar

import numpy as np
import openai_harmony as oh

from agent_envs.core import EnvConfig, TokenBuffer, ToolCall, ToolOutcome
from agent_envs.envs.functions.env import FunctionsEnv
from agent_envs.envs.functions.runtime import FunctionRunner, RunnerConfig
from agent_envs.envs.functions.tools import ToolSet
from agent_envs.envs.tau2.conversation import GREETING, history_messages, tau2_messages, user_view
from agent_envs.envs.tau2.data import Tau2Error, domain, prompt_constant
from agent_envs.envs.tau2.judge import JUDGE_OFF, JudgeError
from agent_envs.envs.tau2.tasks import Tau2Episode, Tau2Task, make_tau2_source
from agent_envs.envs.tau2.user import (
    RecordingUser,
    UserSession,
    UserSimulatorError,
    is_stop,
    user_from_spec,
)
from agent_envs.envs.tau2.verifier import STOPPED, evaluate, summary
from agent_envs.harmony import SystemConfig
from agent_envs.tasks.base import Split, TaskSource, Verdict

__all__ = ["Tau2Env", "agent_system_prompt"]

#: Budgets that suit τ²: its limits (max_steps, max_errors) bind first; a long conversation
#: re-renders into a long prompt.
_TAU2_DEFAULTS: dict[str, Any] = {
    "max_turns": 200, "max_tokens": 131_072, "validation": "off", "call_timeout_s": None,
    "max_result_chars": 1_000_000,
}


def agent_system_prompt(domain_name: str) -> str:
    """τ²'s agent prompt for a domain (``tau2.agent.llm_agent.SYSTEM_PROMPT`` with its
    instructions and the domain policy): the developer instructions of every episode."""
    template = prompt_constant("tau2.agent.llm_agent", "SYSTEM_PROMPT")
    return template.format(agent_instruction=prompt_constant("tau2.agent.llm_agent",
                                                             "AGENT_INSTRUCTION"),
                           domain_policy=domain(domain_name).policy)


class Tau2Env(FunctionsEnv):
    """τ²-bench's customer-service conversations (see the module docstring).

    Args:
        task_source: ``"retail"`` (default), ``"airline"``, ``"mock"``, ``"DOMAIN:SPLIT"``
            (``"retail:test"``) or a ``Tau2Tasks``; ``"telecom"`` is refused (not served).
        tasks: Alias of ``task_source``.
        split: Split seeded resets draw from (τ²'s train/test; mock tasks are all test).
        user: Who plays the user: ``"scripted"`` (default: the oracle plan's user),
            ``"cassette:PATH"``, or a ``UserSimulator`` such as ``LLMUser(policy)``.
        record_user: Append each episode's user side to this JSONL cassette.
        judge: An ``LLMJudge`` to grade NL assertions (default: none, as τ²'s default
            evaluation; the episode record says so).
        max_steps: τ²'s limit on messages (agent, tool, user) per conversation (τ²: 200).
        max_errors: τ²'s limit on failed tool calls (τ²: 10); None: no limit.
        render_mode: None or ``"ansi"``.
        **kwargs: Fields of :class:`~agent_envs.core.EnvConfig` and
            :class:`~agent_envs.envs.functions.runtime.RunnerConfig`. Here
            ``validation="off"`` (τ² runs its tools on the arguments as given),
            ``call_timeout_s=None`` and ``max_result_chars=1_000_000`` (τ² does not cut
            results), ``max_turns=200``, ``max_tokens=131072``.

    Raises:
        TypeError: an unknown argument (with a did-you-mean).
        Tau2Error: a bad user, judge or limit, or a domain that is not served.
    """

    env_id = "tau2-v0"
    #: Arguments an eval run may set without changing the suite (recorded in the header).
    eval_args: ClassVar[tuple[str, ...]] = ("user", "record_user", "judge")

    def __init__(self, *, task_source: str | TaskSource | None = None,
                 tasks: str | TaskSource | None = None, split: Split = "train",
                 user: Any = None, record_user: str | None = None, judge: Any = None,
                 max_steps: int = 200, max_errors: int | None = 10,
                 render_mode: str | None = None, codec: Any = None, **kwargs: Any) -> None:
        known = ({f.name for f in dataclasses.fields(EnvConfig)}
                 | {f.name for f in dataclasses.fields(RunnerConfig)})
        unknown = sorted(set(kwargs) - known)
        if unknown:
            mine = ["task_source", "tasks", "split", "user", "record_user", "judge", "max_steps",
                    "max_errors", "render_mode"]
            hint = difflib.get_close_matches(unknown[0], [*mine, *known], n=1)
            raise TypeError(f"Tau2Env got an unknown argument {unknown[0]!r}"
                            + (f"; did you mean {hint[0]!r}?" if hint else "")
                            + f" Known arguments: {', '.join(sorted([*mine, *known]))}")
        if task_source is not None and tasks is not None and task_source != tasks:
            raise TypeError(f"got task_source={task_source!r} and tasks={tasks!r}; they are "
                            "the same argument, pass one")
        if int(max_steps) < 1:
            raise Tau2Error(f"max_steps must be >= 1 (τ² uses 200), got {max_steps!r}")
        if max_errors is not None and int(max_errors) < 1:
            raise Tau2Error(f"max_errors must be >= 1 or None (τ² uses 10), got {max_errors!r}")
        if judge is not None and not callable(getattr(judge, "assess", None)):
            raise Tau2Error(f"judge must be an LLMJudge (or have assess() and identity()), got "
                            f"{type(judge).__name__}")
        spec = task_source if task_source is not None else tasks
        source = make_tau2_source(spec if spec is not None else "retail")
        simulator = user_from_spec(user)
        self.user_simulator = RecordingUser(simulator, record_user) if record_user else simulator
        self.judge = judge
        self.max_steps = int(max_steps)
        self.max_errors = None if max_errors is None else int(max_errors)
        super().__init__(task_source=source, split=split, render_mode=render_mode, codec=codec,
                         **{**_TAU2_DEFAULTS, **kwargs})
        self._seed: int | None = None
        self._user: UserSession | None = None
        self._clear()

    def _clear(self) -> None:
        self._convo: list[dict[str, Any]] = []
        self._steps = 0
        self._n_errors = 0
        self._termination: str | None = None
        self._infra: str | None = None
        self._reward_info: dict[str, Any] | None = None
        self._next_user: str | None = None
        self._final_done = False

    # -- the opening ----------------------------------------------------------------

    def _developer_message(self) -> oh.Message:
        assert isinstance(self.task, Tau2Task)
        return self.codec.developer_message(agent_system_prompt(self.task.domain),
                                            self.toolset.harmony_specs())

    def _history(self, task: Tau2Task) -> list[oh.Message]:
        out: list[oh.Message] = []
        last_call = ""
        for m in history_messages(task):
            if m.role == "user" and not m.is_tool_call():
                out.append(self.codec.user_message(m.content or ""))
            elif m.role == "assistant" and m.is_tool_call():
                for c in m.tool_calls:
                    out.append(oh.Message.from_role_and_content(
                        oh.Role.ASSISTANT, json.dumps(c.arguments, ensure_ascii=False))
                        .with_channel("commentary").with_recipient(f"functions.{c.name}")
                        .with_content_type("<|constrain|>json"))
                    last_call = c.name
            elif m.role == "assistant":
                out.append(oh.Message.from_role_and_content(oh.Role.ASSISTANT, m.content or "")
                           .with_channel("final"))
            elif m.role == "tool":
                out.append(self.codec.tool_message(f"functions.{last_call}",
                                                   m.content or "", channel="commentary"))
        return out

    def initial_messages(self, task: Any) -> list[oh.Message]:
        if not isinstance(task, Tau2Task):
            raise Tau2Error(f"the tau2 env runs τ² tasks, got {type(task).__name__}")
        t = task.tau2_task()
        ec = t.evaluation_criteria
        if (ec is not None and self.judge is None
                and "NL_ASSERTION" in {r.value for r in ec.reward_basis}):
            raise Tau2Error(f"task {task.id}'s reward counts NL assertions, which need a judge: "
                            "pass judge=LLMJudge(policy) (agent-envs eval --judge URL)")
        self.episode: Tau2Episode = task.episode()
        self.toolset = ToolSet(self.episode.tools)
        self._runner = FunctionRunner(self.toolset, self.runner_config)
        self._user_turn = 0
        self._next_turn_pending = False
        self._errors = {}
        self._clear()
        self._user = self.user_simulator.start(task, self._seed)
        system = SystemConfig(reasoning_effort=self.config.reasoning_effort,
                              conversation_date=self.config.conversation_date)
        self.task = task
        messages = [self.codec.system_message(system), self._developer_message()]
        history = self._history(task)
        if not history:
            self._convo.append({"role": "assistant", "content": GREETING})
            history = [oh.Message.from_role_and_content(oh.Role.ASSISTANT, GREETING)
                       .with_channel("final")]
        return messages + history

    def _user_speaks_first(self) -> bool:
        assert isinstance(self.task, Tau2Task)
        history = history_messages(self.task)
        return not history or (history[-1].role == "assistant"
                               and not history[-1].is_tool_call())

    def _add_user(self, text: str) -> None:
        """The user's message: recorded, counted, checked for τ²'s end conditions."""
        self._convo.append({"role": "user", "content": text})
        self._steps += 1
        if is_stop(text):
            self._termination = "user_stop"
        self._check_limits()  # after the stop too: τ²'s limits override it

    def _open(self) -> tuple[np.ndarray, dict[str, Any]]:
        if self._convo and self._convo[-1]["role"] == "user":
            self._messages.append(self.codec.user_message(self._convo[-1]["content"]))
            self._tokens = TokenBuffer(self.codec.render_prompt(self._messages,
                                                                self.config.analysis_policy))
        return self._obs(), self._info()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a conversation (the user's first message comes from the user simulator).

        Raises:
            UserSimulatorError: the user simulator gave no first message (infrastructure).
        """
        self._seed = seed
        super().reset(seed=seed, options=options)
        self.episode.environment  # noqa: B018 - the database, built now rather than mid-step
        if self._user_speaks_first():
            assert self._user is not None
            self._add_user(self._user.reply(user_view(self.task, self._convo)))
        return self._open()

    async def areset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
                     ) -> tuple[np.ndarray, dict[str, Any]]:
        """Async twin of :meth:`reset` (the database is built in a worker thread)."""
        self._seed = seed
        await self.aend_episode()
        await asyncio.to_thread(self._begin_with_database, seed, options)
        if self._user_speaks_first():
            assert self._user is not None
            self._add_user(await self._user.areply(user_view(self.task, self._convo)))
        return self._open()

    def _begin_with_database(self, seed: int | None, options: dict[str, Any] | None) -> None:
        self._begin_episode(seed, options)
        self.episode.environment  # noqa: B018 - built in the worker thread, not in the loop

    # -- τ²'s bookkeeping -------------------------------------------------------------

    def _check_limits(self) -> None:
        """τ²'s checks after a message that is not to the environment. As in τ²'s
        orchestrator they come after the message's own end (a stop) and override it: a stop
        that is the ``max_steps``-th message ends the conversation as ``max_steps``."""
        if self._steps >= self.max_steps:
            self._termination = "max_steps"
        if self.max_errors is not None and self._n_errors >= self.max_errors:
            self._termination = "too_many_errors"

    def _after_call(self, before: int) -> None:
        calls = self.episode.tau2_calls
        if len(calls) > before:
            c = calls[-1]
            self._convo.append({"role": "assistant", "tool_call": {
                "id": c.call_id, "name": c.name, "arguments": c.arguments}, "error": c.error})
            error = c.error
            if error:
                self._errors["tau2_error"] = self._errors.get("tau2_error", 0) + 1
        else:
            error = True  # refused before τ² (bad JSON, unknown function): τ² counts it too
        self._steps += 2  # the agent's call, the tool's result
        self._n_errors += int(error)
        self._check_limits()

    def call_tool(self, call: ToolCall) -> ToolOutcome:
        before = len(self.episode.tau2_calls)
        outcome = super().call_tool(call)
        self._after_call(before)
        return outcome

    async def acall_tool(self, call: ToolCall) -> ToolOutcome:
        before = len(self.episode.tau2_calls)
        outcome = await super().acall_tool(call)
        self._after_call(before)
        return outcome

    def _agent_says(self, text: str) -> bool:
        """The agent's message to the user; True when the user should now reply."""
        self._convo.append({"role": "assistant", "content": text})
        self._steps += 1
        self._check_limits()
        return self._termination is None

    def _judged(self) -> None:
        """Score a conversation that ended by a stop (sets the reward info or infra)."""
        if self._termination not in STOPPED or self._reward_info is not None:
            return
        assert isinstance(self.task, Tau2Task)
        results = [(c.content, c.error) for c in self.episode.tau2_calls]
        messages = tau2_messages(self.task, self._convo, results)
        try:
            self._reward_info = evaluate(self.task, messages, self.episode.environment,
                                         self._termination, self.judge)
        except JudgeError as e:
            self._infra = str(e)

    # -- steps --------------------------------------------------------------------------

    def _forced(self, plan: Any) -> Any:
        """A step after the conversation already ended (the user stopped at once)."""
        plan.call, plan.notice = None, None
        if plan.final_text is None and plan.truncated_reason is None:
            plan.final_text = ""
        self._final_done = True
        return plan

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        plan = self._plan(action)
        if self._termination is not None:
            plan = self._forced(plan)
        outcome = self.call_tool(plan.call) if plan.call is not None else None
        result = self._finish(plan, outcome)
        if result[2] or result[3]:
            self.end_episode()
        return result

    async def astep(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Async twin of :meth:`step`: the user's reply is awaited, and the scoring (database
        hashes, a judge) runs in a worker thread."""
        plan = self._plan(action)
        if self._termination is not None:
            plan = self._forced(plan)
        outcome = None
        if plan.call is not None:
            outcome = await self.acall_tool(plan.call)
        elif plan.final_text is not None and plan.truncated_reason is None \
                and not self._final_done:
            self._final_done = True
            if self._agent_says(plan.final_text):
                try:
                    assert self._user is not None
                    self._add_user(await self._user.areply(user_view(self.task, self._convo)))
                except UserSimulatorError as e:
                    self._infra = str(e)
        if self._infra is None and plan.final_text is not None:
            await asyncio.to_thread(self._judged)
        result = self._finish(plan, outcome)
        if result[2] or result[3]:
            await self.aend_episode()
        return result

    def verify(self, task: Any, final_text: str) -> Verdict:
        if not self._final_done:
            self._final_done = True
            if self._agent_says(final_text):
                try:
                    assert self._user is not None
                    self._add_user(self._user.reply(user_view(task, self._convo)))
                except UserSimulatorError as e:
                    self._infra = str(e)
        self._final_done = False
        if self._infra is not None:
            return Verdict(correct=False, extracted=None,
                           reason=f"infrastructure: {self._infra}")
        if self._termination is None:
            self._next_user = self._convo[-1]["content"]
            return Verdict(correct=False, extracted=None, reason="the user replied")
        if self._termination not in STOPPED:
            return Verdict(correct=False, extracted=None,
                           reason=f"τ² ended the conversation: {self._termination} (reward 0)")
        self._judged()
        if self._infra is not None:
            return Verdict(correct=False, extracted=None,
                           reason=f"infrastructure: {self._infra}")
        assert self._reward_info is not None
        r = self._reward_info
        parts = ", ".join(f"{k} {v:g}" for k, v in (r.get("reward_breakdown") or {}).items())
        return Verdict(correct=r["reward"] >= 1.0, extracted=None,
                       reason=f"τ² reward {r['reward']:g}" + (f" ({parts})" if parts else ""))

    def follow_up(self, verdict: Verdict, retries_used: int) -> str | None:
        text, self._next_user = self._next_user, None
        if text is not None:
            self._user_turn += 1
        return text

    def _finish(self, plan: Any, outcome: ToolOutcome | None
                ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super()._finish(plan, outcome)
        if not (terminated or truncated):
            if self._termination is None:
                return obs, reward, terminated, truncated, info
            # τ²'s limits ended the conversation after a tool result: end the episode here.
            self._active = False
            verdict = Verdict(correct=False, extracted=None,
                              reason=f"τ² ended the conversation: {self._termination} "
                                     "(reward 0)")
            components = self._reward_components(verdict, None)
            reward = float(sum(components.values()))
            info.update(verdict=dataclasses.asdict(verdict), reward_components=components)
            info["episode"] = {"turns": self._turn, "tool_calls": self._tool_calls,
                               "model_errors": self._model_errors,
                               "tool_errors": self._tool_errors, "segments": self._segment + 1}
            truncated = True
        if self._infra is not None:
            terminated, truncated, reward = False, True, 0.0
            info.update(infra_error=self._infra, truncated_reason="infra",
                        reward_components=self._reward_components(None, self._infra))
        elif self._termination is None:
            self._termination = "max_steps"  # our own budget (turns, tokens, time) ran out
        elif self._termination not in STOPPED:
            terminated, truncated = False, True
            info["truncated_reason"] = "turns" if self._termination == "max_steps" else "errors"
        assert isinstance(self.task, Tau2Task)
        info["episode"]["tau2"] = {
            "domain": self.task.domain, "tau2_id": self.task.tau2_id,
            "termination_reason": self._termination, "max_steps": self.max_steps,
            "max_errors": self.max_errors, "steps": self._steps, "record": self._convo,
            "reward": None if self._reward_info is None else summary(self._reward_info)}
        info["episode"]["user_simulator"] = self.user_simulator.identity()
        info["episode"]["judge"] = JUDGE_OFF if self.judge is None else self.judge.identity()
        info["tau2"] = self._tau2_info()
        return obs, reward, terminated, truncated, info

    # -- info and teardown ------------------------------------------------------------------

    def _tau2_info(self) -> dict[str, Any]:
        return {"steps": getattr(self, "_steps", 0), "errors": getattr(self, "_n_errors", 0),
                "termination": getattr(self, "_termination", None)}

    def _info(self, **overrides: Any) -> dict[str, Any]:
        info = super()._info(**overrides)
        info["tau2"] = self._tau2_info()
        return info

    @property
    def reward_info(self) -> dict[str, Any] | None:
        """τ²'s full ``RewardInfo`` (JSON) of the last judged conversation: the verifier's
        knowledge (expected actions included), for local inspection and tests; the env never
        puts it in ``info``."""
        return self._reward_info

    def tau2_trajectory(self) -> list[Any]:
        """The episode so far as τ²'s message objects (history, calls and results included)."""
        assert isinstance(self.task, Tau2Task)
        return tau2_messages(self.task, self._convo,
                             [(c.content, c.error) for c in self.episode.tau2_calls])

    def close(self) -> None:
        """End the episode and release the user simulator's resources. Idempotent."""
        super().close()
        self.user_simulator.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await super().aclose()
        await self.user_simulator.aclose()

    def end_episode(self) -> None:
        user, self._user = getattr(self, "_user", None), None
        if user is not None:
            user.close()
