"""Scripted policies: no model, no torch.

- ``OraclePolicy``: ``agent_envs.oracle.Oracle`` behind the ``Policy`` interface. The oracle
  writes correct harmony completions for tasks with a reference solution; it needs the task,
  so it sets ``wants_context`` and reads ``request.context.task`` (the collector fills it).
  Its log-probs are 0.0 (it is deterministic). Use it to test environments end to end and to
  benchmark everything but the model.
- ``FunctionPolicy``: a policy from a plain Python function (tests, demos, baselines).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agent_envs.rollout.errors import PolicyConfigError
from agent_envs.rollout.policy import EpisodeContext, Policy, Sample, SampleRequest

__all__ = ["EpisodeContext", "FunctionPolicy", "OraclePolicy"]


class OraclePolicy(Policy):
    """Scripted, correct (or, with ``wrong=True``, deliberately wrong) completions.

    Args:
        wrong: Give an answer of the right shape that is off (reward 0).
        version: Recorded in episodes.
    """

    wants_context = True

    def __init__(self, *, wrong: bool = False, version: str = "0") -> None:
        from agent_envs.oracle import Oracle  # the dispatcher imports every family's oracle

        self._oracle = Oracle(wrong=wrong)
        self.policy_id = "oracle-wrong" if wrong else "oracle"
        self.version = str(version)

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Write the oracle's completion for each request (see ``Policy.sample``)."""
        out = []
        for r in requests:
            task = getattr(r.context, "task", None)
            if task is None:
                raise PolicyConfigError(
                    "OraclePolicy needs request.context.task (an EpisodeContext); the "
                    "RolloutCollector fills it because OraclePolicy.wants_context is True. "
                    "Pass context=EpisodeContext(task=env.task, ...) when calling it yourself."
                )
            ids = self._oracle.act(list(r.prompt), task)[: r.max_tokens]
            reason = "stop" if ids and ids[-1] in r.stop_token_ids else "length"
            out.append(Sample(token_ids=ids, logprobs=[0.0] * len(ids), finish_reason=reason))
        return out

    async def asample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        """Same as ``sample`` on the event loop (the oracle is fast and CPU-light)."""
        return self.sample(requests)


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
