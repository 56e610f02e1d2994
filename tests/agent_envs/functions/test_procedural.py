from __future__ import annotations

import json

import numpy as np
import pytest

import agent_envs
from agent_envs.envs.functions import ProceduralFunctionTasks
from agent_envs.envs.functions.oracle import call_text, final_text
from agent_envs.envs.functions.procedural import KNOBS
from agent_envs.errors import UnknownTaskError
from agent_envs.oracle import Oracle


def run(env, seed=None, oracle=None, task_id=None):
    """One oracle episode, checking prefix extension at every step."""
    oracle = oracle or Oracle()
    obs, info = env.reset(seed=seed, options={"task_id": task_id} if task_id else None)
    while True:
        action = oracle.act(obs, env.task)
        nxt, reward, term, trunc, info = env.step(action)
        if not info["new_segment"]:
            assert np.array_equal(nxt[: len(obs) + len(action)],
                                  np.concatenate([obs, np.asarray(action, dtype=np.int32)]))
        obs = nxt
        if term or trunc:
            return reward, info


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_oracle_solves_every_difficulty_and_wrong_policy_scores_zero(difficulty):
    env = agent_envs.make("functions", tasks="procedural", difficulty=difficulty)
    rewards = [run(env, seed)[0] for seed in range(32)]
    wrong = [run(env, seed, Oracle(wrong=True))[0] for seed in range(32)]
    assert sum(rewards) == 32, rewards
    assert sum(wrong) == 0


def test_difficulty_knobs_shape_the_tasks():
    for d, knobs in KNOBS.items():
        tasks = [ProceduralFunctionTasks(d).sample(s) for s in range(30)]
        changes = {"bank": {"transfer"}, "shop": {"place_order"}, "files": {"move_file"},
                   "calendar": {"create_event", "move_event"}}
        assert {t.toolset for t in tasks} == set(changes)
        for t in tasks:
            state_changes = [p for p in t.plan if p["name"] in changes[t.toolset]]
            assert len(state_changes) == knobs["actions"]
            assert len(t.configs) == 1 + knobs["distractors"]
            assert ("fail_once" in t.configs[t.toolset]) == knobs["failure"]
            assert t.question == knobs["question"]
            lookups = [p for p in t.plan if p["name"] in ("find_account", "search_products",
                                                          "list_files", "list_events")]
            if t.toolset != "calendar":  # a calendar goal may only add events: no lookup
                assert bool(lookups) == knobs["lookup"]


def test_failure_knob_makes_one_call_fail_and_recovery_is_rewarded():
    env = agent_envs.make("functions", tasks="procedural", difficulty=4)
    reward, _info = run(env, seed=3)
    assert reward == 1.0
    kinds = [c.error_kind for c in env.episode.calls]
    assert kinds.count("exception") == 1 and "503" in env.episode.calls[
        kinds.index("exception")].text


def test_goal_is_checked_on_state_not_on_words():
    env = agent_envs.make("functions", tasks="procedural", difficulty=1, sets=["bank"])
    env.reset(seed=0)
    task = env.task
    # claim success without acting: state unchanged -> 0
    *_, term, _, info = env.step(final_text("All done, I moved everything."))
    assert term and info["reward_components"] == {"correct": 0.0}
    assert info["verdict"]["reason"] == "final state differs from the goal"
    # act with a wrong argument -> 0
    env.reset(options={"task_id": task.id})
    step = dict(task.plan[-1])
    args = dict(step["arguments"])
    args["amount"] += 1
    env.step(call_text(step["name"], args))
    *_, info = env.step(final_text("Done."))
    assert info["reward_components"] == {"correct": 0.0}


def test_seeds_ids_and_splits():
    src = ProceduralFunctionTasks(3)
    a, b = src.sample(5, "train"), src.sample(5, "train")
    assert a == b and src.get(a.id) == a
    def key(t):
        return json.dumps([t.prompt, t.configs], sort_keys=True)

    test_tasks = {key(src.sample(s, "test")) for s in range(60)}
    train_tasks = {key(src.sample(s, "train")) for s in range(60)}
    assert not test_tasks & train_tasks
    assert len(train_tasks) > 50  # seeds give distinct tasks
    with pytest.raises(UnknownTaskError, match="malformed task id"):
        src.get("functions-procedural/v0/zoo/d1/train/0")
    with pytest.raises(ValueError, match="difficulty must be 1..5"):
        ProceduralFunctionTasks(9)
    with pytest.raises(ValueError, match="unknown tool set"):
        ProceduralFunctionTasks(1, sets=["garage"])


def test_no_state_leaks_between_episodes():
    env = agent_envs.make("functions", tasks="procedural", difficulty=2)
    run(env, seed=1)
    first = env.episode.instances[env.task.toolset]._state()
    env.reset(seed=1)
    fresh = env.episode.instances[env.task.toolset]._state()
    assert first != fresh and first == env.task.expected_state


def test_cli_rollout_functions(capsys):
    from agent_envs.cli import main
    assert main(["rollout", "functions", "--tasks", "procedural", "--episodes", "4",
                 "--difficulty", "3", "--quiet", "--transcripts", "1", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "solved         4/4 (100.0%)" in out and "-> functions." in out


def test_cli_rollout_functions_on_bfcl(capsys):
    pytest.importorskip("bfcl_eval", reason="BFCL tasks need the bfcl-eval package")
    from agent_envs.cli import main
    assert main(["rollout", "functions", "--tasks", "bfcl:simple_python", "--episodes", "3",
                 "--quiet", "--transcripts", "0"]) == 0
    assert "solved         3/3" in capsys.readouterr().out
