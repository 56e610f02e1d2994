"""Our browser tool against OpenAI's reference tool: byte-identical tool text.

Both tools get the same pages (61 HTML fixtures: site chrome, code, tables, non-ASCII,
pages far past the 1024-token window) and the same search results, and the same calls:
opening every page by URL, following links by id, scrolling with ``loc``/``num_lines``,
``find``, cursors, every error the reference answers with text, and seeded random call
sequences. The reference builds its pages with its own code (its Exa backend, fed from
memory), so nothing of ours is on its side.
"""

from __future__ import annotations

import json
import random

import pytest

from agent_envs.envs.browser.backends import Backend, BackendError, SearchHit, results_page
from agent_envs.envs.browser.page import Page, page_from_html
from agent_envs.envs.browser.tool import BrowserTool
from tests.agent_envs.browser.html_fixtures import fixture_hits, fixture_pages
from tests.agent_envs.browser.reference import make_reference_tool, reference_call

PAGES = fixture_pages()
HITS = fixture_hits(PAGES)


class FixtureBackend(Backend):
    """Ours: the same fixtures, built with our page code (unescaped, as the reference)."""

    source = "fixtures"

    def search(self, query: str, topn: int) -> Page:
        if query not in HITS:
            raise RuntimeError(f"no results for {query}")
        return results_page(query, [SearchHit(title=t, url=u, summary=s)
                                    for t, u, s in HITS[query]], escape=False)

    def fetch(self, url: str) -> Page:
        url = url.removeprefix("view-source:")
        if url not in PAGES:
            raise BackendError(f"No contents returned for {url}")
        html, title = PAGES[url]
        return page_from_html(html, url, title, display_urls=True)


def pair() -> tuple[BrowserTool, object]:
    return BrowserTool(FixtureBackend()), make_reference_tool(PAGES, HITS)


def same(ours: BrowserTool, ref: object, function: str, args: dict | str) -> str:
    text = args if isinstance(args, str) else json.dumps(args)
    expected = reference_call(ref, function, text)
    got = ours.call(function, text)
    assert got.text == expected, (function, text)
    assert got.author == f"browser.{function}"
    return expected


def test_there_are_enough_fixture_pages_and_some_pass_the_view_window():
    assert len(PAGES) >= 50
    ours = BrowserTool(FixtureBackend())
    long_pages = 0
    for url in PAGES:
        result = ours.call("open", json.dumps({"id": url}))
        assert result.ok, result.text
        view = result.view
        long_pages += view.last < len(view.lines) - 1
    assert long_pages >= 10  # pages whose first view stops before their end


@pytest.mark.parametrize("url", list(PAGES))
def test_open_every_page_by_url_then_scroll_and_find(url):
    ours, ref = pair()
    first = same(ours, ref, "open", {"id": url})
    total = int(first.split("**viewing lines [", 1)[1].split("] of ", 1)[1].split("**")[0])
    for loc in sorted({1, total // 2, total, max(total - 3, 0)}):
        same(ours, ref, "open", {"loc": loc})
    same(ours, ref, "open", {"loc": 0, "num_lines": 5})
    same(ours, ref, "open", {"cursor": 0, "loc": total + 1})  # error: past the end
    for pattern in ("the", "Zürich", "【", "L1", "x" * 90, "nothing-matches-this", ""):
        same(ours, ref, "find", {"pattern": pattern, "cursor": 0})
    same(ours, ref, "open", {"id": 0})  # first match of the last find: scrolls to it
    same(ours, ref, "open", {"cursor": 0, "id": 0})  # its first link, or the error
    same(ours, ref, "open", {"cursor": 0, "id": 1, "loc": 3, "num_lines": 2})


def test_search_results_pages_and_clicking_results():
    ours, ref = pair()
    for query in HITS:
        same(ours, ref, "search", {"query": query})
        for link in range(4):
            same(ours, ref, "open", {"id": link})
            same(ours, ref, "open", {"cursor": 0, "id": link})


def test_every_error_text_the_reference_answers_with():
    ours, ref = pair()
    same(ours, ref, "find", {"pattern": "x"})  # no pages yet
    same(ours, ref, "open", {})  # no pages yet
    same(ours, ref, "open", {"id": "https://missing.example/page"})  # backend error
    same(ours, ref, "search", {"query": "no such query"})  # search error
    same(ours, ref, "open", {"id": "https://example.com/"})
    same(ours, ref, "open", {"id": 99})  # invalid link id
    same(ours, ref, "open", {"id": 1.5})
    same(ours, ref, "open", {"cursor": 7})  # out of range
    same(ours, ref, "open", {"cursor": -5})
    same(ours, ref, "open", {"cursor": "0"})  # not an integer
    same(ours, ref, "open", {"cursor": None})
    same(ours, ref, "find", {"pattern": "x", "cursor": 3})
    same(ours, ref, "open", {"loc": 10_000})  # past the page
    same(ours, ref, "search", "not json")  # invalid arguments
    same(ours, ref, "search", "[1, 2]")
    same(ours, ref, "open", "")  # empty arguments: {} (scroll to the top)
    same(ours, ref, "find", {"pattern": "domain"})
    same(ours, ref, "find", {"pattern": "domain"})  # on a find page: refused
    same(ours, ref, "open", {"id": 0, "view_source": True})  # reference re-fetches
    same(ours, ref, "open", {"view_source": True})
    same(ours, ref, "find", {"pattern": "p" * 1_000_000})  # a 1 MB pattern
    unknown = reference_call(ref, "lookup", "{}")
    assert ours.call("lookup", "{}").text == unknown == '{"error": "Unknown function: lookup"}'


def test_quirks_are_the_references():
    ours, ref = pair()
    # topn is ignored: 20 results either way; two search pages share url "" and the newer one
    # replaces the older under every cursor.
    queries = [q for q in HITS if len(HITS[q]) > 3]
    same(ours, ref, "search", {"query": queries[0], "topn": 2})
    same(ours, ref, "search", {"query": queries[1]})
    same(ours, ref, "open", {"cursor": 0})
    same(ours, ref, "open", {"cursor": 0, "id": 2})


def test_html2text_escaping_is_kept_as_the_reference_keeps_it():
    page = page_from_html("<p>1. one</p><p>- dash</p>", "https://example.com/x")
    assert "1\\. one" in page.text and "\\- dash" in page.text


@pytest.mark.parametrize("seed", range(12))
def test_random_call_sequences(seed):
    rng = random.Random(seed)
    ours, ref = pair()
    urls = list(PAGES)
    queries = list(HITS)
    for _ in range(40):
        kind = rng.random()
        if kind < 0.15:
            call = ("search", {"query": rng.choice(queries)})
        elif kind < 0.3:
            call = ("open", {"id": rng.choice(urls)})
        elif kind < 0.5:
            call = ("open", {"id": rng.randint(-1, 12)})
        elif kind < 0.65:
            args = {"cursor": rng.randint(-2, 8)}
            if rng.random() < 0.7:
                args["loc"] = rng.randint(-1, 120)
            if rng.random() < 0.4:
                args["num_lines"] = rng.randint(-1, 30)
            call = ("open", args)
        elif kind < 0.75:
            call = ("open", {"cursor": rng.randint(0, 6), "id": rng.randint(0, 8),
                             "loc": rng.randint(-1, 40)})
        else:
            word = rng.choice(["the", "river", "東京", "data", "a", "Ü", "e", "zz"])
            args = {"pattern": word}
            if rng.random() < 0.5:
                args["cursor"] = rng.randint(-1, 6)
            call = ("find", args)
        same(ours, ref, *call)
