"""A finite task source: a fixed list of tasks (a JSONL file, a dataset split)."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Iterator

from agent_envs.errors import AgentEnvsError, UnknownTaskError
from agent_envs.tasks.base import Split, Task, TaskSource

__all__ = ["FiniteTasks"]


class FiniteTasks(TaskSource):
    """A fixed, ordered collection of tasks.

    ``sample(seed, split)`` picks deterministically among the tasks of that
    split: the same seed, split and task list give the same task everywhere.

    Args:
        name: Source name (``"jsonl"``, ``"gsm8k"``, ...).
        tasks: The tasks; ids must be unique.
        origin: Where they came from, for error messages (a path, a dataset id).
    """

    #: Raised for a sample from a split with no tasks; subclasses narrow it.
    error_class: type[AgentEnvsError] = AgentEnvsError

    def __init__(self, *, name: str, tasks: Iterable[Task], origin: str) -> None:
        self.name = name
        self.origin = origin
        self._tasks = tuple(tasks)
        self._by_id: dict[str, Task] = {}
        for task in self._tasks:
            if task.id in self._by_id:
                raise self.error_class(f"{origin}: duplicate task id {task.id!r}; "
                                       "give every task a unique id")
            self._by_id[task.id] = task
        self._splits: dict[str, tuple[Task, ...]] = {
            split: tuple(t for t in self._tasks if t.split == split) for split in ("train", "test")
        }

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.origin!r}, {len(self)} tasks)"

    def tasks(self, split: Split | None = None) -> tuple[Task, ...]:
        """All tasks, or those of one split, in file/dataset order."""
        return self._tasks if split is None else self._splits.get(split, ())

    def sample(self, seed: int, split: Split = "train") -> Task:
        """A task of ``split`` chosen by a stable hash of ``seed``.

        Raises:
            ValueError: ``split`` is not ``"train"`` or ``"test"``.
            AgentEnvsError: (the subclass's ``error_class``) the split has no tasks.
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        pool = self._splits[split]
        if not pool:
            counts = ", ".join(f"{s}: {len(t)}" for s, t in self._splits.items())
            raise self.error_class(
                f"{self.origin}: no tasks in split {split!r} ({counts}); "
                f"{self._empty_split_fix(split)}")
        digest = hashlib.sha256(f"{self.name}\x1f{split}\x1f{seed}".encode()).digest()
        return pool[int.from_bytes(digest[:8], "big") % len(pool)]

    def _empty_split_fix(self, split: str) -> str:
        return f'sample another split, or mark some tasks with "split": "{split}"'

    def get(self, task_id: str) -> Task:
        """The task with this id.

        Raises:
            UnknownTaskError: No task has this id (the message suggests close ids).
        """
        try:
            return self._by_id[task_id]
        except (KeyError, TypeError):
            close = difflib.get_close_matches(str(task_id), self._by_id, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownTaskError(
                f"{self.origin}: no task with id {task_id!r} among {len(self)} tasks.{hint}"
            ) from None
