"""Stand-ins for what verl's agent loop talks to that cannot run here (no GPU, no vLLM).

- :class:`FakeLoadBalancer` and :class:`FakeVLLMServer` take the place of the two Ray
  actors behind verl's ``LLMServerClient`` (the global load balancer and a vLLM
  server replica). verl's own ``LLMServerClient.generate`` runs unmodified on top of
  them; the fake server checks ``sampling_params`` the way vLLM's ``SamplingParams``
  would (unknown keys are an error) and records every call.
- :class:`PromptSeededSampler`: the tiny gpt-oss sampler (``TransformersPolicy``), seeded
  by the prompt's tokens, so that the same prompt gives the same completion whether it
  is sampled through verl or in-process by our collector.
- :class:`ScriptedSampler`: completions written in harmony text, per turn (scenarios a
  random model cannot produce: a final answer, a tool call).
- :class:`BrokenSandboxEnv`: python-tool whose sandbox is closed before the episode (a
  real infrastructure fault on the real tool path).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from verl.workers.rollout.replica import TokenOutput

from agent_envs.rollout.policy import Policy, Sample, SampleRequest, SamplingParams

#: The keys vLLM's ``SamplingParams`` accepts that verl's vLLM server passes through
#: (``max_tokens`` and ``logprobs`` are rewritten by the server first).
VLLM_SAMPLING_KEYS = frozenset({
    "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
    "frequency_penalty", "seed", "stop", "stop_token_ids", "ignore_eos", "max_tokens",
    "logprobs", "prompt_logprobs", "n", "skip_special_tokens",
})


def prompt_seed(prompt: Sequence[int]) -> int:
    """A sampling seed that depends only on the prompt's token ids."""
    h = hashlib.blake2b(repr([int(t) for t in prompt]).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") % (2**31 - 1)


class PromptSeededSampler(Policy):
    """Wraps a policy; each request is sampled with ``seed = prompt_seed(prompt)``."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.policy_id = inner.policy_id

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        return self.inner.sample([
            dataclasses.replace(r, params=dataclasses.replace(r.params, seed=prompt_seed(r.prompt)))
            for r in requests])


class ScriptedSampler(Policy):
    """Completions written in harmony text by ``script(prompt_text)``; log-prob -0.5 per token."""

    def __init__(self, script: Callable[[str], str]) -> None:
        from agent_envs.harmony import get_codec

        self.codec = get_codec()
        self.script = script

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        out = []
        for r in requests:
            ids = self.codec.encode(self.script(self.codec.decode(r.prompt)))[: r.max_tokens]
            reason = "stop" if ids[-1] in r.stop_token_ids else "length"
            out.append(Sample(token_ids=ids, logprobs=[-0.5] * len(ids), finish_reason=reason))
        return out


class _Remote:
    """``actor.method.remote(...)`` for a plain coroutine function or function."""

    def __init__(self, fn: Any) -> None:
        self.remote = fn


class FakeVLLMServer:
    """A vLLM server replica as verl's client sees it: ``generate.remote(...) -> TokenOutput``.

    Mirrors verl's ``vLLMHttpServer.generate``: ``max_tokens`` and ``logprobs`` are taken
    out of ``sampling_params``, the rest must be valid ``SamplingParams`` fields.
    """

    def __init__(self, sampler: Policy) -> None:
        self.sampler = sampler
        self.calls: list[dict[str, Any]] = []
        self.generate = _Remote(self._generate)

    async def _generate(self, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                        request_id: str, image_data: Any = None, video_data: Any = None,
                        **kwargs: Any) -> TokenOutput:
        params = dict(sampling_params)
        unknown = set(params) - VLLM_SAMPLING_KEYS
        if unknown:
            raise TypeError(f"SamplingParams got unexpected keyword arguments {sorted(unknown)}")
        self.calls.append({"prompt_ids": list(prompt_ids), "sampling_params": dict(params),
                           "request_id": request_id})
        max_tokens = int(params.pop("max_tokens"))
        want_logprobs = bool(params.pop("logprobs", False))
        temperature = float(params.get("temperature", 1.0))
        sp = SamplingParams(temperature=temperature if temperature > 0 else 1e-4,
                            top_p=float(params.get("top_p", 1.0)),
                            top_k=int(params.get("top_k", -1)))
        stop = tuple(int(t) for t in params.get("stop_token_ids") or ())
        req = SampleRequest(prompt=list(prompt_ids), max_tokens=max_tokens, params=sp,
                            stop_token_ids=stop)
        [s] = await self.sampler.asample([req])
        return TokenOutput(token_ids=s.token_ids, log_probs=s.logprobs if want_logprobs else None,
                           stop_reason="completed", extra_fields={"global_steps": 1})


class FakeLoadBalancer:
    """verl's ``GlobalRequestLoadBalancer`` actor, with one server."""

    def __init__(self, server: FakeVLLMServer) -> None:
        self.server = server
        self.released: list[str] = []
        self.require_acquire_fields = _Remote(self._fields)
        self.require_release_fields = _Remote(self._release_fields)
        self.acquire_server = _Remote(self._acquire)
        self.release_server = _Remote(self._release)

    async def _fields(self) -> list[str]:
        return []

    async def _release_fields(self) -> list[str]:
        return ["request_id"]

    async def _acquire(self, request_id: str, **fields: Any) -> tuple[str, FakeVLLMServer]:
        return "server-0", self.server

    def _release(self, server_id: str, **fields: Any) -> None:
        self.released.append(server_id)


def _broken_sandbox() -> Any:
    from sandboxes import Limits, make_sandbox

    sandbox = make_sandbox("local", limits=Limits(timeout_s=5))
    sandbox.close()  # a sandbox that can no longer open sessions
    return sandbox


def make_broken_sandbox_env(**kwargs: Any) -> Any:
    """python-tool whose sandbox is already closed: the first tool call is an infra fault."""
    from agent_envs.envs.python_tool import PythonToolEnv

    return PythonToolEnv(sandbox_instance=_broken_sandbox(), **kwargs)


class BrokenSandboxEnv:
    """Entry point (``verl_fakes:BrokenSandboxEnv``) for a registered broken-sandbox env."""

    def __new__(cls, **kwargs: Any) -> Any:
        return make_broken_sandbox_env(**kwargs)
