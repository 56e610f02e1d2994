"""Procedural tasks: unlimited seeded problems with exact answers and a difficulty knob.

Each task comes from one *family* (``agent_envs.envs.python_tool.families``): number theory,
combinatorics, linear algebra, strings and dates. Problems are sized so that at
difficulty >= 2 they are not done by hand: the python tool pays off.

Splits never overlap. Every concrete problem (family + canonical parameters)
belongs to exactly one split, decided by a stable hash of those parameters
(about 10% go to ``test``); sampling redraws until the problem belongs to the
requested split. So whatever seeds anyone uses, no test problem is ever a
train problem.

Ids rebuild tasks: ``procedural/v0/<family>/d<difficulty>/<split>/<seed>``.

Every task fits the python tool's default limits (its reference solution within
``max_code_bytes``, prompt plus solution within ``max_tokens``); a seeded sample test holds
that. The one change to v0 since release made it so: ``kgram`` at d5, none of whose tasks
fitted, draws shorter strings (no pinned suite held such a task).
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Sequence

from agent_envs.envs.python_tool.families import FAMILIES, MAX_DIFFICULTY, Family
from agent_envs.errors import UnknownTaskError
from agent_envs.tasks.base import Split, Task, TaskSource
from agent_envs.tasks.splits import TEST_FRACTION, split_of
from agent_envs.tasks.splits import check_split as _check_split
from agent_envs.tasks.splits import stable_int as _stable_int

__all__ = ["TEST_FRACTION", "VERSIONS", "ProceduralTasks", "family_names", "split_of"]

VERSIONS = ("v0",)
_MAX_REDRAWS = 5000
_ID_FORMAT = "procedural/<version>/<family>/d<1-5>/<train|test>/<seed>"


def family_names() -> tuple[str, ...]:
    """Names of every procedural family, in registry order."""
    return tuple(FAMILIES)


def _check_difficulty(difficulty: object) -> int:
    if isinstance(difficulty, bool) or not isinstance(difficulty, int) \
            or not 1 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be an int from 1 to {MAX_DIFFICULTY}, "
                         f"got {difficulty!r}; pass e.g. difficulty=2")
    return difficulty


def _unknown_family(name: str) -> str:
    close = difflib.get_close_matches(name, FAMILIES, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown procedural family {name!r}.{hint} Known families: {', '.join(FAMILIES)}."


class ProceduralTasks(TaskSource):
    """Unlimited, seeded procedural tasks.

    Args:
        difficulty: 1 (small numbers, short strings) to 5 (large instances
            that need fast algorithms).
        families: Family names to draw from (see ``family_names()``); default all.
        version: Generator version; ``"v0"`` is the only one so far. Tasks for
            a version never change.

    Example:
        >>> source = ProceduralTasks(difficulty=2, families=["modpow", "weekday"])
        >>> task = source.sample(7, "test")
        >>> source.get(task.id) == task
        True
    """

    name = "procedural"

    def __init__(self, *, difficulty: int = 1, families: Sequence[str] | None = None,
                 version: str = "v0") -> None:
        self.difficulty = _check_difficulty(difficulty)
        if version not in VERSIONS:
            raise ValueError(f"unknown procedural version {version!r}; known: {VERSIONS}")
        self.version = version
        if families is None:
            chosen = tuple(FAMILIES)
        else:
            if isinstance(families, str):
                raise ValueError(f"families must be a list of names, got the string "
                                 f"{families!r}; write families=[{families!r}]")
            for name in families:
                if name not in FAMILIES:
                    raise ValueError(_unknown_family(str(name)))
            # Registry order, no duplicates: the same set always samples the same way.
            chosen = tuple(name for name in FAMILIES if name in set(families))
            if not chosen:
                raise ValueError("families is empty; pass None for all families or name "
                                 f"at least one of: {', '.join(FAMILIES)}")
        self._families = chosen

    def families(self) -> tuple[str, ...]:
        """The family names this source draws from."""
        return self._families

    def __repr__(self) -> str:
        return (f"ProceduralTasks(difficulty={self.difficulty}, "
                f"families={list(self._families)!r}, version={self.version!r})")

    def sample(self, seed: int, split: Split = "train") -> Task:
        """The task for ``seed`` in ``split``: a pure function of the seed, split and knobs."""
        split = _check_split(split)
        pick = random.Random(_stable_int("family", self.version, split, self.difficulty,
                                         ",".join(self._families), seed))
        family = pick.choice(self._families)
        return _build(self.version, FAMILIES[family], self.difficulty, split, int(seed))

    def get(self, task_id: str) -> Task:
        """Rebuild a task from its id (any family, difficulty and split, not only this source's).

        Raises:
            UnknownTaskError: The id is malformed or names an unknown family/version.
        """
        parts = task_id.split("/") if isinstance(task_id, str) else []
        example = f"'procedural/{self.version}/{self._families[0]}/d{self.difficulty}/train/0'"

        def bad(what: str) -> UnknownTaskError:
            return UnknownTaskError(f"malformed procedural task id {task_id!r}: {what}; "
                                    f"expected {_ID_FORMAT!r}, e.g. {example}")

        if len(parts) != 6 or parts[0] != self.name:
            raise bad(f"it must have 6 '/'-separated parts starting with {self.name!r}")
        _, version, family, level, split, seed = parts
        if version not in VERSIONS:
            raise bad(f"unknown version {version!r} (known: {', '.join(VERSIONS)})")
        if family not in FAMILIES:
            raise UnknownTaskError(f"task id {task_id!r} names an {_unknown_family(family)}")
        if not (level.startswith("d") and level[1:].isdigit()
                and 1 <= int(level[1:]) <= MAX_DIFFICULTY):
            raise bad(f"difficulty part {level!r} must be d1 ... d{MAX_DIFFICULTY}")
        if split not in ("train", "test"):
            raise bad(f"split part {split!r} must be 'train' or 'test'")
        try:
            seed_value = int(seed)
        except ValueError:
            raise bad(f"seed part {seed!r} is not an integer") from None
        if str(seed_value) != seed:
            raise bad(f"seed part {seed!r} is not in canonical form ({seed_value})")
        return _build(version, FAMILIES[family], int(level[1:]), split, seed_value)


def _build(version: str, family: Family, difficulty: int, split: Split, seed: int) -> Task:
    rng = random.Random(_stable_int("params", version, family.name, difficulty, split, seed))
    for _ in range(_MAX_REDRAWS):
        params = family.params(rng, difficulty)
        if split_of(family.name, params, version) == split:
            break
    else:  # pragma: no cover - a family whose parameter space is too small is a bug
        raise RuntimeError(f"family {family.name!r} at difficulty {difficulty} found no "
                           f"{split} problem in {_MAX_REDRAWS} draws; widen its parameters")
    return Task(
        id=f"procedural/{version}/{family.name}/d{difficulty}/{split}/{seed}",
        prompt=family.prompt(params),
        answer=family.answer(params),
        answer_kind=family.answer_kind,
        solution_code=family.solution_code(params),
        split=split,
        difficulty=difficulty,
        source=ProceduralTasks.name,
        meta={"family": family.name, "area": family.area, "version": version,
              "params": params},
    )
