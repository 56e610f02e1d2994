"""The oracle's conversation plan for a τ² task, and its systematic mutations.

A :class:`Plan` is what the oracle does and what the scripted user says, turn by turn. It is
built from the task's expected actions (the assistant's, in τ²'s order; for a task with
assertions on the end state and no actions, the calls that make them hold): the agent makes the
read calls, asks the user before each write (τ²'s policies require an explicit yes), makes the
write once the user agrees, and finally tells the user everything in the task's
``communicate_info``. The scripted user opens with the task's reason for calling, answers each
question with a yes, and ends with ``###STOP###`` (``###TRANSFER###`` when the agent's last
act was a transfer to a human).

Mutations change what the agent does and keep the turns, so the same scripted user answers:

``wrong_argument``
    the last argument of the first write (of the first call when there is no write) gets
    another value of the same type;
``missing_write``
    the last write is not made;
``extra_write``
    a write nobody asked for is made at the end (the domain's ``EXTRA_WRITES`` recipe);
``swapped_writes``
    the first two writes are made in the other order;
``silent``
    the agent tells the user nothing (every message to the user is ``OK.``);
``too_many_errors``
    the agent calls a function that does not exist until τ²'s error limit ends the episode.
"""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass, replace
from typing import Any, Literal

from agent_envs.envs.tau2.data import domain

__all__ = ["EXTRA_WRITES", "MUTATIONS", "AgentTurn", "Mutation", "Plan", "applicable_mutations",
           "end_hashes", "mutate", "oracle_plan", "wrong_mutation"]

Mutation = Literal["wrong_argument", "missing_write", "extra_write", "swapped_writes", "silent",
                   "too_many_errors"]
MUTATIONS: tuple[Mutation, ...] = ("wrong_argument", "missing_write", "extra_write",
                                   "swapped_writes", "silent", "too_many_errors")
STOP, TRANSFER = "###STOP###", "###TRANSFER###"
NO_SUCH_FUNCTION = "no_such_function"


@dataclass(frozen=True, kw_only=True)
class AgentTurn:
    """What the agent does between two user messages: calls in order, then one message."""

    calls: tuple[tuple[str, dict[str, Any]], ...]
    say: str


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A conversation plan.

    Attributes:
        opening: The user's first message (None when the task's history ends with a user
            message: the agent speaks first).
        agent: The agent's turns.
        replies: The user's answer to each agent turn (the last one ends the conversation).
    """

    opening: str | None
    agent: tuple[AgentTurn, ...]
    replies: tuple[str, ...]


def _opening(task: Any) -> str:
    instructions = task.user_scenario.instructions
    if isinstance(instructions, str):
        return instructions
    parts = [instructions.reason_for_call.strip()]
    if instructions.known_info:
        parts.append(instructions.known_info.strip())
    return "\n".join(parts)


def _history_ends_with_user(task: Any) -> bool:
    history = task.initial_state.message_history if task.initial_state else None
    return bool(history) and history[-1].role == "user"


#: Calls that make an env assertion hold, for tasks that give assertions and no actions.
ASSERTION_CALLS = {
    "assert_task_status": lambda a: ("update_task_status", {"task_id": a["task_id"],
                                                            "status": a["expected_status"]}),
}


def oracle_plan(task: Any, domain_name: str) -> Plan:
    """The correct plan for τ²'s ``task`` (see the module docstring)."""
    types = domain(domain_name).tool_types
    criteria = task.evaluation_criteria
    actions = [(a.name, dict(a.arguments)) for a in (criteria.actions or [] if criteria else [])
               if a.requestor == "assistant"]
    if criteria is not None and criteria.actions is None:
        # No expected actions, only assertions on the end state: make the calls they describe.
        for assertion in criteria.env_assertions or []:
            make = ASSERTION_CALLS.get(assertion.func_name)
            if make is not None and assertion.env_type == "assistant" and assertion.assert_value:
                actions.append(make(dict(assertion.arguments)))
    infos = list(criteria.communicate_info or []) if criteria else []
    turns: list[AgentTurn] = []
    calls: list[tuple[str, dict[str, Any]]] = []
    for name, args in actions:
        if types.get(name) == "write":
            turns.append(AgentTurn(calls=tuple(calls), say=(
                f"I can now call {name} with {json.dumps(args, sort_keys=True)}. Do you want "
                "me to go ahead?")))
            calls = []
        calls.append((name, args))
    final = "Everything is done." + (" " + "; ".join(infos) + "." if infos else "")
    turns.append(AgentTurn(calls=tuple(calls), say=final))
    last = actions[-1][0] if actions else None
    replies = ["Yes, please go ahead."] * (len(turns) - 1)
    replies.append(f"Thank you. {TRANSFER}" if last == "transfer_to_human_agents"
                   else f"Thank you, that is all. {STOP}")
    return Plan(opening=None if _history_ends_with_user(task) else _opening(task),
                agent=tuple(turns), replies=tuple(replies))


def _changed(value: Any) -> Any:
    """Another value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        return value + "zq"
    if isinstance(value, list):
        return value[:-1] if value else ["zq"]
    if isinstance(value, dict):
        return {**value, "zq": 1}
    return "zq"


#: A write in each domain that no task asks for: (tool, arguments given the first user id).
EXTRA_WRITES = {
    "retail": lambda uid: ("modify_user_address", {
        "user_id": uid, "address1": "1 Nowhere Lane", "address2": "", "city": "Nowhere",
        "state": "NA", "country": "USA", "zip": "00000"}),
    "airline": lambda uid: ("send_certificate", {"user_id": uid, "amount": 500}),
    "mock": lambda uid: ("create_task", {"user_id": uid, "title": "A task nobody asked for"}),
}


def _writes(plan: Plan, types: dict[str, str]) -> list[tuple[int, int]]:
    return [(t, c) for t, turn in enumerate(plan.agent) for c, (name, _) in enumerate(turn.calls)
            if types.get(name) == "write"]


def applicable_mutations(plan: Plan, domain_name: str) -> list[Mutation]:
    """The mutations that change something in ``plan``."""
    writes = _writes(plan, domain(domain_name).tool_types)
    out: list[Mutation] = []
    if any(turn.calls for turn in plan.agent):
        out.append("wrong_argument")
    if writes:
        out.append("missing_write")
    out.append("extra_write")
    if len(writes) >= 2:
        out.append("swapped_writes")
    out += ["silent", "too_many_errors"]
    return out


def mutate(plan: Plan, mutation: Mutation, domain_name: str, *, max_errors: int = 10,
           write: int | None = None) -> Plan:
    """``plan`` with one mutation applied (see the module docstring).

    Args:
        plan: The plan.
        mutation: Which mistake.
        domain_name: The τ² domain.
        max_errors: How many failing calls ``too_many_errors`` makes.
        write: Which write (index among the plan's writes) ``wrong_argument`` or
            ``missing_write`` hits, instead of the first (the last for ``missing_write``).

    Raises:
        ValueError: the mutation does not apply to this plan (see :func:`applicable_mutations`).
    """
    dom = domain(domain_name)
    agent = [replace(t, calls=tuple((n, copy.deepcopy(a)) for n, a in t.calls))
             for t in plan.agent]
    writes = _writes(plan, dom.tool_types)

    def set_calls(t: int, calls: list[tuple[str, dict[str, Any]]]) -> None:
        agent[t] = replace(agent[t], calls=tuple(calls))

    if mutation == "wrong_argument":
        where = writes[write or 0] if writes else next(
            ((t, 0) for t, turn in enumerate(agent) if turn.calls), None)
        if where is None:
            raise ValueError("wrong_argument needs a call to change; this plan makes none")
        t, c = where
        calls = list(agent[t].calls)
        name, args = calls[c]
        if args:
            key = list(args)[-1]
            args = {**args, key: _changed(args[key])}
        else:
            args = {"zq": 1}
        calls[c] = (name, args)
        set_calls(t, calls)
    elif mutation == "missing_write":
        if not writes:
            raise ValueError("missing_write needs a write; this plan makes none")
        t, c = writes[-1 if write is None else write]
        set_calls(t, [call for i, call in enumerate(agent[t].calls) if i != c])
    elif mutation == "extra_write":
        uid = next(iter(dom.new_environment().tools.db.users))
        set_calls(len(agent) - 1, [*agent[-1].calls, EXTRA_WRITES[domain_name](uid)])
    elif mutation == "swapped_writes":
        if len(writes) < 2:
            raise ValueError("swapped_writes needs two writes; this plan has "
                             f"{len(writes)}")
        (t1, c1), (t2, c2) = writes[:2]
        first, second = agent[t1].calls[c1], agent[t2].calls[c2]
        calls1 = list(agent[t1].calls)
        calls1[c1] = second
        set_calls(t1, calls1)
        calls2 = list(agent[t2].calls)
        calls2[c2] = first
        set_calls(t2, calls2)
    elif mutation == "silent":
        agent = [replace(t, say="OK.") for t in agent]
    elif mutation == "too_many_errors":
        set_calls(0, [(NO_SUCH_FUNCTION, {})] * max_errors)
    else:
        raise ValueError(f"unknown mutation {mutation!r}; known: {', '.join(MUTATIONS)}")
    return replace(plan, agent=tuple(agent))


def end_hashes(plan: Plan, task: Any, domain_name: str) -> tuple[str | None, str | None]:
    """The database hashes after the plan's calls on a fresh environment in the task's initial
    state (calls that fail change nothing, as in an episode)."""
    from agent_envs.envs.tau2.tasks import initialise

    env = domain(domain_name).new_environment()
    initialise(env, task)
    for turn in plan.agent:
        for name, args in turn.calls:
            with contextlib.suppress(Exception):
                env.make_tool_call(tool_name=name, requestor="assistant", **copy.deepcopy(args))
    return env.get_db_hash(), env.get_user_db_hash()


def wrong_mutation(task: Any, plan: Plan, domain_name: str
                   ) -> tuple[Mutation, int | None]:
    """The mistake the ``oracle-wrong`` policy makes on ``task``, one τ²'s evaluator scores 0:
    where the database is checked, the first of a wrong argument in a write, a missing write
    and an extra write that leaves another database than the expected actions do (an expected
    write that fails in τ² too changes nothing, so hitting it would not do); else, where a
    message is checked, saying nothing; else (nothing a finished conversation can miss)
    running into τ²'s error limit. Returns the mutation and the write it hits."""
    from agent_envs.envs.tau2.verifier import gold_hashes

    criteria = task.evaluation_criteria
    basis = {r.value for r in criteria.reward_basis} if criteria else set()
    checks_db = criteria is not None and "DB" in basis and (
        criteria.actions is not None or criteria.env_assertions is not None)
    if checks_db:
        gold = gold_hashes(domain_name, task.id)
        writes = _writes(plan, domain(domain_name).tool_types)
        candidates: list[tuple[Mutation, int | None]] = [
            *(("wrong_argument", i) for i in range(len(writes))),
            *(("missing_write", i) for i in range(len(writes))), ("extra_write", None)]
        for mutation, write in candidates:
            if end_hashes(mutate(plan, mutation, domain_name, write=write), task,
                          domain_name) != gold:
                return mutation, write
    if criteria is not None and criteria.communicate_info and "COMMUNICATE" in basis:
        return "silent", None
    return "too_many_errors", None
