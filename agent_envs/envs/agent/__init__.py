"""The multi-tool family: every gpt-oss tool in one episode (``agent-v0``).

* ``env``: :class:`AgentEnv`, the composed env (any mix of python, browser and developer
  functions); python-tool, browser and functions are its presets;
* ``tasks``: its task sources and their spec parser;
* ``research``: procedural worlds to browse for facts, then compute with python;
* ``dataops``: records fetched with developer functions, then computed with python;
* ``verifier``: the pure verifier and its version; ``oracle``: the scripted solver that
  uses the tools as a model would.
"""

from __future__ import annotations

from agent_envs.envs.agent.env import DEFAULT_INSTRUCTIONS, AgentEnv, compose_tools
from agent_envs.envs.agent.tasks import make_agent_tasks
from agent_envs.envs.agent.verifier import VERIFIER_VERSION, verify

__all__ = ["DEFAULT_INSTRUCTIONS", "VERIFIER_VERSION", "AgentEnv", "compose_tools",
           "make_agent_tasks", "verify"]
