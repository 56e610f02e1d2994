"""``VLLMPolicy``: sample with an in-process vLLM engine (GPU; ``[gpu]`` extra).

Prompts go in as ``TokensPrompt`` (no text round trip); each request gets its
own ``SamplingParams`` with ``logprobs=0`` (the sampled token's log-prob only)
and the harmony stop token ids. The engine is built with
``logprobs_mode="processed_logprobs"`` so reported log-probs are those of the
distribution actually sampled from (after temperature and top-k/top-p), which
is what rollout correction compares the trainer's log-probs against.

``load_weights`` pushes new trainer weights into the running engine (same
process, colocated) and bumps ``version``; ``reload_weights`` re-reads them
from disk. This module is never imported by ``import trainers`` or the test
suite; it needs a CUDA GPU and ``vllm`` (checked on GPU machines only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from agent_envs.rollout.errors import PolicyUnavailableError
from agent_envs.rollout.policy import Policy, Sample, SampleRequest

__all__ = ["VLLMPolicy"]


class VLLMPolicy(Policy):
    """Samples with ``vllm.LLM`` and reports processed log-probs.

    Args:
        model: Hub id or local path (e.g. ``"openai/gpt-oss-20b"``).
        version: Initial weights version recorded in episodes.
        policy_id: Recorded in episodes (default: ``model``).
        **engine_kwargs: Passed to ``vllm.LLM`` (``tensor_parallel_size``,
            ``gpu_memory_utilization``, ``max_model_len``, ...).
            ``logprobs_mode`` defaults to ``"processed_logprobs"``.

    Raises:
        PolicyUnavailableError: vLLM is not installed.
    """

    def __init__(self, model: str, *, version: str = "0", policy_id: str | None = None,
                 **engine_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as e:
            raise PolicyUnavailableError(
                "VLLMPolicy needs vLLM (and a CUDA GPU): pip install 'agent-envs[gpu]'"
            ) from e
        self._vllm = vllm
        engine_kwargs.setdefault("logprobs_mode", "processed_logprobs")
        engine_kwargs.setdefault("skip_tokenizer_init", False)
        self.llm = vllm.LLM(model=model, **engine_kwargs)
        self.model = model
        self.policy_id = policy_id or model
        self.version = str(version)

    def _params(self, r: SampleRequest) -> Any:
        p = r.params
        return self._vllm.SamplingParams(
            n=1, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k if p.top_k > 0 else -1,
            seed=p.seed, max_tokens=r.max_tokens, stop_token_ids=list(r.stop_token_ids),
            logprobs=0, skip_special_tokens=False, detokenize=False,
        )

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Sample all requests in one ``LLM.generate`` call (see ``Policy.sample``)."""
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=[int(t) for t in r.prompt]) for r in requests]
        outputs = self.llm.generate(prompts, [self._params(r) for r in requests], use_tqdm=False)
        samples = []
        for out in outputs:
            comp = out.outputs[0]
            ids = list(comp.token_ids)
            lps = [float(step[tok].logprob) for tok, step in zip(ids, comp.logprobs or [])]
            if len(lps) != len(ids):
                samples.append(Sample.failed(
                    f"vLLM returned {len(ids)} tokens but {len(lps)} log-probs"))
                continue
            reason = "stop" if comp.finish_reason == "stop" else "length"
            samples.append(Sample(token_ids=ids, logprobs=lps, finish_reason=reason))
        return samples

    def load_weights(self, weights: Iterable[tuple[str, Any]], *, version: str | None = None
                     ) -> None:
        """Load ``(name, tensor)`` pairs into the engine's model in place.

        Args:
            weights: An iterator of ``(parameter name, tensor)`` in the HF
                checkpoint naming (e.g. ``model.named_parameters()`` of the trainer).
            version: The new weights version (default: the old one + 1 if numeric).
        """
        weights = list(weights)

        def _load(model: Any) -> None:
            model.load_weights(weights=weights)

        self.llm.apply_model(_load)
        self.llm.reset_prefix_cache()  # cached KV was computed with the old weights
        self.version = version if version is not None else _bump(self.version)

    def reload_weights(self, *, version: str | None = None) -> None:
        """Re-read the weights from ``model``'s path (after a trainer saved a checkpoint)."""
        self.llm.collective_rpc("reload_weights")
        self.llm.reset_prefix_cache()
        self.version = version if version is not None else _bump(self.version)

    def close(self) -> None:
        """Drop the engine (frees GPU memory once garbage collected)."""
        self.__dict__.pop("llm", None)


def _bump(version: str) -> str:
    return str(int(version) + 1) if version.isdigit() else version + "+1"
