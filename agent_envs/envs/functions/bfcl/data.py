"""BFCL's questions, answers and function documents, read from the installed ``bfcl-eval``.

The ``bfcl-eval`` package (PyPI) ships the Berkeley Function Calling Leaderboard (v4)
offline under ``bfcl_eval/data``: ``BFCL_v4_<category>.json`` (one entry per line),
``possible_answer/`` and ``multi_turn_func_doc/``. Only the files are read here (the
package's own modules import every vendor SDK); its executable multi-turn backends are
imported from ``bfcl_eval.eval_checker.multi_turn_eval.func_source_code``, which needs
only ``mpmath`` besides the standard library.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

from agent_envs.errors import DatasetError

__all__ = [
    "AST_CATEGORIES", "CATEGORIES", "GROUPS", "MULTI_TURN_CATEGORIES", "RELEVANCE_CATEGORIES",
    "answers", "data_dir", "entries", "func_docs", "resolve_categories",
]

AST_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple",
                  "live_multiple", "live_parallel", "live_parallel_multiple")
RELEVANCE_CATEGORIES = ("irrelevance", "live_irrelevance", "live_relevance")
MULTI_TURN_CATEGORIES = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param",
                         "multi_turn_long_context")
CATEGORIES = AST_CATEGORIES + RELEVANCE_CATEGORIES + MULTI_TURN_CATEGORIES
GROUPS: dict[str, tuple[str, ...]] = {
    "all": CATEGORIES,
    "ast": AST_CATEGORIES,
    "non_live": ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance"),
    "live": ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
             "live_irrelevance", "live_relevance"),
    "single_turn": AST_CATEGORIES + RELEVANCE_CATEGORIES,
    "multi_turn": MULTI_TURN_CATEGORIES,
    "relevance": RELEVANCE_CATEGORIES,
}
#: BFCL's classes -> their function documents (``multi_turn_func_doc``).
FUNC_DOC_FILES = {
    "GorillaFileSystem": "gorilla_file_system.json", "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json", "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json", "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json", "VehicleControlAPI": "vehicle_control.json",
}


@functools.cache
def data_dir() -> Path:
    """``bfcl_eval/data`` of the installed package.

    Raises:
        DatasetError: ``bfcl-eval`` is not installed (the message gives the install line).
    """
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("BFCL tasks need the bfcl-eval package (its data ships with it); "
                           "install it with: pip install --no-deps bfcl-eval==2026.3.23 mpmath")
    path = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (path / "BFCL_v4_simple_python.json").is_file():
        raise DatasetError(f"{path} has no BFCL_v4_simple_python.json; this bfcl-eval "
                           "release has a different layout (tested: 2026.3.23)")
    return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None


def resolve_categories(names: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Category names from names and group names (``None`` = every category), in order.

    Raises:
        DatasetError: an unknown name (the message lists the known ones).
    """
    if not names:
        return CATEGORIES
    out: list[str] = []
    for n in names:
        n = n.strip()
        group = GROUPS.get(n, (n,) if n in CATEGORIES else None)
        if group is None:
            raise DatasetError(f"unknown BFCL category {n!r}; categories: "
                               f"{', '.join(CATEGORIES)}; groups: {', '.join(GROUPS)} "
                               "(Java/JavaScript, web search, memory and format sensitivity "
                               "are not served)")
        out.extend(c for c in group if c not in out)
    return tuple(out)


@functools.cache
def entries(category: str) -> tuple[dict[str, Any], ...]:
    """The category's entries (``id``, ``question``, ``function`` or multi-turn fields)."""
    return tuple(_read_jsonl(data_dir() / f"BFCL_v4_{category}.json"))


@functools.cache
def answers(category: str) -> dict[str, Any]:
    """``{entry id: ground_truth}`` (empty for relevance/irrelevance, which have none)."""
    path = data_dir() / "possible_answer" / f"BFCL_v4_{category}.json"
    if not path.is_file():
        return {}
    return {row["id"]: row["ground_truth"] for row in _read_jsonl(path)}


@functools.cache
def func_docs(class_name: str) -> tuple[dict[str, Any], ...]:
    """The function documents of one of BFCL's multi-turn classes."""
    if class_name not in FUNC_DOC_FILES:
        raise DatasetError(f"no function documents for BFCL class {class_name!r}; known: "
                           f"{', '.join(FUNC_DOC_FILES)}")
    return tuple(_read_jsonl(data_dir() / "multi_turn_func_doc" / FUNC_DOC_FILES[class_name]))
