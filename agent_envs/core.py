"""The harmony-native environment base: token ids in, token ids out.

``HarmonyEnv`` is a ``gymnasium.Env``. Its contract, which every environment in
this package keeps and the test suite checks:

Observations
    ``np.ndarray[int32]``: the whole token stream of the current *segment*,
    ending in ``<|start|>assistant`` (the model's turn). After ``step`` the new
    observation starts with ``previous_obs + action`` exactly: the env only
    *appends* (tool results, notices, the next ``<|start|>assistant``); those
    appended tokens are "env tokens" (loss mask 0). Nothing the model sampled is
    ever decoded and re-encoded. The one exception is a segment break
    (``info["new_segment"]``): after a finished final answer, a new user turn
    re-renders history (analysis of finished turns dropped, ``<|return|>`` as
    ``<|end|>``) into a fresh prompt; trainers make each segment its own sample.

Actions
    The sampled completion as token ids (``np.ndarray``/``list`` of ints) ending
    in a stop token (``<|call|>`` 200012 or ``<|return|>`` 200002), or cut short
    by a length limit. A ``str`` is accepted and encoded with harmony's special
    tokens allowed. Any other Python type raises ``InvalidActionError``.

Model mistakes are observations
    Malformed harmony, an unknown recipient, invalid arguments, code that
    raises or times out: the model sees a short, useful message and ``info``
    carries it (``model_error``, ``tool_outcome``); ``step`` does not raise.

Infrastructure faults are flagged
    A sandbox or backend that fails for reasons that are not the model's sets
    ``info["infra_error"]`` and ends the episode (``truncated=True``,
    ``truncated_reason="infra"``); trainers must drop such episodes rather than
    learn reward 0 from them.

Termination
    ``terminated``: the model gave a final answer (``<|return|>`` after a
    ``final`` message). ``truncated``: a budget ran out: turns, tokens
    (segment length), wall time, a completion cut before a stop token
    (``"length"``), or an infra fault. Reward is 0 on every step but the last,
    where it is the verifier's reward plus optional shaping terms (off by
    default), each reported in ``info["reward_components"]``.

``info`` keys (every reset and step): ``env_id``, ``task_id``, ``turn``,
``segment``, ``new_segment``, ``env_token_count``, ``tool_calls``,
``tool_outcome``, ``model_error``, ``infra_error``, ``reward_components``,
``verdict``, ``truncated_reason``, ``max_new_tokens``. On the last step also
``episode`` (turns, tool calls, model and tool errors, segments). See
``INFO_KEYS`` for one line on each.

Tools
    An env's tools are parts (:class:`~agent_envs.tools.base.ToolPart`: a harmony
    declaration, the recipients it answers, sync and async calls, per-episode open and
    close, an ``info`` entry). Each call goes to the first tool that answers its recipient;
    a recipient no tool answers gets an error that names every tool the env has.

Async twins ``areset``/``astep``/``aclose`` let one process drive hundreds of
episodes; the sync methods run the same logic with the sync tool calls.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import hashlib
import inspect
import re
import time
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import openai_harmony as oh
from gymnasium import spaces

from agent_envs.errors import EnvStateError, InvalidActionError, UnknownArgumentError
from agent_envs.harmony import (
    END,
    VOCAB_SIZE,
    AnalysisPolicy,
    HarmonyCodec,
    ParsedCompletion,
    get_codec,
    message_text,
)
from agent_envs.tasks.base import Split, Task, TaskSource, Verdict
from agent_envs.tools.base import ToolCall, ToolOutcome, ToolPart

__all__ = [
    "INFO_KEYS", "EnvConfig", "HarmonyEnv", "TokenBuffer", "ToolCall", "ToolOutcome", "ToolPart",
    "check_arguments", "check_field_types", "derive_seed", "to_jsonable",
]

INFO_KEYS: dict[str, str] = {
    "env_id": "versioned env id, e.g. 'python-tool-v0'",
    "task_id": "id of the task; source.get(task_id) rebuilds it",
    "turn": "number of model turns (steps) taken in the episode",
    "segment": "index of the current segment (0 until a segment break)",
    "new_segment": "True when obs does NOT extend the previous obs + action (a fresh prompt)",
    "env_token_count": "tokens the env appended after the action (0 on reset and at the end)",
    "tool_calls": "tool calls made so far in the episode",
    "tool_outcome": "None, or {recipient, ok, error, timed_out, duration_s} for this step's call",
    "model_error": "None, or a short description of the model's format/usage mistake this step",
    "infra_error": "None, or why infrastructure failed; such episodes must be dropped",
    "reward_components": "dict of reward terms (they sum to the reward); empty before the end",
    "verdict": "None, or {correct, extracted, reason} once a final answer was judged",
    "truncated_reason": "None, or 'turns' | 'tokens' | 'time' | 'length' | 'infra'",
    "max_new_tokens": "how many tokens the next completion may have before the token budget",
    "episode": "on the last step: {turns, tool_calls, model_errors, tool_errors, segments}",
}

TruncatedReason = Literal["turns", "tokens", "time", "length", "infra"]


@dataclass(frozen=True, kw_only=True)
class EnvConfig:
    """Budgets, format and reward settings shared by every harmony env.

    Attributes:
        max_turns: Model turns (``step`` calls) per episode.
        max_tokens: Length budget of a segment's token stream (prompt + all
            completions + env tokens).
        max_episode_s: Wall-clock budget per episode, in seconds.
        reasoning_effort: ``low``/``medium``/``high`` in the system message.
        conversation_date: "Current date" in the system message; None (default)
            leaves it out so prompts do not change from day to day.
        analysis_policy: How analysis is dropped when history is re-rendered.
        format_error_penalty: Shaping term added per model format/usage error
            (e.g. -0.1). Off (0.0) by default.
        tool_error_penalty: Shaping term added per tool call that errored.
        answer_retries: When a final answer has no extractable answer, ask again
            this many times (a new user turn, so a new segment). 0 = judge as is.
        cut_completion: What a completion with no stop token (cut by a length
            limit) does: ``"notice"`` (default) closes it with ``<|end|>``, tells
            the model it was cut off, and the turn goes on (the token budget
            still bounds the episode); ``"end"`` ends the episode as truncated
            (``truncated_reason="length"``).
    """

    max_turns: int = 16
    max_tokens: int = 32_768
    max_episode_s: float = 600.0
    reasoning_effort: Literal["low", "medium", "high"] = "medium"
    conversation_date: str | None = None
    analysis_policy: AnalysisPolicy = "drop_completed_turns"
    format_error_penalty: float = 0.0
    tool_error_penalty: float = 0.0
    answer_retries: int = 0
    cut_completion: Literal["notice", "end"] = "notice"

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("max_turns", "max_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.max_episode_s > 0:
            raise ValueError(f"max_episode_s must be > 0 seconds, got {self.max_episode_s!r}")
        if self.cut_completion not in ("notice", "end"):
            raise ValueError(f"cut_completion must be 'notice' or 'end', "
                             f"got {self.cut_completion!r}")
        if self.answer_retries < 0:
            raise ValueError(f"answer_retries must be >= 0, got {self.answer_retries!r}")
        if self.reasoning_effort not in ("low", "medium", "high"):
            raise ValueError(f"reasoning_effort must be 'low', 'medium' or 'high', "
                             f"got {self.reasoning_effort!r}")
        if self.conversation_date is not None:
            _check_iso_date(self.conversation_date)


def _type_ok(value: Any, tp: Any) -> bool | None:
    """Whether ``value`` fits annotation ``tp``; None when ``tp`` is not a simple type."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_type_ok(value, a) for a in typing.get_args(tp)]
        return None if None in verdicts else any(verdicts)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_type_ok(v, args[0]) is not False for v in value)
        return None
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, (bool, np.bool_))
    if tp is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float, np.integer, np.floating)) \
            and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return None


_TYPE_WORDS = {int: ("an int", "ints"), float: ("a number", "numbers"),
               str: ("a string", "strings"), bool: ("true or false", "booleans")}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        item = typing.get_args(tp)[0]
        return f"a list of {_TYPE_WORDS.get(item, ('', str(item)))[1]}"
    if tp is type(None):
        return "None"
    return _TYPE_WORDS.get(tp, (f"a {getattr(tp, '__name__', tp)}",))[0]


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # evaluating the annotations costs ~0.4 ms per class


def check_field_types(config: Any) -> None:
    """Check the values of a config dataclass against its simple annotations (int, float,
    str, bool, Literal, ``X | None``, ``tuple[X, ...]``), so that a value from a command line
    or a file (``max_turns="abc"``) is refused with the field's name, not deep inside.

    Raises:
        ValueError: a field holds a value of the wrong type; the message names the field,
            the value and what it must be.
    """
    hints = _type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        tp = hints.get(f.name)
        if tp is not None and _type_ok(value, tp) is False:
            raise ValueError(f"{f.name} must be {_describe(tp)}, got {value!r} "
                             f"({type(value).__name__})")


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _check_iso_date(value: object) -> None:
    """``conversation_date`` must be a real ``YYYY-MM-DD`` date (what gpt-oss was trained on)."""
    fix = (f"conversation_date must be an ISO date YYYY-MM-DD, e.g. "
           f"{datetime.date.today().isoformat()!r} (or None to leave the date out), "
           f"got {value!r}")
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError(fix)
    try:
        datetime.date.fromisoformat(value)
    except ValueError as e:
        raise ValueError(f"{fix}: {e}") from None


class TokenBuffer:
    """A segment's token stream: an int32 array that grows in place (amortised doubling).

    An observation is a copy of the filled part: one memcpy (~10 us at 32k tokens) instead of
    converting a Python list of ints (~0.4 ms at 32k). It must be a copy, not a view:
    gymnasium's checker requires that observations share no memory, as users keep them.
    """

    __slots__ = ("_buf", "_n")

    def __init__(self, tokens: Any = (), capacity: int = 4096) -> None:
        ids = np.asarray(tokens, dtype=np.int32)
        self._buf = np.empty(max(capacity, 2 * len(ids)), dtype=np.int32)
        self._buf[: len(ids)] = ids
        self._n = len(ids)

    def _reserve(self, k: int) -> None:
        if self._n + k > len(self._buf):
            grown = np.empty(max(2 * len(self._buf), self._n + k), dtype=np.int32)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown

    def extend(self, ids: Any) -> None:
        """Append token ids (a list, tuple or array)."""
        k = len(ids)
        self._reserve(k)
        self._buf[self._n: self._n + k] = ids
        self._n += k

    def append(self, token: int) -> None:
        """Append one token id."""
        self._reserve(1)
        self._buf[self._n] = token
        self._n += 1

    def array(self) -> np.ndarray:
        """The tokens so far, as a new int32 array."""
        return self._buf[: self._n].copy()

    def tolist(self) -> list[int]:
        return self._buf[: self._n].tolist()

    def __len__(self) -> int:
        return self._n


@dataclass
class _Plan:
    """What ``step`` decided before any tool ran (shared by step and astep)."""

    parsed: ParsedCompletion
    call: ToolCall | None = None
    model_error: str | None = None
    notice: str | None = None  # a format notice to append (system message)
    final_text: str | None = None  # the final answer, when the turn ended
    truncated_reason: TruncatedReason | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def derive_seed(base: int, *keys: object) -> int:
    """A seed in ``[0, 2**31 - 1)`` that depends only on ``base`` and ``keys`` (stable across
    runs and machines). Every runner derives episode ``g``'s env seed as
    ``derive_seed(seed, "env", g)``, so the same ``--seed`` draws the same tasks everywhere."""
    h = hashlib.blake2b(repr((int(base),) + keys).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") % (2**31 - 1)


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: dicts with str keys, lists, str, int, float, bool, None.

    numpy scalars and arrays become Python numbers and lists, tuples become lists,
    dataclasses become dicts; anything else becomes its ``str``.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


def coerce_token_ids(action: Any) -> list[int]:
    """A token-id action (1-D integer array, or list/tuple of ints) as a list of ints.

    Raises:
        InvalidActionError: anything else (text actions are the env's to encode), or an id
            that does not fit in int32.
    """
    if isinstance(action, np.ndarray):
        if action.ndim != 1 or not np.issubdtype(action.dtype, np.integer):
            raise InvalidActionError(
                f"action array must be 1-D integer token ids, got shape {action.shape} "
                f"dtype {action.dtype}; pass the sampled completion ids")
        ids = action.tolist()
    elif isinstance(action, (list, tuple)):
        bad = next((t for t in action
                    if not isinstance(t, (int, np.integer)) or isinstance(t, bool)), None)
        if bad is not None:
            raise InvalidActionError(
                f"action must be token ids (ints); found {bad!r} of type "
                f"{type(bad).__name__}; pass a list/array of ints or a str")
        ids = [int(t) for t in action]
    else:
        raise InvalidActionError(
            f"action must be token ids (np.ndarray/list of int) or a str, got "
            f"{type(action).__name__}")
    if ids and not 0 <= min(ids) <= max(ids) < VOCAB_SIZE:
        bad = [t for t in ids if not 0 <= t < VOCAB_SIZE]
        shown = ", ".join(map(str, bad[:5])) + (f", ... ({len(bad)} in all)" if len(bad) > 5
                                                 else "")
        raise InvalidActionError(
            f"action has token id(s) outside the gpt-oss vocabulary [0, {VOCAB_SIZE}): {shown}; "
            f"pass the ids your sampler returned (a tokenizer with the harmony vocabulary "
            f"never makes these)")
    return ids


def check_arguments(owner: str, given: Iterable[str], accepted: Iterable[str]) -> None:
    """Raise :class:`~agent_envs.errors.UnknownArgumentError` for the first name in ``given``
    that is not in ``accepted``, suggesting the closest accepted name.

    Args:
        owner: What got the arguments, for the message (an env id such as ``toy-digit-v0``).
        given: The keyword argument names passed.
        accepted: The names ``owner`` takes.
    """
    known = sorted(set(accepted))
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    name = unknown[0]
    if name in ("task_source", "tasks"):
        raise UnknownArgumentError(
            f"{owner} takes no {name} argument: it makes its own tasks. Drop {name}= (on the "
            f"command line: --tasks), or pick an env that takes task sources (agent, "
            f"python-tool, functions, browser). Its arguments: {', '.join(known)}")
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    raise UnknownArgumentError(f"{owner} got an unknown argument {name!r}{hint} "
                               f"Its arguments: {', '.join(known)}")


@functools.cache
def _argument_names(cls: type) -> frozenset[str] | None:
    names: set[str] = set()
    var_keyword = False
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
        elif p.kind in (inspect.Parameter.KEYWORD_ONLY,
                        inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.add(p.name)
    if var_keyword:
        configs = cls.keyword_configs()
        if configs is None:
            return None
        for config in configs:
            names.update(_field_names(config))
        names.update(cls.extra_arguments)
    return frozenset(names)


@functools.cache
def _field_names(config: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(config))


class HarmonyEnv(gym.Env[np.ndarray, np.ndarray]):
    """Base class of the harmony environments (see the module docstring for the contract).

    An env is a task source, the conversation's opening (:meth:`initial_messages`), a list
    of tools (:class:`~agent_envs.tools.base.ToolPart`: each call goes to the first tool
    that answers its recipient) and a verifier (:meth:`verify`, pure). Subclasses declare
    their keyword arguments once (:attr:`config_classes`, split by :meth:`split_kwargs`
    with a did-you-mean for every env), their budget defaults once
    (:attr:`budget_defaults`), and add to ``info`` through one hook (:meth:`family_info`).
    """

    # render_fps is meaningless for text, but gymnasium warns without it.
    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    env_id: str = "harmony-v0"
    #: Config dataclasses whose fields the constructor's ``**kwargs`` take. A subclass whose
    #: constructor has ``**kwargs`` declares them; if none does, its arguments are unknown
    #: and :meth:`check_arguments` lets everything through (the constructor decides).
    config_classes: ClassVar[tuple[type, ...] | None] = None
    #: Other names the constructor's ``**kwargs`` take (besides the config fields).
    extra_arguments: ClassVar[tuple[str, ...]] = ()
    #: The env's own defaults for :class:`EnvConfig` fields (budgets), under what the
    #: caller passes: e.g. ``{"max_turns": 32, "max_tokens": 65536}`` for browsing.
    budget_defaults: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def keyword_configs(cls) -> tuple[type, ...] | None:
        """The config classes ``**kwargs`` are split into (default: :attr:`config_classes`)."""
        return cls.config_classes

    @classmethod
    def argument_names(cls) -> frozenset[str] | None:
        """Every keyword argument the constructor takes: its named parameters and, when it
        has ``**kwargs``, the fields of :attr:`config_classes` and :attr:`extra_arguments`
        (None when it has ``**kwargs`` but declares no ``config_classes``)."""
        return _argument_names(cls)

    @classmethod
    def check_arguments(cls, kwargs: Iterable[str]) -> None:
        """Raise :class:`~agent_envs.errors.UnknownArgumentError` (with a did-you-mean) for a
        keyword argument this env does not take."""
        names = cls.argument_names()
        if names is not None:
            check_arguments(cls.env_id, kwargs, names)

    @classmethod
    def split_kwargs(cls, kwargs: Mapping[str, Any]
                     ) -> tuple[dict[type, dict[str, Any]], dict[str, Any]]:
        """Check ``kwargs`` (:meth:`check_arguments`) and split them by config class.

        Returns:
            ``({config class: its fields' values}, the rest)``: a name that is a field of
            several config classes goes to each of them (``call_timeout_s`` is both the
            python tool's and the functions runner's); the rest are
            :attr:`extra_arguments`.

        Raises:
            UnknownArgumentError: a name the env does not take (with a did-you-mean).
        """
        cls.check_arguments(kwargs)
        configs = cls.keyword_configs() or ()
        out: dict[type, dict[str, Any]] = {c: {} for c in configs}
        rest: dict[str, Any] = {}
        for key, value in kwargs.items():
            owners = [c for c in configs if key in _field_names(c)]
            for c in owners:
                out[c][key] = value
            if not owners:
                rest[key] = value
        return out, rest

    @classmethod
    def env_config(cls, values: Mapping[str, Any]) -> EnvConfig:
        """The :class:`EnvConfig` for ``values`` over this env's :attr:`budget_defaults`."""
        return EnvConfig(**{**cls.budget_defaults, **values})

    def __init__(self, *, task_source: TaskSource, split: Split = "train",
                 config: EnvConfig | None = None, render_mode: str | None = None,
                 codec: HarmonyCodec | None = None, tools: Iterable[ToolPart] = ()) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.tools: tuple[ToolPart, ...] = tuple(tools)
        self.task_source = task_source
        self.split: Split = split
        self.config = config or EnvConfig()
        self.render_mode = render_mode
        self.codec = codec or get_codec()
        token = spaces.Discrete(VOCAB_SIZE)
        self.observation_space = spaces.Sequence(token, stack=True)
        self.action_space = spaces.Sequence(token, stack=True)
        self.task: Task | None = None
        self._tokens = TokenBuffer()
        self._messages: list[oh.Message] = []
        self._active = False
        self._reset_counters()

    # -- hooks for subclasses -------------------------------------------------

    def initial_messages(self, task: Task) -> list[oh.Message]:
        """System, developer and user messages that open an episode on ``task`` (tools with
        per-episode state are opened here: the prompt declares what they hold)."""
        raise NotImplementedError

    def tool_for(self, recipient: str) -> ToolPart | None:
        """The tool that answers ``recipient`` (the first in :attr:`tools`), or None."""
        for part in self.tools:
            if part.answers(recipient):
                return part
        return None

    def call_tool(self, call: ToolCall) -> ToolOutcome:
        """Run a tool call synchronously: routed by recipient; unknown recipients get an
        error outcome that names every tool the env has."""
        part = self.tool_for(call.recipient)
        return part.call(call) if part is not None else self.unknown_recipient(call)

    async def acall_tool(self, call: ToolCall) -> ToolOutcome:
        """Async twin of :meth:`call_tool`."""
        part = self.tool_for(call.recipient)
        return await part.acall(call) if part is not None else self.unknown_recipient(call)

    def tool_names(self) -> list[str]:
        """Recipients this env answers (for error messages): every tool's, in order."""
        return [name for part in self.tools for name in part.recipients()]

    def record_final(self, final_text: str) -> None:
        """Note a final answer before it is judged (state the family keeps across turns)."""

    def verify(self, task: Task, final_text: str) -> Verdict:
        """Judge the final answer (default: the task's answer checker). Pure: it reads the
        episode's state and changes nothing (:meth:`record_final` and :meth:`follow_up`
        do)."""
        from agent_envs.tasks.answers import check_answer
        return check_answer(final_text, task)

    def family_info(self, done: bool) -> dict[str, Any]:
        """What the env adds to every ``info`` (default: each tool's :meth:`ToolPart.info`
        under its name). ``done``: this is the episode's last step."""
        out: dict[str, Any] = {}
        for part in self.tools:
            extra = part.info()
            if extra is not None:
                out[part.name] = extra
        return out

    def end_episode(self) -> None:
        """Release per-episode resources (called on reset, end and close): every tool's."""
        for part in getattr(self, "tools", ()):
            part.close()

    async def aend_episode(self) -> None:
        """Async twin of :meth:`end_episode`."""
        for part in getattr(self, "tools", ()):
            await part.aclose()

    def follow_up(self, verdict: Verdict, retries_used: int) -> str | None:
        """A user message to continue after a final answer (a new segment), or None to end."""
        if verdict.extracted is None and retries_used < self.config.answer_retries:
            return ("I could not find a final answer in your reply. State it once more, "
                    "as \\boxed{ANSWER}.")
        return None

    # -- reset --------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode. ``options``: ``task_id`` (a specific task) or ``split``."""
        self.end_episode()
        return self._begin_episode(seed, options)

    async def areset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
                     ) -> tuple[np.ndarray, dict[str, Any]]:
        """Async twin of :meth:`reset`."""
        await self.aend_episode()
        return self._begin_episode(seed, options)

    def _begin_episode(self, seed: int | None, options: dict[str, Any] | None
                       ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"task_id", "split"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; "
                             f"supported: 'task_id', 'split'")
        if options.get("task_id") is not None:
            task = self.task_source.get(str(options["task_id"]))
        else:
            split = options.get("split", self.split)
            task_seed = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
            task = self.task_source.sample(int(task_seed), split)
        self.task = task
        self._messages = list(self.initial_messages(task))
        self._tokens = TokenBuffer(
            self.codec.render_prompt(self._messages, self.config.analysis_policy))
        self._reset_counters()
        self._active = True
        return self._obs(), self._info()

    def _reset_counters(self) -> None:
        self._turn = 0
        self._segment = 0
        self._tool_calls = 0
        self._model_errors = 0
        self._tool_errors = 0
        self._retries = 0
        self._started = time.monotonic()

    # -- step -----------------------------------------------------------------

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Take the model's completion; see the module docstring for the contract."""
        plan = self._plan(action)
        outcome = self.call_tool(plan.call) if plan.call is not None else None
        result = self._finish(plan, outcome)
        if result[2] or result[3]:
            self.end_episode()
        return result

    async def astep(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Async twin of :meth:`step`."""
        plan = self._plan(action)
        outcome = await self.acall_tool(plan.call) if plan.call is not None else None
        result = self._finish(plan, outcome)
        if result[2] or result[3]:
            await self.aend_episode()
        return result

    def _coerce_action(self, action: Any) -> list[int]:
        if isinstance(action, str):
            return self.codec.encode(action)
        return coerce_token_ids(action)

    def _plan(self, action: Any) -> _Plan:
        if not self._active:
            raise EnvStateError("step() called before reset() or after the episode ended; "
                                "call reset() to start an episode")
        ids = self._coerce_action(action)
        self._tokens.extend(ids)
        self._turn += 1
        parsed = self.codec.parse_completion(ids)
        self._messages.extend(parsed.messages)
        plan = _Plan(parsed=parsed)
        last = parsed.last
        if parsed.truncated:
            plan.model_error = ("completion was cut before a stop token (length limit)"
                                if parsed.error is None else parsed.error)
            if self.config.cut_completion == "end":
                plan.truncated_reason = "length"
            else:
                plan.notice = ("Your last message was cut off before it ended (no <|call|> or "
                               "<|return|>). Keep messages shorter and finish them.")
            return plan
        if parsed.error is not None:
            plan.model_error = parsed.error
            plan.notice = (f"Format error: {parsed.error}. Write each message as "
                           "<|channel|>analysis|commentary|final<|message|>TEXT, end a tool "
                           "call with <|call|> and the final answer with <|return|>.")
            return plan
        assert last is not None
        if parsed.stop == "return" or (last.channel == "final" and last.recipient is None):
            if last.channel != "final":
                plan.model_error = f"<|return|> ended a message on channel {last.channel!r}, " \
                                   "not 'final'"
            plan.final_text = message_text(last)
            return plan
        if last.recipient is not None and last.recipient != "assistant":
            # A completion is meant to hold one call, ended by <|call|>. If one holds several
            # (a call ended by <|end|>, then another), only the last can be answered in place.
            skipped: tuple[str, ...] = ()
            if any(p.reports_skipped_calls for p in self.tools):
                skipped = tuple(m.recipient for m in parsed.messages[:-1]
                                if m.recipient not in (None, "assistant"))
                if skipped:
                    plan.model_error = (f"{len(skipped)} earlier call(s) in the same "
                                        f"completion were not run: {', '.join(skipped)}")
            plan.call = ToolCall(recipient=last.recipient, channel=last.channel,
                                 content_type=last.content_type, text=message_text(last),
                                 skipped=skipped)
            return plan
        if parsed.stop == "call":
            plan.model_error = "<|call|> ended a message that has no recipient (to=...)"
            plan.notice = ("Format error: a tool call needs a recipient, e.g. "
                           "<|channel|>analysis to=python code<|message|>CODE<|call|>.")
            return plan
        # stop == "end" without a recipient: the sampler stopped on <|end|>; the turn goes on.
        return plan

    def _finish(self, plan: _Plan, outcome: ToolOutcome | None
                ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        before = len(self._tokens)
        terminated = False
        truncated_reason: TruncatedReason | None = plan.truncated_reason
        tool_info: dict[str, Any] | None = None
        verdict: Verdict | None = None
        new_segment = False
        infra_error: str | None = None
        if plan.model_error is not None:
            self._model_errors += 1

        if outcome is not None and plan.call is not None:
            self._tool_calls += 1
            tool_info = {"recipient": plan.call.recipient, "ok": outcome.ok,
                         "error": outcome.error, "timed_out": outcome.timed_out,
                         "duration_s": outcome.duration_s}
            if outcome.infra_error is not None:
                infra_error = outcome.infra_error
                truncated_reason = "infra"
            else:
                if not outcome.ok:
                    self._tool_errors += 1
                author = outcome.author or plan.call.recipient
                channel = plan.call.channel
                self._messages.append(self.codec.tool_message(author, outcome.text,
                                                              channel=channel))
                self._tokens.extend(self.codec.tool_result_tokens(author, outcome.text,
                                                                  channel=channel))
        elif plan.notice is not None:
            if plan.parsed.truncated:
                self._tokens.append(END)  # close the message the model left open
            msg = oh.Message.from_role_and_content(oh.Role.SYSTEM, plan.notice)
            self._messages.append(msg)
            self._tokens.extend(self.codec.message_tokens_then_assistant(msg))
        elif plan.final_text is not None:
            assert self.task is not None
            self.record_final(plan.final_text)
            verdict = self.verify(self.task, plan.final_text)
            question = self.follow_up(verdict, self._retries)
            if question is not None:
                self._retries += 1
                self._segment += 1
                new_segment = True
                self._messages.append(self.codec.user_message(question))
                self._tokens = TokenBuffer(self.codec.render_prompt(
                    self._messages, self.config.analysis_policy))
            else:
                terminated = True
        elif truncated_reason is None:
            # The completion ended in <|end|> with no call: let the model go on.
            self._tokens.extend(self.codec.assistant_header)

        env_tokens = 0 if new_segment else len(self._tokens) - before
        if not terminated and truncated_reason is None:
            if len(self._tokens) >= self.config.max_tokens:
                truncated_reason = "tokens"
            elif self._turn >= self.config.max_turns:
                truncated_reason = "turns"
            elif time.monotonic() - self._started > self.config.max_episode_s:
                truncated_reason = "time"
        truncated = truncated_reason is not None
        done = terminated or truncated
        reward = 0.0
        components: dict[str, float] = {}
        if done:
            self._active = False
            components = self._reward_components(verdict, infra_error)
            reward = float(sum(components.values()))
        info = self._info(
            done=done, new_segment=new_segment, env_token_count=env_tokens, tool_outcome=tool_info,
            model_error=plan.model_error, infra_error=infra_error, reward_components=components,
            verdict=None if verdict is None else {"correct": verdict.correct,
                                                  "extracted": verdict.extracted,
                                                  "reason": verdict.reason},
            truncated_reason=truncated_reason)
        if done:
            # No wall-clock values in info: check_env asserts equal infos for equal actions.
            info["episode"] = {"turns": self._turn, "tool_calls": self._tool_calls,
                               "model_errors": self._model_errors,
                               "tool_errors": self._tool_errors, "segments": self._segment + 1}
        return self._obs(), reward, terminated, truncated, info

    def _reward_components(self, verdict: Verdict | None, infra_error: str | None
                           ) -> dict[str, float]:
        comps = {"correct": 1.0 if verdict is not None and verdict.correct else 0.0}
        if self.config.format_error_penalty:
            comps["format"] = self.config.format_error_penalty * self._model_errors
        if self.config.tool_error_penalty:
            comps["tool_errors"] = self.config.tool_error_penalty * self._tool_errors
        return comps

    # -- helpers --------------------------------------------------------------

    def unknown_recipient(self, call: ToolCall) -> ToolOutcome:
        """The outcome for a call to a tool this env does not have."""
        names = ", ".join(self.tool_names()) or "none"
        return ToolOutcome(
            text=f"Error: there is no tool {call.recipient!r} in this environment. "
                 f"Available tools: {names}.",
            ok=False, error=f"unknown recipient {call.recipient!r}")

    def _obs(self) -> np.ndarray:
        return self._tokens.array()

    def _info(self, done: bool = False, **overrides: Any) -> dict[str, Any]:
        info: dict[str, Any] = {
            "env_id": self.env_id, "task_id": self.task.id if self.task else None,
            "turn": self._turn, "segment": self._segment, "new_segment": False,
            "env_token_count": 0, "tool_calls": self._tool_calls, "tool_outcome": None,
            "model_error": None, "infra_error": None, "reward_components": {},
            "verdict": None, "truncated_reason": None,
            "max_new_tokens": max(0, self.config.max_tokens - len(self._tokens)),
        }
        info.update(overrides)
        info.update(self.family_info(done))
        return info

    @property
    def elapsed_s(self) -> float:
        """Wall-clock seconds since the episode's reset."""
        return time.monotonic() - self._started

    @property
    def tokens(self) -> np.ndarray:
        """The current segment's token stream (a copy)."""
        return self._obs()

    @property
    def messages(self) -> list[oh.Message]:
        """The conversation so far, as parsed messages (a copy)."""
        return list(self._messages)

    def render(self) -> str | None:
        """``ansi``: a readable transcript of the current segment."""
        if self.render_mode != "ansi":
            return None
        from agent_envs.transcript import format_transcript
        return format_transcript(self._messages)

    def close(self) -> None:
        """End the episode and release resources. Idempotent."""
        self._active = False
        self.end_episode()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self._active = False
        await self.aend_episode()

    def __del__(self) -> None:  # best effort; close() is the contract
        try:
            self.end_episode()
        except Exception:  # noqa: BLE001
            pass
