"""agent-v0: every gpt-oss tool in one episode (tool parts composed, routed by recipient)."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import openai_harmony as oh
import pytest

import agent_envs
from agent_envs.errors import UnknownArgumentError
from agent_envs.harmony import get_codec
from agent_envs.tools.base import Declaration, ToolCall, ToolOutcome, ToolPart
from agent_envs.tools.python import python_tool_description

CODEC = get_codec()


def _env(**kw):
    kw.setdefault("sandbox", "local")
    return agent_envs.make("agent", **kw)


def _decode_system(obs) -> str:
    return CODEC.decode(list(obs)).split("<|start|>developer", 1)[0]


@pytest.mark.parametrize("order", [["python", "browser"], ["browser", "python"]])
def test_python_and_browser_system_message_is_harmonys_render_of_the_chat_py_setup(order):
    """gpt_oss/chat.py: SystemContent with the date and effort, then with_tools(browser),
    then with_tools(python). Ours must be what openai-harmony renders for that, token for
    token (the python description states the real timeout: the only text we change)."""
    with _env(tools=order, conversation_date="2025-06-01", reasoning_effort="high",
              call_timeout_s=7.0) as env:
        obs, _ = env.reset(seed=0)
    content = (oh.SystemContent.new().with_reasoning_effort(oh.ReasoningEffort.HIGH)
               .with_conversation_start_date("2025-06-01")
               .with_tools(oh.ToolNamespaceConfig.browser())
               .with_tools(oh.ToolNamespaceConfig(name="python",
                                                  description=python_tool_description(7.0),
                                                  tools=[])))
    reference = CODEC.render_message(oh.Message.from_role_and_content(oh.Role.SYSTEM, content))
    assert list(obs[: len(reference)]) == reference
    text = _decode_system(obs)
    assert text.index("## browser") < text.index("## python")


def test_functions_are_declared_in_the_developer_message_and_python_in_the_system():
    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: First.
            b: Second.
        """
        return a + b

    with _env(tools=["python", add], tasks="procedural") as env:
        obs, _ = env.reset(seed=0)
        text = CODEC.decode(list(obs))
        system, developer = text.split("<|start|>developer", 1)
        assert "## python" in system and "## browser" not in system
        assert "namespace functions" in developer and "type add = " in developer
        names = [p.name for p in env.tools]
        assert names == ["python", "functions"]


def test_calls_are_routed_by_recipient_in_one_episode():
    def double(x: int) -> int:
        """Double a number.

        Args:
            x: The number.
        """
        return 2 * x

    with _env(tools=["browser", "python", double], tasks="research") as env:
        env.reset(seed=0)
        _, _, _, _, info = env.step(
            "<|channel|>analysis to=python code<|message|>print(6 * 7)<|call|>")
        assert info["tool_outcome"]["recipient"] == "python" and info["tool_outcome"]["ok"]
        assert "42" in env.messages[-1].content[0].text
        _, _, _, _, info = env.step(
            "<|channel|>commentary to=functions.double <|constrain|>json<|message|>"
            '{"x": 21}<|call|>')
        assert info["tool_outcome"]["ok"] and env.messages[-1].content[0].text == "42"
        assert info["functions"]["calls"] == 1
        _, _, _, _, info = env.step("<|channel|>analysis to=browser.search code<|message|>"
                                    '{"query": "gauging stations"}<|call|>')
        assert info["tool_outcome"]["ok"] and info["browser"]["cursor"] == 0
        assert env.messages[-1].author.name == "browser.search"


def test_an_unknown_recipient_is_an_observation_that_names_every_tool():
    with _env(tools=["python", "browser"]) as env:
        obs, _ = env.reset(seed=0)
        nxt, reward, term, trunc, info = env.step(
            "<|channel|>commentary to=functions.lookup <|constrain|>json<|message|>{}<|call|>")
        assert not (term or trunc) and reward == 0.0
        text = env.messages[-1].content[0].text
        assert text == ("Error: there is no tool 'functions.lookup' in this environment. "
                        "Available tools: browser.search, browser.open, browser.find, python.")
        assert info["tool_outcome"]["error"] == "unknown recipient 'functions.lookup'"


def test_call_timeout_goes_to_every_tool_that_has_one_and_budgets_default_once():
    def noop() -> str:
        """Nothing."""
        return ""

    with _env(tools=["python", noop], tasks="procedural", call_timeout_s=3.5) as env:
        assert env.tools[0].config.call_timeout_s == 3.5
        assert env.tools[1].config.call_timeout_s == 3.5
        assert (env.config.max_turns, env.config.max_tokens) == (32, 65_536)
    with _env(tools=["python"], max_turns=5) as env:
        assert env.config.max_turns == 5


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"tools": ["python", "browzer"]}, UnknownArgumentError, "did you mean 'browser'?"),
    ({"tools": "python,browser"}, TypeError, "tools=['python', 'browser']"),
    ({"tools": ["python", "python"]}, ValueError, "names 'python' twice"),
    ({"tools": ["python"], "backend": object()}, ValueError,
     "backend= is for the browser tool, which is not in tools (python)"),
    ({"max_turnz": 3}, UnknownArgumentError, "did you mean 'max_turns'?"),
    ({"view_tokenz": 3}, UnknownArgumentError, "did you mean 'view_tokens'?"),
    ({"tasks": "research", "task_source": "dataops"}, TypeError, "they are the same argument"),
    ({"tools": ["python"], "view_tokens": 512}, ValueError,
     "view_tokens=512 is a setting of the browser tool, which is not in tools (python)"),
    ({"tasks": "reserch"}, agent_envs.UnknownTaskError, "unknown agent task source 'reserch'"),
])
def test_bad_arguments_are_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        agent_envs.make("agent", **kwargs)


def test_the_browser_without_pages_is_a_clear_error():
    with agent_envs.make("agent", tools=["browser"], tasks="procedural") as env, pytest.raises(
            ValueError, match=re.escape("the browser tool has no pages for task")):
        env.reset(seed=0)


class _Echo(ToolPart):
    """A custom part: answers ``echo`` with the call's text, counts its episodes."""

    name = "echo"

    def __init__(self) -> None:
        self.opened = self.closed = 0

    def declaration(self) -> Declaration:
        return Declaration(functions=({"name": "echo", "description": "Echo the text.",
                                       "parameters": {"type": "object", "properties": {}}},))

    def recipients(self) -> list[str]:
        return ["functions.echo"]

    def open(self, task, source) -> None:
        self.opened += 1

    def call(self, call: ToolCall) -> ToolOutcome:
        return ToolOutcome(text=call.text.upper(), ok=True)

    def close(self) -> None:
        self.closed += 1

    def info(self):
        return {"opened": self.opened}


def test_a_custom_tool_part_is_declared_routed_opened_and_closed():
    echo = _Echo()
    env = _env(tools=["python", echo], tasks="procedural")
    obs, info = env.reset(seed=0)
    assert "type echo = " in CODEC.decode(list(obs)) and info["echo"] == {"opened": 1}
    env.step("<|channel|>commentary to=functions.echo <|constrain|>json<|message|>hi<|call|>")
    assert env.messages[-1].content[0].text == "HI"
    closed = echo.closed  # close() is idempotent: every reset closes the last episode first
    env.reset(seed=1)
    assert echo.opened == 2 and echo.closed == closed + 1
    env.close()
    assert echo.closed == closed + 2


def test_async_twins_route_the_same_way():
    async def run():
        env = _env(tools=["python", "browser"])
        try:
            obs, _ = await env.areset(seed=3)
            nxt, *_ , info = await env.astep(
                "<|channel|>analysis to=python code<|message|>print(2 ** 10)<|call|>")
            assert np.array_equal(nxt[: len(obs)], obs) and info["tool_outcome"]["ok"]
            nxt, *_, info = await env.astep(
                "<|channel|>analysis to=browser.search code<|message|>"
                '{"query": "district"}<|call|>')
            assert info["tool_outcome"]["ok"]
        finally:
            await env.aclose()
    asyncio.run(run())


def test_defaults_pick_the_tasks_the_tools_can_do():
    with _env() as env:
        assert type(env.task_source).__name__ == "ResearchTasks"
    with _env(tools=["python", "functions"]) as env:
        assert type(env.task_source).__name__ == "DataOpsTasks"
    with _env(tools=["python"]) as env:
        assert type(env.task_source).__name__ == "ProceduralTasks"
