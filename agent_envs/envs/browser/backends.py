"""The backend interface: search results and page fetches, and the errors backends raise.

A backend implements two calls, each with an async twin (the defaults run the sync one):

* ``search(query, topn) -> Page``: a search results page, built the way the reference's
  backends build it (:func:`results_page`), so it renders exactly as gpt-oss saw in training;
* ``fetch(url) -> Page``: a page by URL (a ``view-source:`` prefix is stripped and the page
  fetched again, as the reference's backends do).

Two kinds of failure are kept apart:

* :class:`BackendError` is the model's business (a page that does not exist, a search
  that failed): the tool shows its text to the model, as the reference does;
* :class:`BackendUnavailable` is infrastructure (a replay cassette without the request, a
  provider with no API key): the episode ends with ``info["infra_error"]`` set.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from agent_envs.envs.browser.page import Page, page_from_html, search_results_html
from agent_envs.errors import AgentEnvsError

__all__ = [
    "VIEW_SOURCE_PREFIX", "Backend", "BackendError", "BackendUnavailable", "SearchHit",
    "results_page",
]

VIEW_SOURCE_PREFIX = "view-source:"


class BackendError(AgentEnvsError):
    """A search or fetch failed in a way the model should see (shown as the tool's text)."""


class BackendUnavailable(AgentEnvsError):
    """The backend cannot answer for reasons that are not the model's (an infra fault)."""


@dataclass(frozen=True, kw_only=True)
class SearchHit:
    """One search result: what the results page lists."""

    url: str
    title: str
    summary: str


def results_page(query: str, hits: list[SearchHit], *, escape: bool = True) -> Page:
    """The search results page for ``hits``, built as the reference's Exa and You.com
    backends build theirs: an HTML list of ``<a href=url>title</a> summary`` converted with
    ``url=""``, ``title=query`` and ``display_urls=True``.

    Args:
        query: The search query (the page's title).
        hits: The results, best first.
        escape: HTML-escape titles and summaries (the reference does not; identical text
            for ordinary strings).
    """
    html = search_results_html([(h.title, h.url, h.summary) for h in hits], escape=escape)
    return page_from_html(html, "", query, display_urls=True)


class Backend(abc.ABC):
    """Where the browser's pages come from.

    Attributes:
        source: What the system message and logs call this source (``web``, a corpus name).
    """

    source: str = "web"

    @abc.abstractmethod
    def search(self, query: str, topn: int) -> Page:
        """The results page for ``query`` with at most ``topn`` results.

        Raises:
            BackendError: The search failed (shown to the model).
            BackendUnavailable: Infrastructure fault.
        """

    @abc.abstractmethod
    def fetch(self, url: str) -> Page:
        """The page at ``url``.

        Raises:
            BackendError: No such page, or it could not be read (shown to the model).
            BackendUnavailable: Infrastructure fault.
        """

    async def asearch(self, query: str, topn: int) -> Page:
        """Async twin of :meth:`search`."""
        return self.search(query, topn)

    async def afetch(self, url: str) -> Page:
        """Async twin of :meth:`fetch`."""
        return self.fetch(url)

    def close(self) -> None:
        """Release connections and files. Idempotent."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.close()
