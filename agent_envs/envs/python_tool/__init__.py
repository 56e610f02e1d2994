"""The python-tool environment family, self-contained:

* ``env``: :class:`PythonToolEnv` (``python-tool-v0``), a preset of the composed env with the
  python tool (:mod:`agent_envs.tools.python`);
* ``tasks``: its task sources and their spec parser (procedural, JSONL, GSM8K, MATH);
* ``procedural`` and ``families/``: the procedural generator (number theory,
  combinatorics, linear algebra, strings, dates) with its difficulty knob and split hygiene;
* ``verifier``: the pure verifier and its version; ``oracle``: the scripted solver.
"""

from __future__ import annotations

from agent_envs.envs.python_tool.env import (
    DEFAULT_INSTRUCTIONS,
    PythonToolConfig,
    PythonToolEnv,
    shared_sandbox,
)
from agent_envs.envs.python_tool.oracle import PythonToolOracle
from agent_envs.envs.python_tool.procedural import ProceduralTasks, family_names
from agent_envs.envs.python_tool.tasks import make_python_tasks, make_task_source
from agent_envs.envs.python_tool.verifier import VERIFIER_VERSION, verify

__all__ = ["DEFAULT_INSTRUCTIONS", "VERIFIER_VERSION", "ProceduralTasks", "PythonToolConfig",
           "PythonToolEnv", "PythonToolOracle", "family_names", "make_python_tasks",
           "make_task_source", "shared_sandbox", "verify"]
