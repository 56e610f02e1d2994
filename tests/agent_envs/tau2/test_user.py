"""User simulators: scripted, recorded and replayed, LLM-backed; and the LLM judge."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from agent_envs.envs.tau2 import (
    CassetteUser,
    JudgeError,
    LLMJudge,
    LLMUser,
    RecordingUser,
    ScriptedUser,
    Tau2Env,
    Tau2Error,
    Tau2Oracle,
    UserSimulatorError,
)
from agent_envs.envs.tau2.conversation import GREETING
from agent_envs.envs.tau2.data import domain
from agent_envs.envs.tau2.tasks import Tau2Tasks
from agent_envs.envs.tau2.user import user_system_prompt
from agent_envs.harmony import get_codec, message_text
from tests.agent_envs.tau2.tau2_reference import Results  # noqa: F401  (skip without τ², stub litellm)


class FakePolicy:
    """A policy in-process: answers each prompt with ``reply(prompt messages)``, as token ids."""

    policy_id = "fake-user"

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.requests: list[Any] = []

    def sample(self, requests: list[Any]) -> list[Any]:
        out = []
        for r in requests:
            self.requests.append(r)
            text = self.reply(get_codec().parse_conversation(r.prompt))
            ids = get_codec().encode(text)

            class S:
                token_ids, logprobs, finish_reason, error = ids, [0.0] * len(ids), "stop", None
            out.append(S())
        return out

    async def asample(self, requests: list[Any]) -> list[Any]:
        return self.sample(requests)


def final(text: str) -> str:
    return f"<|channel|>analysis<|message|>I am the user.<|end|><|start|>assistant" \
           f"<|channel|>final<|message|>{text}<|return|>"


def episode(env: Tau2Env, task_id: str, oracle: Tau2Oracle | None = None) -> dict[str, Any]:
    oracle = oracle or Tau2Oracle()
    obs, _ = env.reset(options={"task_id": task_id})
    while True:
        obs, _, term, trunc, info = env.step(oracle.act_text(obs, env.task))
        if term or trunc:
            return info


def test_recorded_users_replay_by_turn_and_exactly(tmp_path: Path) -> None:
    tape = tmp_path / "tapes" / "users.jsonl"
    env = Tau2Env(task_source="mock", record_user=str(tape))
    first = episode(env, "mock_update_task_1")
    assert first["episode"]["user_simulator"]["recorded_to"] == str(tape)
    env.close()
    [rec] = [json.loads(line) for line in tape.read_text().splitlines()]
    assert rec["task_id"] == "mock_update_task_1" and rec["simulator"]["kind"] == "scripted"
    assert rec["turns"][0]["agent"] == GREETING
    users = [t["user"] for t in rec["turns"]]
    assert users == [m["content"] for m in first["episode"]["tau2"]["record"]
                     if m["role"] == "user"]
    # Replayed by turn, the same agent gets the same conversation and reward.
    replayed = episode(Tau2Env(task_source="mock", user=f"cassette:{tape}"), "mock_update_task_1")
    assert replayed["episode"]["tau2"]["record"] == first["episode"]["tau2"]["record"]
    assert replayed["episode"]["user_simulator"]["kind"] == "cassette"
    assert replayed["episode"]["user_simulator"]["recorded_by"] == [rec["simulator"]]
    # Exactly: a different agent message is a miss, and a miss is infrastructure.
    exact = Tau2Env(task_source="mock", user=CassetteUser(tape, match="exact"))
    exact.reset(options={"task_id": "mock_update_task_1"})
    _, _, _, trunc, info = exact.step("<|channel|>final<|message|>Something else.<|return|>")
    assert trunc and info["truncated_reason"] == "infra"
    assert "(match='exact') has no reply for this conversation: at user turn 2" \
        in info["infra_error"]


def test_a_malformed_cassette_names_the_line(tmp_path: Path) -> None:
    tape = tmp_path / "bad.jsonl"
    tape.write_text('{"task_id": "x", "turns": []}\n{"task_id": "y"}\n')
    with pytest.raises(Tau2Error, match=re.escape("bad.jsonl line 2 is not a user-cassette "
                                                  "record (KeyError: 'turns')")):
        CassetteUser(tape)


def test_the_scripted_user_follows_the_plan_and_runs_out_as_infra() -> None:
    task = Tau2Tasks("retail").get("retail_5")
    session = ScriptedUser().start(task, None)
    assert session.reply([("agent", GREETING)]).startswith("You want to exchange the water")
    assert session.reply([("agent", "Shall I?")]) == "Yes, please go ahead."
    assert session.reply([("agent", "Done.")]).endswith("###STOP###")
    with pytest.raises(UserSimulatorError, match=re.escape("has no reply for user turn 4: it "
                                                           "holds 3")):
        session.reply([("agent", "More?")])


def test_an_llm_user_gets_taus_prompt_with_roles_flipped_and_plays_the_conversation() -> None:
    def user(messages: list[Any]) -> str:
        last = message_text(messages[-1])
        if last == GREETING:
            return final("Please mark task_1 as completed.")
        return final("Thanks! ###STOP###" if "done" in last else "Yes, go ahead.")

    policy = FakePolicy(user)
    env = Tau2Env(task_source="mock", user=LLMUser(policy, model="sim", temperature=0.5))
    info = episode(env, "mock_update_task_1")
    assert info["verdict"]["correct"] and info["episode"]["tau2"]["termination_reason"] == \
        "user_stop"
    ident = info["episode"]["user_simulator"]
    assert ident["kind"] == "llm" and ident["model"] == "sim" and ident["policy"] == "fake-user"
    assert ident["sampling"]["temperature"] == 0.5 and len(ident["prompt_sha256"]) == 64
    task = env.task.tau2_task()
    last = policy.requests[-1]
    msgs = get_codec().parse_conversation(last.prompt)
    developer = get_codec().decode(get_codec().render_message(msgs[1]))
    assert user_system_prompt(task) in developer and "<scenario>" in developer
    roles = [(m.author.role.value, message_text(m)) for m in msgs[2:]]
    assert roles[0] == ("user", GREETING)  # the agent's messages come as the user's
    assert roles[1] == ("assistant", "Please mark task_1 as completed.")
    assert last.params.temperature == 0.5 and last.stop_token_ids == (200002, 200012)
    seeds = {r.params.seed for r in policy.requests}
    assert len(seeds) == len(policy.requests)  # one seed per turn


def test_an_llm_user_that_never_answers_is_infra_and_a_failing_policy_too() -> None:
    silent = FakePolicy(lambda m: "<|channel|>analysis<|message|>hmm<|end|>")
    env = Tau2Env(task_source="mock", user=LLMUser(silent, max_attempts=2))
    with pytest.raises(UserSimulatorError, match=re.escape("no final-channel reply in 2 "
                                                           "sample(s)")):
        env.reset(options={"task_id": "mock_update_task_1"})
    assert len(silent.requests) == 2

    class Broken(FakePolicy):
        def sample(self, requests: list[Any]) -> list[Any]:
            raise ConnectionError("refused")

    with pytest.raises(UserSimulatorError, match=re.escape("the policy raised ConnectionError: "
                                                           "refused")):
        Tau2Env(task_source="mock", user=LLMUser(Broken(None))).reset(
            options={"task_id": "mock_update_task_1"})
    with pytest.raises(Tau2Error, match=re.escape("LLMUser needs a policy with sample() and "
                                                  "asample()")):
        LLMUser(object())


def test_a_judge_grades_nl_assertions_through_a_policy() -> None:
    answers = iter(["not json", json.dumps({"results": [
        {"expectedOutcome": "The agent confirmed the task status was updated successfully",
         "reasoning": "it did", "metExpectation": True}]})])
    policy = FakePolicy(lambda m: final(next(answers)))
    judge = LLMJudge(policy, model="judge-model")
    env = Tau2Env(task_source="mock", judge=judge)
    info = episode(env, "mock_update_task_1")
    assert info["verdict"]["correct"]
    assert info["episode"]["judge"]["kind"] == "llm"
    assert info["episode"]["judge"]["model"] == "judge-model"
    assert env.reward_info["nl_assertions"] == [{
        "nl_assertion": "The agent confirmed the task status was updated successfully",
        "met": True, "justification": "it did"}]
    assert info["episode"]["tau2"]["reward"]["nl_assertions"] == "1/1"
    # A judge that never answers usable JSON is infrastructure, not a zero for the agent.
    env = Tau2Env(task_source="mock", judge=LLMJudge(FakePolicy(lambda m: final("no")),
                                                     max_attempts=2))
    info = episode(env, "mock_update_task_1")
    assert info["truncated_reason"] == "infra" and "gave no usable grading" in info["infra_error"]
    assert issubclass(JudgeError, UserSimulatorError)


def test_recording_wraps_any_simulator_and_appends_per_episode(tmp_path: Path) -> None:
    tape = tmp_path / "u.jsonl"
    sim = RecordingUser(ScriptedUser(), tape)
    env = Tau2Env(task_source="mock", user=sim)
    episode(env, "mock_update_task_1")
    episode(env, "mock_create_task_1")
    env.close()
    ids = [json.loads(line)["task_id"] for line in tape.read_text().splitlines()]
    assert ids == ["mock_update_task_1", "mock_create_task_1"]
    assert domain("mock").task("create_task_1").id == "create_task_1"
