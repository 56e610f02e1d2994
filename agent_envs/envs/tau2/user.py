"""τ²'s simulated user, behind one small interface.

A :class:`UserSimulator` is shared by envs; :meth:`UserSimulator.start` opens one episode's
:class:`UserSession`, whose :meth:`~UserSession.reply` takes the conversation *as the user
sees it* (the agent's messages to the user and the user's own, as in τ²: tool calls are not
shown to the user) and returns the user's next message. A message containing ``###STOP###``,
``###TRANSFER###`` or ``###OUT-OF-SCOPE###`` ends the conversation, as in τ².

Simulators:

:class:`ScriptedUser` (``"scripted"``)
    the user of the oracle's plan (:mod:`~agent_envs.envs.tau2.plan`): the reason for calling,
    a yes to each question, then ``###STOP###``. Replies by turn, whatever the agent said.
:class:`CassetteUser` (``"cassette:PATH"``)
    replays the user's side of recorded conversations (:class:`RecordingUser` writes them), so
    two agents can be compared against the same user. ``match="turn"`` replays the k-th
    recorded reply at the k-th turn; ``match="exact"`` also requires the agent's message to
    be the recorded one. A reply the cassette does not have is an infrastructure fault
    (:class:`UserSimulatorError`), never the agent's.
:class:`LLMUser`
    an LLM through any of our policies (an OpenAI-compatible server, HF, vLLM: any object
    with ``sample``/``asample`` of the ``trainers.policies.Policy`` protocol), prompted in
    harmony with τ²'s own simulator prompt (τ²'s guidelines and the task's user scenario,
    from the installed package) as the developer message and the conversation with roles
    flipped, as τ²'s ``UserSimulator`` does. A policy that fails, or gives no reply after
    ``max_attempts`` samples, is an infrastructure fault.

Every simulator states its identity (:meth:`UserSimulator.identity`: kind, model, prompt hash,
sampling), which goes into the episode record and the eval bundle header.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import openai_harmony as oh

from agent_envs.envs.tau2.data import Tau2Error, prompt_constant, tau2_version
from agent_envs.harmony import STOP_TOKEN_IDS, SystemConfig, get_codec, message_text

__all__ = [
    "STOP_SIGNALS", "CassetteUser", "LLMUser", "RecordingUser", "ScriptedUser", "UserSession",
    "UserSimulator", "UserSimulatorError", "UserView", "is_stop", "user_from_spec",
    "user_system_prompt",
]

#: τ²'s stop, transfer and out-of-scope signals (tau2.user.base).
STOP_SIGNALS = ("###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###")
#: The conversation as the user sees it: ("agent" | "user", text) pairs, oldest first.
UserView = Sequence[tuple[Literal["agent", "user"], str]]


class UserSimulatorError(Tau2Error):
    """The user simulator could not reply (policy failure, cassette miss): an infrastructure
    fault; the episode is flagged ``infra_error``, never scored against the agent."""


def is_stop(text: str) -> bool:
    """Whether a user message ends the conversation (τ²'s ``UserSimulator.is_stop``)."""
    return any(signal in text for signal in STOP_SIGNALS)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _guidelines() -> str:
    from tau2.utils import DATA_DIR

    return (Path(DATA_DIR) / "tau2" / "user_simulator" / "simulation_guidelines.md").read_text()


def user_system_prompt(tau2_task: Any) -> str:
    """τ²'s user simulator prompt for a task: its guidelines and the task's user scenario, in
    τ²'s own template (``tau2.user.user_simulator.SYSTEM_PROMPT``)."""
    template = prompt_constant("tau2.user.user_simulator", "SYSTEM_PROMPT")
    return template.format(global_user_sim_guidelines=_guidelines(),
                           instructions=str(tau2_task.user_scenario))


class UserSession(abc.ABC):
    """One episode's user."""

    @abc.abstractmethod
    def reply(self, view: UserView) -> str:
        """The user's next message, given the conversation so far (ending with the agent's
        message, or with τ²'s greeting at the start).

        Raises:
            UserSimulatorError: no reply could be had (infrastructure, not the agent).
        """

    async def areply(self, view: UserView) -> str:
        """Async twin of :meth:`reply` (default: :meth:`reply` in a worker thread)."""
        return await asyncio.to_thread(self.reply, view)

    def close(self) -> None:
        """The episode ended (or was abandoned)."""


class UserSimulator(abc.ABC):
    """Makes a :class:`UserSession` per episode. Shared between envs: keep no episode state."""

    kind: ClassVar[str] = "user"

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """Who plays the user: ``kind`` and what makes its replies what they are (model,
        prompt hash, sampling, cassette digest); plain JSON."""

    @abc.abstractmethod
    def start(self, task: Any, seed: int | None) -> UserSession:
        """The user of one episode of ``task`` (a ``Tau2Task``), seeded with the env's seed."""

    def close(self) -> None:
        """Release what the simulator holds (an LLM user's connection pool); it may be used
        again afterwards. Called by the env's ``close``."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close` (called by the env's ``aclose``)."""
        self.close()


class _ListSession(UserSession):
    """Replies from a list, by turn; running past it is an infrastructure fault."""

    def __init__(self, replies: Sequence[str], what: str,
                 expected_agent: Sequence[str | None] | None = None) -> None:
        self.replies = list(replies)
        self.expected_agent = expected_agent
        self.what = what
        self.turn = 0

    def reply(self, view: UserView) -> str:
        k = self.turn
        if k >= len(self.replies):
            raise UserSimulatorError(
                f"{self.what} has no reply for user turn {k + 1}: it holds {len(self.replies)} "
                "(the agent took more turns than the recorded conversation; replay with an LLM "
                "user to go further)")
        if self.expected_agent is not None:
            said = view[-1][1] if view and view[-1][0] == "agent" else None
            want = self.expected_agent[k] if k < len(self.expected_agent) else None
            if want is not None and said != want:
                raise UserSimulatorError(
                    f"{self.what} (match='exact') has no reply for this conversation: at user "
                    f"turn {k + 1} the agent said {said!r:.120}, the recording has "
                    f"{want!r:.120}")
        self.turn += 1
        return self.replies[k]

    async def areply(self, view: UserView) -> str:
        return self.reply(view)  # no I/O: no worker thread


class ScriptedUser(UserSimulator):
    """The oracle plan's user (see the module docstring)."""

    kind: ClassVar[str] = "scripted"

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "script": "oracle-plan-1"}

    def start(self, task: Any, seed: int | None) -> UserSession:
        from agent_envs.envs.tau2.plan import oracle_plan

        plan = oracle_plan(task.tau2_task(), task.domain)
        replies = ([plan.opening] if plan.opening is not None else []) + list(plan.replies)
        return _ListSession(replies, f"the scripted user of {task.id}")


class CassetteUser(UserSimulator):
    """Replays recorded users (see the module docstring).

    Args:
        path: A JSONL cassette written by :class:`RecordingUser`.
        match: ``"turn"`` (default) or ``"exact"``.

    Raises:
        Tau2Error: the file is missing or is not a cassette (the message names the line).
    """

    kind: ClassVar[str] = "cassette"

    def __init__(self, path: str | Path, *, match: Literal["turn", "exact"] = "turn") -> None:
        if match not in ("turn", "exact"):
            raise Tau2Error(f"CassetteUser match must be 'turn' or 'exact', got {match!r}")
        self.path = Path(path)
        self.match = match
        if not self.path.is_file():
            raise Tau2Error(f"no user cassette at {self.path}; record one with "
                            "record_user=PATH (any user simulator), or give another path")
        data = self.path.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.recorded_by: list[Any] = []
        for n, line in enumerate(data.decode().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                turns = [(t["agent"], str(t["user"])) for t in rec["turns"]]
                task_id = str(rec["task_id"])
            except (ValueError, KeyError, TypeError) as e:
                raise Tau2Error(f"{self.path} line {n} is not a user-cassette record "
                                f"({type(e).__name__}: {e}); expected "
                                '{"task_id": ..., "seed": ..., "turns": [{"agent": ..., '
                                '"user": ...}]}') from None
            self.records.setdefault(task_id, []).append({**rec, "turns": turns})
            if rec.get("simulator") not in self.recorded_by:
                self.recorded_by.append(rec.get("simulator"))

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "sha256": self.sha256,
                "match": self.match, "recorded_by": self.recorded_by}

    def start(self, task: Any, seed: int | None) -> UserSession:
        recs = self.records.get(task.id)
        if not recs:
            raise UserSimulatorError(f"the user cassette {self.path} has no conversation for "
                                     f"task {task.id} ({len(self.records)} tasks recorded)")
        rec = next((r for r in recs if r.get("seed") == seed), recs[0])
        turns = rec["turns"]
        return _ListSession([u for _, u in turns], f"the user cassette {self.path} ({task.id})",
                            [a for a, _ in turns] if self.match == "exact" else None)


_RECORD_LOCKS: dict[Path, threading.Lock] = {}
_RECORD_LOCKS_GUARD = threading.Lock()


class _RecordingSession(UserSession):
    def __init__(self, inner: UserSession, owner: RecordingUser, task_id: str,
                 seed: int | None) -> None:
        self.inner, self.owner, self.task_id, self.seed = inner, owner, task_id, seed
        self.turns: list[dict[str, Any]] = []
        self.closed = False

    def _note(self, view: UserView, text: str) -> str:
        said = view[-1][1] if view and view[-1][0] == "agent" else None
        self.turns.append({"agent": said, "user": text})
        return text

    def reply(self, view: UserView) -> str:
        return self._note(view, self.inner.reply(view))

    async def areply(self, view: UserView) -> str:
        return self._note(view, await self.inner.areply(view))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.inner.close()
        if self.turns:
            self.owner.write({"task_id": self.task_id, "seed": self.seed,
                              "simulator": self.owner.inner.identity(), "turns": self.turns})


class RecordingUser(UserSimulator):
    """Any simulator, with each episode's user side appended to a JSONL cassette when the
    episode ends (one line per episode; :class:`CassetteUser` replays it).

    Args:
        inner: The simulator that plays the user.
        path: The cassette file (appended to; created with its folder).
    """

    def __init__(self, inner: UserSimulator, path: str | Path) -> None:
        self.inner = inner
        self.path = Path(path)
        self.kind = inner.kind  # type: ignore[misc]

    def identity(self) -> dict[str, Any]:
        return {**self.inner.identity(), "recorded_to": str(self.path)}

    def start(self, task: Any, seed: int | None) -> UserSession:
        return _RecordingSession(self.inner.start(task, seed), self, task.id, seed)

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def write(self, record: dict[str, Any]) -> None:
        """Append one episode's record (thread-safe within a process)."""
        with _RECORD_LOCKS_GUARD:
            lock = _RECORD_LOCKS.setdefault(self.path.resolve(), threading.Lock())
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)


@dataclass(frozen=True, kw_only=True)
class _Params:
    """Sampling settings in the shape of ``trainers.policies.SamplingParams``."""

    temperature: float
    top_p: float
    top_k: int = -1
    seed: int | None = None


@dataclass(frozen=True, kw_only=True)
class _Request:
    """A request in the shape of ``trainers.policies.SampleRequest`` (agent_envs does not
    import trainers: policies read these attributes)."""

    prompt: list[int]
    max_tokens: int
    params: _Params
    stop_token_ids: tuple[int, ...] = STOP_TOKEN_IDS
    context: Any = None


def _derive_seed(*parts: Any) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(kw_only=True)
class _HarmonyCaller:
    """Renders a (developer instructions, conversation) prompt in harmony, samples it from a
    policy, and returns the final-channel text; shared by the LLM user and the judge."""

    policy: Any
    temperature: float
    top_p: float
    max_tokens: int
    reasoning_effort: Literal["low", "medium", "high"]
    max_attempts: int
    what: str
    codec: Any = field(default=None)

    def prompt(self, instructions: str, turns: Sequence[tuple[str, str]]) -> list[int]:
        codec = self.codec or get_codec()
        msgs = [codec.system_message(SystemConfig(reasoning_effort=self.reasoning_effort)),
                codec.developer_message(instructions)]
        for role, text in turns:
            if role == "user":
                msgs.append(codec.user_message(text))
            else:
                msgs.append(oh.Message.from_role_and_content(oh.Role.ASSISTANT, text)
                            .with_channel("final"))
        return codec.render_prompt(msgs)

    def _request(self, prompt: list[int], seed: int) -> _Request:
        return _Request(prompt=prompt, max_tokens=self.max_tokens,
                        params=_Params(temperature=self.temperature, top_p=self.top_p,
                                       seed=seed))

    def _text(self, sample: Any) -> str | None:
        if getattr(sample, "finish_reason", None) == "error":
            raise UserSimulatorError(f"{self.what}: the policy failed: {sample.error}")
        parsed = (self.codec or get_codec()).parse_completion(list(sample.token_ids))
        finals = [message_text(m) for m in parsed.messages if m.channel == "final"]
        text = finals[-1].strip() if finals else ""
        return text or None

    def _failed(self, attempts: int) -> UserSimulatorError:
        return UserSimulatorError(f"{self.what}: no final-channel reply in {attempts} "
                                  "sample(s); raise max_tokens or max_attempts, or check the "
                                  "policy serves a harmony model")

    def call(self, instructions: str, turns: Sequence[tuple[str, str]], seed: int) -> str:
        prompt = self.prompt(instructions, turns)
        for attempt in range(self.max_attempts):
            try:
                samples = self.policy.sample([self._request(prompt, _derive_seed(seed, attempt))])
            except Exception as e:  # any policy failure is infrastructure
                raise UserSimulatorError(f"{self.what}: the policy raised "
                                         f"{type(e).__name__}: {e}") from e
            text = self._text(samples[0])
            if text is not None:
                return text
        raise self._failed(self.max_attempts)

    async def acall(self, instructions: str, turns: Sequence[tuple[str, str]], seed: int) -> str:
        prompt = self.prompt(instructions, turns)
        for attempt in range(self.max_attempts):
            try:
                samples = await self.policy.asample(
                    [self._request(prompt, _derive_seed(seed, attempt))])
            except Exception as e:  # any policy failure is infrastructure
                raise UserSimulatorError(f"{self.what}: the policy raised "
                                         f"{type(e).__name__}: {e}") from e
            text = self._text(samples[0])
            if text is not None:
                return text
        raise self._failed(self.max_attempts)


class _LLMSession(UserSession):
    def __init__(self, caller: _HarmonyCaller, instructions: str, seed: int | None) -> None:
        self.caller, self.instructions, self.seed = caller, instructions, seed
        self.turn = 0

    @staticmethod
    def _flip(view: UserView) -> list[tuple[str, str]]:
        # τ²'s UserState.flip_roles: the agent's messages become the user's, and back.
        return [("user" if role == "agent" else "assistant", text) for role, text in view]

    def reply(self, view: UserView) -> str:
        self.turn += 1
        return self.caller.call(self.instructions, self._flip(view), _derive_seed(
            self.seed, self.turn))

    async def areply(self, view: UserView) -> str:
        self.turn += 1
        return await self.caller.acall(self.instructions, self._flip(view), _derive_seed(
            self.seed, self.turn))


class LLMUser(UserSimulator):
    """A user played by an LLM through one of our policies (see the module docstring).

    Args:
        policy: Any object with ``sample``/``asample`` taking ``SampleRequest``-shaped
            requests (``trainers.policies``: ``OpenAICompletionsPolicy``,
            ``TransformersPolicy``, ``VLLMPolicy``, ...).
        model: Name recorded in the identity (default: the policy's ``policy_id``).
        temperature: Sampling temperature (τ² samples its user at 0; use a small value such
            as 1e-4 for near-greedy sampling, which a policy requires to be > 0).
        top_p: Nucleus sampling.
        max_tokens: Most tokens per reply (analysis included).
        reasoning_effort: The user model's reasoning effort in the harmony system message.
        max_attempts: Samples per reply before giving up (a reply needs a final message).

    Raises:
        Tau2Error: a setting is out of range, or ``policy`` has no ``sample``/``asample``.
    """

    kind: ClassVar[str] = "llm"

    def __init__(self, policy: Any, *, model: str | None = None, temperature: float = 1e-4,
                 top_p: float = 1.0, max_tokens: int = 4096,
                 reasoning_effort: Literal["low", "medium", "high"] = "low",
                 max_attempts: int = 3) -> None:
        if not (callable(getattr(policy, "sample", None))
                and callable(getattr(policy, "asample", None))):
            raise Tau2Error(f"LLMUser needs a policy with sample() and asample() (e.g. "
                            f"trainers.policies.OpenAICompletionsPolicy), got "
                            f"{type(policy).__name__}")
        if not temperature > 0 or not 0 < top_p <= 1 or max_tokens < 1 or max_attempts < 1:
            raise Tau2Error(f"LLMUser settings out of range: temperature={temperature!r} "
                            f"(> 0), top_p={top_p!r} (0 < top_p <= 1), max_tokens="
                            f"{max_tokens!r} (>= 1), max_attempts={max_attempts!r} (>= 1)")
        if reasoning_effort not in ("low", "medium", "high"):
            raise Tau2Error(f"LLMUser reasoning_effort must be low, medium or high, got "
                            f"{reasoning_effort!r}")
        self.policy = policy
        self.model = model or str(getattr(policy, "policy_id", type(policy).__name__))
        self.caller = _HarmonyCaller(policy=policy, temperature=temperature, top_p=top_p,
                                     max_tokens=max_tokens, reasoning_effort=reasoning_effort,
                                     max_attempts=max_attempts, what=f"the LLM user ({self.model})")

    def identity(self) -> dict[str, Any]:
        template = prompt_constant("tau2.user.user_simulator", "SYSTEM_PROMPT")
        c = self.caller
        return {"kind": self.kind, "model": self.model,
                "policy": str(getattr(self.policy, "policy_id", type(self.policy).__name__)),
                "prompt_sha256": _sha256(template + "\x1f" + _guidelines()),
                "prompt": "tau2 user_simulator SYSTEM_PROMPT + simulation_guidelines.md",
                "tau2": tau2_version(), "reasoning_effort": c.reasoning_effort,
                "sampling": {"temperature": c.temperature, "top_p": c.top_p,
                             "max_tokens": c.max_tokens, "max_attempts": c.max_attempts}}

    def start(self, task: Any, seed: int | None) -> UserSession:
        return _LLMSession(self.caller, user_system_prompt(task.tau2_task()), seed)

    def close(self) -> None:
        close = getattr(self.policy, "close", None)
        if callable(close):
            close()

    async def aclose(self) -> None:
        aclose = getattr(self.policy, "aclose", None)
        if callable(aclose):
            await aclose()
        else:
            self.close()


def user_from_spec(spec: str | UserSimulator | None) -> UserSimulator:
    """A simulator from a spec: a :class:`UserSimulator`, ``"scripted"`` (the default) or
    ``"cassette:PATH"``. An LLM user is an object (``LLMUser(policy)``): its policy cannot be
    named by a string here (``agent-envs eval --user SPEC`` builds one from a policy spec).

    Raises:
        Tau2Error: an unknown spec (the message lists the forms).
    """
    if spec is None:
        return ScriptedUser()
    if isinstance(spec, UserSimulator):
        return spec
    if isinstance(spec, str):
        if spec == "scripted":
            return ScriptedUser()
        if spec.startswith("cassette:"):
            return CassetteUser(spec.removeprefix("cassette:"))
        if spec.startswith("llm:"):
            raise Tau2Error(
                f"user={spec!r}: an LLM user is built from a policy object, e.g. "
                "user=LLMUser(OpenAICompletionsPolicy(URL, MODEL)) in Python, or on the "
                "command line: agent-envs eval SUITE --user URL --user-model MODEL")
    raise Tau2Error(f"unknown user simulator {spec!r}; use 'scripted', 'cassette:PATH', or a "
                    "UserSimulator object such as LLMUser(policy)")
