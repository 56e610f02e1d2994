"""gpt-oss's browser tool: ``browser.search``, ``browser.open``, ``browser.find``.

The behaviour, the page stack, the cursors and every error text follow OpenAI's reference
tool (``gpt_oss/tools/simple_browser/simple_browser_tool.py``); the tests compare our
output with its output byte for byte. In short:

* every call that shows something pushes a page on the stack; its index is the *cursor*
  shown as ``[cursor]`` in the header, and citations are ``【cursor†Lx-Ly】``;
* ``search(query)`` pushes a results page (``topn`` is ignored: always
  ``max_search_results``, as in the reference);
* ``open(id=int)`` follows link ``id`` of the page at ``cursor`` (the last page by default;
  pages already fetched are reused); ``open(id="URL")`` fetches the URL again;
  ``open()`` with no ``id`` shows the page at ``cursor`` again from ``loc`` (scrolling);
  ``num_lines`` fixes the number of lines, else the view holds ``view_tokens`` tokens;
* ``find(pattern)`` pushes a page of case-insensitive matches in the page at ``cursor``.

Where the reference has quirks they are kept by default and fixed behind named options of
:class:`BrowserToolConfig`: ``honor_topn``, ``raw_view_source`` (the reference's
``view_source`` fetches the page again and shows the same text), ``keep_cursor_pages``
(the reference keeps one page per URL, so every search results page, all at URL ``""``,
replaces the previous one under every older cursor too).

Where the reference raises instead of answering (a missing ``query``, an unknown
argument, a ``loc`` that is not a number), the model gets an error text of ours.

The tool's logic is written once as a generator that yields backend requests; :meth:`call`
and :meth:`acall` drive it with the backend's sync or async methods.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from agent_envs.core import check_field_types
from agent_envs.envs.browser.backends import (
    VIEW_SOURCE_PREFIX,
    Backend,
    BackendError,
    BackendUnavailable,
)
from agent_envs.envs.browser.page import Page, page_from_text
from agent_envs.envs.browser.view import (
    TokenCounter,
    find_in_page,
    get_token_counter,
    numbered,
    render_display,
    truncate,
    window_end,
    wrap_lines,
)

__all__ = ["FUNCTIONS", "BrowserResult", "BrowserTool", "BrowserToolConfig", "View"]

FUNCTIONS = ("search", "open", "find")
_PARAMS = {
    "search": ("query", "topn", "top_n", "source"),
    "open": ("id", "cursor", "loc", "num_lines", "view_source", "source"),
    "find": ("pattern", "cursor"),
}


@dataclass(frozen=True, kw_only=True)
class BrowserToolConfig:
    """Settings of the browser tool. The defaults are the reference's behaviour.

    Attributes:
        view_tokens: Size of the view window in o200k tokens.
        max_search_results: Results per search.
        honor_topn: Fix: show ``min(topn, max_search_results)`` results (the reference
            ignores ``topn``).
        raw_view_source: Fix: ``open(view_source=true)`` shows the page's source (the
            reference fetches the page again and shows its text).
        keep_cursor_pages: Fix: a cursor always shows the page it was opened with (the
            reference keeps one page per URL, so a newer search results page, or a
            re-fetched URL, replaces the older one under every cursor).
    """

    view_tokens: int = 1024
    max_search_results: int = 20
    honor_topn: bool = False
    raw_view_source: bool = False
    keep_cursor_pages: bool = False

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("view_tokens", "max_search_results"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class View:
    """What one cursor showed: the page and the lines ``[first, last]`` (inclusive)."""

    cursor: int
    page: Page
    first: int
    last: int
    kind: str  # "search", "find" or "page"

    @property
    def lines(self) -> tuple[str, ...]:
        """The page's wrapped lines (all of them; ``first..last`` were on screen)."""
        return wrap_lines(self.page.text)


@dataclass(frozen=True, kw_only=True)
class BrowserResult:
    """A tool call's outcome.

    Attributes:
        text: The tool message the model sees.
        author: Who it is from (``browser.search``, ...).
        ok: False when ``text`` is an error.
        error: Short description of the error, if any.
        infra_error: Set when the backend failed for reasons that are not the model's.
        view: The page view this call pushed, if any.
    """

    text: str
    author: str
    ok: bool = True
    error: str | None = None
    infra_error: str | None = None
    view: View | None = None


class _UsageError(Exception):
    """The model used the tool wrongly; the message is what it sees."""


@dataclass(frozen=True)
class _Fetch:
    url: str


@dataclass(frozen=True)
class _Search:
    query: str
    topn: int


_Step = Generator["_Fetch | _Search", "Page", BrowserResult]


class BrowserTool:
    """The browser's state (page stack, pages by URL) and its three functions.

    Args:
        backend: Where pages and search results come from.
        config: Options (defaults: the reference's behaviour).
        counter: Token counter for the view window (default: harmony's o200k).
    """

    name = "browser"

    def __init__(self, backend: Backend, config: BrowserToolConfig | None = None, *,
                 counter: TokenCounter | None = None) -> None:
        self.backend = backend
        self.config = config or BrowserToolConfig()
        self._counter = counter
        self.reset()

    def reset(self) -> None:
        """Forget every page (a new episode)."""
        self._stack: list[Page] = []
        self._pages: dict[str, Page] = {}
        self._views: list[View | None] = []

    # -- state --------------------------------------------------------------------

    @property
    def counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = get_token_counter()
        return self._counter

    @property
    def views(self) -> list[View]:
        """What each cursor on the stack showed, by cursor."""
        return [v for v in self._views if v is not None]

    @property
    def current_cursor(self) -> int:
        return len(self._stack) - 1

    def _page_at(self, cursor: Any = -1) -> Page:
        if self.current_cursor < 0:
            raise _UsageError("No pages to access!")
        if cursor == -1 or cursor == self.current_cursor:
            index: Any = -1
        else:
            index = cursor
        try:
            entry = self._stack[index]
        except TypeError:
            raise _UsageError(f"`cursor` should be an integer, not `{type(cursor).__name__}`"
                              ) from None
        except IndexError:
            raise _UsageError(f"Cursor `{cursor}` is out of range. Available cursor indices: "
                              f"[0 - {self.current_cursor}].") from None
        return entry if self.config.keep_cursor_pages else self._pages[entry.url]

    def _push(self, page: Page) -> None:
        self._pages[page.url] = page
        self._stack.append(page)
        self._views.append(None)

    def _pop(self) -> None:
        self._stack.pop()
        self._views.pop()

    # -- the calls ------------------------------------------------------------------

    def call(self, function: str, arguments: str) -> BrowserResult:
        """Run ``browser.<function>`` with the JSON ``arguments`` the model wrote."""
        steps = self._dispatch(function, arguments)
        try:
            request = next(steps)
            while True:
                try:
                    page = (self.backend.fetch(request.url) if isinstance(request, _Fetch)
                            else self.backend.search(request.query, request.topn))
                except Exception as e:  # noqa: BLE001 - handed to the logic, which decides
                    request = steps.throw(e)
                else:
                    request = steps.send(page)
        except StopIteration as done:
            return done.value

    async def acall(self, function: str, arguments: str) -> BrowserResult:
        """Async twin of :meth:`call` (uses the backend's ``asearch``/``afetch``)."""
        steps = self._dispatch(function, arguments)
        try:
            request = next(steps)
            while True:
                try:
                    page = (await self.backend.afetch(request.url)
                            if isinstance(request, _Fetch)
                            else await self.backend.asearch(request.query, request.topn))
                except Exception as e:  # noqa: BLE001
                    request = steps.throw(e)
                else:
                    request = steps.send(page)
        except StopIteration as done:
            return done.value

    def _dispatch(self, function: str, arguments: str) -> _Step:
        author = f"browser.{function}"
        if not arguments:
            args: Any = {}
        else:
            try:
                args = json.loads(arguments)
            except ValueError:
                args = None
        if not isinstance(args, dict):
            return (yield from self._json_error(author, "Invalid function arguments"))
        if function not in FUNCTIONS:
            return (yield from self._json_error(author, f"Unknown function: {function}"))
        unknown = [k for k in args if k not in _PARAMS[function]]
        if unknown:
            return self._error(author, f"Invalid arguments for `browser.{function}`: unknown "
                                       f"argument `{unknown[0]}`. Valid arguments: "
                                       f"{', '.join(_PARAMS[function])}.")
        try:
            if function == "search":
                return (yield from self._search(args))
            if function == "open":
                return (yield from self._open(args))
            return (yield from self._find(args))
        except _UsageError as e:
            return self._error(author, str(e))
        except BackendUnavailable as e:
            return BrowserResult(text="", author=author, ok=False,
                                 error="backend unavailable",
                                 infra_error=f"{type(e).__name__}: {e}")

    def _json_error(self, author: str, message: str) -> _Step:
        return self._error(author, json.dumps({"error": message}))
        yield  # pragma: no cover - makes this a generator like the others

    @staticmethod
    def _error(author: str, text: str) -> BrowserResult:
        return BrowserResult(text=text, author=author, ok=False, error=text[:200])

    def _search(self, args: dict[str, Any]) -> _Step:
        if "query" not in args:
            raise _UsageError("`browser.search` needs a `query`, e.g. "
                              '{"query": "tallest building in Europe"}.')
        query = args["query"]
        topn = self.config.max_search_results
        if self.config.honor_topn:
            asked = args.get("topn", args.get("top_n", topn))
            if isinstance(asked, (int, float)) and not isinstance(asked, bool) and asked >= 1:
                topn = min(int(asked), topn)
        try:
            if not isinstance(query, str):
                raise BackendError(f"the query must be a string, got {type(query).__name__}")
            page = yield _Search(query, topn)
        except BackendUnavailable:
            raise
        except Exception as e:
            raise _UsageError(f"Error during search for `{query}`: {truncate(str(e))}") from e
        self._push(page)
        return self._show_or_pop(0, -1, "browser.search")

    def _open(self, args: dict[str, Any]) -> _Step:
        link = args.get("id", -1)
        cursor = args.get("cursor", -1)
        loc = _whole(args.get("loc", -1), "loc")
        num_lines = _whole(args.get("num_lines", -1), "num_lines")
        view_source = args.get("view_source", False)
        current: Page | None = None
        scroll = False
        refresh = False
        snippet_line: int | None = None
        if isinstance(link, str):
            url = link
            refresh = True
        else:
            current = self._page_at(cursor)
            if isinstance(link, (bool, int, float)):
                clicked = link >= 0
            else:
                raise _UsageError(f"Invalid link id `{link}`.")
            if clicked:
                if str(link) not in current.urls:
                    raise _UsageError(f"Invalid link id `{link}`.")
                url = current.urls[str(link)]
                snippet = (current.snippets or {}).get(str(link))
                snippet_line = snippet.line_idx if snippet is not None else None
            else:
                scroll = not view_source
                url = current.url
        if view_source:
            url = VIEW_SOURCE_PREFIX + url
            snippet_line = None
        if scroll:
            assert current is not None
            page = current
        elif not refresh and url in self._pages:
            page = self._pages[url]
        else:
            page = yield from self._fetch(url)
        self._push(page)
        if loc < 0:
            loc = 0
            if snippet_line is not None:
                loc = snippet_line - 4 if snippet_line > 4 else snippet_line
        return self._show_or_pop(loc, num_lines, "browser.open")

    def _fetch(self, url: str) -> _Step:
        try:
            if self.config.raw_view_source and url.startswith(VIEW_SOURCE_PREFIX):
                source = getattr(self.backend, "fetch_source", None)
                if source is None:
                    raise BackendError("this backend cannot show page sources")
                bare = url[len(VIEW_SOURCE_PREFIX):]
                return page_from_text(source(bare), url, f"Source of {bare}",
                                      display_urls=False)
            return (yield _Fetch(url))
        except BackendUnavailable:
            raise
        except Exception as e:
            raise _UsageError(f"Error fetching URL `{truncate(url)}`: {truncate(str(e))}"
                              ) from e

    def _find(self, args: dict[str, Any]) -> _Step:
        page = self._page_at(args.get("cursor", -1))
        if page.snippets is not None:
            raise _UsageError("Cannot run `find` on search results page or find results page")
        if "pattern" not in args:
            raise _UsageError('`browser.find` needs a `pattern`, e.g. {"pattern": "born"}.')
        self._push(find_in_page(str(args["pattern"]).lower(), page))
        return self._show_or_pop(0, -1, "browser.find")
        yield  # pragma: no cover

    def _show_or_pop(self, loc: int, num_lines: int, author: str) -> BrowserResult:
        """Show the top page from ``loc``; on a bad ``loc`` the page is popped again."""
        page = self._page_at()
        cursor = self.current_cursor
        lines = wrap_lines(page.text)
        total = len(lines)
        if loc >= total:
            self._pop()
            raise _UsageError(f"Invalid location parameter: `{loc}`. "
                              f"Cannot exceed page maximum of {total - 1}.")
        end = window_end(lines, loc, num_lines, self.config.view_tokens, self.counter)
        body = numbered(lines[loc:end], loc)
        kind = "find" if page.snippets is not None else "search" if not page.url else "page"
        view = View(cursor=cursor, page=page, first=loc, last=end - 1, kind=kind)
        self._views[cursor] = view
        return BrowserResult(text=render_display(page, cursor, body, loc, end - 1, total - 1),
                             author=author, view=view)


def _whole(value: Any, name: str) -> int:
    """``loc``/``num_lines`` as an int (integral floats accepted), else a usage error."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _UsageError(f"Invalid `{name}`: expected a whole number of lines, got "
                      f"`{json.dumps(value)}`.")
