"""Split hygiene every procedural family shares: a problem belongs to one split, by a hash.

Every concrete problem (family + canonical parameters) belongs to exactly one split, decided
by a stable hash of those parameters (about :data:`TEST_FRACTION` go to ``test``); a
generator redraws until the problem belongs to the requested split. So whatever seeds anyone
uses, no test problem is ever a train problem.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agent_envs.tasks.base import Split

__all__ = ["TEST_FRACTION", "check_split", "split_of", "stable_int"]

# Part of every generator's version: changing it would move problems between splits.
TEST_FRACTION = 0.1


def stable_int(*parts: object) -> int:
    """A 64-bit integer hash of ``parts`` that is the same on every machine and run."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def split_of(family: str, params: dict[str, Any], version: str = "v0",
             test_fraction: float = TEST_FRACTION) -> Split:
    """The split a concrete problem belongs to (independent of seed and difficulty).

    Args:
        family: Family name.
        params: The problem's canonical parameters (JSON values).
        version: Generator version.
        test_fraction: The share of problems in ``test``.

    Returns:
        ``"test"`` for about ``test_fraction`` of all problems, else ``"train"``.
    """
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return "test" if stable_int("split", version, family, canonical) < test_fraction * 2**64 \
        else "train"


def check_split(split: object) -> Split:
    """``split`` itself when it is ``"train"`` or ``"test"``.

    Raises:
        ValueError: anything else.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split  # type: ignore[return-value]
