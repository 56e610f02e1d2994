"""The ``live`` backend: real URLs through httpx, search through a pluggable provider.

Fetching follows redirects (at most ``max_redirects``), enforces a connect/read timeout and a
size cap (the body is streamed and cut off), and handles content types: HTML goes through
the page code, ``text/plain`` and Markdown become text pages, anything else (PDF, images)
is a clear error the model sees. Search goes to a :class:`SearchProvider`: Exa
(``EXA_API_KEY``) and You.com (``YDC_API_KEY``), the two the reference supports, with the
same requests the reference makes; a missing key is an infrastructure error, not the
model's. Results pages are built as the reference builds them.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from typing import Any

import httpx

from agent_envs.envs.browser.backends import (
    VIEW_SOURCE_PREFIX,
    Backend,
    BackendError,
    BackendUnavailable,
    SearchHit,
    results_page,
)
from agent_envs.envs.browser.page import Page, page_from_html, page_from_text

__all__ = ["ExaProvider", "LiveBackend", "LiveConfig", "SearchProvider", "YouComProvider",
           "make_provider"]

_USER_AGENT = "agent-envs-browser/0.1 (+https://github.com/openai/gpt-oss compatible)"


@dataclass(frozen=True, kw_only=True)
class LiveConfig:
    """Limits of live fetching.

    Attributes:
        timeout_s: Connect and read timeout per request.
        max_bytes: Largest body read; longer pages are cut there.
        max_redirects: Redirects followed before giving up.
        user_agent: The ``User-Agent`` header.
    """

    timeout_s: float = 15.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    user_agent: str = _USER_AGENT


class SearchProvider(abc.ABC):
    """A web search API: a query in, ``SearchHit`` objects out."""

    name: str = "provider"
    env_var: str = ""

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None) -> None:
        self._api_key = api_key
        if base_url is not None:
            self.base_url = base_url.rstrip("/")

    base_url: str = ""

    def api_key(self) -> str:
        """The key: given, else from the environment variable.

        Raises:
            BackendUnavailable: No key (an infrastructure fault, not the model's).
        """
        key = self._api_key or os.environ.get(self.env_var)
        if not key:
            raise BackendUnavailable(f"{self.name} search needs an API key: set {self.env_var} "
                                     f"or pass api_key=")
        return key

    @abc.abstractmethod
    def request(self, query: str, topn: int) -> dict[str, Any]:
        """``httpx.Client.request`` keyword arguments for a search."""

    @abc.abstractmethod
    def hits(self, data: Any) -> list[SearchHit]:
        """The results of a decoded JSON response."""


class ExaProvider(SearchProvider):
    """Exa's ``/search`` (title, url and summary per result), as the reference calls it."""

    name = "Exa"
    env_var = "EXA_API_KEY"
    base_url = "https://api.exa.ai"

    def request(self, query: str, topn: int) -> dict[str, Any]:
        return {"method": "POST", "url": f"{self.base_url}/search",
                "headers": {"x-api-key": self.api_key()},
                "json": {"query": query, "numResults": topn,
                         "contents": {"text": True, "summary": True}}}

    def hits(self, data: Any) -> list[SearchHit]:
        return [SearchHit(title=r["title"], url=r["url"], summary=r.get("summary", ""))
                for r in data["results"]]


class YouComProvider(SearchProvider):
    """You.com's ``/v1/search`` (web results with snippets, then news), as the reference."""

    name = "You.com"
    env_var = "YDC_API_KEY"
    base_url = "https://api.ydc-index.io"

    def request(self, query: str, topn: int) -> dict[str, Any]:
        return {"method": "GET", "url": f"{self.base_url}/v1/search",
                "headers": {"x-api-key": self.api_key()},
                "params": {"query": query, "count": topn}}

    def hits(self, data: Any) -> list[SearchHit]:
        results = data["results"]

        def text(x: Any) -> str:
            return " ".join(x) if isinstance(x, list) else str(x)

        web = [SearchHit(title=r["title"], url=r["url"], summary=text(r.get("snippets", "")))
               for r in results.get("web", [])]
        news = [SearchHit(title=r["title"], url=r["url"], summary=text(r.get("description", "")))
                for r in results.get("news", [])]
        return web + news


def make_provider(name: str, **kwargs: Any) -> SearchProvider:
    """``"exa"`` or ``"youcom"``."""
    providers = {"exa": ExaProvider, "youcom": YouComProvider}
    if name not in providers:
        raise ValueError(f"unknown search provider {name!r}; use one of {sorted(providers)}")
    return providers[name](**kwargs)


class LiveBackend(Backend):
    """Pages from the web, search from a provider.

    Args:
        provider: A :class:`SearchProvider`, or None to refuse searches (infra error).
        config: Limits.
        transport: An httpx transport for the sync client (tests, proxies).
        async_transport: The same for the async client.
    """

    source = "web"

    def __init__(self, provider: SearchProvider | None = None, *,
                 config: LiveConfig | None = None,
                 transport: httpx.BaseTransport | None = None,
                 async_transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.provider = provider
        self.config = config or LiveConfig()
        self._client = httpx.Client(
            follow_redirects=True, max_redirects=self.config.max_redirects,
            timeout=httpx.Timeout(self.config.timeout_s),
            headers={"user-agent": self.config.user_agent}, transport=transport)
        self._atransport = async_transport
        self._aclient: httpx.AsyncClient | None = None

    def _search_request(self) -> SearchProvider:
        if self.provider is None:
            raise BackendUnavailable("this live backend has no search provider; pass "
                                     "provider=ExaProvider() or YouComProvider()")
        return self.provider

    def _results(self, provider: SearchProvider, query: str, status: int, text: str,
                 data: Any) -> Page:
        if status != 200:
            raise BackendError(f"{provider.name} error {status}: {text[:500]}")
        try:
            hits = provider.hits(data())
        except (ValueError, KeyError, TypeError) as e:
            raise BackendError(f"{provider.name} returned an unexpected response: "
                               f"{type(e).__name__}: {e}") from e
        return results_page(query, hits, escape=False)

    def search(self, query: str, topn: int) -> Page:
        provider = self._search_request()
        try:
            response = self._client.request(**provider.request(query, topn))
        except httpx.HTTPError as e:
            raise BackendError(f"{provider.name} request failed: {type(e).__name__}: {e}") from e
        return self._results(provider, query, response.status_code, response.text,
                             response.json)

    async def asearch(self, query: str, topn: int) -> Page:
        provider = self._search_request()
        try:
            response = await self._async_client().request(**provider.request(query, topn))
        except httpx.HTTPError as e:
            raise BackendError(f"{provider.name} request failed: {type(e).__name__}: {e}") from e
        return self._results(provider, query, response.status_code, response.text,
                             response.json)

    @staticmethod
    def _check_url(url: str) -> str:
        url = url.removeprefix(VIEW_SOURCE_PREFIX)
        if not url.startswith(("http://", "https://")):
            raise BackendError(f"only http(s) URLs can be opened, got {url!r}")
        return url

    def _translate(self, e: httpx.HTTPError) -> BackendError:
        if isinstance(e, httpx.TooManyRedirects):
            return BackendError(f"too many redirects (more than {self.config.max_redirects})")
        if isinstance(e, httpx.TimeoutException):
            return BackendError(f"timed out after {self.config.timeout_s:g} s")
        return BackendError(f"{type(e).__name__}: {e}")

    def fetch(self, url: str) -> Page:
        url = self._check_url(url)
        try:
            with self._client.stream("GET", url) as response:
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= self.config.max_bytes:
                        break
                return self._page(response, b"".join(chunks))
        except httpx.HTTPError as e:
            raise self._translate(e) from e

    async def afetch(self, url: str) -> Page:
        url = self._check_url(url)
        try:
            async with self._async_client().stream("GET", url) as response:
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= self.config.max_bytes:
                        break
                return self._page(response, b"".join(chunks))
        except httpx.HTTPError as e:
            raise self._translate(e) from e

    def _page(self, response: httpx.Response, body: bytes) -> Page:
        """A page from a response (body cut at ``max_bytes``), by content type."""
        body = body[: self.config.max_bytes]
        if response.status_code >= 400:
            raise BackendError(f"HTTP {response.status_code}")
        final_url = str(response.url)
        mime = response.headers.get("content-type", "").split(";")[0].strip().lower()
        text = body.decode(response.encoding or "utf-8", errors="replace")
        if mime in ("", "text/html", "application/xhtml+xml"):
            try:
                return page_from_html(text, final_url, None, display_urls=True)
            except Exception as e:  # lxml: empty document
                raise BackendError(str(e)) from e
        if mime.startswith("text/") or mime in ("application/json", "application/xml"):
            return page_from_text(text, final_url, final_url.rsplit("/", 1)[-1] or final_url)
        raise BackendError(f"unsupported content type {mime!r} (only HTML and text pages "
                           "can be shown)")

    def _async_client(self) -> httpx.AsyncClient:
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(
                follow_redirects=True, max_redirects=self.config.max_redirects,
                timeout=httpx.Timeout(self.config.timeout_s),
                headers={"user-agent": self.config.user_agent}, transport=self._atransport)
        return self._aclient

    def close(self) -> None:
        self._client.close()
        if self._aclient is not None:  # an async client can only be closed in its loop
            import asyncio
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                asyncio.run(self._aclient.aclose())
            self._aclient = None

    async def aclose(self) -> None:
        self._client.close()
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None
