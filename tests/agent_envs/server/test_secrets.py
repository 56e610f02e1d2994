"""No task secret leaves the server (issue 22): over every registered env id, BFCL's three
kinds of task and the browser's evidence pages, no reset, step or state payload on the wire
carries the answer, the solution, the expected calls, the evidence or the hidden world state.

Each episode is played over a raw WebSocket (the bytes a generic harness would put in its
model's turn) by a policy that knows nothing: a harmless tool call where the env has tools,
then wrong final answers until the episode ends. The secrets come from the same task made
in-process. Only a token holder that asks (``full_task``) gets the task.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

import agent_envs
from agent_envs.core import to_jsonable
from agent_envs.harmony import get_codec
from agent_envs.server.public import PUBLIC_TASK_KEYS
from tests.agent_envs.server.conftest import AUTH

CODEC = get_codec()

#: Task fields only the verifier (or the env's hidden world) may know. ``more_turns`` and
#: BFCL's ``held_out`` functions are revealed during the episode by design, so not here.
HIDDEN_FIELDS = ("answer", "aliases", "solution_code", "evidence", "expected_calls", "configs",
                 "plan", "expected_state", "answers", "ground_truth", "initial_config")

CASES = [(spec.name, {"sandbox": "local"} if spec.name == "python-tool" else {})
         for spec in agent_envs.list_envs()] + [
    ("functions", {"task_source": "bfcl:simple_python"}),      # BFCL AST: expected calls
    ("functions", {"task_source": "bfcl:live_irrelevance"}),   # BFCL relevance
    ("functions", {"task_source": "bfcl:multi_turn_miss_func"}),  # BFCL multi-turn backends
    ("browser", {"difficulty": 3}),  # multi-hop questions: several evidence pages
]
SEEDS = (0, 1, 2)

TOOL_CALL = {  # a call that reveals nothing, where the env has the tool
    "python-tool": "<|channel|>analysis to=python code<|message|>print('hello')<|call|>",
    "browser": '<|channel|>analysis to=browser.search code<|message|>{"query": "qqzzxxv '
               'wwkkjj"}<|call|>',
    "functions": "<|channel|>commentary to=functions.no_such_function <|constrain|>json"
                 "<|message|>{}<|call|>",
}


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    elif value is not None and not isinstance(value, bool):
        yield str(value).strip()


def _secrets(task: Any, shown: str) -> tuple[str, list[str]]:
    """The task's answer, and its hidden strings the model was not shown at reset (``shown``:
    the reset prompt's text): each hidden field's values of 4+ characters, and the field as
    JSON (BFCL's expected calls are prompt values, in a structure only the verifier knows)."""
    fields = {f.name for f in dataclasses.fields(task)}
    hidden = set()
    for name in HIDDEN_FIELDS:
        value = to_jsonable(getattr(task, name)) if name in fields else None
        if not value or name == "answer":
            continue
        hidden.update(s for s in _leaves(value) if len(s) >= 4 and s not in shown)
        hidden.update(j for j in (json.dumps(value), json.dumps(value, separators=(",", ":")))
                      if len(j) >= 8)
    return task.answer.strip(), sorted(hidden, key=len, reverse=True)


def _strings(payload: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) of every string in a payload."""
    if isinstance(payload, dict):
        for k, v in payload.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(payload, list):
        for i, v in enumerate(payload):
            yield from _strings(v, f"{path}[{i}]")
    elif isinstance(payload, str):
        yield path, payload


def _assert_no_secret(payload: dict[str, Any], answer: str, hidden: list[str],
                      what: str) -> None:
    obs = payload.get("data", {}).get("observation")
    if obs is not None:
        assert obs["task"] is None and obs["task_class"] is None, f"{what}: the task went out"
    for path, s in _strings(payload):
        if path.endswith(".text") and obs is not None:
            # the model's own view, the env's tokens decoded: long secrets only
            leaked = [h for h in hidden if len(h) >= 8 and h in s]
        else:
            leaked = [h for h in hidden if h in s]
            if answer and (s.strip() == answer or (len(answer) >= 4 and answer in s)):
                leaked.append(answer)
        assert not leaked, f"{what}: {path} = {s[:300]!r} holds the secret(s) {leaked[:3]}"


def _naive_actions(env_id: str, prefilled: bool) -> Iterator[str]:
    """A policy that knows nothing: one harmless tool call, then wrong answers forever."""
    if env_id in TOOL_CALL:
        yield TOOL_CALL[env_id]
    while True:
        yield ("9<|return|>" if prefilled
               else "<|channel|>final<|message|>\\boxed{-987654} I do not know.<|return|>")


def _episode(ws: Any, env_id: str, seed: int) -> list[dict[str, Any]]:
    """Every reply of one naive episode on a raw WebSocket, reset and a state query included."""
    def ask(message: dict[str, Any]) -> dict[str, Any]:
        ws.send(json.dumps(message))
        return json.loads(ws.recv(timeout=60))

    replies = [ask({"type": "reset", "data": {"seed": seed}})]
    obs = replies[0]["data"]["observation"]
    assert obs["error"] is None, obs["error"]
    actions = _naive_actions(env_id, prefilled=obs["text"].endswith("<|message|>"))
    for _ in range(12):
        replies.append(ask({"type": "step", "data": {"text": next(actions)}}))
        assert replies[-1]["type"] == "observation", replies[-1]
        if replies[-1]["data"]["done"]:
            break
    assert replies[-1]["data"]["done"], f"{env_id}: the naive episode did not end"
    replies.append(ask({"type": "state"}))
    return replies


@pytest.mark.parametrize(("env_id", "kwargs"), CASES,
                         ids=[f"{e}-{k.get('task_source', k.get('difficulty', ''))}".rstrip("-")
                              for e, k in CASES])
def test_no_reset_step_or_state_payload_carries_a_task_secret(serve, env_id, kwargs) -> None:
    server = serve(env_id, env_kwargs=kwargs)
    local = agent_envs.make(env_id, **kwargs)
    checked = 0
    try:
        with connect(server.url.replace("http://", "ws://") + "/ws", open_timeout=10,
                     additional_headers=AUTH, max_size=None) as ws:
            for seed in SEEDS:
                lobs, _ = local.reset(seed=seed)
                task = local.task
                replies = _episode(ws, env_id, seed)
                reset = replies[0]["data"]["observation"]
                assert reset["tokens"] == lobs.tolist()  # the same task as in-process
                assert reset["text"] == CODEC.decode(lobs)
                assert reset["task_meta"] == {
                    "id": task.id, "family": reset["task_meta"]["family"],
                    "difficulty": task.difficulty, "split": task.split}
                assert list(reset["task_meta"]) == list(PUBLIC_TASK_KEYS)
                answer, hidden = _secrets(task, reset["text"])
                # (BFCL's irrelevance tasks hide no field: no call is the right answer)
                assert answer or hidden or "irrelevance" in task.id, f"{task.id}: no secret?"
                assert answer not in reset["task_meta"].values()
                for i, reply in enumerate(replies):
                    _assert_no_secret(reply, answer, hidden, f"{task.id} reply {i}")
                final = replies[-2]["data"]["observation"]
                verdict = final["info"]["verdict"]
                if verdict is not None:  # ended by a (wrong) final answer
                    assert verdict["correct"] is False
                checked += 1
    finally:
        local.close()
    assert checked == len(SEEDS)


def test_the_verdicts_reason_is_withheld_but_correct_and_extracted_go_out(serve) -> None:
    """In-process the reason names the answer ("expected 2813, got -987654"); on the wire it
    does not, while the reward, ``correct`` and the model's own ``extracted`` still do."""
    server = serve("python-tool", env_kwargs={"sandbox": "local"})
    local = agent_envs.make("python-tool", sandbox="local")
    wrong = "<|channel|>final<|message|>\\boxed{-987654}<|return|>"
    try:
        env = agent_envs.remote(server.url, "python-tool")
        env.reset(seed=4)
        local.reset(seed=4)
        _, lreward, _, _, linfo = local.step(wrong)
        _, reward, terminated, _, info = env.step(wrong)
        assert local.task.answer in linfo["verdict"]["reason"]  # what must not go out
        assert terminated and reward == lreward == 0.0
        assert info["verdict"]["correct"] is False and info["verdict"]["extracted"] == "-987654"
        assert local.task.answer not in info["verdict"]["reason"]
        assert info["verdict"]["reason"].startswith("withheld: the verifier's reason stays")
        assert env.task is None and env.task_meta["id"] == local.task.id
        env.reset(seed=4)  # a right answer: reason "match" is safe and goes out as is
        right = f"<|channel|>final<|message|>\\boxed{{{local.task.answer}}}<|return|>"
        _, reward, _, _, info = env.step(right)
        assert reward == 1.0 and info["verdict"] == {
            "correct": True, "extracted": local.task.answer, "reason": "match"}
        env.close()
    finally:
        local.close()


def test_the_full_task_goes_only_to_a_token_holder_that_asks(serve) -> None:
    with_token = serve("toy-digit")
    without = serve("toy-digit", token=None)
    env = agent_envs.remote(without.url, "toy-digit", full_task=True)
    with pytest.raises(agent_envs.RemoteEnvError, match=r"only to clients holding its token.*"
                       r"started without one: start it with `agent-envs serve toy-digit "
                       r"--token TOKEN`"):
        env.reset(seed=0)
    env.close()
    plain = agent_envs.remote(without.url, "toy-digit")
    plain.reset(seed=0)
    assert plain.task is None and plain.task_meta["id"] == "toy-digit/train/7"
    plain.close()
    asked = agent_envs.remote(with_token.url, "toy-digit", full_task=True)
    asked.reset(seed=0)
    assert asked.task is not None and asked.task.answer == "7"
    asked.close()
    # OpenEnv's stateless HTTP reset (a fresh env per call) is guarded the same way
    body = httpx.post(with_token.url + "/reset", json={"seed": 0}, headers=AUTH).json()
    assert body["observation"]["task"] is None
    assert body["observation"]["task_meta"]["id"] == "toy-digit/train/7"
    body = httpx.post(with_token.url + "/reset", json={"seed": 0, "full_task": True},
                      headers=AUTH).json()
    assert body["observation"]["task"]["answer"] == "7"


@pytest.mark.parametrize(("reason", "kept"), [
    ("match", True), ("no answer found", True), ("turn 2 of 4 answered", True),
    ("no function called (wrong)", True), ("the user replied", True),
    ("τ² reward 0 (DB 0, COMMUNICATE 0)", True),
    ("expected 42, got 41", False), ("expected 'walrus', got 'seal'", False),
    ("could not read 'x' as a number (int)", False), ("missing call transfer(...)", False),
])
def test_only_reasons_that_cannot_name_the_answer_go_out(reason, kept) -> None:
    from agent_envs.server.public import public_info

    info = {"verdict": {"correct": False, "extracted": "41", "reason": reason}, "turn": 3}
    out = public_info(info)
    assert out["verdict"]["reason"] == reason if kept else out["verdict"]["reason"].startswith(
        "withheld: ")
    assert out["verdict"]["extracted"] == "41" and out["turn"] == 3
    assert info["verdict"]["reason"] == reason  # the env's own dict is left alone


def test_task_meta_family_is_never_a_bfcl_category() -> None:
    from agent_envs.server.public import public_task

    env = agent_envs.make("functions", task_source="bfcl:live_irrelevance")
    try:
        env.reset(seed=0)
        meta = public_task(env.task)
    finally:
        env.close()
    assert meta["family"] == "bfcl" and "irrelevance" not in meta["family"]
    assert meta["split"] == "test" and set(meta) == set(PUBLIC_TASK_KEYS)
