"""The multi-tool family's task sources and their spec parser.

Specs: ``"research"`` (browse a procedural world for facts, then compute:
:mod:`~agent_envs.envs.agent.research`), ``"dataops"`` (fetch records with developer
functions, then compute: :mod:`~agent_envs.envs.agent.dataops`), python-tool's specs
(``"procedural"``, ``"jsonl:PATH"``, ``"gsm8k..."``, ``"math..."``), or a ready
``TaskSource`` of any family.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent_envs.errors import UnknownTaskError
from agent_envs.tasks.base import TaskSource, check_procedural_only

__all__ = ["SPECS", "default_spec", "make_agent_tasks"]

SPECS = ("'research', 'dataops', 'procedural', 'jsonl:PATH', 'gsm8k[:split[:FILE]]', "
         "'math[:split[:FILE]]' or a TaskSource")


def default_spec(parts: Sequence[Any]) -> str:
    """The tasks an env with these tools runs by default: research with the browser, else
    data-ops with developer functions, else python-tool's procedural problems."""
    names = {p.name for p in parts}
    if "browser" in names:
        return "research"
    if "functions" in names:
        return "dataops"
    return "procedural"


def make_agent_tasks(spec: str | TaskSource, *, difficulty: int | None = None
                     ) -> TaskSource:
    """The task source for ``spec`` (see the module docstring).

    Raises:
        UnknownTaskError: the spec names no known source.
        ValueError: ``difficulty`` with a source that is not procedural.
    """
    if isinstance(spec, TaskSource):
        check_procedural_only(spec, difficulty=difficulty)
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"task_source must be a spec string or a TaskSource, got "
                        f"{type(spec).__name__}")
    kind, sep, rest = spec.partition(":")
    if kind == "research" and not sep:
        from agent_envs.envs.agent.research import ResearchTasks

        return ResearchTasks(difficulty=difficulty or 1)
    if kind == "dataops" and not sep:
        from agent_envs.envs.agent.dataops import DataOpsTasks

        return DataOpsTasks(difficulty=difficulty or 1)
    if kind in ("procedural", "jsonl", "gsm8k", "math"):
        from agent_envs.envs.python_tool.tasks import make_python_tasks

        return make_python_tasks(spec, difficulty=difficulty)
    raise UnknownTaskError(f"unknown agent task source {spec!r}; use {SPECS}")
