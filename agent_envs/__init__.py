"""agent-envs: harmony-native agentic environments for gpt-oss.

    >>> import agent_envs
    >>> env = agent_envs.make("python-tool")
    >>> obs, info = env.reset(seed=7)

Also available through gymnasium as ``gymnasium.make("agent_envs/python-tool-v0")``.
"""

from __future__ import annotations

from agent_envs.core import INFO_KEYS, EnvConfig, HarmonyEnv, ToolCall, ToolOutcome
from agent_envs.errors import (
    AgentEnvsError,
    DatasetError,
    EnvStateError,
    InvalidActionError,
    MissingDependencyError,
    TaskFileError,
    UnknownEnvError,
    UnknownTaskError,
    VocabularyError,
)
from agent_envs.registry import EnvSpec, list_envs, make, register, spec

__version__ = "0.1.0"

__all__ = [
    "INFO_KEYS", "AgentEnvsError", "DatasetError", "EnvConfig", "EnvSpec", "EnvStateError",
    "HarmonyEnv", "InvalidActionError", "MissingDependencyError", "TaskFileError", "ToolCall",
    "ToolOutcome",
    "UnknownEnvError", "UnknownTaskError", "VocabularyError", "__version__", "list_envs", "make",
    "register", "spec",
]

register("python-tool-v0", "agent_envs.envs.python_tool:PythonToolEnv",
         description="gpt-oss's built-in stateful python tool on computational tasks")
register("toy-digit-v0", "agent_envs.envs.toy:ToyDigitEnv", description="one digit (smoke tests)")
register("functions-v0", "agent_envs.envs.functions:FunctionsEnv", extra="functions",
         description="developer functions in harmony (procedural goals, BFCL, JSONL)")
register("browser-v0", "agent_envs.envs.browser.env:BrowserEnv", extra="browser",
         description="gpt-oss's built-in browser tool (search/open/find) on multi-hop QA")
