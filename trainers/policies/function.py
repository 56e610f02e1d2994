"""``FunctionPolicy``: a policy from a plain Python function (tests, demos, baselines)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from trainers.policies.base import Policy, Sample, SampleRequest

__all__ = ["FunctionPolicy"]


class FunctionPolicy(Policy):
    """Answers each request with ``fn(request)``.

    ``fn`` returns a ``Sample``, or a list of token ids (log-probs 0.0, finish
    reason ``"stop"`` if the last token is a stop token of the request, else
    ``"length"``). An exception from ``fn`` becomes ``Sample.failed``.

    Args:
        fn: The function.
        policy_id: Recorded in episodes.
        version: Recorded in episodes.
        wants_context: Whether the collector must fill ``SampleRequest.context``.
    """

    def __init__(
        self,
        fn: Callable[[SampleRequest], Sample | Sequence[int]],
        *,
        policy_id: str = "function",
        version: str = "0",
        wants_context: bool = False,
    ) -> None:
        self.fn = fn
        self.policy_id = policy_id
        self.version = str(version)
        self.wants_context = wants_context

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Call ``fn`` on each request (see ``Policy.sample``)."""
        out = []
        for r in requests:
            try:
                got = self.fn(r)
            except Exception as e:  # noqa: BLE001 - a broken script is that request's failure, not the run's
                out.append(Sample.failed(f"{type(e).__name__}: {e}"))
                continue
            if isinstance(got, Sample):
                out.append(got)
                continue
            ids = [int(t) for t in got][: r.max_tokens]
            reason = "stop" if ids and ids[-1] in r.stop_token_ids else "length"
            out.append(Sample(token_ids=ids, logprobs=[0.0] * len(ids), finish_reason=reason))
        return out

    async def asample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Same as ``sample``, on the event loop (``fn`` must be fast)."""
        return self.sample(requests)
