"""Our BFCL verdicts against bfcl_eval's own checkers (test-only oracle), on the ground truth
and on systematic mutations of it. They must agree on every case, except where a named,
documented divergence (``DIVERGENCES``) applies; those cases are counted and checked to be
what the divergence says."""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

import pytest

from agent_envs.core import ToolCall
from agent_envs.envs.functions.bfcl import (
    DIVERGENCES,
    BfclTasks,
    check_ast,
    data,
    ground_truth_calls,
)
from agent_envs.envs.functions.bfcl.multi_turn import keyword_arguments, parse_call
from agent_envs.envs.functions.runtime import FunctionRunner, RunnerConfig
from agent_envs.envs.functions.tools import ToolSet
from tests.agent_envs.functions.bfcl_reference import bfcl_ast_valid, bfcl_multi_turn_valid
from tests.agent_envs.functions.mutations import changed_value, mutations


@pytest.mark.parametrize("category", data.AST_CATEGORIES)
def test_ast_verdicts_agree_with_bfcl_on_ground_truth_and_mutations(category):
    answers = data.answers(category)
    kinds: Counter[str] = Counter()
    rejected = 0
    for entry in data.entries(category):
        ans = answers[entry["id"]]
        gt = ground_truth_calls(entry["function"], ans, category)
        for name, calls in [("ground-truth", gt), *mutations(gt)]:
            ours = check_ast(entry["function"], calls, ans, category).valid
            ref = bfcl_ast_valid(entry["function"], calls, ans, category)
            assert ours == ref, (entry["id"], name, calls)
            kinds[name.split(":")[0]] += 1
            rejected += not ours
    # every mutation family was exercised, and most mutations are (rightly) rejected
    assert {"ground-truth", "drop", "rename", "change", "extra-key", "rename-function",
            "missing-call", "extra-call"} <= set(kinds)
    assert rejected > 0.6 * (sum(kinds.values()) - kinds["ground-truth"])
    if "parallel" in category:
        assert kinds["swap-order"] > 0


def test_string_normalisation_and_int_to_float_follow_bfcl():
    docs = [{"name": "f", "parameters": {"type": "dict", "required": ["s", "x"], "properties": {
        "s": {"type": "string"}, "x": {"type": "float"}, "n": {"type": "integer"}}}}]
    ans = [{"f": {"s": ["New York, NY"], "x": [2.0], "n": [3, ""]}}]
    cases = [({"s": "new york ny", "x": 2}, True),   # normalised string, int -> float
             ({"s": "New-York/NY", "x": 2.0, "n": 3}, True),
             ({"s": "New York", "x": 2.0}, False),
             ({"s": "New York, NY", "x": 2.0, "n": 3.0}, False),  # float for int: no
             ({"s": "New York, NY", "x": True}, False)]
    for args, expected in cases:
        assert check_ast(docs, [{"f": args}], ans, "simple_python").valid is expected
        assert bfcl_ast_valid(docs, [{"f": args}], ans, "simple_python") is expected


# -- multi-turn -----------------------------------------------------------------------

def _run_ours(task: Any, turns: list[list[str]], validation: str) -> tuple[bool, Any]:
    """Execute decoded call strings through our runner and judge the episode."""
    episode = task.episode()
    toolset = ToolSet(episode.tools)
    runner = FunctionRunner(toolset, RunnerConfig(validation=validation, call_timeout_s=None))
    for t, calls in enumerate(turns):
        if t in episode.added:
            toolset.add(episode.added[t])
        for text in calls:
            name, args, kwargs = parse_call(text)
            method = next(getattr(i, name) for i in episode.instances.values()
                          if callable(getattr(i, name, None)))
            kw = keyword_arguments(method, args, kwargs)
            call = ToolCall(recipient=f"functions.{name}", channel="commentary",
                            content_type="<|constrain|>json", text=json.dumps(kw))
            episode.calls.append(runner.run(call, turn=t))
        episode.end_turn(t)
        episode.finals.append("Done.")
    return task.judge(episode).correct, episode


def _turn_mutations(gt: list[list[str]]) -> list[tuple[str, list[list[str]]]]:
    out = []
    for t, calls in enumerate(gt):
        if not calls:
            continue
        for i, text in enumerate(calls):
            m = copy.deepcopy(gt)
            del m[t][i]
            out.append((f"drop-call:{t}.{i}", m))
            name, args, kwargs = parse_call(text)
            if kwargs:
                k = next(iter(kwargs))
                kw = {**kwargs, k: changed_value(kwargs[k])}
                m = copy.deepcopy(gt)
                m[t][i] = f"{name}({', '.join(repr(a) for a in args)}" + (
                    ", " if args else "") + ", ".join(f"{a}={v!r}" for a, v in kw.items()) + ")"
                out.append((f"change-value:{t}.{i}", m))
        m = copy.deepcopy(gt)
        m[t] = m[t] + m[t][-1:]
        out.append((f"extra-call:{t}", m))
        if len(calls) >= 2:
            m = copy.deepcopy(gt)
            m[t] = list(reversed(m[t]))
            out.append((f"swap-order:{t}", m))
        m = copy.deepcopy(gt)
        m[t] = []
        out.append((f"empty-turn:{t}", m))
        if t + 1 < len(gt):
            m = copy.deepcopy(gt)
            m[t + 1] = m[t] + m[t + 1]
            m[t] = []
            out.append((f"call-a-turn-late:{t}", m))
    return out


def _multi_turn_cases(category: str, every: int) -> list[Any]:
    source = BfclTasks([category])
    raw = {e["id"]: e for e in data.entries(category)}
    return [(task, raw[task.id]) for i, task in enumerate(source) if i % every == 0]


def _check_multi_turn(category: str, every: int) -> Counter[str]:
    tally: Counter[str] = Counter()
    for task, entry in _multi_turn_cases(category, every):
        gt = [list(t) for t in task.ground_truth]
        for name, turns in [("ground-truth", gt), *_turn_mutations(gt)]:
            ref = bfcl_multi_turn_valid([[calls] if calls else [] for calls in turns], gt,
                                        copy.deepcopy(entry), category)["valid"]
            ours_off, _ = _run_ours(task, turns, "off")
            ours, episode = _run_ours(task, turns, "strict")
            refused = {c.error_kind for c in episode.calls} & {"schema", "unknown_function"}
            if ours_off != ref:
                # the only difference with validation off: calls to undeclared functions
                assert "unknown_function" in refused, (task.id, name, turns)
                tally["divergence:undeclared_functions_refused"] += 1
            elif ours != ref:
                assert refused, (task.id, name, turns)
                tally["divergence:validation_refuses_calls"] += 1
            else:
                tally["agree"] += 1
            tally[f"bfcl_{ref}"] += 1
    return tally


@pytest.mark.parametrize("category", data.MULTI_TURN_CATEGORIES)
def test_multi_turn_verdicts_agree_with_bfcl_on_a_sample(category):
    tally = _check_multi_turn(category, every=20)
    assert tally["agree"] >= 0.97 * (tally["bfcl_True"] + tally["bfcl_False"]), tally
    assert tally["bfcl_True"] >= 10 and tally["bfcl_False"] >= 50, tally


@pytest.mark.sweep
@pytest.mark.parametrize("category", data.MULTI_TURN_CATEGORIES)
def test_multi_turn_verdicts_agree_with_bfcl_on_every_entry(category):
    tally = _check_multi_turn(category, every=1)
    assert tally["agree"] >= 0.97 * (tally["bfcl_True"] + tally["bfcl_False"]), tally


def test_divergences_are_named_and_documented():
    assert set(DIVERGENCES) == {"validation_refuses_calls", "undeclared_functions_refused",
                                "unsupported_schema_type"}
    assert all(len(v) > 40 for v in DIVERGENCES.values())
