"""Our reward agrees with τ²'s evaluator, field for field, on the oracle's conversations and on
systematically mutated ones (wrong argument, missing write, extra write, swapped writes,
nothing said to the user, τ²'s error limit).

Here: every mock task and a seeded sample of retail and airline tasks (one in each with two
writes or more, so the order of writes is exercised). Every task of every served domain:
``python benchmarks/tau2_agreement.py`` (its numbers are in docs/tau2.md).
"""

from __future__ import annotations

import random

import pytest

from agent_envs.envs.tau2 import Tau2Env
from agent_envs.envs.tau2.data import domain
from agent_envs.envs.tau2.plan import oracle_plan
from agent_envs.envs.tau2.tasks import task_id
from agent_envs.envs.tau2.verifier import ASSERTION_RAISES
from tests.agent_envs.tau2.agreement import cases_for, run_case

_ENVS: dict[str, Tau2Env] = {}


def _env(name: str) -> Tau2Env:
    if name not in _ENVS:
        _ENVS[name] = Tau2Env(task_source=name)
    return _ENVS[name]


def _sample(name: str, k: int, seed: int = 0) -> list[str]:
    dom = domain(name)
    ids = sorted(dom.tasks)
    rng = random.Random(f"{seed}:{name}")
    types = dom.tool_types
    multi = [i for i in ids if sum(types.get(n) == "write" for turn in oracle_plan(
        dom.task(i), name).agent for n, _ in turn.calls) >= 2]
    picked = [rng.choice(multi)]
    picked += rng.sample([i for i in ids if i not in picked], k - 1)
    return [task_id(name, i) for i in picked]


SAMPLE = ([("mock", task_id("mock", i)) for i in sorted(domain("mock").tasks)]
          + [("retail", t) for t in _sample("retail", 3)]
          + [("airline", t) for t in _sample("airline", 2)])


CASES = [(name, tid, case) for name, tid in SAMPLE for case in cases_for(_env(name), tid)]


@pytest.mark.parametrize(("name", "tid", "case"), CASES, ids=[f"{t}-{c}" for _, t, c in CASES])
def test_our_reward_info_is_taus_on_the_oracle_and_its_mutations(name: str, tid: str,
                                                                  case: str) -> None:
    r = run_case(_env(name), tid, case)
    if case == "oracle":
        assert r.ours["reward"] == 1.0
    if r.divergence is not None:
        assert r.divergence == ASSERTION_RAISES and r.ours["reward"] == 0.0
        return
    assert r.error is None, f"{tid} {case}: τ²'s evaluator raised {r.error}"
    assert r.ours == r.theirs, f"{tid} {case}: {r.ours} != {r.theirs}"


def test_the_sample_exercises_every_mutation() -> None:
    seen = {case for _, _, case in CASES}
    assert seen == {"oracle", "wrong_argument", "missing_write", "extra_write",
                    "swapped_writes", "silent", "too_many_errors"}


def test_the_one_divergence_an_env_assertion_that_raises() -> None:
    """τ²'s evaluator raises when an env assertion's subject is missing (the agent never made
    the task it asserts on); ours counts the assertion as not met: reward 0."""
    r = run_case(_env("mock"), "mock_create_task_1_with_env_assertions", "missing_write")
    assert r.error == "ValueError: Task task_2 not found"
    assert r.divergence == ASSERTION_RAISES
    assert r.ours["reward"] == 0.0 and r.ours["env_assertions"][0]["met"] is False
