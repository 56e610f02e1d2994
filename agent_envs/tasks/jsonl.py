"""Tasks from a JSONL file: one JSON object per line.

Fields: ``id``, ``prompt``, ``answer`` (required; ``answer`` a string, or an
integer that is stored as its decimal string), and optionally ``answer_kind``
(``int``/``fraction``/``float``/``str``, default ``str``), ``tolerance``,
``solution_code``, ``split`` (``train``/``test``, default ``train``),
``difficulty`` and ``meta`` (an object for anything else). Blank lines are
skipped. Example line::

    {"id": "add-1", "prompt": "What is 2+2?", "answer": "4", "answer_kind": "int"}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent_envs.errors import TaskFileError
from agent_envs.tasks.base import Task
from agent_envs.tasks.finite import FiniteTasks

__all__ = ["JsonlTasks", "save_tasks"]

_REQUIRED = ("id", "prompt", "answer")
_OPTIONAL = ("answer_kind", "tolerance", "solution_code", "split", "difficulty", "meta")
_KINDS = ("int", "fraction", "float", "str")


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _parse_row(row: Any, where: str) -> Task:
    if not isinstance(row, dict):
        raise TaskFileError(f"{where}: expected a JSON object, got {_type_name(row)}; "
                            'write one object per line, e.g. {"id": ..., "prompt": ..., '
                            '"answer": ...}')
    for key in _REQUIRED:
        if key not in row:
            raise TaskFileError(f"{where}: missing required field {key!r}; every task needs "
                                f"{', '.join(_REQUIRED)}")
    unknown = sorted(set(row) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise TaskFileError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; known "
                            f"fields are {', '.join(_REQUIRED + _OPTIONAL)}; put extra data "
                            'under "meta"')

    def wrong(key: str, want: str, fix: str) -> TaskFileError:
        return TaskFileError(f"{where}: field {key!r} must be {want}, got "
                             f"{_type_name(row[key])} {row[key]!r}; {fix}")

    if not isinstance(row["id"], str) or not row["id"]:
        raise wrong("id", "a non-empty string", 'write e.g. "id": "task-1"')
    if not isinstance(row["prompt"], str):
        raise wrong("prompt", "a string", "write the problem text as a JSON string")
    answer = row["answer"]
    if isinstance(answer, int) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str):
        raise wrong("answer", "a string (or an integer)",
                    'write it as a string, e.g. "answer": "0.125" or "answer": "3/7"')
    kind = row.get("answer_kind", "str")
    if kind not in _KINDS:
        raise wrong("answer_kind", f"one of {', '.join(_KINDS)}", 'e.g. "answer_kind": "int"')
    tolerance = row.get("tolerance")
    if tolerance is not None and (isinstance(tolerance, bool)
                                  or not isinstance(tolerance, (int, float)) or tolerance <= 0):
        raise wrong("tolerance", "a positive number or null", 'e.g. "tolerance": 1e-6')
    code = row.get("solution_code")
    if code is not None and not isinstance(code, str):
        raise wrong("solution_code", "a string or null", "write the Python code as a string")
    split = row.get("split", "train")
    if split not in ("train", "test"):
        raise wrong("split", "'train' or 'test'", 'e.g. "split": "test"')
    difficulty = row.get("difficulty", 0)
    if isinstance(difficulty, bool) or not isinstance(difficulty, int):
        raise wrong("difficulty", "an integer", 'e.g. "difficulty": 2')
    meta = row.get("meta", {})
    if not isinstance(meta, dict):
        raise wrong("meta", "a JSON object", 'e.g. "meta": {"topic": "algebra"}')
    return Task(id=row["id"], prompt=row["prompt"], answer=answer, answer_kind=kind,
                tolerance=None if tolerance is None else float(tolerance), solution_code=code,
                split=split, difficulty=difficulty, source="jsonl", meta=meta)


class JsonlTasks(FiniteTasks):
    """A finite task source read from a JSONL file.

    Args:
        path: The file (see the module docstring for its fields).
        name: Source name recorded in ``task.source``.

    Raises:
        TaskFileError: The file is missing, empty or malformed; the message names
            the file, the 1-based line, what was wrong and the fix.
    """

    error_class = TaskFileError

    def __init__(self, path: str | os.PathLike[str], *, name: str = "jsonl") -> None:
        self.path = Path(path)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TaskFileError(f"{self.path}: no such task file; check the path") from None
        except (OSError, UnicodeDecodeError) as e:
            raise TaskFileError(f"{self.path}: cannot read the task file ({e}); it must be a "
                                "readable UTF-8 JSONL file") from e
        tasks: list[Task] = []
        first_line: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{self.path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskFileError(f"{where}: invalid JSON ({e.msg} at column {e.colno}); "
                                    "each line must be one complete JSON object") from None
            task = _parse_row(row, where)
            if name != "jsonl":
                task = replace(task, source=name)
            if task.id in first_line:
                raise TaskFileError(f"{where}: duplicate id {task.id!r} (first on line "
                                    f"{first_line[task.id]}); give every task a unique id")
            first_line[task.id] = number
            tasks.append(task)
        if not tasks:
            raise TaskFileError(f"{self.path}: the file has no tasks (it is empty or blank); "
                                "write one JSON object per line")
        super().__init__(name=name, tasks=tasks, origin=str(self.path))


def save_tasks(path: str | os.PathLike[str], tasks: Iterable[Task]) -> int:
    """Write tasks as JSONL that ``JsonlTasks`` reads back into equal tasks (bar ``source``).

    The file is written to a temporary name and moved into place, so a reader
    never sees half a file.

    Args:
        path: Destination file (overwritten).
        tasks: The tasks to write.

    Returns:
        The number of tasks written.
    """
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8") as out:
            for task in tasks:
                row = {"id": task.id, "prompt": task.prompt, "answer": task.answer,
                       "answer_kind": task.answer_kind, "tolerance": task.tolerance,
                       "solution_code": task.solution_code, "split": task.split,
                       "difficulty": task.difficulty, "meta": task.meta}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count
