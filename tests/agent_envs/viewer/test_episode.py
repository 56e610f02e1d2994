"""The decoded episode: the env's own conversation, the turns, the mask and the log-probs."""

from __future__ import annotations

from typing import Any

import openai_harmony as oh
import pytest

import agent_envs
from agent_envs.harmony import get_codec, message_text
from agent_envs.rollout import RolloutCollector, RolloutConfig
from agent_envs.viewer.episode import (
    PartStore,
    TokenTable,
    episode_row,
    episode_view,
    task_labels,
)
from tests.agent_envs.viewer.conftest import FAMILIES
from tests.agent_envs.viewer.helpers import ScriptedOracle


def _run(env_id: str, policy: Any, **env_kwargs: Any) -> tuple[Any, list[oh.Message]]:
    """One episode through the collector, and the conversation its env kept."""
    envs: list[Any] = []

    def factory() -> Any:
        envs.append(agent_envs.make(env_id, **env_kwargs))
        return envs[-1]

    cfg = RolloutConfig(env_id=env_id, num_groups=1, concurrency=1, progress=False, seed=3)
    (ep,) = RolloutCollector(policy, cfg, env_factory=factory).collect()
    assert len(envs) == 1
    return ep, envs[0].messages


def _key(m: Any) -> tuple:
    if isinstance(m, oh.Message):
        role = m.author.role.value
        # System/developer content is structured in the env; its text comes from the tokens.
        text = message_text(m) or None if role in ("system", "developer") else message_text(m)
        return role, m.author.name, m.channel, m.recipient, text
    text = None if m["role"] in ("system", "developer") and m["src"] == "prompt" else m["text"]
    return m["role"], m["name"], m["channel"], m["to"], text


def _view(ep: Any, store: PartStore | None = None, tokens: TokenTable | None = None) -> dict:
    """The episode's view with its prompt parts put back, as the page's script does."""
    store = store or PartStore(get_codec(), tokens)
    return store.expand(episode_view(ep, get_codec(), store, tokens))


def _shown(view: dict) -> list[dict]:
    return [m for s in view["segments"] for m in s["messages"] if not m.get("history")]


def _expand(runs: list[int]) -> list[int]:
    out, v = [], 0
    for n in runs:
        out += [v] * n
        v ^= 1
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("wrong", [False, True])
def test_the_messages_are_the_conversation_the_env_kept(family: str, wrong: bool) -> None:
    ep, messages = _run(family, ScriptedOracle(wrong=wrong))
    view = _view(ep)
    assert [_key(m) for m in _shown(view)] == [_key(m) for m in messages]
    assert view["label"] == ("wrong" if wrong else "correct")
    calls = [m for m in _shown(view) if m["role"] == "assistant" and m["to"]]
    assert calls and all(m["src"] == "model" for m in calls)
    assert [m["to"] for m in calls] == [t.tool_outcome["recipient"] for t in ep.turns
                                        if t.tool_outcome]
    answers = [m for m in _shown(view) if m["role"] == "tool"]
    assert len(answers) == len(calls) and all(m["src"] == "env" for m in answers)


def test_a_second_segment_shows_its_new_user_turn_and_folds_the_history() -> None:
    codec = get_codec()
    no_answer = codec.encode("<|channel|>final<|message|>I cannot say.<|return|>")
    ep, messages = _run("python-tool", ScriptedOracle(first_turn=lambda: list(no_answer)),
                        answer_retries=1)
    view = _view(ep)
    assert len(view["segments"]) == 2 == len(ep.segments)
    second = view["segments"][1]["messages"]
    history = [m for m in second if m.get("history")]
    new = [m for m in second if not m.get("history")]
    assert history and history[-1]["channel"] == "final"
    assert new[0]["role"] == "user"
    assert [_key(m) for m in _shown(view)] == [_key(m) for m in messages]


def test_mask_and_logprobs_round_trip(family_episodes) -> None:
    table = TokenTable(get_codec())
    store = PartStore(get_codec(), table)
    for ep in family_episodes["browser"] + family_episodes["functions"]:
        view = _view(ep, store, table)
        for seg, s in zip(ep.segments, view["segments"], strict=True):
            assert s["ids"] == seg.prompt + seg.completion
            assert _expand(s["mask"]) == [0] * len(seg.prompt) + seg.loss_mask
            assert s["logprobs"] == [lp for lp, m in zip(seg.logprobs, seg.loss_mask) if m]
            assert any(lp < -0.5 for lp in s["logprobs"])  # the scripted, varied log-probs
            assert set(s["ids"]) <= set(table.text)
    assert table.text[200006] == "<|start|>"


def test_a_call_without_recipient_shows_the_env_notice_and_the_model_error() -> None:
    codec = get_codec()
    bad = codec.encode("<|channel|>analysis<|message|>Let me think.<|call|>")
    ep, messages = _run("python-tool", ScriptedOracle(first_turn=lambda: list(bad)))
    view = _view(ep)
    assert view["turns"][0]["model_error"] == ep.turns[0].model_error is not None
    assert view["turns"][0]["stop"] == "call"
    notice = [m for m in _shown(view) if m["role"] == "system" and m["src"] == "env"]
    assert len(notice) == 1 and notice[0]["text"].startswith("Format error")
    assert [_key(m) for m in _shown(view)] == [_key(m) for m in messages]


def test_unparseable_tokens_are_shown_raw_with_the_parse_error() -> None:
    garbage = [200006, 200006, 200007]  # <|start|><|start|><|end|>
    ep, _ = _run("functions", ScriptedOracle(first_turn=lambda: list(garbage)))
    view = _view(ep)
    raw = [m for m in _shown(view) if m["role"] == "raw"]
    assert raw and raw[0]["src"] == "model" and raw[0]["turn"] == 0
    assert raw[0]["error"] and "<|start|>" in raw[0]["text"]


def test_a_cut_completion_shows_what_was_written_and_the_env_closing_it() -> None:
    codec = get_codec()
    cut = codec.encode("<|channel|>analysis<|message|>First I will")
    ep, messages = _run("python-tool", ScriptedOracle(first_turn=lambda: list(cut),
                                                      finish="length"))
    seg = ep.segments[0]
    t0 = ep.turns[0]
    assert seg.completion[t0.end] == 200007  # the env closed the open message with <|end|>
    view = _view(ep)
    assert view["turns"][0]["finish"] == "length" and view["turns"][0]["stop"] is None
    first = [m for m in _shown(view) if m["turn"] == 0]
    assert first[0]["src"] == "model" and first[0]["text"] == "First I will"
    assert [m["src"] for m in first[1:]] == ["env"] * len(first[1:]) and first[1:]
    assert [_key(m) for m in _shown(view)] == [_key(m) for m in messages]
    assert view["label"] == "correct"  # the oracle then finished the task


def test_rows_count_calls_tool_errors_and_tokens(family_episodes) -> None:
    for ep in family_episodes["functions"]:
        row = episode_row(ep, 7, category="cat-x", question="q" * 500)
        assert row["i"] == 7 and row["cat"] == "cat-x" and len(row["q"]) == 240
        assert row["family"] == "functions"
        assert row["calls"] == sum(1 for t in ep.turns if t.tool_outcome) >= 1
        assert row["tool_errors"] == sum(1 for t in ep.turns
                                         if t.tool_outcome and not t.tool_outcome["ok"])
        assert row["tokens"] == sum(len(s.prompt) + len(s.completion) for s in ep.segments)
        assert row["verdict"] == ("correct" if ep.solved else "wrong")
    wrong = [episode_row(e, 0, category=None, question="") for e in family_episodes["functions"]
             if not e.solved]
    assert any(r["tool_errors"] for r in wrong)  # the wrong oracle's invalid arguments


@pytest.mark.parametrize(("task_id", "labels"), [
    ("procedural/v0/friday13/d1/train/1190623118", ("friday13", "d1")),
    ("functions-procedural/v0/calendar/d3/test/5", ("calendar", "d3")),
    ("browser/v0/h1-1.x0.d0/train/42", ("h1-1.x0.d0", "")),
    ("simple_python_12", ("simple_python", "")),
    ("", ("", "")),
])
def test_task_labels(task_id: str, labels: tuple[str, str]) -> None:
    assert task_labels(task_id) == labels


def test_prompts_are_cut_into_messages_stored_once() -> None:
    codec = get_codec()
    store = PartStore(codec)
    sys_msg = codec.system_message()
    prompt = codec.render_prompt([sys_msg, codec.user_message("What is 2+2?")])
    first = store.add_prompt(prompt)
    assert len(first) == 3  # system, user, and the open <|start|>assistant
    assert [p["messages"][0]["role"] for p in (store.parts[n] for n in first[:2])] == [
        "system", "user"]
    assert store.parts[first[2]] == {"ids": list(codec.assistant_header), "messages": []}
    other = store.add_prompt(codec.render_prompt([sys_msg, codec.user_message("And 3+3?")]))
    assert other[0] == first[0] and other[2] == first[2] and other[1] == len(store.parts) - 1
    assert [t for n in first for t in store.parts[n]["ids"]] == prompt
    # Not cuttable into whole messages: the prompt is one part, decoded as a whole.
    odd = codec.encode("stray text") + prompt
    (whole,) = store.add_prompt(odd)
    assert store.parts[whole]["ids"] == odd and store.parts[whole]["messages"][0]["role"] == "raw"


def test_runs_parse_in_one_call_and_a_bad_run_alone() -> None:
    from agent_envs.viewer.episode import _parse_many

    codec = get_codec()
    a = codec.render_message(codec.tool_message("python", "4"))
    b = codec.render_message(codec.user_message("next?")) + codec.render_message(
        codec.tool_message("functions.f", '{"ok": true}', channel="commentary"))
    out = _parse_many(codec, [a, b])
    assert [[message_text(m) for m in ms] for ms in out] == [["4"], ["next?", '{"ok": true}']]
    assert out[1][1].author.name == "functions.f" and out[1][1].channel == "commentary"
    bad = [200006, 200008, 200007]  # <|start|><|message|><|end|>: no role
    out = _parse_many(codec, [a, bad, b])
    assert out[1] is None and [message_text(m) for m in out[0]] == ["4"] and len(out[2]) == 2
