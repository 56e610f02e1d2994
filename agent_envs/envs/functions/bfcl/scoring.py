"""BFCL scores: per category, and BFCL v4's summary figures and weighted overall."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent_envs.envs.functions.bfcl import data
from agent_envs.envs.functions.bfcl.tasks import quarantine

__all__ = ["bfcl_overall", "category_of", "score_report"]


def category_of(task_id: str) -> str:
    """The BFCL category of an entry id (``live_simple_3-2-1`` -> ``live_simple``).

    Raises:
        ValueError: the id belongs to no served category.
    """
    for cat in sorted(data.CATEGORIES, key=len, reverse=True):
        rest = task_id[len(cat) + 1:]
        if task_id.startswith(cat + "_") and rest[:1].isdigit():
            return cat
    raise ValueError(f"{task_id!r} is not the id of an entry of a served BFCL category")


def score_report(rewards: Mapping[str, float], *, skip_quarantined: bool = False
                 ) -> dict[str, Any]:
    """Per-category scores and BFCL's summary figures from ``{entry id: reward}``.

    Args:
        rewards: Episode rewards (1.0 right, 0.0 wrong) by BFCL entry id.
        skip_quarantined: Leave quarantined entries out of the counts (BFCL counts them).

    Returns:
        ``{"categories": {cat: {"correct", "total", "accuracy"}}, **bfcl_overall(...)}``.
    """
    skip = quarantine() if skip_quarantined else {}
    counts: dict[str, list[int]] = {}
    for task_id, reward in rewards.items():
        if task_id in skip:
            continue
        c = counts.setdefault(category_of(task_id), [0, 0])
        c[0] += int(reward >= 1.0)
        c[1] += 1
    cats = {k: {"correct": v[0], "total": v[1], "accuracy": v[0] / v[1]}
            for k, v in sorted(counts.items())}
    return {"categories": cats, **bfcl_overall({k: (v[0], v[1]) for k, v in counts.items()})}


def bfcl_overall(scores: Mapping[str, tuple[int, int]]) -> dict[str, float | None]:
    """BFCL v4's summary figures from per-category ``(correct, total)``.

    Non-live AST is the unweighted mean of simple (Python only here; BFCL also averages
    Java and JavaScript in), multiple, parallel and parallel-multiple; live AST is weighted
    by entry counts; irrelevance is the mean of the two irrelevance categories;
    multi-turn is the unweighted mean of its four categories. ``overall`` is BFCL's
    ``[10, 10, 10, 30, 40]`` weighting of non-live, live, irrelevance, multi-turn and
    agentic, with agentic (web search, memory: not served) counted as 0, as BFCL counts
    a missing category; ``overall_served`` renormalises the weights over what is served.
    Figures whose categories are all missing are None.
    """
    def acc(cat: str) -> float | None:
        c = scores.get(cat)
        return None if not c or not c[1] else c[0] / c[1]

    def mean(cats: Sequence[str]) -> float | None:
        vals = [acc(c) for c in cats]
        if all(v is None for v in vals):
            return None
        return sum(v or 0.0 for v in vals) / len(vals)

    live = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
    live_tot = sum(scores.get(c, (0, 0))[1] for c in live)
    figures: dict[str, float | None] = {
        "non_live_ast": mean(("simple_python", "multiple", "parallel", "parallel_multiple")),
        "live_ast": (sum(scores.get(c, (0, 0))[0] for c in live) / live_tot) if live_tot
        else None,
        "irrelevance": mean(("irrelevance", "live_irrelevance")),
        "relevance": acc("live_relevance"),
        "multi_turn": mean(data.MULTI_TURN_CATEGORIES),
    }
    parts = [("non_live_ast", 10), ("live_ast", 10), ("irrelevance", 10), ("multi_turn", 30)]
    figures["overall"] = sum((figures[k] or 0.0) * w for k, w in parts) / 100
    served = [(figures[k], w) for k, w in parts if figures[k] is not None]
    figures["overall_served"] = (sum(v * w for v, w in served) / sum(w for _, w in served)
                                 if served else None)
    return figures
