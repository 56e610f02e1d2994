"""The oracle's plan, its mutations, and the mistake oracle-wrong makes."""

from __future__ import annotations

import pytest

from agent_envs.envs.tau2.data import domain
from agent_envs.envs.tau2.plan import (
    EXTRA_WRITES,
    NO_SUCH_FUNCTION,
    applicable_mutations,
    end_hashes,
    mutate,
    oracle_plan,
    wrong_mutation,
)
from agent_envs.envs.tau2.verifier import gold_hashes
from tests.agent_envs.tau2.tau2_reference import Results  # noqa: F401  (skip without τ², stub litellm)


def plan_of(name: str, tid: str):  # type: ignore[no-untyped-def]
    return oracle_plan(domain(name).task(tid), name)


def test_the_plan_asks_before_each_write_and_stops() -> None:
    plan = plan_of("retail", "0")
    assert plan.opening is not None and "Yusuf Rossi" in plan.opening
    assert [len(t.calls) for t in plan.agent] == [4, 1]  # reads, then the write once agreed
    assert plan.agent[0].say.endswith("Do you want me to go ahead?")
    assert plan.agent[1].calls[0][0] == "exchange_delivered_order_items"
    assert plan.replies == ("Yes, please go ahead.", "Thank you, that is all. ###STOP###")
    assert plan_of("retail", "50").replies[-1] == "Thank you. ###TRANSFER###"
    assert "polyester; cotton" in plan_of("retail", "24").agent[-1].say  # communicate_info
    # A task with assertions and no actions: the calls that make them hold.
    calls = [c for t in plan_of("mock", "update_task_with_history_and_env_assertions").agent
             for c in t.calls]
    assert calls == [("update_task_status", {"task_id": "task_2", "status": "completed"})]
    assert plan_of("mock", "update_task_with_message_history").opening is not None


def test_each_mutation_changes_what_it_says() -> None:
    plan = plan_of("retail", "13")  # two writes
    assert applicable_mutations(plan, "retail") == [
        "wrong_argument", "missing_write", "extra_write", "swapped_writes", "silent",
        "too_many_errors"]
    writes = [c for t in plan.agent for c in t.calls if c[0] == "return_delivered_order_items"]

    def calls(p):  # type: ignore[no-untyped-def]
        return [c for t in p.agent for c in t.calls]

    wrong = calls(mutate(plan, "wrong_argument", "retail"))
    assert wrong.count(writes[0]) == 0 and wrong.count(writes[1]) == 1
    assert calls(mutate(plan, "missing_write", "retail")).count(writes[1]) == 0
    extra = calls(mutate(plan, "extra_write", "retail"))
    assert extra[-1] == EXTRA_WRITES["retail"](next(iter(
        domain("retail").new_environment().tools.db.users)))
    swapped = [c for c in calls(mutate(plan, "swapped_writes", "retail")) if c in writes]
    assert swapped == writes[::-1]
    silent = mutate(plan, "silent", "retail")
    assert {t.say for t in silent.agent} == {"OK."} and calls(silent) == calls(plan)
    assert calls(mutate(plan, "too_many_errors", "retail", max_errors=4))[:4] == \
        [(NO_SUCH_FUNCTION, {})] * 4
    assert len(mutate(plan, "silent", "retail").replies) == len(plan.replies)  # same turns
    with pytest.raises(ValueError, match="swapped_writes needs two writes"):
        mutate(plan_of("retail", "0"), "swapped_writes", "retail")


def test_oracle_wrong_hits_a_write_that_changes_the_database() -> None:
    # retail_12's expected write fails in τ² too (the gold database does not change), so a wrong
    # argument there would change nothing: the mistake must leave another database.
    task = domain("retail").task("12")
    plan = oracle_plan(task, "retail")
    mutation, write = wrong_mutation(task, plan, "retail")
    assert end_hashes(plan, task, "retail") == gold_hashes("retail", "12")
    assert end_hashes(mutate(plan, mutation, "retail", write=write), task, "retail") != \
        gold_hashes("retail", "12")
    assert wrong_mutation(domain("retail").task("0"), plan_of("retail", "0"), "retail") == \
        ("wrong_argument", 0)
    no_writes = domain("retail").task("24")
    assert wrong_mutation(no_writes, oracle_plan(no_writes, "retail"), "retail") == \
        ("extra_write", None)
    nothing = domain("mock").task("create_task_1_nl_eval")  # no criterion a stop can miss
    assert wrong_mutation(nothing, oracle_plan(nothing, "mock"), "mock") == \
        ("too_many_errors", None)
