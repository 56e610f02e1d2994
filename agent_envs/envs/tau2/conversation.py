"""One episode as τ² sees it: the record the env keeps, and τ²'s message objects built from it.

The env keeps a compact, JSON-able record of the conversation after the task's own message
history (which the task already holds): the agent's messages to the user, the calls that
reached τ²'s environment and the user's messages, in order::

    {"role": "assistant", "content": "Hi! How can I help you today?"}
    {"role": "user", "content": "I want to cancel an order."}
    {"role": "assistant", "tool_call": {"id": "call_0", "name": "...", "arguments": {...}},
     "error": false}
    ...

Tool results are not kept: τ²'s tools are deterministic, so they are got again by replaying
the calls on a fresh environment in the task's initial state (:func:`replay`), which is what
τ²'s own evaluator does. A call the env refused before it reached τ² (malformed JSON, an
unknown function) is not in the record: τ² never saw it and it changed nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from agent_envs.envs.tau2.tasks import Tau2Task, initialise

__all__ = ["GREETING", "history_messages", "replay", "tau2_messages", "user_view"]

#: τ²'s first agent message (tau2.orchestrator.orchestrator.DEFAULT_FIRST_AGENT_MESSAGE).
GREETING = "Hi! How can I help you today?"


def history_messages(task: Tau2Task) -> list[Any]:
    """Copies of τ²'s message history of the task (empty for most tasks)."""
    state = task.tau2_task().initial_state
    if state is None or not state.message_history:
        return []
    return copy.deepcopy(list(state.message_history))


def user_view(task: Tau2Task, record: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The conversation as τ²'s user sees it: the agent's and the user's text messages (the
    task's history included), without tool calls and results."""
    out: list[tuple[str, str]] = []
    for m in history_messages(task):
        if m.role in ("user", "assistant") and not m.is_tool_call() and m.content is not None:
            out.append(("user" if m.role == "user" else "agent", m.content))
    for m in record:
        if "tool_call" not in m:
            out.append(("user" if m["role"] == "user" else "agent", m["content"]))
    return out


def tau2_messages(task: Tau2Task, record: Sequence[dict[str, Any]],
                  results: Sequence[tuple[str, bool]]) -> list[Any]:
    """τ²'s trajectory: the task's history, then the record's messages, each call followed by
    its ``ToolMessage`` (content and error flag from ``results``, one per call in order).

    Raises:
        ValueError: ``results`` does not have one entry per call.
    """
    from tau2.data_model.message import AssistantMessage, ToolCall, ToolMessage, UserMessage

    out = history_messages(task)
    calls = [m for m in record if "tool_call" in m]
    if len(calls) != len(results):
        raise ValueError(f"{len(calls)} calls but {len(results)} tool results")
    k = 0
    for m in record:
        if "tool_call" in m:
            c = m["tool_call"]
            out.append(AssistantMessage(role="assistant", tool_calls=[ToolCall(
                id=c["id"], name=c["name"], arguments=c["arguments"], requestor="assistant")]))
            content, error = results[k]
            out.append(ToolMessage(id=c["id"], role="tool", content=content,
                                   requestor="assistant", error=error))
            k += 1
        elif m["role"] == "user":
            out.append(UserMessage(role="user", content=m["content"]))
        else:
            out.append(AssistantMessage(role="assistant", content=m["content"]))
    return out


def replay(task: Tau2Task, record: Sequence[dict[str, Any]]) -> tuple[Any, list[tuple[str, bool]]]:
    """A fresh environment in the task's initial state with the record's calls made on it
    again, and each call's (content, error): the environment and results the episode had."""
    from tau2.data_model.message import ToolCall

    from agent_envs.envs.tau2.data import domain

    env = domain(task.domain).new_environment()
    initialise(env, task.tau2_task())
    results = []
    for m in record:
        if "tool_call" in m:
            c = m["tool_call"]
            msg = env.get_response(ToolCall(id=c["id"], name=c["name"],
                                            arguments=copy.deepcopy(c["arguments"]),
                                            requestor="assistant"))
            results.append((msg.content, bool(msg.error)))
    return env, results
