"""τ² tasks as tasks of the functions machinery, and the task-source spec parser.

A :class:`Tau2Task` names one τ² task (domain and τ² id); τ²'s own ``Task`` object (user
scenario, initial state, evaluation criteria) stays in the installed package and is looked up
when needed, so what travels with the task (to a remote client, into a bundle) is the id, the
split and a digest, never the criteria. :meth:`Tau2Task.episode` builds the episode: a fresh
τ² environment with the task's initial state, and the domain's tools as developer functions
whose calls go to that environment exactly as τ²'s orchestrator sends them
(``Environment.get_response``: τ² runs the tool on the arguments as given and answers
``Error: ...`` when it raises).

Source specs: ``retail``, ``airline``, ``mock`` (every task of the domain; each task's split is
τ²'s: retail and airline have train/test splits, mock has none and counts as test), or
``DOMAIN:SPLIT`` for one split (``retail:test``).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from agent_envs.envs.functions.tasks import EpisodeState, FunctionsTask
from agent_envs.envs.functions.tools import Tool, tool_from_schema
from agent_envs.envs.tau2.data import Domain, Tau2Error, domain
from agent_envs.errors import UnknownTaskError
from agent_envs.tasks.finite import FiniteTasks

__all__ = ["Tau2Call", "Tau2Episode", "Tau2Task", "Tau2Tasks", "initialise", "make_tau2_source",
           "task_id"]


def task_id(domain_name: str, tau2_id: str) -> str:
    """Our id of a τ² task: ``retail_10``, ``mock_create_task_1``."""
    return f"{domain_name}_{tau2_id}"


def initialise(environment: Any, tau2_task: Any) -> None:
    """Put a fresh τ² environment in the task's initial state, as τ²'s orchestrator does
    (initialisation data, initialisation actions, then the message history's tool calls)."""
    state = tau2_task.initial_state
    history = copy.deepcopy(state.message_history) if state and state.message_history else []
    environment.set_state(
        initialization_data=state.initialization_data if state else None,
        initialization_actions=state.initialization_actions if state else None,
        message_history=history)


@dataclass(frozen=True, kw_only=True)
class Tau2Call:
    """One call that reached τ²'s environment.

    Attributes:
        call_id: ``call_N``, N counting the episode's calls from 0.
        name: The tool.
        arguments: The arguments as the model sent them (parsed JSON).
        content: τ²'s tool message content (what ``Environment.get_response`` returned).
        error: τ² flagged the call as an error (the tool raised).
    """

    call_id: str
    name: str
    arguments: dict[str, Any]
    content: str
    error: bool


class Tau2Episode(EpisodeState):
    """One episode's τ² environment and the domain tools bound to it.

    Args:
        task: The task.

    Attributes:
        environment: τ²'s ``Environment`` (fresh database, task's initial state applied),
            built on first use.
        tau2_calls: Every call that reached the environment, in order.
    """

    def __init__(self, task: Tau2Task) -> None:
        self.domain: Domain = domain(task.domain)
        self.task = task
        self._environment: Any = None
        self.tau2_calls: list[Tau2Call] = []
        tools = [dataclasses.replace(t, fn=self._caller(t.name)) for t in _templates(self.domain)]
        super().__init__(tools)

    @property
    def environment(self) -> Any:
        """τ²'s ``Environment`` of the episode, built on first use (a prompt alone, as a suite
        manifest needs, builds no database)."""
        if self._environment is None:
            env = self.domain.new_environment()
            initialise(env, self.task.tau2_task())
            self._environment = env
        return self._environment

    def _caller(self, name: str) -> Any:
        def call(**arguments: Any) -> str:
            return self.call(name, arguments)
        call.__name__ = name
        return call

    def call(self, name: str, arguments: dict[str, Any]) -> str:
        """Send one call to τ²'s environment the way its orchestrator does; return the
        tool message content (τ²'s errors are ``"Error: ..."`` text, never exceptions)."""
        from tau2.data_model.message import ToolCall

        call_id = f"call_{len(self.tau2_calls)}"
        sent = copy.deepcopy(arguments)  # as the model sent them, whatever the tool does
        msg = self.environment.get_response(
            ToolCall(id=call_id, name=name, arguments=arguments, requestor="assistant"))
        self.tau2_calls.append(Tau2Call(call_id=call_id, name=name, arguments=sent,
                                        content=msg.content, error=bool(msg.error)))
        return msg.content


_TEMPLATES: dict[str, list[Tool]] = {}


def _templates(dom: Domain) -> list[Tool]:
    if dom.name not in _TEMPLATES:
        _TEMPLATES[dom.name] = [tool_from_schema(spec) for spec in dom.tool_specs]
    return _TEMPLATES[dom.name]


@dataclass(frozen=True, kw_only=True)
class Tau2Task(FunctionsTask):
    """One τ² task.

    ``prompt`` is empty (the conversation opens with τ²'s greeting and the simulated user's
    first message, which depends on the simulator); ``answer`` is ``tau2-task-sha256:DIGEST``,
    the digest of τ²'s task (scenario, initial state, criteria), so a suite's hash changes when
    τ²'s task does.

    Attributes:
        domain: τ² domain name.
        tau2_id: τ²'s id of the task.
    """

    domain: str = ""
    tau2_id: str = ""

    def tau2_task(self) -> Any:
        """τ²'s ``Task`` object (scenario, initial state, evaluation criteria)."""
        return domain(self.domain).task(self.tau2_id)

    def episode(self) -> Tau2Episode:
        """A fresh episode: new database, the task's initial state, bound tools."""
        return Tau2Episode(self)

    def tool_names(self) -> list[str]:
        return [spec["name"] for spec in domain(self.domain).tool_specs]


class Tau2Tasks(FiniteTasks):
    """The tasks of one τ² domain (optionally one split), in τ²'s order.

    Args:
        domain_name: ``retail``, ``airline`` or ``mock``.
        split: Only the tasks of τ²'s ``train`` or ``test`` split (None: all).
    """

    error_class = Tau2Error

    def __init__(self, domain_name: str, split: str | None = None) -> None:
        dom = domain(domain_name)
        if split not in (None, "train", "test"):
            raise UnknownTaskError(f"τ² split {split!r} is not one this env serves; use "
                                   f"'{domain_name}', '{domain_name}:train' or "
                                   f"'{domain_name}:test'")
        tasks = []
        for tid in dom.tasks:
            task_split = dom.split_of.get(tid, "test")
            if split is not None and task_split != split:
                continue
            tasks.append(Tau2Task(
                id=task_id(dom.name, tid), prompt="",
                answer=f"tau2-task-sha256:{dom.task_digest(tid)}", split=task_split,
                source=f"tau2-{dom.name}", domain=dom.name, tau2_id=tid,
                meta={"category": dom.split_of.get(tid, "base")}))
        self.domain = dom.name
        super().__init__(name=f"tau2-{dom.name}", tasks=tasks,
                         origin=f"τ² {dom.name}" + (f":{split}" if split else ""))

    def _empty_split_fix(self, split: str) -> str:
        return (f"τ²'s {self.domain} domain has no {split} split; use split='test' (mock "
                "tasks all count as test)")


def make_tau2_source(spec: str | Tau2Tasks) -> Tau2Tasks:
    """The task source for a spec: ``DOMAIN`` or ``DOMAIN:SPLIT`` (see the module docstring).

    Raises:
        UnknownTaskError: an unknown domain or split (with a did-you-mean).
        Tau2Error: a domain τ² has that this env does not serve (telecom), saying why.
    """
    if isinstance(spec, Tau2Tasks):
        return spec
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"task_source must be a τ² spec such as 'retail' or 'airline:test', "
                        f"got {spec!r}")
    name, _, split = spec.removeprefix("tau2:").partition(":")
    return Tau2Tasks(name, split or None)
