"""Systematic mutations of BFCL ground-truth calls, for the agreement tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any


def changed_value(v: Any) -> Any:
    """A different value of the same type."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        return v + 0.5
    if isinstance(v, str):
        return v + "zq"
    if isinstance(v, list):
        return v[:-1] if v else [1]
    if isinstance(v, dict):
        return {**v, "zz_extra_key": 1}
    return "zq"


def swapped_type(v: Any) -> Iterator[tuple[str, Any]]:
    """The same value as other types (str/int/float swaps)."""
    if isinstance(v, bool):
        yield "bool->str", str(v)
        yield "bool->int", int(v)
    elif isinstance(v, int):
        yield "int->str", str(v)
        yield "int->float", float(v)
    elif isinstance(v, float):
        yield "float->str", str(v)
        if v == int(v):
            yield "float->int", int(v)
    elif isinstance(v, str):
        if v.lstrip("-").isdigit():
            yield "str->int", int(v)
        yield "str->list", [v]


def mutations(calls: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(name, mutated calls) for every systematic mutation of ``calls``."""
    for i, call in enumerate(calls):
        (name, args), = call.items()
        for p in args:
            m = copy.deepcopy(calls)
            del m[i][name][p]
            yield f"drop:{p}", m
            m = copy.deepcopy(calls)
            m[i][name][p + "_renamed"] = m[i][name].pop(p)
            yield f"rename:{p}", m
            m = copy.deepcopy(calls)
            m[i][name][p] = changed_value(args[p])
            yield f"change:{p}", m
            for kind, new in swapped_type(args[p]):
                m = copy.deepcopy(calls)
                m[i][name][p] = new
                yield f"{kind}:{p}", m
            v = args[p]
            if isinstance(v, list) and len(v) >= 2 and v != v[::-1]:
                m = copy.deepcopy(calls)
                m[i][name][p] = v[::-1]
                yield f"reorder:{p}", m
            if isinstance(v, dict) and v:
                k = next(iter(v))
                m = copy.deepcopy(calls)
                m[i][name][p][k] = changed_value(v[k])
                yield f"dict-value:{p}.{k}", m
                m = copy.deepcopy(calls)
                del m[i][name][p][k]
                yield f"dict-drop:{p}.{k}", m
            if isinstance(v, str) and v:
                m = copy.deepcopy(calls)
                m[i][name][p] = v.upper() + " "
                yield f"case-space:{p}", m
        m = copy.deepcopy(calls)
        m[i][name]["zz_extra_param"] = 1
        yield "extra-key", m
        m = copy.deepcopy(calls)
        m[i] = {name + "_wrong": m[i][name]}
        yield "rename-function", m
    if len(calls) >= 2:
        yield "swap-order", list(reversed(copy.deepcopy(calls)))
    yield "missing-call", copy.deepcopy(calls[:-1])
    yield "extra-call", copy.deepcopy(calls + calls[:1])
