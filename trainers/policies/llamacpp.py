"""``LlamaCppPolicy``: sample gpt-oss with llama.cpp's ``llama-server`` (CPU; a real engine).

Token ids go in as the prompt of ``POST /completion`` and come back as ids
(``"return_tokens": true``), each with the probability it had under the distribution it
was drawn from (``"n_probs": 1, "post_sampling_probs": true``): llama.cpp's sampler chain
is set to temperature, then top-k, then top-p (vLLM's order), with every other sampler of
llama.cpp's default chain (min-p 0.05, repetition penalties, DRY, XTC, typical-p,
mirostat) switched off, so the reported log-probs are the processed log-probs rollout
correction compares the trainer's against.

Stops: llama.cpp ends a completion at the model's end-of-generation tokens, which for a
gpt-oss GGUF are ``<|return|>`` and ``<|call|>`` (llama.cpp takes ``<|end|>`` out of the
set) plus ``<|endoftext|>``; the stop token is returned with its log-prob, as vLLM does.
A request whose ``stop_token_ids`` add other ids is cut at the first of them here.

Concurrency goes through the server's slots (``slots``: ``--parallel``): that many
requests decode together (continuous batching); more wait in line. Seeds make a request
reproducible when it runs alone; in a batch, llama.cpp's CPU kernels may round a row
differently with other rows beside it.

The policy starts and owns a server on a GGUF file (``LlamaCppPolicy("model.gguf")``), or
talks to one already running (``LlamaCppPolicy(url="http://127.0.0.1:8080")``). An owned
server takes new weights with :meth:`LlamaCppPolicy.load_weights` (the trainer's
``sync_weights``): they are written into a copy of the GGUF (no converter run,
:func:`trainers.export.gguf_weights.write_weights`) and the server is restarted on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from agent_envs.rollout.errors import (
    PolicyConfigError,
    PolicyError,
    PolicyRequestError,
    PolicyServerError,
)
from agent_envs.rollout.policy import Policy, Sample, SampleRequest
from trainers.policies.llamacpp_server import LlamaCppServer, LlamaCppServerConfig

__all__ = [
    "LlamaCppPolicy", "LlamaCppServer", "LlamaCppServerConfig", "check_llamacpp_kwargs",
    "hf_named_weights", "parse_llamacpp_spec",
]

_RESPONSE_FIELDS = ("tokens", "completion_probabilities", "stop_type", "tokens_evaluated",
                    "tokens_cached", "truncated")
#: llama.cpp's default sampler chain minus everything ours does not do.
SAMPLERS = ("temperature", "top_k", "top_p")
#: Logit boost of the allowed tokens of a restricted policy (see ``encoded_body``).
ALLOWED_BOOST = 64.0


class LlamaCppPolicy(Policy):
    """Samples from ``llama-server`` with token ids in and out (see the module docstring).

    Args:
        model: A GGUF file; the policy starts a server on it and stops it on ``close``.
        url: Instead of ``model``: a running ``llama-server``'s root URL.
        server: How to run the owned server.
        timeout_s: Per-request timeout.
        max_retries: Retries of a request after connection errors and HTTP 5xx/503.
        policy_id: Recorded in episodes (default: ``llamacpp:<file name or URL>``).
        version: The weights version recorded in episodes.
        work_dir: Where pushed weights are written (default: a temporary directory).
        push_quantize: Quantize pushed weights with ``llama-quantize`` to this type (e.g.
            ``"q4_0"``); None keeps the GGUF's own tensor types.
        allowed_token_ids: Sample only these tokens (every other one gets a logit bias of
            -inf, the first step of llama.cpp's sampler chain), so the reported log-probs are
            a distribution over this set: what the trainer's ``rollout.allowed_tokens="env"``
            scores.

    Raises:
        PolicyConfigError: neither or both of ``model`` and ``url``.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, url: str | None = None,
                 server: LlamaCppServerConfig | None = None, timeout_s: float = 600.0,
                 max_retries: int = 3, policy_id: str | None = None, version: str = "0",
                 work_dir: str | os.PathLike[str] | None = None,
                 push_quantize: str | None = None,
                 allowed_token_ids: Sequence[int] | None = None) -> None:
        if (model is None) == (url is None):
            raise PolicyConfigError(
                "LlamaCppPolicy needs exactly one of model= (a GGUF file: the policy starts "
                "llama-server on it) and url= (a running llama-server, e.g. "
                "'http://127.0.0.1:8080').")
        if url is not None and not url.startswith(("http://", "https://")):
            raise PolicyConfigError(f"LlamaCppPolicy url must start with http:// or https://, "
                                    f"got {url!r}.")
        if timeout_s <= 0 or max_retries < 0:
            raise PolicyConfigError(f"LlamaCppPolicy needs timeout_s > 0 and max_retries >= 0; "
                                    f"got {timeout_s=}, {max_retries=}.")
        self.server_config = server or LlamaCppServerConfig()
        self.server: LlamaCppServer | None = None
        self._url = url.rstrip("/") if url else None
        self._own_work = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else None
        self.push_quantize = push_quantize
        if model is not None:
            self.server = LlamaCppServer(Path(model), self.server_config)
            self.server.start()
        name = Path(model).name if model is not None else self._url
        self.policy_id = policy_id or f"llamacpp:{name}"
        self.version = str(version)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.slots = self.server_config.slots if self.server else self._remote_slots()
        self._template: Path | None = Path(model) if model is not None else None
        self._pushed: Path | None = None
        self._exported_dir: Path | None = None
        self.allowed_token_ids = (tuple(sorted({int(t) for t in allowed_token_ids}))
                                  if allowed_token_ids is not None else None)
        self._ban_json: str | None = None
        self._pieces: _Pieces | None = None

    @classmethod
    def from_spec(cls, spec: str) -> LlamaCppPolicy:
        """The policy a CLI spec names (the part after ``llamacpp:``).

        ``PATH.gguf`` serves that file; ``http(s)://...`` uses a running server; a Hugging
        Face gpt-oss directory, a trainer checkpoint (``.pt``) or ``tiny`` (the trainer's
        tiny random model) is exported first (``outtype``, default f32) into the policy's
        work directory. Options follow commas: see :func:`parse_llamacpp_spec`.
        """
        target, opts = parse_llamacpp_spec(spec)
        outtype = opts.pop("outtype", "f32")
        server = LlamaCppServerConfig(**opts)
        try:
            if target.startswith(("http://", "https://")):
                return cls(url=target, server=server)
            path = Path(target).expanduser()
            if path.suffix == ".gguf":
                if not path.is_file():
                    raise PolicyConfigError(
                        f"policy spec 'llamacpp:{spec}': {str(path)!r} does not exist. Export "
                        f"a checkpoint with: agent-envs export gguf CHECKPOINT {path}")
                return cls(path, server=server)
        except PolicyServerError as e:  # the CLI reports ValueErrors as one line
            raise PolicyConfigError(f"policy spec 'llamacpp:{spec}': {e}") from e
        from trainers.export.gguf import GGUFExportError, export_gguf
        from trainers.export.llamacpp_dist import LlamaCppNotBuiltError
        from trainers.export.tokenizer import TokenizerBuildError

        work = Path(tempfile.mkdtemp(prefix="llamacpp-policy-"))
        try:
            gguf = export_gguf(target, work / f"{path.name or 'model'}-{outtype}.gguf",
                               outtype=outtype).path
            policy = cls(gguf, server=server, policy_id=f"llamacpp:{target}")
        except (GGUFExportError, LlamaCppNotBuiltError, TokenizerBuildError,
                PolicyServerError) as e:
            shutil.rmtree(work, ignore_errors=True)
            raise PolicyConfigError(f"policy spec 'llamacpp:{spec}': {e}") from e
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        policy._exported_dir = work
        return policy

    @classmethod
    def for_model(cls, model: Any, *, outtype: str = "f32",
                  work_dir: str | os.PathLike[str] | None = None, version: str = "0",
                  policy_id: str | None = None,
                  allowed_token_ids: Sequence[int] | None = None,
                  **server_fields: Any) -> LlamaCppPolicy:
        """A policy serving ``model``'s current weights (what a trainer samples with).

        The GGUF comes from a cached converter export of the model's architecture with the
        weights written in (:func:`trainers.export.template_gguf`, :func:`write_weights`);
        ``load_weights`` then pushes each update the same way.

        Args:
            model: A gpt-oss model object (LoRA adapters are merged into what is served).
            outtype: ``f32``, ``f16``, ``bf16``, ``q8_0`` (written directly), or a
                ``llama-quantize`` type such as ``q4_0`` (written as f32, then quantized).
            work_dir: Where the served files go (default: a temporary directory).
            version: The weights version.
            policy_id: Recorded in episodes.
            allowed_token_ids: See the class.
            **server_fields: :class:`LlamaCppServerConfig` fields.
        """
        from trainers.export.gguf import quantize, template_gguf
        from trainers.export.gguf_weights import FAST_TYPES, write_weights

        check_llamacpp_kwargs({"outtype": outtype, **server_fields})
        direct = outtype.upper() in FAST_TYPES
        template = template_gguf(model, outtype if direct else "f32")
        work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="llamacpp-policy-"))
        work.mkdir(parents=True, exist_ok=True)
        tag = re.sub(r"[^A-Za-z0-9_.-]", "_", str(version))
        served = work / f"weights-{tag}.gguf"
        with hf_named_weights(model) as weights:
            write_weights(template, served, weights)
        if not direct:
            q = served.with_name(f"weights-{tag}-{outtype}.gguf")
            quantize(served, q, outtype)
            served.unlink()
            served = q
        policy = cls(served, server=LlamaCppServerConfig(**server_fields), version=version,
                     policy_id=policy_id or f"llamacpp:{outtype}", work_dir=work,
                     push_quantize=None if direct else outtype,
                     allowed_token_ids=allowed_token_ids)
        policy._template = template
        policy._pushed = served
        policy._own_work = work_dir is None
        return policy

    # -- plumbing -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's root URL."""
        if self.server is not None:
            return self.server.url or self.server.start()
        assert self._url is not None
        return self._url

    def _remote_slots(self) -> int:
        try:
            props = httpx.get(f"{self._url}/props", timeout=30.0).json()
            return max(1, int(props.get("total_slots") or 1))
        except (httpx.HTTPError, ValueError, TypeError) as e:
            raise PolicyServerError(
                f"GET {self._url}/props failed ({type(e).__name__}: {e}); is a llama-server "
                f"running there? Start one with: llama-server --model MODEL.gguf --parallel 4"
            ) from e

    def body(self, request: SampleRequest) -> dict[str, Any]:
        """The JSON body of ``POST /completion`` for ``request``."""
        p = request.params
        body: dict[str, Any] = {
            "prompt": [int(t) for t in request.prompt],
            "n_predict": int(request.max_tokens),
            "temperature": float(p.temperature),
            "top_k": int(p.top_k) if p.top_k > 0 else 0,
            "top_p": float(p.top_p),
            "min_p": 0.0, "typical_p": 1.0, "top_n_sigma": -1.0, "mirostat": 0,
            "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
            "dry_multiplier": 0.0, "xtc_probability": 0.0, "dynatemp_range": 0.0,
            "samplers": list(SAMPLERS),
            "n_probs": 1, "post_sampling_probs": True, "return_tokens": True,
            "cache_prompt": True, "stream": False, "stop": [],
            "response_fields": list(_RESPONSE_FIELDS),
        }
        if p.seed is not None:
            body["seed"] = int(p.seed) % (2**32 - 1)
        return body

    def encoded_body(self, request: SampleRequest, *, exact_ban: bool = False,
                     allowed: Sequence[int] | None = None, **overrides: Any) -> bytes:
        """``body(request)`` (with ``overrides``) as JSON bytes, restricted to ``allowed``
        (default: ``allowed_token_ids``) when there is a restriction.

        The restriction is a logit bias of +:data:`ALLOWED_BOOST` on the allowed tokens and
        a top-k of their number: the boost cancels in the softmax over them, and top-k
        drops every other token, so the distribution is the one over the allowed set (to
        float rounding of the shifted logits, ~1e-5). :meth:`_request` checks that no other
        token was kept (one outscored the boost) and then asks again with ``exact_ban``:
        every other token banned by name (a ~2.9 MB body the server takes ~1 s to parse).
        """
        body = {**self.body(request), **overrides}
        keep = tuple(sorted(set(allowed))) if allowed is not None else self.allowed_token_ids
        if keep is None:
            return json.dumps(body).encode()
        if not exact_ban:
            k = len(keep)
            body["logit_bias"] = [[t, ALLOWED_BOOST] for t in keep]
            body["top_k"] = min(body["top_k"], k) if body["top_k"] > 0 else k
            body["n_probs"] = max(int(body.get("n_probs", 1)), k)  # to check what was kept
            return json.dumps(body).encode()
        if keep != self.allowed_token_ids or self._ban_json is None:
            from agent_envs.harmony import VOCAB_SIZE

            kept = set(keep)
            ban = "[" + ",".join(f"[{t},false]" for t in range(VOCAB_SIZE)
                                 if t not in kept) + "]"
            if keep != self.allowed_token_ids:
                text = json.dumps(body)
                return (text[:-1] + ', "logit_bias": ' + ban + "}").encode()
            self._ban_json = ban
        text = json.dumps(body)
        return (text[:-1] + ', "logit_bias": ' + self._ban_json + "}").encode()

    @staticmethod
    def _kept_outside(data: dict[str, Any], allowed: Sequence[int]) -> bool:
        """Whether a restricted response kept a token outside ``allowed``."""
        keep = set(allowed)
        return any(int(c["id"]) not in keep
                   for e in data.get("completion_probabilities") or []
                   for c in e.get("top_probs") or [])

    # -- sampling -------------------------------------------------------------------------

    async def asample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Sample one completion per request, ``slots`` at a time; failures come back as
        ``Sample.failed`` (see ``Policy``)."""
        url = self.url + "/completion"
        sem = asyncio.Semaphore(self.slots)
        limits = httpx.Limits(max_connections=self.slots)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as client:

            async def one(req: SampleRequest) -> Sample:
                async with sem:
                    try:
                        data = await self._request(client, url, req)
                        return await self._complete(client, url, data, req)
                    except PolicyError as e:
                        return Sample.failed(e)

            return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _request(self, client: httpx.AsyncClient, url: str, req: SampleRequest, *,
                       allowed: Sequence[int] | None = None, **overrides: Any
                       ) -> dict[str, Any]:
        """POST ``req`` (restricted by boost and top-k; by name if that kept another token)."""
        data = await self._post(client, url,
                                self.encoded_body(req, allowed=allowed, **overrides))
        keep = allowed if allowed is not None else self.allowed_token_ids
        if keep is not None and self._kept_outside(data, keep):
            data = await self._post(client, url, self.encoded_body(
                req, allowed=allowed, exact_ban=True, **overrides))
        return data

    async def _post(self, client: httpx.AsyncClient, url: str, body: bytes) -> dict[str, Any]:
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(8.0, 0.25 * 2 ** attempt))
            try:
                resp = await client.post(url, content=body,
                                         headers={"Content-Type": "application/json"})
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if resp.status_code >= 500 or resp.status_code == 429:
                last = f"HTTP {resp.status_code}: {resp.text[:300]!r}"
                continue
            if resp.status_code >= 400:
                raise PolicyRequestError(
                    f"POST {url} was rejected with HTTP {resp.status_code}: {resp.text[:300]!r}."
                    f" Fix: a prompt longer than the slot's context needs a larger ctx_size "
                    f"(LlamaCppServerConfig.ctx_size, now {self.server_config.ctx_size}).",
                    status=resp.status_code, body=resp.text[:300])
            try:
                return resp.json()
            except ValueError as e:
                raise PolicyError(f"POST {url} returned a body that is not JSON: "
                                  f"{resp.text[:200]!r}; is this a llama-server?") from e
        tail = f"\nlast server log lines:\n{self.server.log_tail()}" if self.server else ""
        raise PolicyServerError(f"POST {url} failed {self.max_retries + 1} times; last error: "
                                f"{last}.{tail}")

    async def _complete(self, client: httpx.AsyncClient, url: str, data: dict[str, Any],
                        req: SampleRequest) -> Sample:
        """The ``Sample`` of one ``/completion`` response.

        llama-server leaves out the probability of a token after which the completion's
        text ends inside a UTF-8 character (a byte token of a rare character; it waits for
        the rest). Those positions are found by replaying the server's rule on the tokens'
        bytes, and their log-probs are recovered by scoring that position again.
        """
        ids = data.get("tokens")
        # absent when no token got one (e.g. a lone lead byte, then <|return|>)
        entries = data.get("completion_probabilities", [])
        if not isinstance(ids, list) or not isinstance(entries, list):
            raise PolicyError(
                f"llama-server returned no 'tokens' and 'completion_probabilities'; it must be "
                f"a llama.cpp server that honours return_tokens and n_probs. Response: "
                f"{str(data)[:300]}")
        token_ids = [int(t) for t in ids]
        present = (self._present(token_ids) if len(entries) != len(token_ids)
                   else [True] * len(token_ids))
        if present is None:  # no vocabulary to replay with: match the ids in order
            present = _align_by_id(token_ids, [int(e.get("id", -1)) for e in entries])
        if sum(present) != len(entries):
            raise PolicyError(f"llama-server returned {len(entries)} probabilities for "
                              f"{len(token_ids)} tokens, {sum(present)} expected; is the "
                              f"server's vocabulary the model's?")
        logprobs: list[float] = []
        it = iter(entries)
        for i, tok in enumerate(token_ids):
            if not present[i]:
                logprobs.append(await self._rescore(client, url, req, token_ids[:i], tok))
                continue
            entry = next(it)
            if int(entry.get("id", tok)) != tok or "prob" not in entry:
                raise PolicyError(f"llama-server's probability {i} is for token "
                                  f"{entry.get('id')} (sampled {tok}) or has no 'prob': "
                                  f"{entry}; post_sampling_probs must be honoured.")
            p = float(entry["prob"])
            logprobs.append(math.log(p) if p > 0 else -math.inf)
        stops = set(req.stop_token_ids)
        cut = next((i for i, t in enumerate(token_ids) if t in stops), None)
        if cut is not None:  # an extra stop id the engine does not stop at itself
            return Sample(token_ids=token_ids[:cut + 1], logprobs=logprobs[:cut + 1],
                          finish_reason="stop")
        # the engine stopped at one of its own end-of-generation tokens (<|endoftext|>)
        reason = "stop" if data.get("stop_type") == "eos" else "length"
        return Sample(token_ids=token_ids, logprobs=logprobs, finish_reason=reason)

    def _present(self, token_ids: Sequence[int]) -> list[bool] | None:
        """Which tokens llama-server reports a probability for (None: vocabulary unknown)."""
        if self._pieces is None:
            path = self._template if self.server is not None else self._remote_model_path()
            if path is None or not Path(path).is_file():
                return None
            self._pieces = _Pieces(Path(path))
        tail, out = b"", []
        for tok in token_ids:
            tail = (tail + self._pieces.piece(tok))[-4:]
            out.append(_utf8_complete(tail))
        return out

    def _remote_model_path(self) -> str | None:
        try:
            return str(httpx.get(f"{self.url}/props", timeout=30.0).json().get("model_path"))
        except (httpx.HTTPError, ValueError, AttributeError):
            return None

    async def _rescore(self, client: httpx.AsyncClient, url: str, req: SampleRequest,
                       prefix: list[int], tok: int) -> float:
        """The log-prob of ``tok`` after ``req.prompt + prefix`` under ``req``'s sampling
        distribution, from two one-token steps at that position: one gives the most likely
        token ``a`` and its probability, one restricted to ``{tok, a}`` gives the ratio
        ``p(tok) / p(a) = exp((l_tok - l_a) / T)``, which truncation (top-k, top-p, the
        allowed set) leaves alone since ``a`` is always kept."""
        ctx = [*map(int, req.prompt), *prefix]
        step = {"prompt": ctx, "n_predict": 1, "response_fields": ["completion_probabilities"]}
        top = await self._one_step(client, url, req, step, n_probs=1)
        a, p_a = int(top[0]["id"]), float(top[0]["prob"])
        if a == tok:
            return math.log(p_a)
        probs = {int(c["id"]): float(c["prob"]) for c in await self._one_step(
            client, url, req, {**step, "top_k": 0, "top_p": 1.0}, n_probs=2,
            allowed=(tok, a))}
        if tok not in probs or a not in probs or probs[a] <= 0:
            raise PolicyError(f"llama-server gave no probability for token {tok} at position "
                              f"{len(prefix)} of a completion (a two-token step returned "
                              f"{probs}).")
        return math.log(p_a) + math.log(probs[tok]) - math.log(probs[a]) if probs[tok] > 0 \
            else -math.inf

    async def _one_step(self, client: httpx.AsyncClient, url: str, req: SampleRequest,
                        fields: dict[str, Any], *, n_probs: int,
                        allowed: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """The ``top_probs`` of a one-token step (retried with other seeds while the step's
        own token ends inside a character, which leaves it without probabilities)."""
        for attempt in range(16):
            data = await self._request(client, url, req, allowed=allowed, **fields,
                                       n_probs=n_probs,
                                       seed=(req.params.seed or 0) + 7919 * (attempt + 1))
            entries = data.get("completion_probabilities") or []
            if entries and entries[0].get("top_probs"):
                return list(entries[0]["top_probs"])
        raise PolicyError(f"llama-server returned no probabilities for 16 one-token steps at "
                          f"position {len(fields['prompt']) - len(req.prompt)} of a "
                          f"completion.")

    # -- weights --------------------------------------------------------------------------

    def _work(self) -> Path:
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="llamacpp-policy-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir

    def load_gguf(self, path: str | os.PathLike[str], *, version: str | None = None) -> None:
        """Restart the owned server on another GGUF file (and set ``version``)."""
        if self.server is None:
            raise PolicyConfigError("load_gguf needs a server this policy started "
                                    "(LlamaCppPolicy(model=...)), not url=.")
        self.server.restart(Path(path))
        if version is not None:
            self.version = str(version)

    def load_weights(self, weights: Iterable[tuple[str, Any]], *, version: str | None = None
                     ) -> None:
        """Push new weights: write them into a copy of the GGUF and restart the server.

        Args:
            weights: ``(Hugging Face parameter name, tensor)`` pairs of the whole gpt-oss
                model (the trainer's ``named_parameters()``, LoRA merged).
            version: The new weights version.
        """
        from trainers.export.gguf_weights import write_weights

        if self.server is None or self._template is None:
            raise PolicyConfigError("load_weights needs a server this policy started "
                                    "(LlamaCppPolicy(model=...)), not url=.")
        tag = re.sub(r"[^A-Za-z0-9_.-]", "_", str(version if version is not None else "next"))
        out = self._work() / f"weights-{tag}.gguf"
        write_weights(self._template, out, weights)
        if self.push_quantize:
            from trainers.export.gguf import quantize

            q = out.with_name(f"weights-{tag}-{self.push_quantize}.gguf")
            quantize(out, q, self.push_quantize)
            out.unlink()
            out = q
        old = self._pushed
        self.server.restart(out)
        self._pushed = out
        if old is not None and old != out:
            old.unlink(missing_ok=True)
        if version is not None:
            self.version = str(version)

    def close(self) -> None:
        """Stop the owned server and delete pushed weights. Idempotent."""
        if self.server is not None:
            self.server.close()
        if self._exported_dir is not None:
            shutil.rmtree(self._exported_dir, ignore_errors=True)
            self._exported_dir = None
        if self._own_work and self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None


class _Pieces:
    """The bytes llama-server appends to a completion's text for each token id, from the
    GGUF's own vocabulary (byte-level BPE strings; control tokens render as nothing, except
    the five llama.cpp renders for gpt-oss)."""

    RENDERED = frozenset({"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>",
                          "<|end|>"})

    def __init__(self, gguf: Path) -> None:
        from gguf.vocab import bytes_to_unicode

        from trainers.export.gguf_weights import read_vocab

        self.tokens, self.types = read_vocab(gguf)
        self.decoder = {ch: b for b, ch in bytes_to_unicode().items()}
        self.cache: dict[int, bytes] = {}

    def piece(self, tok: int) -> bytes:
        """What llama.cpp's ``token_to_piece(tok, special=false)`` gives."""
        got = self.cache.get(tok)
        if got is None:
            text = self.tokens[tok] if 0 <= tok < len(self.tokens) else ""
            if int(self.types[tok]) == 1:  # NORMAL: byte-level BPE characters
                got = bytes(self.decoder.get(ch, 0) for ch in text)
            else:
                got = text.encode() if text in self.RENDERED else b""
            self.cache[tok] = got
        return got


def _utf8_complete(tail: bytes) -> bool:
    """llama-server's ``validate_utf8(text) == len(text)`` on the last (<= 4) bytes."""
    for i in range(1, min(4, len(tail)) + 1):
        c = tail[-i]
        if ((c & 0xE0) == 0xC0 and i < 2) or ((c & 0xF0) == 0xE0 and i < 3) or (
                (c & 0xF8) == 0xF0 and i < 4):
            return False
    return True


def _align_by_id(token_ids: Sequence[int], entry_ids: Sequence[int]) -> list[bool]:
    """The earliest in-order match of ``entry_ids`` in ``token_ids`` (used only when the
    server's vocabulary is not at hand)."""
    out, j = [False] * len(token_ids), 0
    for i, tok in enumerate(token_ids):
        if j < len(entry_ids) and entry_ids[j] == tok:
            out[i], j = True, j + 1
    return out


@contextmanager
def hf_named_weights(model: Any) -> Iterator[list[tuple[str, Any]]]:
    """``model``'s ``(Hugging Face name, tensor)`` pairs with LoRA merged (peft prefixes
    stripped), as a trainer pushes them; adapters are unmerged again on exit."""
    if hasattr(model, "merge_adapter"):
        model.merge_adapter()
        try:
            yield [(n.replace("base_model.model.", "", 1).replace(".base_layer", ""),
                    p.detach()) for n, p in model.named_parameters() if "lora_" not in n]
        finally:
            model.unmerge_adapter()
    else:
        yield [(n, p.detach()) for n, p in model.named_parameters()]


def check_llamacpp_kwargs(kwargs: Mapping[str, Any]) -> None:
    """Check ``rollout.llamacpp_kwargs`` / :meth:`LlamaCppPolicy.for_model` options.

    Raises:
        PolicyConfigError: an unknown key (with did-you-mean) or a bad value.
    """
    import difflib

    from trainers.export.gguf import CONVERTER_TYPES, QUANTIZE_TYPES

    fields = [f.name for f in dataclasses.fields(LlamaCppServerConfig)]
    for key in kwargs:
        if key != "outtype" and key not in fields:
            near = difflib.get_close_matches(key, ["outtype", *fields], n=1)
            raise PolicyConfigError(
                f"unknown llama.cpp option {key!r}; known: outtype, {', '.join(fields)}"
                + (f" (did you mean {near[0]!r}?)" if near else "") + ".")
    outtype = str(kwargs.get("outtype", "f32")).lower()
    if outtype not in CONVERTER_TYPES + QUANTIZE_TYPES:
        near = difflib.get_close_matches(outtype, CONVERTER_TYPES + QUANTIZE_TYPES, n=1)
        raise PolicyConfigError(
            f"llama.cpp outtype={outtype!r} is not supported; use one of "
            f"{', '.join(CONVERTER_TYPES + QUANTIZE_TYPES)}"
            + (f" (did you mean {near[0]!r}?)" if near else "") + ".")
    LlamaCppServerConfig(**{k: v for k, v in kwargs.items() if k != "outtype"})


def parse_llamacpp_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``PATH_OR_URL[,key=value...]`` (the part after ``llamacpp:``).

    Keys: ``slots``, ``ctx`` (per slot), ``threads``, ``kv`` (cache type), ``fa``
    (flash attention), ``outtype`` (when PATH is a checkpoint to export first).

    Returns:
        The path or URL, and a dict of the options (typed).

    Raises:
        PolicyConfigError: an unknown key or a bad value (with the accepted keys).
    """
    target, *pairs = spec.split(",")
    if not target:
        raise PolicyConfigError(
            "policy spec 'llamacpp:' needs a GGUF file, a checkpoint or a server URL, e.g. "
            "'llamacpp:model.gguf', 'llamacpp:model.gguf,slots=8,ctx=16384' or "
            "'llamacpp:http://127.0.0.1:8080'.")
    ints = {"slots": "slots", "ctx": "ctx_size", "threads": "threads"}
    strs = {"kv": "kv_cache_type", "fa": "flash_attn", "outtype": "outtype"}
    opts: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in {**ints, **strs}:
            import difflib

            near = difflib.get_close_matches(key, [*ints, *strs], n=1)
            raise PolicyConfigError(
                f"llamacpp spec option {pair!r} is not KEY=VALUE with a known key; keys: "
                f"{', '.join([*ints, *strs])}" + (f" (did you mean {near[0]!r}?)" if near else "")
                + ". Example: 'llamacpp:model.gguf,slots=8,ctx=16384'.")
        if key in ints:
            try:
                opts[ints[key]] = int(value)
            except ValueError as e:
                raise PolicyConfigError(f"llamacpp spec option {key}={value!r} must be an "
                                        f"integer.") from e
        else:
            opts[strs[key]] = value
    return target, opts

