"""A policy that samples from an OpenAI-compatible ``/v1/completions`` server (vLLM, SGLang).

Prompts go over the wire as token ids and completions come back as token ids
with their log-probs; no text is decoded or re-encoded. The request body uses
the vLLM server's extensions to the OpenAI API:

- ``prompt``: a list of token ids;
- ``logprobs: 0``: the sampled token's log-prob only (processed log-probs when
  the server runs with ``--logprobs-mode processed_logprobs``);
- ``stop_token_ids``, ``top_k``, ``seed``, ``skip_special_tokens: false``;
- ``return_tokens_as_token_ids: true`` (tokens come back as ``"token_id:123"``)
  and ``return_token_ids: true`` (newer vLLM: ``choices[0].token_ids``).

Connection errors, timeouts, HTTP 429 and 5xx are retried with exponential
back-off; a 4xx is not retried and comes back with the status, the start of
the body and the likely fix.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from agent_envs.rollout.errors import (
    PolicyConfigError,
    PolicyError,
    PolicyRequestError,
    PolicyServerError,
)
from agent_envs.rollout.policy import Policy, Sample, SampleRequest

__all__ = ["OpenAICompletionsPolicy"]

_FIXES = {
    400: "check that prompt + max_tokens fits the server's --max-model-len and that the "
         "server accepts token-id prompts and the vLLM extra parameters",
    401: "pass api_key= (or check the key the server was started with)",
    403: "pass an api_key that may use this model",
    404: "base_url must be the server root (e.g. http://127.0.0.1:8000), and model= a name "
         "listed by GET /v1/models",
    422: "a request field has the wrong type; check the server's vLLM version supports "
         "stop_token_ids/return_tokens_as_token_ids",
}
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class OpenAICompletionsPolicy(Policy):
    """Samples from an OpenAI-compatible completions endpoint over httpx.

    Args:
        base_url: Server root, e.g. ``"http://127.0.0.1:8000"`` (``/v1/completions``
            is appended; a trailing ``/v1`` is accepted too).
        model: Model name the server serves.
        api_key: Sent as ``Authorization: Bearer ...`` when given.
        timeout_s: Per-attempt timeout for one HTTP request.
        max_retries: Retries after the first attempt on connect errors,
            timeouts, 429 and 5xx.
        backoff_s: First back-off; doubles each retry (with up to 25% jitter).
        max_backoff_s: Cap on one back-off.
        max_concurrency: Most requests in flight at once.
        logprobs: Value of the ``logprobs`` field (0: the sampled token only).
        extra_body: Extra JSON fields merged into every request body.
        policy_id: Recorded in episodes (default: ``model``).
        version: Weights version recorded in episodes.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 16.0,
        max_concurrency: int = 256,
        logprobs: int = 0,
        extra_body: Mapping[str, Any] | None = None,
        policy_id: str | None = None,
        version: str = "0",
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise PolicyConfigError(
                f"OpenAICompletionsPolicy base_url must start with http:// or https://, got "
                f"{base_url!r}; e.g. 'http://127.0.0.1:8000'."
            )
        if max_retries < 0 or max_concurrency < 1 or timeout_s <= 0:
            raise PolicyConfigError(
                f"OpenAICompletionsPolicy needs max_retries >= 0, max_concurrency >= 1 and "
                f"timeout_s > 0; got {max_retries=}, {max_concurrency=}, {timeout_s=}."
            )
        root = base_url.rstrip("/")
        self.url = (root if root.endswith("/v1") else root + "/v1") + "/completions"
        self.model = model
        self.policy_id = policy_id or model
        self.version = str(version)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_concurrency = max_concurrency
        self.logprobs = logprobs
        self.extra_body = dict(extra_body or {})
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._jitter = random.Random(0)

    def body(self, request: SampleRequest) -> dict[str, Any]:
        """The JSON body sent for ``request``."""
        p = request.params
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": [int(t) for t in request.prompt],
            "max_tokens": request.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "logprobs": self.logprobs,
            "stop_token_ids": list(request.stop_token_ids),
            "skip_special_tokens": False,
            "include_stop_str_in_output": True,
            "return_tokens_as_token_ids": True,
            "return_token_ids": True,
            "n": 1,
            "stream": False,
        }
        if p.top_k > 0:
            body["top_k"] = p.top_k
        if p.seed is not None:
            body["seed"] = p.seed
        body.update(self.extra_body)
        return body

    def _client_for_loop(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            raise PolicyError(
                "OpenAICompletionsPolicy was used from two event loops; an HTTP connection "
                "pool belongs to one loop. Call `await policy.aclose()` before switching loops."
            )
        if self._client is None:
            limits = httpx.Limits(max_connections=self.max_concurrency)
            self._client = httpx.AsyncClient(
                timeout=self.timeout_s, limits=limits, headers=self._headers
            )
            self._client_loop = loop
        return self._client

    async def asample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Sample one completion per request; failed requests come back as ``Sample.failed``.

        The error of a failed sample is a ``PolicyRequestError`` (4xx: not
        retried), a ``PolicyServerError`` (connection/5xx after all retries) or a
        ``PolicyError`` (a malformed response); ``Sample.raise_for_error()`` raises it.
        """
        client = self._client_for_loop()
        sem = asyncio.Semaphore(self.max_concurrency)

        async def one(req: SampleRequest) -> Sample:
            async with sem:
                try:
                    return self._parse(await self._post(client, self.body(req)), req)
                except PolicyError as e:
                    return Sample.failed(e)

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (1 + 0.25 * self._jitter.random()))
            try:
                resp = await client.post(self.url, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if resp.status_code in _RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {resp.text[:200]!r}"
                continue
            if 400 <= resp.status_code < 600:
                snippet = resp.text[:300]
                fix = _FIXES.get(resp.status_code, "read the server's message above")
                raise PolicyRequestError(
                    f"POST {self.url} was rejected with HTTP {resp.status_code}: {snippet!r}. "
                    f"Fix: {fix}.",
                    status=resp.status_code, body=snippet,
                )
            try:
                return resp.json()
            except ValueError as e:
                raise PolicyError(
                    f"POST {self.url} returned HTTP {resp.status_code} with a body that is not "
                    f"JSON: {resp.text[:200]!r}; is base_url an OpenAI-compatible server?"
                ) from e
        raise PolicyServerError(
            f"POST {self.url} failed {self.max_retries + 1} times; last error: {last}. "
            "Fix: check the server is running and reachable (GET /v1/models), or raise "
            "max_retries/timeout_s for a busy server."
        )

    def _parse(self, data: dict[str, Any], req: SampleRequest) -> Sample:
        try:
            choice = data["choices"][0]
            lp = choice.get("logprobs") or {}
            logprobs = lp.get("token_logprobs")
            ids = choice.get("token_ids")
            if ids is None:
                ids = [_token_id(t) for t in lp.get("tokens") or []]
            reason = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise PolicyError(
                f"POST {self.url} returned an unexpected completion ({e!r}): "
                f"{str(data)[:300]}; the server must return choices[0].logprobs.tokens "
                "as 'token_id:N' (vLLM: return_tokens_as_token_ids)."
            ) from e
        if logprobs is None or len(logprobs) != len(ids):
            raise PolicyError(
                f"POST {self.url} returned {len(ids)} token ids but "
                f"{'no' if logprobs is None else len(logprobs)} log-probs; the server must "
                "honour 'logprobs' for every sampled token."
            )
        if reason not in ("stop", "length"):
            raise PolicyError(f"POST {self.url} finished with finish_reason={reason!r}.")
        return Sample(
            token_ids=[int(t) for t in ids],
            logprobs=[float(x) for x in logprobs],
            finish_reason=reason,
        )

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Sync twin of ``asample`` (its own event loop and connection pool per call)."""

        async def run() -> list[Sample]:
            try:
                return await self.asample(requests)
            finally:
                await self.aclose()

        return asyncio.run(run())

    async def aclose(self) -> None:
        """Close the HTTP connection pool; a later call opens a new one."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        """Close the connection pool from sync code (after the async user's loop stopped)."""
        client, self._client = self._client, None
        loop = self._client_loop
        if client is not None and loop is not None and not loop.is_closed() \
                and not loop.is_running():
            loop.run_until_complete(client.aclose())


def _token_id(token: str) -> int:
    if not token.startswith("token_id:"):
        raise ValueError(f"token {token!r} is not 'token_id:N'")
    return int(token.split(":", 1)[1])
