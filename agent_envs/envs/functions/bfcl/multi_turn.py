"""BFCL's multi-turn categories: executable backends, fresh per episode, and their scoring.

The backends (``GorillaFileSystem``, ``TradingBot``, ``TravelAPI``, ``MathAPI``, ...) are the
pure-Python classes ``bfcl-eval`` ships; every episode gets new instances loaded with the
entry's initial configuration, so no state leaks between episodes (BFCL's own runner keeps
them in module globals keyed by model name). Model calls reach them as validated keyword
arguments; BFCL's ground-truth call strings are read with :mod:`ast` (literals only), never
``eval``.

Scoring follows BFCL v4's ``multi_turn_checker``: after every user turn whose ground truth
is not empty, (1) the model must have made at least one decodable call in that turn, (2)
every public attribute of every backend must equal the ground truth's after the same turn
(the ground truth is executed on its own fresh instances), and (3) the results of the
turn's ground-truth calls must all be found (as a multiset, in any order) among the results
of the model's calls so far. Turns with empty ground truth are not checked (as in BFCL v4,
whose runner does not call its irrelevance checker for multi-turn entries).
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from agent_envs.envs.functions.runtime import CallRecord, result_text

__all__ = [
    "BACKEND_MODULES", "bfcl_result_string", "check_multi_turn", "new_instances", "parse_call",
    "snapshot",
]

_PREFIX = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
BACKEND_MODULES = {
    "GorillaFileSystem": "gorilla_file_system", "MathAPI": "math_api",
    "MessageAPI": "message_api", "TwitterAPI": "posting_api", "TicketAPI": "ticket_api",
    "TradingBot": "trading_bot", "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
}
_STATELESS = {"MathAPI"}


def backend_class(name: str) -> type:
    """One of BFCL's backend classes, imported from the installed ``bfcl-eval``."""
    module = importlib.import_module(f"{_PREFIX}.{BACKEND_MODULES[name]}")
    return getattr(module, name)


def new_instances(classes: Sequence[str], initial_config: Mapping[str, Any],
                  long_context: bool) -> dict[str, Any]:
    """Fresh backend instances loaded with (a deep copy of) the entry's configuration."""
    out = {}
    for name in classes:
        inst = backend_class(name)()
        if name not in _STATELESS:
            inst._load_scenario(copy.deepcopy(dict(initial_config.get(name, {}))),
                                long_context=long_context)
        out[name] = inst
    return out


def parse_call(text: str) -> tuple[str, list[Any], dict[str, Any]]:
    """``"mv(source='a', destination='b')"`` -> ``("mv", [], {"source": "a", ...})``.

    Only literal arguments are accepted (``ast.literal_eval``); nothing is evaluated.

    Raises:
        ValueError: not a single call with literal arguments.
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"not a call: {text!r} ({e.msg})") from None
    if not isinstance(node, ast.Call):
        raise ValueError(f"not a call: {text!r}")  # noqa: TRY004 - a parse error
    func = node.func
    name = func.id if isinstance(func, ast.Name) else (
        func.attr if isinstance(func, ast.Attribute) else None)
    if name is None:
        raise ValueError(f"cannot read the function name of {text!r}")
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    except ValueError as e:
        raise ValueError(f"non-literal argument in {text!r}: {e}") from None
    return name, args, kwargs


def keyword_arguments(method: Any, args: Sequence[Any], kwargs: Mapping[str, Any]
                      ) -> dict[str, Any]:
    """Positional arguments of a ground-truth call turned into keywords (by the signature)."""
    params = [p for p in inspect.signature(method).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    out = {p.name: v for p, v in zip(params, args)}
    out.update(kwargs)
    return out


def bfcl_result_string(record: CallRecord) -> str:
    """A call's result as BFCL's executor records it (its response check compares these)."""
    if record.result_str is not None:
        return record.result_str
    detail = record.exception if record.error_kind == "exception" else record.error
    return f"Error during execution: {detail}"


def snapshot(instances: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Deep copies of every instance's public attributes (what BFCL's state check reads)."""
    return {name: copy.deepcopy({k: v for k, v in vars(inst).items() if not k.startswith("_")})
            for name, inst in instances.items()}


def _execute_ground_truth(instances: Mapping[str, Any], calls: Sequence[str]) -> list[str]:
    methods = {}
    for inst in instances.values():
        for mname, m in inspect.getmembers(inst, predicate=inspect.ismethod):
            if not mname.startswith("_"):
                methods[mname] = m
    out = []
    for text in calls:
        name, args, kwargs = parse_call(text)
        try:
            value = methods[name](**keyword_arguments(methods[name], args, kwargs))
        except Exception as e:  # noqa: BLE001 - BFCL records the error text as the result
            out.append(f"Error during execution: {e}")
            continue
        out.append(result_text(value))
    return out


def check_multi_turn(*, classes: Sequence[str], initial_config: Mapping[str, Any],
                     long_context: bool, ground_truth: Sequence[Sequence[str]],
                     turn_calls: Sequence[Sequence[CallRecord]],
                     turn_states: Sequence[Mapping[str, Mapping[str, Any]]]
                     ) -> tuple[bool, str, str]:
    """BFCL's multi-turn verdict (see the module docstring).

    Args:
        classes: The entry's ``involved_classes``.
        initial_config: The entry's ``initial_config``.
        long_context: Load the long-context scenarios.
        ground_truth: The ground-truth call strings, per turn.
        turn_calls: The model's decodable calls, per turn.
        turn_states: :func:`snapshot` of the model's instances at the end of each turn.

    Returns:
        ``(valid, error_type, message)``.
    """
    if len(turn_calls) != len(ground_truth):
        return False, "multi_turn:force_terminated", (
            f"{len(turn_calls)} turns answered, {len(ground_truth)} expected")
    gt_instances = new_instances(classes, initial_config, long_context)
    model_results: list[str] = []
    for t, gt_calls in enumerate(ground_truth):
        model_results.extend(bfcl_result_string(c) for c in turn_calls[t])
        gt_results = _execute_ground_truth(gt_instances, gt_calls)
        if not gt_calls:
            continue
        if not turn_calls[t]:
            return False, "multi_turn:empty_turn_model_response", f"no call in turn {t}"
        for cname, inst in gt_instances.items():
            state = turn_states[t][cname]
            for attr, value in vars(inst).items():
                if attr.startswith("_"):
                    continue
                if state.get(attr, _MISSING) != value:
                    return False, "multi_turn:instance_state_mismatch", (
                        f"turn {t}: {cname}.{attr} differs from the ground truth")
        remaining = list(model_results)
        for r in gt_results:
            if r in remaining:
                remaining.remove(r)
            else:
                return False, "multi_turn:execution_response_mismatch", (
                    f"turn {t}: ground-truth result {r[:200]!r} not among the model's results")
    return True, "", "all turns match"


class _Missing:
    def __eq__(self, other: object) -> bool:
        return False

    def __ne__(self, other: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]


_MISSING = _Missing()
