"""``OraclePolicy``: ``agent_envs.oracle.Oracle`` behind the ``Policy`` interface.

The oracle writes correct harmony completions for tasks with a reference
solution; it needs the task, so it sets ``wants_context`` and reads
``request.context.task`` (the collector fills it). Its log-probs are 0.0
(it is deterministic). Use it to test environments end to end and to
benchmark everything but the model.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainers.policies.base import EpisodeContext, Policy, Sample, SampleRequest
from trainers.policies.errors import PolicyConfigError

__all__ = ["EpisodeContext", "OraclePolicy"]


class OraclePolicy(Policy):
    """Scripted, correct (or, with ``wrong=True``, deliberately wrong) completions.

    Args:
        wrong: Give an answer of the right shape that is off (reward 0).
        version: Recorded in episodes.
    """

    wants_context = True

    def __init__(self, *, wrong: bool = False, version: str = "0") -> None:
        from agent_envs.oracle import Oracle

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
