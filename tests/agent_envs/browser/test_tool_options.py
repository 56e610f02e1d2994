"""The fixes behind named options (the defaults keep the reference's quirks; see
test_differential.py for those)."""

from __future__ import annotations

import json

import pytest

from agent_envs.envs.browser.corpus import Corpus, CorpusBackend, Document
from agent_envs.envs.browser.tool import BrowserTool, BrowserToolConfig
from tests.agent_envs.browser.test_differential import HITS, FixtureBackend


def _call(tool, function, **args):
    return tool.call(function, json.dumps(args))


def test_honor_topn_shows_only_topn_results():
    query = next(q for q in HITS if len(HITS[q]) >= 6)
    default = _call(BrowserTool(FixtureBackend()), "search", query=query, topn=2)
    fixed_tool = BrowserTool(CorpusBackend(Corpus([Document(url=f"https://d.example/{i}",
                                                            title=f"T{i}", text="alpha beta")
                                                   for i in range(8)]), persist=False),
                             BrowserToolConfig(honor_topn=True))
    fixed = _call(fixed_tool, "search", query="alpha", topn=2)
    assert default.view.page.urls and len(default.view.page.urls) > 2  # topn ignored
    assert len(fixed.view.page.urls) == 2 and "【1†" in fixed.text and "【2†" not in fixed.text


def test_raw_view_source_shows_the_html():
    backend = CorpusBackend(Corpus([Document(url="https://d.example/a", title="A",
                                             html="<p>Hello <b>there</b></p>")]), persist=False)
    quirk = BrowserTool(backend)
    fixed = BrowserTool(backend, BrowserToolConfig(raw_view_source=True))
    for tool in (quirk, fixed):
        _call(tool, "open", id="https://d.example/a")
    assert "<b>" not in _call(quirk, "open", view_source=True).text
    shown = _call(fixed, "open", view_source=True)
    assert "L0: <p>Hello <b>there</b></p>" in shown.text
    assert shown.text.startswith("[1] Source of https://d.example/a (view-source:https://")


def test_keep_cursor_pages_keeps_each_search_page_under_its_cursor():
    queries = [q for q in HITS if len(HITS[q]) > 3][:2]
    quirk, fixed = BrowserTool(FixtureBackend()), BrowserTool(
        FixtureBackend(), BrowserToolConfig(keep_cursor_pages=True))
    for tool in (quirk, fixed):
        for q in queries:
            _call(tool, "search", query=q)
    assert f"] {queries[1]}\n" in _call(quirk, "open", cursor=0).text  # the newer one
    assert f"] {queries[0]}\n" in _call(fixed, "open", cursor=0).text


def test_config_validation_names_the_value():
    with pytest.raises(ValueError, match="view_tokens must be an int >= 1, got 0"):
        BrowserToolConfig(view_tokens=0)


def test_malformed_arguments_the_reference_raises_on_get_our_messages():
    tool = BrowserTool(FixtureBackend())
    assert "needs a `query`" in _call(tool, "search").text
    assert "unknown argument `colour`" in _call(tool, "search", query="x", colour=1).text
    _call(tool, "open", id="https://example.com/")
    assert "Invalid `loc`" in _call(tool, "open", loc="ten").text
    assert "Invalid link id `None`." == _call(tool, "open", id=None).text
    assert "needs a `pattern`" in _call(tool, "find").text
    assert _call(tool, "open", loc=2.0).ok  # an integral float is a line number
