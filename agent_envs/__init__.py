"""agent-envs: harmony-native agentic environments for gpt-oss.

    >>> import agent_envs
    >>> env = agent_envs.make("python-tool")
    >>> obs, info = env.reset(seed=7)
    >>> env = agent_envs.make("agent", tools=["python", "browser"])  # every tool at once

Also available through gymnasium as ``gymnasium.make("agent_envs/python-tool-v0")``.
``agent_envs.remote("http://HOST:PORT", "python-tool")`` is the same env running on an
``agent-envs serve`` server (the ``[server]`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent_envs.core import INFO_KEYS, EnvConfig, HarmonyEnv, ToolCall, ToolOutcome, ToolPart
from agent_envs.errors import (
    AgentEnvsError,
    DatasetError,
    EnvStateError,
    InvalidActionError,
    MissingDependencyError,
    TaskFileError,
    UnknownArgumentError,
    UnknownEnvError,
    UnknownTaskError,
    VocabularyError,
)
from agent_envs.registry import EnvSpec, check_env_kwargs, list_envs, make, register, spec
from agent_envs.server.protocol import RemoteEnvError, ServerBusyError, ServerUnavailableError

__version__ = "0.1.0"

__all__ = [
    "INFO_KEYS", "AgentEnvsError", "DatasetError", "EnvConfig", "EnvSpec", "EnvStateError",
    "HarmonyEnv", "InvalidActionError", "MissingDependencyError", "RemoteEnvError",
    "ServerBusyError", "ServerUnavailableError", "TaskFileError", "ToolCall", "ToolOutcome",
    "ToolPart",
    "UnknownArgumentError", "UnknownEnvError", "UnknownTaskError", "VocabularyError",
    "__version__", "check_env_kwargs", "list_envs", "make", "register", "remote", "spec",
]


def remote(url: str | Sequence[str], env_id: str, **kwargs: Any) -> Any:
    """A gymnasium env whose episodes run on the ``agent-envs serve`` server at ``url``
    (several servers: a list of URLs, or one string with commas; each session goes to the
    least-loaded live one).

    ``kwargs`` are env arguments (JSON values) plus the client options of
    :func:`agent_envs.server.client.remote` (``token``, default ``AGENT_ENVS_SERVER_TOKEN``;
    ``full_task``; ``connect_timeout_s``, ``message_timeout_s``, ``busy_timeout_s``). Needs
    the ``[server]`` extra (``websockets``).
    """
    from agent_envs.server.client import remote as _remote

    return _remote(url, env_id, **kwargs)


register("python-tool-v0", "agent_envs.envs.python_tool:PythonToolEnv",
         description="gpt-oss's built-in stateful python tool on computational tasks")
register("toy-digit-v0", "agent_envs.envs.toy:ToyDigitEnv", description="one digit (smoke tests)")
register("toy-pattern-v0", "agent_envs.envs.toy:ToyPatternEnv",
         description="a digit pattern L tokens long (long-sequence trainer tests)")
register("toy-cycle-v0", "agent_envs.envs.toy:ToyCycleEnv",
         description="continue a hidden digit cycle from a given digit (mismatch experiment)")
register("functions-v0", "agent_envs.envs.functions:FunctionsEnv", extra="functions",
         description="developer functions in harmony (procedural goals, BFCL, JSONL)")
register("browser-v0", "agent_envs.envs.browser.env:BrowserEnv", extra="browser",
         description="gpt-oss's built-in browser tool (search/open/find) on multi-hop QA")
register("agent-v0", "agent_envs.envs.agent.env:AgentEnv",
         description="every gpt-oss tool in one episode: browse, call functions, compute "
                     "(any mix of python, browser and developer functions)")
register("tau2-v0", "agent_envs.envs.tau2:Tau2Env", extra="tau2",
         description="τ²-bench: customer service with a simulated user (retail, airline, mock)")
