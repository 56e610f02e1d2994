"""BFCL's categories as functions-env tasks, with BFCL's scoring.

* AST categories (``simple_python``, ``multiple``, ``parallel``, ``parallel_multiple`` and
  their ``live_`` twins): the functions are declared and calls are recorded, not run
  (each gets a fixed "recorded" reply). The verdict is BFCL's AST check
  (:mod:`.ast_check`) of every call the model made whose arguments parsed as a JSON object,
  in call order, under the function's original (unmapped) name: BFCL scores one response,
  so a call refused by validation still counts as a call. Any call whose arguments did not
  parse makes the entry fail (BFCL cannot decode the response).
* ``irrelevance``/``live_irrelevance``: right when no decodable call was made;
  ``live_relevance``: right when at least one was.
* Multi-turn categories: the backends run (fresh per episode) and the verdict is
  :func:`.multi_turn.check_multi_turn`. ``miss_func`` entries declare their held-out
  function at the turn BFCL adds it, with BFCL's message for that turn.

The oracle follows the ground truth: for AST entries the first accepted value of every
parameter that makes the call pass (a small search over the accepted values), for
multi-turn entries BFCL's ground-truth calls, turn by turn.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from agent_envs.envs.functions.bfcl import data
from agent_envs.envs.functions.bfcl.ast_check import check_ast
from agent_envs.envs.functions.bfcl.multi_turn import (
    check_multi_turn,
    keyword_arguments,
    new_instances,
    parse_call,
    snapshot,
)
from agent_envs.envs.functions.runtime import CallRecord
from agent_envs.envs.functions.tasks import EpisodeState, FunctionsTask, TaskList
from agent_envs.envs.functions.tools import Tool, tool_from_schema
from agent_envs.tasks.base import Verdict

__all__ = [
    "ADDED_FUNCTIONS_MESSAGE",
    "DIVERGENCES",
    "BfclAstTask",
    "BfclMultiTurnTask",
    "BfclRelevanceTask",
    "BfclTasks",
    "ground_truth_calls",
    "quarantine",
]

#: BFCL's user message for the turn where held-out functions are added (miss_func).
ADDED_FUNCTIONS_MESSAGE = ("I have updated some more functions you can choose from. "
                           "What about now?")

#: Where our verdicts may differ from bfcl_eval's, by name. Each is covered by a test.
DIVERGENCES: dict[str, str] = {
    "validation_refuses_calls": (
        "multi-turn: a call that fails schema validation is not run (the model gets an "
        "error); BFCL would run it and the backend might accept it. With validation='off' "
        "this divergence disappears."),
    "undeclared_functions_refused": (
        "multi-turn: a call to a function that is not declared at that turn (a miss_func "
        "held-out function before it is added) is refused; BFCL runs any public method of "
        "the involved classes."),
    "unsupported_schema_type": (
        "AST: a parameter whose schema type BFCL's checker cannot handle fails with a "
        "verdict; bfcl_eval raises an exception."),
}

_DECODE_FAILURES = ("json", "constrain", "too_large")
_INSTRUCTIONS = ("You are an assistant that uses the functions to carry out the user's "
                 "requests. If none of the functions fits, or a required argument is "
                 "missing, say so instead of calling a function.")


def _split_question(turn: Sequence[Mapping[str, str]]) -> tuple[str, list[dict[str, str]],
                                                                 str]:
    """(system text, earlier messages, last user text) of one BFCL question turn."""
    system = "\n\n".join(m["content"] for m in turn if m["role"] == "system")
    rest = [dict(m) for m in turn if m["role"] != "system"]
    last = rest[-1]["content"] if rest else ""
    return system, rest[:-1], last


def _decodable(calls: Sequence[CallRecord]) -> list[CallRecord]:
    return [c for c in calls if c.arguments is not None]


@dataclass(frozen=True, kw_only=True)
class _BfclTask(FunctionsTask):
    """Fields every BFCL task has."""

    category: str = ""
    docs: tuple[Mapping[str, Any], ...] = ()

    def _declared(self) -> list[Tool]:
        # BFCL's documents are vetted data (tests check every one); each schema is checked
        # when its tool is first called, not for every episode and manifest build.
        return [tool_from_schema(d, check=False) for d in self.docs]

    def episode(self) -> EpisodeState:
        return EpisodeState(self._declared())

    def tool_names(self) -> list[str]:
        return [d["name"] for d in self.docs]

    def oracle_final(self, turn: int) -> str:
        return "Done."


@dataclass(frozen=True, kw_only=True)
class BfclAstTask(_BfclTask):
    """A single-turn BFCL entry scored by AST matching."""

    answers: tuple[Mapping[str, Any], ...] = ()

    def judge(self, episode: EpisodeState) -> Verdict:
        if any(c.error_kind in _DECODE_FAILURES for c in episode.calls):
            return Verdict(correct=False, extracted=None,
                           reason="a call's arguments could not be decoded")
        calls = [{c.name or c.harmony_name: c.arguments} for c in _decodable(episode.calls)]
        v = check_ast(self.docs, calls, self.answers, self.category)
        return Verdict(correct=v.valid, extracted=json.dumps(calls)[:500],
                       reason="match" if v.valid else f"{v.error_type}: {v.error}")

    def oracle_next(self, turn: int, done: Sequence[tuple[str | None, Any, str]]
                    ) -> tuple[str, dict[str, Any]] | None:
        calls = _GT_CACHE.get(self.id)
        if calls is None:
            if len(_GT_CACHE) > 4096:
                _GT_CACHE.clear()
            calls = _GT_CACHE[self.id] = ground_truth_calls(self.docs, self.answers,
                                                            self.category)
        if len(done) >= len(calls):
            return None
        (name, args), = calls[len(done)].items()
        return name, args


@dataclass(frozen=True, kw_only=True)
class BfclRelevanceTask(_BfclTask):
    """``irrelevance``/``live_irrelevance`` (no call is right) or ``live_relevance``."""

    @property
    def wants_call(self) -> bool:
        return "irrelevance" not in self.category

    @property
    def wrong_policy_calls(self) -> bool:  # type: ignore[override]
        return not self.wants_call

    def judge(self, episode: EpisodeState) -> Verdict:
        called = bool(_decodable(episode.calls))
        ok = called == self.wants_call
        return Verdict(correct=ok, extracted=None,
                       reason=("a function was called" if called else "no function called")
                       + (" (right)" if ok else " (wrong)"))

    def oracle_next(self, turn: int, done: Sequence[tuple[str | None, Any, str]]
                    ) -> tuple[str, dict[str, Any]] | None:
        if not self.wants_call or done:
            return None
        doc = self.docs[0]
        return doc["name"], _example_arguments(doc)

    def oracle_final(self, turn: int) -> str:
        return "Done." if self.wants_call else "None of the functions can do this."


@dataclass(frozen=True, kw_only=True)
class BfclMultiTurnTask(_BfclTask):
    """A multi-turn BFCL entry with executable backends."""

    classes: tuple[str, ...] = ()
    initial_config: Mapping[str, Any] = field(default_factory=dict)
    ground_truth: tuple[tuple[str, ...], ...] = ()
    held_out: Mapping[int, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)

    @property
    def long_context(self) -> bool:
        return "long_context" in self.category

    def episode(self) -> EpisodeState:
        instances = new_instances(self.classes, self.initial_config, self.long_context)
        return _MultiTurnEpisode(self, instances)

    def tool_names(self) -> list[str]:
        return [d["name"] for d in self.docs] + [
            d["name"] for docs in self.held_out.values() for d in docs]

    def judge(self, episode: EpisodeState) -> Verdict:
        assert isinstance(episode, _MultiTurnEpisode)
        per_turn: list[list[CallRecord]] = [[] for _ in range(len(episode.states))]
        for c in _decodable(episode.calls):
            if c.turn < len(per_turn):
                per_turn[c.turn].append(c)
        ok, kind, msg = check_multi_turn(
            classes=self.classes, initial_config=self.initial_config,
            long_context=self.long_context, ground_truth=self.ground_truth,
            turn_calls=per_turn, turn_states=episode.states)
        return Verdict(correct=ok, extracted=None, reason=msg if ok else f"{kind}: {msg}")

    def oracle_next(self, turn: int, done: Sequence[tuple[str | None, Any, str]]
                    ) -> tuple[str, dict[str, Any]] | None:
        gt = self.ground_truth[turn] if turn < len(self.ground_truth) else ()
        if len(done) >= len(gt):
            return None
        name, args, kwargs = parse_call(gt[len(done)])
        cls = next(c for c in self.classes
                   if callable(getattr(_backend(c), name, None)))
        return name, keyword_arguments(getattr(_backend(cls), name), args, kwargs)


@functools.cache
def _backend(name: str) -> Any:
    from agent_envs.envs.functions.bfcl.multi_turn import backend_class
    return backend_class(name)()


class _MultiTurnEpisode(EpisodeState):
    """Binds the declared functions to this episode's backends; snapshots each turn."""

    def __init__(self, task: BfclMultiTurnTask, instances: dict[str, Any]) -> None:
        methods: dict[str, Any] = {}
        for inst in instances.values():
            for name in dir(inst):
                if not name.startswith("_") and callable(getattr(inst, name)):
                    methods[name] = getattr(inst, name)

        def bind(docs: Sequence[Mapping[str, Any]]) -> list[Tool]:
            return [tool_from_schema(d, methods.get(d["name"])) for d in docs]

        super().__init__(bind(task.docs), instances,
                         {t: bind(d) for t, d in task.held_out.items()})
        self.states: list[dict[str, dict[str, Any]]] = []

    def end_turn(self, turn: int) -> None:
        while len(self.states) < turn:  # a turn that ended without a final answer
            self.states.append(snapshot(self.instances))
        self.states.append(snapshot(self.instances))


def _example_arguments(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Plausible arguments for a document's required parameters (relevance oracle)."""
    examples = {"string": "example", "integer": 1, "float": 1.0, "boolean": True,
                "array": [], "tuple": [], "dict": {}, "any": "example"}
    params = doc.get("parameters", {})
    out = {}
    for p in params.get("required", []):
        spec = params.get("properties", {}).get(p, {})
        if spec.get("enum"):
            out[p] = spec["enum"][0]
        else:
            out[p] = examples.get(spec.get("type", "string"), "example")
    return out


def _pick(value: Any) -> Any:
    """A concrete value from an accepted value (dict answers list options per key)."""
    if isinstance(value, dict) and all(isinstance(a, list) for a in value.values()):
        return {k: _pick(next(x for x in acc if x != "")) for k, acc in value.items()
                if any(x != "" for x in acc)}
    if isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        return [_pick(x) for x in value]
    return value


def _options(accepted: Sequence[Any]) -> list[Any]:
    out: list[Any] = [_pick(a) for a in accepted if a != ""]
    if "" in accepted:
        out.append(_OMIT)
    return out or [_OMIT]


_OMIT = object()
_GT_CACHE: dict[str, list[dict[str, Any]]] = {}


def ground_truth_calls(docs: Sequence[Mapping[str, Any]], answers: Sequence[Mapping[str, Any]],
                       category: str, limit: int = 512) -> list[dict[str, Any]]:
    """One concrete call per possible answer that passes BFCL's check, by trying the
    accepted values in order (first accepted value first); the first choice when none does.
    """
    out = []
    for answer in answers:
        (name, params), = answer.items()
        keys = list(params)
        choices = [_options(params[k]) for k in keys]
        first: dict[str, Any] | None = None
        doc = next((d for d in docs if d["name"] == name), None)
        for combo in itertools.islice(itertools.product(*choices), limit):
            args = {k: v for k, v in zip(keys, combo) if v is not _OMIT}
            if first is None:
                first = args
            if doc is not None and check_ast([doc], [{name: args}], [answer], "simple").valid:
                first = args
                break
        out.append({name: first or {}})
    return out


def _task_from_entry(category: str, entry: Mapping[str, Any],
                     answer: Any | None) -> FunctionsTask:
    turns = entry["question"]
    system, history, first = _split_question(turns[0])
    instructions = _INSTRUCTIONS + (f"\n\n{system}" if system else "")
    common = {"id": entry["id"], "answer": "", "split": "test", "source": "bfcl",
              "category": category, "instructions": instructions,
              "meta": {"category": category}, "history": tuple(history)}
    if category in data.MULTI_TURN_CATEGORIES:
        docs = [d for c in entry["involved_classes"] for d in data.func_docs(c)]
        held: dict[int, tuple[Mapping[str, Any], ...]] = {}
        for t, names in (entry.get("missed_function") or {}).items():
            held[int(t)] = tuple(d for d in docs if d["name"] in names)
            docs = [d for d in docs if d["name"] not in names]
        more = [(_split_question(t)[2] if t else ADDED_FUNCTIONS_MESSAGE) for t in turns[1:]]
        return BfclMultiTurnTask(
            **common, prompt=first, more_turns=tuple(more), docs=tuple(docs),
            classes=tuple(entry["involved_classes"]),
            initial_config=entry.get("initial_config", {}),
            ground_truth=tuple(tuple(t) for t in answer or ()), held_out=held)
    if category in data.RELEVANCE_CATEGORIES:
        return BfclRelevanceTask(**common, prompt=first, docs=tuple(entry["function"]))
    return BfclAstTask(**common, prompt=first, docs=tuple(entry["function"]),
                       answers=tuple(answer or ()))


@functools.cache
def quarantine() -> dict[str, str]:
    """``{entry id: reason}``: BFCL entries no answer can pass (shipped as quarantine.json,
    regenerated and checked by the test suite)."""
    text = resources.files("agent_envs.envs.functions.bfcl").joinpath(
        "quarantine.json").read_text(encoding="utf-8")
    return dict(json.loads(text)["entries"])


class BfclTasks(TaskList):
    """BFCL v4 entries from the installed ``bfcl-eval`` (all in the ``test`` split).

    Args:
        categories: Category or group names (None: every served category).
        skip_quarantined: Leave out the entries on the quarantine list.

    Raises:
        DatasetError: ``bfcl-eval`` is missing or a category is unknown.
    """

    def __init__(self, categories: Sequence[str] | None = None, *,
                 skip_quarantined: bool = False) -> None:
        self.categories = data.resolve_categories(list(categories) if categories else None)
        skip = quarantine() if skip_quarantined else {}
        tasks = []
        for cat in self.categories:
            answers = data.answers(cat)
            for entry in data.entries(cat):
                if entry["id"] not in skip:
                    tasks.append(_task_from_entry(cat, entry, answers.get(entry["id"])))
        super().__init__("bfcl", tasks, origin=f"bfcl:{','.join(self.categories)}")

    def _empty_split_fix(self, split: str) -> str:
        return "BFCL is an evaluation set: every entry is in split 'test' (split='test')"

    def sample(self, seed: int, split: str = "test") -> FunctionsTask:  # type: ignore[override]
        # BFCL has only a test split; seeded resets draw from it whatever the env's split.
        return super().sample(seed, "test")  # type: ignore[return-value]
