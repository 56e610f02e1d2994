"""The python-tool environment family."""

from __future__ import annotations

from agent_envs.envs.python_tool.env import (
    DEFAULT_INSTRUCTIONS,
    PythonToolConfig,
    PythonToolEnv,
    shared_sandbox,
)

__all__ = ["DEFAULT_INSTRUCTIONS", "PythonToolConfig", "PythonToolEnv", "shared_sandbox"]
