"""The oracle for the functions env: the reference calls, then the reference answer.

It reads the conversation so far from the observation (which user turn it is, which
calls were made in it and what they returned), asks the task for the next reference
call (:meth:`FunctionsTask.oracle_next`), and writes it as gpt-oss would:
``<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{...}<|call|>``.
A call that failed (a transient error) is made again. When the turn's calls are done
it writes the final answer. ``wrong=True`` is a baseline that must score ~0: it calls the
first declared function with an argument it does not have (or, where any call is
right, calls nothing) and answers wrongly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import openai_harmony as oh

from agent_envs.envs.functions.tasks import FunctionsTask
from agent_envs.envs.functions.tools import ToolNames
from agent_envs.harmony import HarmonyCodec, get_codec, message_text
from agent_envs.oracle import register_oracle

__all__ = ["FunctionsOracle", "call_text", "final_text"]


def call_text(harmony_name: str, arguments: dict[str, Any], note: str = "") -> str:
    """A completion that calls ``functions.<harmony_name>`` with ``arguments``."""
    note = note or f"I will call {harmony_name}."
    return (f"<|channel|>analysis<|message|>{note}<|end|><|start|>assistant"
            f"<|channel|>commentary to=functions.{harmony_name} <|constrain|>json<|message|>"
            f"{json.dumps(arguments, ensure_ascii=False)}<|call|>")


def final_text(text: str, note: str = "The work is done.") -> str:
    """A completion that ends the turn with ``text`` as the final answer."""
    return (f"<|channel|>analysis<|message|>{note}<|end|><|start|>assistant"
            f"<|channel|>final<|message|>{text}<|return|>")


class FunctionsOracle:
    """Writes the next completion for a functions-env observation (see the module docstring).

    Args:
        codec: The harmony codec.
        wrong: Be the deliberately wrong baseline.
    """

    def __init__(self, codec: HarmonyCodec | None = None, *, wrong: bool = False) -> None:
        self.codec = codec or get_codec()
        self.wrong = wrong
        self._names: dict[str, ToolNames] = {}

    def _tool_names(self, task: FunctionsTask) -> ToolNames:
        if task.id not in self._names:
            if len(self._names) > 1024:
                self._names.clear()
            self._names[task.id] = ToolNames(task.tool_names())
        return self._names[task.id]

    def act_text(self, obs: Sequence[int] | np.ndarray, task: FunctionsTask) -> str:
        """The next completion as text."""
        messages = self.codec.parse_conversation(obs)
        names = self._tool_names(task)
        turn = sum(1 for m in messages if m.author.role == oh.Role.USER) - 1
        last_user = max(i for i, m in enumerate(messages) if m.author.role == oh.Role.USER)
        done: list[tuple[str | None, Any, str]] = []
        pending: tuple[str | None, Any] | None = None
        for m in messages[last_user + 1:]:
            if m.author.role == oh.Role.ASSISTANT and (m.recipient or "").startswith("functions."):
                hname = m.recipient.removeprefix("functions.")
                try:
                    args = json.loads(message_text(m) or "{}")
                except ValueError:
                    args = None
                pending = (names.to_original.get(hname), args)
            elif m.author.role == oh.Role.TOOL and pending is not None:
                done.append((*pending, message_text(m)))
                pending = None
        if self.wrong:
            return self._wrong(task, names, done)
        step = task.oracle_next(turn, done)
        if step is None:
            return final_text(task.oracle_final(turn))
        name, args = step
        # Tools the env adds (the user's own) are not in the task's map: same rule, no clash.
        return call_text(names.to_harmony.get(name) or ToolNames.sanitize(name), args)

    def _wrong(self, task: FunctionsTask, names: ToolNames, done: list[Any]) -> str:
        if task.wrong_policy_calls and not done:
            first = next(iter(names.to_harmony.values()), "no_such_function")
            return call_text(first, {"guess": True}, note="I will guess.")
        return final_text("I am not sure; maybe 0.", note="I will guess.")

    def act(self, obs: Sequence[int] | np.ndarray, task: FunctionsTask) -> list[int]:
        """The next completion as token ids."""
        return self.codec.encode(self.act_text(obs, task))


register_oracle(FunctionsTask, FunctionsOracle)
