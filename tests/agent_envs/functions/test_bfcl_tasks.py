from __future__ import annotations

import pytest

import agent_envs
from agent_envs.envs.functions.bfcl import (
    BfclTasks,
    bfcl_overall,
    data,
    ground_truth_calls,
    quarantine,
)
from agent_envs.envs.functions.oracle import call_text, final_text
from agent_envs.errors import DatasetError
from agent_envs.harmony import get_codec
from agent_envs.oracle import Oracle

pytest.importorskip("bfcl_eval", reason="BFCL tasks need the bfcl-eval package")


def run(env, task_id, oracle):
    obs, info = env.reset(options={"task_id": task_id})
    while True:
        obs, reward, term, trunc, info = env.step(oracle.act(obs, env.task))
        if term or trunc:
            return reward, info


def _sample(category, every):
    return [t.id for i, t in enumerate(BfclTasks([category])) if i % every == 0]


@pytest.fixture(scope="module")
def envs():
    cache = {}

    def get(category):
        if category not in cache:
            cache[category] = agent_envs.make("functions", tasks=f"bfcl:{category}",
                                              max_turns=200, max_tokens=1_000_000)
        return cache[category]
    return get


def test_every_category_is_served_with_the_issue_counts():
    counts = {c: len(data.entries(c)) for c in data.CATEGORIES}
    assert sum(counts[c] for c in ("simple_python", "multiple", "parallel",
                                   "parallel_multiple")) == 1000
    assert sum(counts[c] for c in data.AST_CATEGORIES if c.startswith("live_")) == 1351
    assert sum(counts[c] for c in data.RELEVANCE_CATEGORIES) == 1140
    assert sum(counts[c] for c in data.MULTI_TURN_CATEGORIES) == 800
    with pytest.raises(DatasetError, match="unknown BFCL category 'simple_cobol'"):
        BfclTasks(["simple_cobol"])


@pytest.mark.parametrize("category", data.CATEGORIES)
def test_oracle_scores_every_category_on_a_sample_and_wrong_policy_zero(envs, category):
    env = envs(category)
    every = 25 if category in data.MULTI_TURN_CATEGORIES else 10
    ids = _sample(category, every)
    skip = quarantine()
    good = [run(env, i, Oracle())[0] for i in ids if i not in skip]
    bad = [run(env, i, Oracle(wrong=True))[0] for i in ids[:12]]
    assert good and sum(good) == len(good)
    assert sum(bad) == 0


def test_quarantined_entries_fail_for_the_stated_reason(envs):
    entries = quarantine()
    assert len(entries) >= 5 and all(len(r) > 30 for r in entries.values())
    for task_id, reason in entries.items():
        category = task_id.rsplit("_", 1)[0]
        env = envs(category)
        reward, _info = run(env, task_id, Oracle())
        assert reward == 0.0, task_id
        if "violates its own schema" in reason:
            assert any(c.error_kind == "schema" for c in env.episode.calls)
            # the same ground truth passes once validation is off: the schema is at fault
            off = agent_envs.make("functions", tasks=f"bfcl:{category}", validation="off",
                                  max_turns=200, max_tokens=1_000_000)
            assert run(off, task_id, Oracle())[0] == 1.0
        elif "BFCL's own check rejects" in reason:
            from tests.agent_envs.functions.bfcl_reference import bfcl_ast_valid
            task = env.task
            calls = ground_truth_calls(task.docs, task.answers, category)
            assert not bfcl_ast_valid(list(task.docs), calls, list(task.answers), category)
        else:
            assert "before that function is declared" in reason
            assert any(c.error_kind == "unknown_function" for c in env.episode.calls)


@pytest.mark.sweep
def test_quarantine_is_exactly_what_the_oracle_fails():
    from agent_envs.envs.functions.bfcl.quarantine import find_quarantine
    assert find_quarantine(progress=False) == quarantine()


def test_dotted_names_are_mapped_and_scored_under_their_bfcl_name(envs):
    env = envs("simple_python")
    obs, info = env.reset(options={"task_id": "simple_python_1"})
    assert info["functions"]["renamed"] == {"math.factorial": "math_factorial"}
    assert "type math_factorial = " in get_codec().decode(obs)
    env.step(call_text("math_factorial", {"number": 5}))
    *_, term, _, info = env.step(final_text("120"))
    assert term and info["verdict"]["correct"]
    assert env.episode.calls[0].name == "math.factorial"


def test_ast_scoring_counts_every_decodable_call(envs):
    env = envs("simple_python")
    env.reset(options={"task_id": "simple_python_1"})
    env.step(call_text("math_factorial", {"number": "5"}))  # refused by validation ...
    env.step(call_text("math_factorial", {"number": 5}))    # ... and retried
    *_, info = env.step(final_text("120"))
    # BFCL scores one response: two calls where one is expected is wrong
    assert info["verdict"]["correct"] is False and "wrong_count" in info["verdict"]["reason"]


def test_irrelevance_rewards_not_calling(envs):
    env = envs("irrelevance")
    task_id = "irrelevance_0"
    env.reset(options={"task_id": task_id})
    *_, info = env.step(final_text("I cannot do that with these functions."))
    assert info["verdict"]["correct"] is True
    env.reset(options={"task_id": task_id})
    env.step(call_text("determine_body_mass_index", {"weight": 1.0, "height": 1.0}))
    *_, info = env.step(final_text("done"))
    assert info["verdict"]["correct"] is False


def test_multi_turn_backends_are_fresh_each_episode(envs):
    env = envs("multi_turn_base")
    task_id = "multi_turn_base_0"
    reward, info = run(env, task_id, Oracle())
    assert reward == 1.0 and info["episode"]["segments"] == len(env.task.ground_truth)
    fs = env.episode.instances["GorillaFileSystem"]
    assert "temp" in fs.root.contents["document"].contents
    env.reset(options={"task_id": task_id})
    fresh = env.episode.instances["GorillaFileSystem"]
    assert fresh is not fs and "temp" not in fresh.root.contents["document"].contents


def test_miss_func_declares_the_held_out_function_at_its_turn(envs):
    env = envs("multi_turn_miss_func")
    obs, _ = env.reset(options={"task_id": "multi_turn_miss_func_0"})
    assert "type sort = " not in get_codec().decode(obs)
    text = call_text("sort", {"file_name": "final_report.pdf"})
    obs, *_, info = env.step(text)
    assert info["functions"]["errors"] == {"unknown_function": 1}
    oracle = Oracle()
    seen_added = False
    while True:
        obs, _reward, term, trunc, info = env.step(oracle.act(obs, env.task))
        if info["new_segment"] and "type sort = " in get_codec().decode(obs):
            seen_added = True
            assert "I have updated some more functions" in get_codec().decode(obs)
        if term or trunc:
            break
    assert seen_added


def test_overall_score_matches_bfcl_formulas():
    import tests.agent_envs.functions.bfcl_reference  # noqa: F401  (stubs model_config)
    helper = pytest.importorskip("bfcl_eval.eval_checker.eval_runner_helper")
    scores = {c: (i * 7 % 11 + 3, 15) for i, c in enumerate(data.CATEGORIES)}

    def cat(c):
        n = scores[c]
        return {"accuracy": n[0] / n[1], "total_count": n[1], "display_accuracy": n[0] / n[1]}

    unweighted = helper.calculate_unweighted_accuracy
    non_live = unweighted([unweighted([cat("simple_python")]), cat("multiple"), cat("parallel"),
                           cat("parallel_multiple")])
    live = helper.calculate_weighted_accuracy([cat(c) for c in (
        "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")])
    irrelevance = unweighted([cat("irrelevance"), cat("live_irrelevance")])
    multi = unweighted([cat(c) for c in data.MULTI_TURN_CATEGORIES])
    agentic = {"accuracy": 0.0, "total_count": 0, "display_accuracy": "N/A"}
    overall = helper.calculate_percentage_weighted_accuracy(
        [non_live, live, irrelevance, multi, agentic], [10, 10, 10, 30, 40],
        display_na_if_category_missing=False)
    ours = bfcl_overall(scores)
    assert ours["non_live_ast"] == pytest.approx(non_live["accuracy"])
    assert ours["live_ast"] == pytest.approx(live["accuracy"])
    assert ours["irrelevance"] == pytest.approx(irrelevance["accuracy"])
    assert ours["multi_turn"] == pytest.approx(multi["accuracy"])
    assert ours["overall"] == pytest.approx(overall["accuracy"])
    assert ours["overall_served"] == pytest.approx(overall["accuracy"] / 0.6)


def test_score_report_counts_per_category_and_skips_quarantine_on_request():
    from agent_envs.envs.functions.bfcl import category_of, score_report
    assert category_of("live_simple_3-2-1") == "live_simple"
    assert category_of("simple_python_7") == "simple_python"
    assert category_of("multi_turn_miss_func_49") == "multi_turn_miss_func"
    with pytest.raises(ValueError, match="not the id of an entry"):
        category_of("memory_0-customer-0")
    q = next(iter(quarantine()))
    rewards = {"simple_python_0": 1.0, "simple_python_1": 0.0, "irrelevance_3": 1.0, q: 0.0}
    rep = score_report(rewards)
    assert rep["categories"]["simple_python"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert rep["categories"][category_of(q)]["total"] == 1
    assert category_of(q) not in score_report(rewards, skip_quarantined=True)["categories"]
    assert rep["overall"] == pytest.approx(bfcl_overall(
        {"simple_python": (1, 2), "irrelevance": (1, 1), category_of(q): (0, 1)})["overall"])


def test_bfcl_documents_are_valid_json_schema_when_first_called():
    """BFCL declares its tools unchecked (thousands per manifest build); the schema is checked
    when a tool is first called. A seeded sample of every category's documents passes the
    meta-schema check, and a broken document still fails with the tool's name at that point."""
    from agent_envs.envs.functions.tools import tool_from_schema

    checked, invalid = 0, []
    for category in data.CATEGORIES:
        for entry in data.entries(category)[::25]:
            for doc in entry.get("function") or []:
                try:
                    tool_from_schema(doc, check=False).validator("strict")
                except ValueError as e:
                    invalid.append((entry["id"], doc.get("name"), str(e)))
                checked += 1
    assert checked > 100 and invalid == []
    broken = {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": 5}}}}
    lazy = tool_from_schema(broken, check=False)  # accepted unchecked ...
    with pytest.raises(ValueError, match="invalid parameter schema"):
        lazy.validator("strict")  # ... and refused when first used
    with pytest.raises(ValueError, match="tool 'f': invalid parameter schema"):
        tool_from_schema(broken)
