"""python-tool's task sources and their spec parser.

Specs: ``"procedural"`` (this family's generator: ``difficulty``, ``families``,
``version``), ``"jsonl:PATH"``, ``"gsm8k"`` / ``"gsm8k:train"``, ``"math"`` / ``"math:train"``
(kwargs go to ``load_gsm8k`` / ``load_math``), and ``"gsm8k:test:FILE"`` /
``"math:test:FILE"`` for a local copy of the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent_envs.envs.python_tool.procedural import ProceduralTasks
from agent_envs.errors import UnknownTaskError
from agent_envs.tasks.base import TaskSource, check_procedural_only
from agent_envs.tasks.hf import load_gsm8k, load_math
from agent_envs.tasks.jsonl import JsonlTasks

__all__ = ["SPECS", "make_python_tasks", "make_task_source"]

SPECS = ("'procedural', 'jsonl:PATH', 'gsm8k[:train|test[:FILE]]' or "
         "'math[:train|test[:FILE]]'")


def make_task_source(spec: str | TaskSource, **kwargs: Any) -> TaskSource:
    """Build a task source from a short spec string (a ``TaskSource`` passes through).

    Args:
        spec: ``"procedural"``, ``"jsonl:PATH"``, ``"gsm8k[:split[:FILE]]"`` or
            ``"math[:split[:FILE]]"`` (split defaults to ``test``; FILE: a local copy of the
            data), or a ready source.
        **kwargs: Passed to the source's constructor or loader
            (``difficulty=2, families=[...]`` for procedural).

    Returns:
        The task source.

    Raises:
        UnknownTaskError: The spec names no known source.
    """
    if isinstance(spec, TaskSource):
        if kwargs:
            raise TypeError(f"options {sorted(kwargs)} apply only to a spec string, not to a "
                            f"ready {type(spec).__name__}; configure it when you build it")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a string or a TaskSource, got {type(spec).__name__}")
    kind, sep, rest = spec.partition(":")
    if kind == "procedural" and not sep:
        return ProceduralTasks(**kwargs)
    if kind == "jsonl":
        if not rest:
            raise UnknownTaskError(f"task source spec {spec!r} has no path; write 'jsonl:PATH'")
        return JsonlTasks(rest, **kwargs)
    if kind in ("gsm8k", "math"):
        split, _, files = rest.partition(":")
        if sep and split not in ("train", "test"):
            raise UnknownTaskError(f"task source spec {spec!r}: split must be 'train' or "
                                   f"'test', e.g. '{kind}:test' or '{kind}:test:FILE'")
        if files:
            kwargs = {"data_files": files, **kwargs}
        loader = load_gsm8k if kind == "gsm8k" else load_math
        return loader(split or "test", **kwargs)
    raise UnknownTaskError(f"unknown task source spec {spec!r}; use {SPECS}")


def make_python_tasks(spec: str | TaskSource, *, difficulty: int | None = None,
                      families: Sequence[str] | None = None) -> TaskSource:
    """python-tool's task source for ``spec`` with the env's procedural knobs.

    Raises:
        ValueError: ``difficulty`` or ``families`` with a source that is not procedural.
        UnknownTaskError: The spec names no known source.
    """
    if isinstance(spec, str) and spec == "procedural":
        return make_task_source(spec, difficulty=difficulty or 1, families=families)
    check_procedural_only(spec, difficulty=difficulty, families=families)
    return make_task_source(spec)
