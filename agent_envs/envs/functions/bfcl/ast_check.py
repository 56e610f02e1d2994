"""BFCL's AST scoring rules, reimplemented (Python categories).

A model's calls (``[{name: {param: value}}, ...]`` in call order) are judged against the
possible answers (``[{name: {param: [accepted values]}}]``, ``""`` among the accepted
values marking an optional parameter) under BFCL v4's rules:

* **Counts.** ``simple``/``multiple``: exactly one call. ``parallel*``: as many calls as
  answers, matched greedily: each answer, in order, takes the first unmatched call that
  passes it.
* **Names and parameters.** The function name must match; every required parameter must be
  given; a parameter the schema or the answer does not list fails; a listed parameter left
  out fails unless ``""`` is among its accepted values.
* **Types** are compared with ``type(value) ==`` (so ``bool`` is not ``int``); an ``int``
  for a ``float`` parameter is converted (the only conversion); a value of the answer's
  type where the schema says otherwise is a "variable" and is compared as it is; arrays
  are type-checked one level deep.
* **Strings** match after normalisation: spaces and ``,./-_*^`` removed, lower case, ``'``
  as ``"``. **Lists** match element by element in order (strings normalised). **Dicts**
  match one level deep (keys must be allowed; values normalised and looked up). Lists of
  dicts match dict by dict in order. Anything else matches with ``in`` (so ``5 == 5.0``).

The test suite holds every verdict equal to ``bfcl_eval``'s own ``ast_checker`` on the
ground truth and on systematic mutations of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["AstVerdict", "check_ast", "normalize_string"]

_PY_TYPES: dict[str, type] = {"string": str, "integer": int, "float": float, "boolean": bool,
                              "array": list, "tuple": list, "dict": dict, "any": str}
_NESTED = ("array", "tuple")
_STRIP = re.compile(r"[ ,./\-_*^]")


@dataclass(frozen=True)
class AstVerdict:
    """The outcome of an AST check.

    Attributes:
        valid: The calls pass.
        error: Why not (empty when valid).
        error_type: BFCL's error category, e.g. ``value_error:string``.
    """

    valid: bool
    error: str = ""
    error_type: str = ""


_OK = AstVerdict(True)


def normalize_string(text: str) -> str:
    """BFCL's string normalisation: drop spaces and ``,./-_*^``, lower-case, ``'`` -> ``"``."""
    return _STRIP.sub("", text).lower().replace("'", '"')


def _norm(value: Any) -> Any:
    return normalize_string(value) if type(value) is str else value


def _answer_type(accepted: Sequence[Any]) -> type | None:
    """The type of the first accepted value that is not the optional marker ``""``."""
    for a in accepted:
        if a != "":
            return type(a)
    return None


def _type_ok(value: Any, accepted: Sequence[Any], expected: type,
             inner: type | None) -> tuple[bool, bool]:
    """(passes, is_variable) under BFCL's type rule."""
    ans_type = _answer_type(accepted)
    variable = ans_type is not None and ans_type != expected
    if type(value) is expected:
        if inner is None:
            return True, variable
        for candidate in accepted:
            if type(candidate) is list and not all(
                    _type_ok(item, candidate, inner, None)[0] for item in value):
                continue
            return True, variable
        return False, variable  # nested check failed: no rescue below
    if ans_type is not None and type(value) is ans_type:
        return True, True
    return False, variable


def _dict_ok(value: Mapping[str, Any], accepted: Sequence[Any]) -> bool:
    for cand in accepted:
        if cand == "":
            continue
        if any(k not in cand or _norm(v) not in [_norm(a) for a in cand[k]]
               for k, v in value.items()):
            continue
        if any(k not in value and "" not in opts for k, opts in cand.items()):
            continue
        return True
    return False


def _list_of_dicts_ok(value: Sequence[Any], accepted: Sequence[Any]) -> bool:
    for cand in accepted:
        if len(value) != len(cand):
            continue
        if all(_dict_ok(v, [c]) for v, c in zip(value, cand)):
            return True
    return False


def _check_one(doc: Mapping[str, Any], call: Mapping[str, Any],
               answer: Mapping[str, Any]) -> AstVerdict:
    expected_name = doc["name"]
    accepted_params: Mapping[str, Sequence[Any]] = next(iter(answer.values()))
    props = doc["parameters"].get("properties", {})
    if expected_name not in call:
        return AstVerdict(False, f"function {expected_name!r} not called",
                          "simple_function_checker:wrong_func_name")
    given = call[expected_name]
    for p in doc["parameters"].get("required", []):
        if p not in given:
            return AstVerdict(False, f"missing required parameter {p!r}",
                              "simple_function_checker:missing_required")
    for p, value in given.items():
        if p not in props or p not in accepted_params:
            return AstVerdict(False, f"unexpected parameter {p!r}",
                              "simple_function_checker:unexpected_param")
        accepted = accepted_params[p]
        type_name = props[p].get("type")
        expected = _PY_TYPES.get(type_name)  # type: ignore[arg-type]
        inner_name = (props[p].get("items") or {}).get("type") if type_name in _NESTED else None
        inner = _PY_TYPES.get(inner_name) if inner_name is not None else None  # type: ignore[arg-type]
        if expected is None or (type_name in _NESTED and inner is None):
            # bfcl_eval raises (KeyError) here; a verdict is more useful. Documented divergence.
            return AstVerdict(False, f"parameter {p!r} has a schema type BFCL cannot check "
                              f"({type_name!r})", "type_error:unsupported_schema")
        if type_name == "float" and type(value) is int:
            value = float(value)
        ok, variable = _type_ok(value, accepted, expected, inner)
        if not ok:
            return AstVerdict(False, f"wrong type for {p!r}: {type(value).__name__}",
                              "type_error:nested" if inner is not None
                              and type(value) is expected else "type_error:simple")
        if not variable:
            if expected is dict:
                if not _dict_ok(value, accepted):
                    return AstVerdict(False, f"dict value of {p!r} not accepted",
                                      "value_error:dict")
                continue
            if expected is list and inner is dict:
                if not _list_of_dicts_ok(value, accepted):
                    return AstVerdict(False, f"list of dicts {p!r} not accepted",
                                      "value_error:list_dict")
                continue
            if expected is str:
                if _norm(value) not in [_norm(a) for a in accepted if type(a) is str]:
                    return AstVerdict(False, f"string {p!r}={value!r} not accepted",
                                      "value_error:string")
                continue
            if expected is list:
                got = [_norm(v) for v in value]
                if got not in [[_norm(x) for x in a] for a in accepted]:
                    return AstVerdict(False, f"list {p!r}={value!r} not accepted",
                                      "value_error:list/tuple")
                continue
        if value not in accepted:
            return AstVerdict(False, f"value {p!r}={value!r} not accepted",
                              "value_error:others")
    for p, accepted in accepted_params.items():
        if p not in given and "" not in accepted:
            return AstVerdict(False, f"parameter {p!r} left out but not optional",
                              "simple_function_checker:missing_optional")
    return _OK


def _doc_for(docs: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    return next((d for d in docs if d["name"] == name), None)


def check_ast(docs: Sequence[Mapping[str, Any]], calls: Sequence[Mapping[str, Any]],
              answers: Sequence[Mapping[str, Any]], category: str) -> AstVerdict:
    """Judge ``calls`` against ``answers`` under BFCL's rules for ``category``.

    Args:
        docs: The entry's function documents (BFCL's schema flavour).
        calls: The model's calls, ``[{name: {param: value}}, ...]`` in call order.
        answers: The possible answers, ``[{name: {param: [accepted, ...]}}, ...]``.
        category: The BFCL category (``parallel`` / ``multiple`` in it decide the mode).
    """
    if "parallel" in category:
        if len(calls) != len(answers):
            return AstVerdict(False, f"{len(calls)} calls, expected {len(answers)}",
                              "parallel_function_checker_no_order:wrong_count")
        used: set[int] = set()
        for i, answer in enumerate(answers):
            doc = _doc_for(docs, next(iter(answer)))
            assert doc is not None, f"no document for {next(iter(answer))!r}"
            hit = next((j for j, c in enumerate(calls)
                        if j not in used and _check_one(doc, c, answer).valid), None)
            if hit is None:
                return AstVerdict(False, f"no call matches answer {i}",
                                  "parallel_function_checker_no_order:cannot_find_match")
            used.add(hit)
        return _OK
    if "multiple" in category:
        if len(calls) != len(answers):
            return AstVerdict(False, f"{len(calls)} calls, expected {len(answers)}",
                              "multiple_function_checker:wrong_count")
        doc = _doc_for(docs, next(iter(answers[0])))
        assert doc is not None, f"no document for {next(iter(answers[0]))!r}"
        return _check_one(doc, calls[0], answers[0])
    if len(calls) != 1:
        return AstVerdict(False, f"{len(calls)} calls, expected 1",
                          "simple_function_checker:wrong_count")
    return _check_one(docs[0], calls[0], answers[0])
