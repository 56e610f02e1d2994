"""The tau2 env's contract: τ²'s conversation in harmony, τ²'s tools and end conditions."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import openai_harmony as oh
import pytest

import agent_envs
from agent_envs.envs.tau2 import CassetteUser, Tau2Env, Tau2Error, Tau2Oracle
from agent_envs.envs.tau2.conversation import GREETING
from agent_envs.envs.tau2.data import domain
from agent_envs.envs.tau2.judge import JUDGE_OFF
from agent_envs.envs.tau2.plan import oracle_plan
from agent_envs.envs.tau2.user import UserSimulatorError
from agent_envs.harmony import get_codec, message_text
from tests.agent_envs.tau2.tau2_reference import Results  # noqa: F401  (skip without τ², stub litellm)


def call(name: str, args: dict[str, Any]) -> str:
    return (f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"
            f"{json.dumps(args)}<|call|>")


def say(text: str) -> str:
    return f"<|channel|>final<|message|>{text}<|return|>"


def run(env: Tau2Env, oracle: Tau2Oracle, task_id: str) -> tuple[list[dict[str, Any]], Any]:
    obs, info = env.reset(options={"task_id": task_id})
    infos = [info]
    while True:
        obs, reward, term, trunc, info = env.step(oracle.act_text(obs, env.task))
        infos.append(info)
        if term or trunc:
            return infos, (reward, term, trunc)


@pytest.fixture(scope="module")
def retail() -> Tau2Env:
    env = agent_envs.make("tau2", task_source="retail")
    yield env
    env.close()


def test_the_opening_is_taus_greeting_then_the_users_first_message(retail: Tau2Env) -> None:
    obs, info = retail.reset(options={"task_id": "retail_0"})
    msgs = get_codec().parse_conversation(obs)
    roles = [(m.author.role, m.channel) for m in msgs]
    assert roles == [(oh.Role.SYSTEM, None), (oh.Role.DEVELOPER, None),
                     (oh.Role.ASSISTANT, "final"), (oh.Role.USER, None)]
    developer = get_codec().decode(get_codec().render_message(msgs[1]))
    assert "<policy>" in developer and domain("retail").policy.strip()[:200] in developer
    assert "type exchange_delivered_order_items = (_: {" in developer
    assert message_text(msgs[2]) == GREETING
    plan = oracle_plan(retail.task.tau2_task(), "retail")
    assert message_text(msgs[3]) == plan.opening
    assert tuple(obs[-2:]) == get_codec().assistant_header
    assert info["tau2"] == {"steps": 1, "errors": 0, "termination": None}


def test_a_call_runs_on_taus_environment_and_shows_taus_tool_message(retail: Tau2Env) -> None:
    from tau2.data_model.message import ToolCall

    obs, _ = retail.reset(options={"task_id": "retail_0"})
    args = {"first_name": "Yusuf", "last_name": "Rossi", "zip": "19122"}
    action = get_codec().encode(call("find_user_id_by_name_zip", args))
    nxt, reward, term, trunc, info = retail.step(action)
    assert list(nxt[:len(obs) + len(action)]) == list(obs) + action  # prefix extension
    tool = get_codec().parse_conversation(nxt)[-1]
    assert tool.author.name == "functions.find_user_id_by_name_zip"
    assert tool.channel == "commentary"
    fresh = domain("retail").new_environment().get_response(
        ToolCall(id="x", name="find_user_id_by_name_zip", arguments=args))
    assert message_text(tool) == fresh.content == "yusuf_rossi_9620"
    assert info["tool_outcome"]["ok"] and not (term or trunc) and reward == 0.0
    assert info["tau2"]["steps"] == 3  # the user's message, the call, the result
    _, _, _, _, info = retail.step(call("get_order_details", {"order_id": "#W0"}))
    assert info["tau2"]["errors"] == 1 and info["functions"]["errors"] == {"tau2_error": 1}
    assert retail.episode.tau2_calls[-1].content == "Error: Order not found"


def test_every_episode_gets_a_fresh_database(retail: Tau2Env) -> None:
    cancel = {"order_id": "#W2378156", "reason": "no longer needed"}
    for expect_ok in (True, True):
        retail.reset(options={"task_id": "retail_0"})
        retail.step(call("get_order_details", {"order_id": "#W2378156"}))
        status = json.loads(retail.episode.tau2_calls[-1].content)["status"]
        assert status == "delivered"  # the same on every reset, whatever came before
        retail.step(call("cancel_pending_order", cancel))
        assert retail.episode.tau2_calls[-1].error is expect_ok  # delivered: cannot cancel
        retail.step(call("modify_user_address", {
            "user_id": "yusuf_rossi_9620", "address1": "1 A St", "address2": "", "city": "B",
            "state": "CA", "country": "USA", "zip": "00001"}))
        assert not retail.episode.tau2_calls[-1].error


def test_the_oracle_conversation_is_scored_by_taus_rules(retail: Tau2Env) -> None:
    infos, (reward, term, trunc) = run(retail, Tau2Oracle(), "retail_0")
    plan = oracle_plan(retail.task.tau2_task(), "retail")
    assert (reward, term, trunc) == (1.0, True, False)
    assert sum(i["new_segment"] for i in infos) == len(plan.agent) - 1  # one per user reply
    end = infos[-1]
    assert end["verdict"]["correct"] and end["reward_components"] == {"correct": 1.0}
    rec = end["episode"]["tau2"]
    assert rec["termination_reason"] == "user_stop" and rec["tau2_id"] == "0"
    assert rec["record"][0] == {"role": "assistant", "content": GREETING}
    assert rec["record"][-1]["content"].endswith("###STOP###")
    assert rec["reward"]["reward_breakdown"] == {"DB": 1.0, "COMMUNICATE": 1.0}
    assert end["episode"]["user_simulator"] == {"kind": "scripted", "script": "oracle-plan-1"}
    assert end["episode"]["judge"] == JUDGE_OFF
    assert retail.reward_info is not None and retail.reward_info["reward"] == 1.0


def test_a_transfer_ends_the_conversation(retail: Tau2Env) -> None:
    infos, (reward, term, _) = run(retail, Tau2Oracle(), "retail_50")
    assert term and reward == 1.0
    assert infos[-1]["episode"]["tau2"]["record"][-1]["content"].endswith("###TRANSFER###")


def test_out_of_scope_ends_the_conversation(tmp_path: Path) -> None:
    tape = tmp_path / "user.jsonl"
    tape.write_text(json.dumps({"task_id": "mock_create_task_1", "seed": None, "turns": [
        {"agent": GREETING, "user": "Please delete all my tasks."},
        {"agent": "I cannot.", "user": "Then bye. ###OUT-OF-SCOPE###"}]}) + "\n")
    env = Tau2Env(task_source="mock", user=f"cassette:{tape}")
    env.reset(options={"task_id": "mock_create_task_1"})
    _, reward, term, trunc, info = env.step(say("I cannot."))
    assert term and not trunc and reward == 0.0  # ended by the user; the task was not done
    assert info["episode"]["tau2"]["termination_reason"] == "user_stop"
    assert info["verdict"]["reason"] == "τ² reward 0 (DB 0, COMMUNICATE 1)"


def test_max_steps_ends_as_truncated_with_reward_zero() -> None:
    env = Tau2Env(task_source="retail", max_steps=6)
    infos, (reward, term, trunc) = run(env, Tau2Oracle(), "retail_0")
    end = infos[-1]
    assert (reward, term, trunc) == (0.0, False, True)
    assert end["truncated_reason"] == "turns" and end["tau2"]["steps"] == 7
    assert end["episode"]["tau2"]["termination_reason"] == "max_steps"
    assert end["verdict"]["reason"] == "τ² ended the conversation: max_steps (reward 0)"


def test_a_stop_that_is_the_last_allowed_message_ends_as_max_steps_as_in_tau2() -> None:
    # mock_update_task_1: user, agent asks, user, call, result, agent, user's stop = 7 messages.
    # τ²'s orchestrator checks its limits after the stop and lets them win.
    for max_steps, reason in ((8, "user_stop"), (7, "max_steps")):
        env = Tau2Env(task_source="mock", max_steps=max_steps)
        infos, (reward, _, _) = run(env, Tau2Oracle(), "mock_update_task_1")
        assert infos[-1]["episode"]["tau2"]["termination_reason"] == reason
        assert infos[-1]["tau2"]["steps"] == 7 and reward == (reason == "user_stop")


def test_max_errors_ends_as_truncated_with_reward_zero() -> None:
    env = Tau2Env(task_source="mock", max_errors=3)
    infos, (reward, term, trunc) = run(env, Tau2Oracle(mutation="too_many_errors", max_errors=3),
                                       "mock_create_task_1")
    assert (reward, term, trunc) == (0.0, False, True)
    assert infos[-1]["truncated_reason"] == "errors" and infos[-1]["tool_calls"] == 3
    assert infos[-1]["episode"]["tau2"]["termination_reason"] == "too_many_errors"


def test_a_cassette_that_runs_out_is_an_infra_error_not_the_agents(tmp_path: Path) -> None:
    tape = tmp_path / "user.jsonl"
    tape.write_text(json.dumps({"task_id": "retail_0", "seed": None, "turns": [
        {"agent": GREETING, "user": "Exchange two items, please."}]}) + "\n")
    env = Tau2Env(task_source="retail", user=CassetteUser(tape))
    infos, (reward, term, trunc) = run(env, Tau2Oracle(), "retail_0")
    end = infos[-1]
    assert (reward, term, trunc) == (0.0, False, True) and end["truncated_reason"] == "infra"
    assert "has no reply for user turn 2: it holds 1" in end["infra_error"]
    with pytest.raises(UserSimulatorError, match=re.escape("has no conversation for task "
                                                           "retail_5")):
        env.reset(options={"task_id": "retail_5"})


def test_history_tasks_open_with_their_history() -> None:
    env = Tau2Env(task_source="mock")
    obs, _ = env.reset(options={"task_id": "mock_update_task_with_message_history"})
    msgs = get_codec().parse_conversation(obs)[2:]
    assert [(m.author.role.value, m.recipient) for m in msgs] == [
        ("user", None), ("assistant", "functions.create_task"), ("tool", "assistant"),
        ("assistant", None), ("user", None)]
    assert json.loads(message_text(msgs[2]))["task_id"] == "task_2"
    _, (reward, term, _) = run(env, Tau2Oracle(), "mock_update_task_with_message_history")
    assert term and reward == 1.0


def test_unknown_arguments_and_bad_settings_are_named() -> None:
    with pytest.raises(TypeError, match=re.escape("got an unknown argument 'max_stpes'; did "
                                                  "you mean 'max_steps'?")):
        agent_envs.make("tau2", max_stpes=3)
    with pytest.raises(Tau2Error, match=re.escape("max_errors must be >= 1 or None")):
        agent_envs.make("tau2", max_errors=0)
    with pytest.raises(Tau2Error, match=re.escape("an LLM user is built from a policy object")):
        agent_envs.make("tau2", user="llm:http://127.0.0.1:1")
    with pytest.raises(Tau2Error, match=re.escape("no user cassette at /nonexistent.jsonl")):
        agent_envs.make("tau2", user="cassette:/nonexistent.jsonl")


def test_seeded_resets_repeat_and_draw_from_the_split() -> None:
    env = Tau2Env(task_source="airline", split="test")
    a, ia = env.reset(seed=11)
    b, ib = env.reset(seed=11)
    assert np.array_equal(a, b) and ia["task_id"] == ib["task_id"]
    assert env.task.split == "test"
    tau2_id = env.task_source.get(ia["task_id"]).tau2_id
    assert domain("airline").split_of[tau2_id] == "test"


def test_the_async_twin_gives_the_same_episode() -> None:
    env = Tau2Env(task_source="mock")
    oracle = Tau2Oracle()
    _, (reward, _, _) = run(env, oracle, "mock_update_task_1")
    sync_tokens = env.tokens.tolist()

    async def arun() -> tuple[float, list[int]]:
        aenv = Tau2Env(task_source="mock")
        obs, _ = await aenv.areset(options={"task_id": "mock_update_task_1"})
        while True:
            obs, r, term, trunc, _ = await aenv.astep(oracle.act_text(obs, aenv.task))
            if term or trunc:
                return r, aenv.tokens.tolist()

    areward, async_tokens = asyncio.run(arun())
    assert (areward, async_tokens) == (reward, sync_tokens) and reward == 1.0


def test_nothing_the_verifier_knows_reaches_info(retail: Tau2Env) -> None:
    # An agent that does nothing: the expected calls' arguments are the verifier's alone.
    _, info = retail.reset(options={"task_id": "retail_0"})
    infos = [info]
    for text in ("Let me see.", "Goodbye."):
        _, reward, term, _, info = retail.step(say(text))
        infos.append(info)
    assert term and reward == 0.0
    text = json.dumps(infos)
    for secret in ("7706410293", "7747408585", "credit_card_9513926"):
        assert secret not in text
    assert infos[-1]["episode"]["tau2"]["reward"]["action_checks"] == "0/5"  # counts only
