"""Tasks: what every environment family shares.

``Task``/``TaskSource``/``Verdict`` (:mod:`~agent_envs.tasks.base`), finite sources, JSONL
files and ``datasets`` loaders (GSM8K, MATH), answer extraction and checking, and split
hygiene (:mod:`~agent_envs.tasks.splits`). Each family's own generator, verifier and oracle
live with the family under ``agent_envs/envs/<family>/``.

Quick start::

    from agent_envs.tasks import make_task_source, check_answer
    source = make_task_source("procedural", difficulty=2)
    task = source.sample(seed=0, split="train")
    check_answer("The answer is \\\\boxed{42}.", task).correct

``make_task_source`` is python-tool's spec parser (``"procedural"``, ``"jsonl:PATH"``,
``"gsm8k[:split[:FILE]]"``, ``"math[:split[:FILE]]"``); it and the procedural generator
(``ProceduralTasks``, ``family_names``) live in ``agent_envs.envs.python_tool`` and are
importable from here too.
"""

from __future__ import annotations

from typing import Any

from agent_envs.tasks.answers import check_answer, extract_answer, normalize_str, parse_number
from agent_envs.tasks.base import AnswerKind, Split, Task, TaskSource, Verdict
from agent_envs.tasks.finite import FiniteTasks
from agent_envs.tasks.hf import DatasetTasks, load_gsm8k, load_math
from agent_envs.tasks.jsonl import JsonlTasks, save_tasks
from agent_envs.tasks.splits import split_of

__all__ = [
    "AnswerKind", "DatasetTasks", "FiniteTasks", "JsonlTasks", "ProceduralTasks", "Split",
    "Task", "TaskSource", "Verdict", "check_answer", "extract_answer", "family_names",
    "load_gsm8k", "load_math", "make_task_source", "normalize_str", "parse_number",
    "save_tasks", "split_of",
]

# python-tool's, importable from here (users and docs do); imported on first use so that the
# shared task machinery does not load a family.
_PYTHON_TOOL = {"ProceduralTasks": "agent_envs.envs.python_tool.procedural",
                "family_names": "agent_envs.envs.python_tool.procedural",
                "make_task_source": "agent_envs.envs.python_tool.tasks"}


def __getattr__(name: str) -> Any:
    if name in _PYTHON_TOOL:
        import importlib

        return getattr(importlib.import_module(_PYTHON_TOOL[name]), name)
    raise AttributeError(f"module 'agent_envs.tasks' has no attribute {name!r}")
