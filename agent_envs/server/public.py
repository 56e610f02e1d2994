"""What of a task and of an env's ``info`` may leave the server.

A generic harness (verifiers' ``OpenEnvTaskset``, and any like it) puts the whole
observation it receives into the model's turn, so an observation may carry only what the
model may see: tokens, their text, and the task's public metadata. The task's answer,
solution, expected calls, evidence and hidden world state stay on the server; so does a
verdict's reason, which may name the answer (``"expected 42, got 41"``). Rewards and the
verdict's ``correct``/``extracted`` still go out: our collector and eval score from them.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["PUBLIC_TASK_KEYS", "public_info", "public_reason", "public_task"]

#: The task metadata every reset observation carries (``task_meta``).
PUBLIC_TASK_KEYS = ("id", "family", "difficulty", "split")

#: Verdict reasons that say nothing about the answer; any other reason is withheld.
_SAFE_REASONS = re.compile(
    r"match|no answer found|goal state reached|all expected calls made"
    r"|a call's arguments could not be decoded|the user replied"
    r"|turn \d+ of \d+ answered"
    r"|(a function was called|no function called) \((right|wrong)\)"
    r"|τ² reward [\d.]+ \([A-Z_]+ [\d.]+(, [A-Z_]+ [\d.]+)*\)")

_WITHHELD = "withheld: the verifier's reason stays on the server (it may name the answer)"


def public_task(task: Any) -> dict[str, Any] | None:
    """The task's public metadata: ``id``, ``family``, ``difficulty`` and ``split``.

    ``family`` is the task's ``meta["family"]`` (python-tool's procedural families), else
    ``meta["toolset"]`` (procedural functions), else the name of the source that made it
    (``bfcl``: a BFCL category such as ``irrelevance`` would tell the model the answer).
    The id is public as it is: a source whose ids spell the answer gives it away.
    """
    if task is None:
        return None
    meta = getattr(task, "meta", None) or {}
    family = next((meta[k] for k in ("family", "toolset")
                   if isinstance(meta.get(k), str) and meta[k]), None)
    return {"id": str(task.id), "family": family or str(getattr(task, "source", "") or ""),
            "difficulty": int(getattr(task, "difficulty", 0) or 0),
            "split": str(getattr(task, "split", ""))}


def public_reason(verdict: dict[str, Any]) -> str:
    """The verdict's reason if it is one that cannot name the answer, else a stand-in
    (``correct`` says whether the answer was right either way)."""
    reason = str(verdict.get("reason") or "")
    return reason if _SAFE_REASONS.fullmatch(reason) else _WITHHELD


def public_info(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` (already JSON) as a model's harness may see it: the verdict's reason withheld.

    Everything else an env reports in ``info`` is public by the env contract (tool outcomes,
    counters, the model's own extracted answer, reward components).
    """
    verdict = info.get("verdict")
    if not isinstance(verdict, dict) or "reason" not in verdict:
        return info
    out = dict(info)
    out["verdict"] = {**verdict, "reason": public_reason(verdict)}
    return out
