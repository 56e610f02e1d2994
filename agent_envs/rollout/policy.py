"""The ``Policy`` interface: token prompts in, sampled token ids and log-probs out.

A policy only samples. The environment owns the context, the collector owns the
loop. Every implementation (transformers, vLLM, an HTTP completions server, a
scripted oracle) answers the same two calls::

    samples = policy.sample([SampleRequest(prompt=obs, max_tokens=512)])
    samples = await policy.asample(requests)

and reports, for each sampled token, the log-probability *the sampler used*:
the log-softmax of the logits after temperature scaling and top-k / top-p
masking, renormalised over the kept tokens (vLLM's "processed" log-probs).
Those are the behaviour-policy log-probs that rollout correction needs.

The interface lives here, below the trainers: the collector, the eval runner and the
scripted policies need no torch. The samplers of real models (transformers, vLLM, an HTTP
completions server, llama.cpp) live in ``trainers.policies`` and subclass :class:`Policy`.
"""

from __future__ import annotations

import abc
import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent_envs.harmony import STOP_TOKEN_IDS
from agent_envs.rollout.errors import PolicyConfigError, PolicyError

__all__ = [
    "HARMONY_STOP_TOKEN_IDS", "EpisodeContext", "FinishReason", "Policy", "Sample", "SampleRequest",
    "SamplingParams",
]

#: ``<|return|>`` and ``<|call|>``: a harmony completion ends in one of them.
HARMONY_STOP_TOKEN_IDS: tuple[int, ...] = STOP_TOKEN_IDS

FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """How to turn logits into a token.

    Attributes:
        temperature: Logits are divided by this before softmax. Must be > 0;
            use a small value (e.g. 1e-4) for near-greedy decoding.
        top_p: Keep the smallest set of most likely tokens whose probability
            sums to at least ``top_p`` (1.0 = keep all).
        top_k: Keep the ``top_k`` most likely tokens (0 or -1 = keep all).
        seed: Seed for this request's sampling; None = policy's own RNG state.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise PolicyConfigError(
                f"SamplingParams.temperature must be a finite number > 0, got "
                f"{self.temperature!r}; use a small value such as 1e-4 for near-greedy sampling."
            )
        if not 0.0 < self.top_p <= 1.0:
            raise PolicyConfigError(
                f"SamplingParams.top_p must be in (0, 1], got {self.top_p!r}; use 1.0 to disable."
            )
        if self.top_k < -1:
            raise PolicyConfigError(
                f"SamplingParams.top_k must be -1, 0 (both disable it) or positive, "
                f"got {self.top_k!r}."
            )


@dataclass(frozen=True, kw_only=True)
class SampleRequest:
    """One completion to sample.

    Attributes:
        prompt: The prompt token ids (the env's observation).
        max_tokens: The most tokens to sample; reaching it gives
            ``finish_reason == "length"``.
        params: Temperature, top-p, top-k, seed.
        stop_token_ids: Sampling stops after any of these tokens (the stop
            token is included in ``Sample.token_ids``). Defaults to harmony's
            ``<|return|>`` and ``<|call|>``.
        context: Optional episode context for policies that need more than
            tokens (the scripted oracle needs the task). The collector fills it
            only for policies whose ``wants_context`` is True; samplers ignore it.
    """

    prompt: Sequence[int]
    max_tokens: int
    params: SamplingParams = field(default_factory=SamplingParams)
    stop_token_ids: tuple[int, ...] = HARMONY_STOP_TOKEN_IDS
    context: Any = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise PolicyConfigError(
                f"SampleRequest.max_tokens must be >= 1, got {self.max_tokens!r}."
            )
        if len(self.prompt) == 0:
            raise PolicyConfigError(
                "SampleRequest.prompt is empty; pass the env's observation (token ids)."
            )


@dataclass(frozen=True, kw_only=True)
class Sample:
    """A sampled completion.

    Attributes:
        token_ids: The sampled tokens, including the stop token when
            ``finish_reason == "stop"``.
        logprobs: One float per token in ``token_ids``: the log-probability of
            that token under the processed sampling distribution (after
            temperature and top-k/top-p, renormalised).
        finish_reason: ``"stop"`` (a stop token was sampled), ``"length"``
            (``max_tokens`` reached) or ``"error"`` (nothing usable; see ``error``).
        error: What went wrong when ``finish_reason == "error"``, else None.
        exception: The exception behind ``error``, if the policy kept it
            (not compared, not serialised).
    """

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    error: str | None = None

    def __post_init__(self) -> None:
        if len(self.token_ids) != len(self.logprobs):
            raise PolicyConfigError(
                f"Sample has {len(self.token_ids)} token ids but {len(self.logprobs)} "
                "log-probs; a policy must return exactly one log-prob per token."
            )

    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def failed(cls, error: str | BaseException) -> Sample:
        """A sample that carries only an error (``finish_reason == "error"``).

        Args:
            error: The message, or the exception (kept for ``raise_for_error``).
        """
        exc = error if isinstance(error, BaseException) else None
        return cls(token_ids=[], logprobs=[], finish_reason="error", error=str(error), exception=exc)

    def raise_for_error(self) -> Sample:
        """Raise the error this sample carries, if any; return the sample otherwise.

        Raises:
            PolicyError: (or the subclass the policy recorded) when
                ``finish_reason == "error"``.
        """
        if self.finish_reason != "error":
            return self
        if self.exception is not None:
            raise self.exception
        raise PolicyError(self.error or "the policy returned an error sample without a message")


@dataclass(frozen=True, kw_only=True)
class EpisodeContext:
    """What the collector tells a ``wants_context`` policy about the episode.

    Attributes:
        task: The episode's task (the env's ``task``).
        env_id: The env id.
        episode_id: The episode's id in the run.
        turn: Index of the turn being sampled.
    """

    task: Any
    env_id: str
    episode_id: str
    turn: int


class Policy(abc.ABC):
    """Samples completions for token prompts.

    Subclasses override at least one of ``sample`` / ``asample``; the other is
    derived (``asample`` runs ``sample`` in a worker thread, ``sample`` runs
    ``asample`` in a fresh event loop). Results are in request order.

    A request the policy cannot serve on its own (a bad prompt, one server
    error) comes back as ``Sample.failed(...)``; an exception means the whole
    call failed (server down after all retries). The collector records either
    as an infrastructure fault of the episodes involved.

    Attributes:
        policy_id: What produced the samples (model name, server URL, "oracle").
        version: The weights version; trainers bump it after each update
            (``Episode.policy_version`` records it).
        wants_context: True if ``SampleRequest.context`` must be filled
            (scripted policies); samplers of real models leave it False.
    """

    policy_id: str = "policy"
    version: str = "0"
    wants_context: bool = False

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Sample one completion per request, in request order."""
        if type(self).asample is Policy.asample:
            raise NotImplementedError(f"{type(self).__name__} implements neither sample nor asample")
        return asyncio.run(self.asample(requests))

    async def asample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Async twin of ``sample``."""
        if type(self).sample is Policy.sample:
            raise NotImplementedError(f"{type(self).__name__} implements neither sample nor asample")
        return await asyncio.to_thread(self.sample, list(requests))

    def close(self) -> None:
        """Release resources (connections, GPU memory). Idempotent."""

    async def aclose(self) -> None:
        """Async twin of ``close``."""
        self.close()

    def __enter__(self) -> Policy:  # noqa: PYI034 - py3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Policy:  # noqa: PYI034
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(policy_id={self.policy_id!r}, version={self.version!r})"
