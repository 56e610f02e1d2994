"""An LLM-user episode end to end: an OpenAI-compatible completions server on 127.0.0.1 plays
τ²'s user (token ids over real HTTP, through ``OpenAICompletionsPolicy``); the agent is the
oracle; the eval runner, the bundle header, and the export to τ²'s results all see it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent_envs.cli import main
from agent_envs.envs.tau2 import LLMUser
from agent_envs.envs.tau2.export import export_bundle
from agent_envs.eval import EvalConfig, load_bundle, run_eval, verify
from agent_envs.harmony import get_codec, message_text
from tests.agent_envs.tau2.tau2_reference import EvaluationType, Results, evaluate_simulation
from trainers.policies import OpenAICompletionsPolicy
from trainers.policies.testing import ScriptedCompletion, ScriptedCompletionsServer

GUIDELINE = "You are playing the role of a customer contacting a customer service representative"


def play_user(body: dict[str, Any]) -> ScriptedCompletion:
    """The user, served over HTTP: reads the harmony prompt (τ²'s user prompt as the developer
    message, the agent's words as user messages) and answers on ``final``."""
    codec = get_codec()
    msgs = codec.parse_conversation(body["prompt"])
    developer = codec.decode(codec.render_message(msgs[1]))
    assert GUIDELINE in developer and "<scenario>" in developer
    said = message_text(msgs[-1])
    if said.endswith("go ahead?"):
        text = "Yes, please go ahead."
    elif said.startswith("Everything is done."):
        text = "Thank you, that is all. ###STOP###"
    else:  # the greeting, or the end of the task's own history: the user says why they came
        scenario = developer.split("<scenario>")[1].split("</scenario>")[0]
        text = "Hello. " + scenario.strip().splitlines()[-1].strip()
    ids = codec.encode(f"<|channel|>analysis<|message|>I play the user.<|end|><|start|>"
                       f"assistant<|channel|>final<|message|>{text}<|return|>")
    return ScriptedCompletion(token_ids=ids, logprobs=[-0.1] * len(ids), finish_reason="stop")


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with ScriptedCompletionsServer(play_user) as s:
        yield s


def test_an_llm_user_over_http_plays_the_suite(server: ScriptedCompletionsServer,
                                               tmp_path: Path) -> None:
    from agent_envs.rollout import OraclePolicy

    user = LLMUser(OpenAICompletionsPolicy(server.url, "user-sim", backoff_s=0.01), model="user-sim")
    b = run_eval("tau2-mock", OraclePolicy(), tmp_path / "b", EvalConfig(
        trials=1, concurrency=4, progress=False, env_args={"user": user}))
    m = json.loads((b / "metrics.json").read_text())
    assert m["overall"]["accuracy"]["value"] == 1.0 and m["excluded_infra"]["count"] == 0
    assert verify(b) == []
    header = json.loads((b / "header.json").read_text())
    assert header["user_simulator"]["kind"] == "llm"
    assert header["user_simulator"]["model"] == "user-sim"
    assert header["user_simulator"]["policy"] == "user-sim"
    assert header["env_args"]["user"] == header["user_simulator"]
    # Every user turn went over HTTP, as token ids, with a seed per turn.
    eps = load_bundle(b).episodes
    turns = sum(1 for e in eps for r in e.meta["episode"]["tau2"]["record"] if r["role"] == "user")
    assert len(server.bodies) == turns and all(isinstance(t, int) for t in server.bodies[0]["prompt"])
    assert len({body["seed"] for body in server.bodies}) > 1
    assert all(e.meta["episode"]["user_simulator"]["model"] == "user-sim" for e in eps)
    # The export carries the simulator, and τ²'s evaluator agrees with every reward.
    out = tmp_path / "r.json"
    export_bundle(b, out)
    results = Results.load(out)
    assert results.info.user_info.implementation == "agent-envs llm user"
    assert results.info.user_info.llm == "user-sim"
    tasks = {t.id: t for t in results.tasks}
    for sim in results.simulations:
        first = next(m for m in sim.messages if m.role == "user" and m.content.startswith("Hello"))
        assert first.content.startswith("Hello. ")  # the served user's own words
        theirs = evaluate_simulation(simulation=sim, task=tasks[sim.task_id], domain="mock",
                                     evaluation_type=EvaluationType.ALL, solo_mode=False)
        assert theirs.reward == sim.reward_info.reward == 1.0


def test_the_command_line_runs_a_suite_against_a_served_user(server: ScriptedCompletionsServer,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "cli"
    tape = tmp_path / "user.jsonl"
    assert main(["eval", "tau2-mock", "--policy", "oracle", "--trials", "1", "--quiet",
                 "--user", server.url, "--user-model", "user-sim", "--record-user", str(tape),
                 "--out", str(out)]) == 0
    header = json.loads((out / "header.json").read_text())
    assert header["user_simulator"]["model"] == "user-sim"
    assert header["user_simulator"]["recorded_to"] == str(tape)
    served = len(server.bodies)
    # The recorded user replays without the server: same conversations, same scores.
    again = tmp_path / "replay"
    assert main(["eval", "tau2-mock", "--policy", "oracle", "--trials", "1", "--quiet",
                 "--user", f"cassette:{tape}", "--out", str(again)]) == 0
    assert len(server.bodies) == served
    first = {e.task_id: e.meta["episode"]["tau2"]["record"] for e in load_bundle(out).episodes}
    second = {e.task_id: e.meta["episode"]["tau2"]["record"] for e in load_bundle(again).episodes}
    assert first == second and len(first) == 9
