"""The tool parts on their own: declarations, routing rules, refusals, missing extras."""

from __future__ import annotations

import re
import sys

import openai_harmony as oh
import pytest

from agent_envs.errors import MissingDependencyError, UnknownArgumentError
from agent_envs.tasks.base import Task
from agent_envs.tools import PART_NAMES, make_part, part_class
from agent_envs.tools.base import ToolCall
from agent_envs.tools.browser import BrowserPart, NoPagesError
from agent_envs.tools.functions import FunctionsPart
from agent_envs.tools.python import PythonPart, PythonToolConfig

TASK = Task(id="t", prompt="p", answer="1")


def call(recipient: str, text: str = "{}", skipped: tuple[str, ...] = ()) -> ToolCall:
    return ToolCall(recipient=recipient, channel="commentary", content_type=None, text=text,
                    skipped=skipped)


def test_the_declarations_are_harmonys():
    py = PythonPart(PythonToolConfig(call_timeout_s=3.0)).declaration()
    assert py.builtin.name == "python" and "time out after 3.0 seconds" in py.builtin.description
    assert BrowserPart().declaration().builtin.description == \
        oh.ToolNamespaceConfig.browser().description
    fn = FunctionsPart(tools=[lambda: 1]).declaration()
    assert fn.builtin is None and fn.functions == ()  # nothing until an episode is open


def test_each_part_answers_its_recipients_only():
    py, br, fn = PythonPart(), BrowserPart(), FunctionsPart()
    assert py.answers("python") and not py.answers("python.exec")
    assert br.answers("browser") and br.answers("browser.whatever") and not br.answers("python")
    assert fn.answers("functions.x") and not fn.answers("functions")
    assert br.recipients() == ["browser.search", "browser.open", "browser.find"]


def test_a_too_large_code_cell_is_refused_before_any_sandbox():
    out = PythonPart(PythonToolConfig(max_code_bytes=10)).call(call("python", "x" * 11))
    assert not out.ok and out.error == "code cell too large (11 bytes)"


def test_the_browser_without_pages_says_what_to_pass():
    with pytest.raises(NoPagesError, match=re.escape("Pass backend=")):
        BrowserPart().open(TASK, object())
    out = BrowserPart().call(call("browser"))  # the reference's answer to a bare 'browser'
    assert out.text == '{"error": "Invalid function arguments"}' and out.author == "browser"


def test_functions_note_calls_that_did_not_run():
    def ping() -> str:
        """Ping."""
        return "pong"

    part = FunctionsPart(tools=[ping])
    part.open(TASK, object())
    out = part.call(call("functions.ping", "{}", skipped=("functions.a", "python")))
    assert out.ok and out.text.startswith("Note: only the last call of a message runs; "
                                          "functions.a, python did not run.")
    assert part.info()["errors"] == {"not_run": 2} and part.info()["calls"] == 1
    assert [f["name"] for f in part.declaration().functions] == ["ping"]


def test_part_names_and_a_missing_extra_are_clear_errors(monkeypatch):
    assert PART_NAMES == ("browser", "python", "functions")
    with pytest.raises(UnknownArgumentError, match="did you mean 'python'"):
        part_class("pyton")
    assert isinstance(make_part("python", {PythonToolConfig: {"sandbox": "local"}}), PythonPart)
    # The browser's extra missing: its modules import afresh and bm25s is not there.
    for name in [n for n in sys.modules if n.startswith(("agent_envs.envs.browser",
                                                         "agent_envs.tools.browser"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "bm25s", None)
    with pytest.raises(MissingDependencyError,
                       match=re.escape("pip install 'agent-envs[browser]'")):
        part_class("browser")
