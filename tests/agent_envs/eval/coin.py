"""A seeded coin-flip policy for eval tests: the oracle's answer, or a wrong one, by seed.

Each final answer is right or wrong by the parity of the turn's sampling seed, which derives
from (run seed, task id, trial, turn): a run reproduces itself exactly, and a resumed run
samples what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent_envs.oracle import Oracle
from agent_envs.rollout.policy import Policy, Sample, SampleRequest


class CoinPolicy(Policy):
    wants_context = True
    policy_id = "coin"
    version = "0"

    def __init__(self) -> None:
        self._right, self._wrong = Oracle(), Oracle(wrong=True)

    def sample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        out = []
        for r in requests:
            oracle = self._right if (r.params.seed or 0) % 2 == 0 else self._wrong
            ids = oracle.act(list(r.prompt), r.context.task)[: r.max_tokens]
            out.append(Sample(token_ids=ids, logprobs=[0.0] * len(ids), finish_reason="stop"))
        return out

    async def asample(self, requests: Sequence[SampleRequest]) -> list[Sample]:
        return self.sample(requests)


def make_policy() -> CoinPolicy:
    return CoinPolicy()
