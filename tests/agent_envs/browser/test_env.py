"""BrowserEnv end to end: the oracle through the real tool and CLI, malformed calls as the
reference's observations, citations, infra errors, the env contract."""

from __future__ import annotations

import json
import re

import numpy as np
import openai_harmony as oh
import pytest
from gymnasium.utils.env_checker import check_env

import agent_envs
from agent_envs.cli import main as cli_main
from agent_envs.envs.browser import BackendUnavailable, BrowserEnv, BrowserOracle
from agent_envs.envs.browser.backends import Backend
from agent_envs.harmony import get_codec, message_text
from agent_envs.oracle import Oracle
from tests.agent_envs.browser.reference import make_reference_tool, reference_call


def run(env, seed, oracle=None, options=None):
    oracle = oracle or Oracle()
    obs, info = env.reset(seed=seed, options=options)
    while True:
        action = oracle.act(obs, env.task)
        nxt, reward, term, trunc, info = env.step(action)
        assert np.array_equal(nxt[: len(obs) + len(action)],
                              np.concatenate([obs, np.asarray(action, dtype=np.int32)]))
        obs = nxt
        if term or trunc:
            return reward, info


def test_check_env_and_gymnasium_make():
    import gymnasium
    env = agent_envs.make("browser")
    try:
        check_env(env, skip_render_check=False)
    finally:
        env.close()
    g = gymnasium.make("agent_envs/browser-v0", difficulty=2)
    obs, info = g.reset(seed=1)
    assert info["env_id"] == "browser-v0" and obs.dtype == np.int32
    g.close()


def test_system_message_is_harmonys_browser_namespace():
    env = agent_envs.make("browser")
    obs, _ = env.reset(seed=0)
    system = get_codec().decode(obs).split("<|end|>")[0]
    expected = oh.ToolNamespaceConfig.browser()
    assert "namespace browser {" in system and expected.description.splitlines()[0] in system
    for tool in expected.tools:
        assert f"type {tool.name} = " in system
    env.close()


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_oracle_solves_every_difficulty_through_the_cli(difficulty, capsys):
    code = cli_main(["rollout", "browser", "--difficulty", str(difficulty), "--episodes", "12",
                     "--concurrency", "4", "--transcripts", "1", "--quiet", "--no-color"])
    out = capsys.readouterr().out
    assert code == 0
    assert "solved         12/12 (100.0%)" in out, out[-1500:]
    assert "to=browser.search" in out or "-> browser.search" in out
    assert "infra errors   0" in out


def test_wrong_answers_get_zero_and_citations_of_unopened_pages_are_flagged():
    env = agent_envs.make("browser", difficulty=2)
    for seed in range(6):
        reward, info = run(env, seed, Oracle(wrong=True))
        assert reward == 0.0 and info["verdict"]["correct"] is False
    env.reset(seed=3)
    task = env.task
    env.step('<|channel|>analysis to=browser.search code<|message|>'
             + json.dumps({"query": task.evidence[0]["query"]}) + "<|call|>")
    final = (f"<|channel|>final<|message|>Answer: {task.answer} 【9†L3】 【0†L2】 "
             f"【1†L500-L501】<|return|>")
    _obs, reward, term, _trunc, info = env.step(final)
    assert term and reward == 1.0  # the answer is right; citations are reported, not scored
    statuses = [c["status"] for c in info["browser"]["judgement"]["citations"]]
    assert statuses == ["unknown_cursor", "not_a_page", "unknown_cursor"]
    assert len(info["browser"]["judgement"]["flagged"]) == 3
    assert info["browser"]["judgement"]["evidence_recall"] == 0.0
    env.close()


def test_oracle_citations_check_out_and_evidence_recall_is_full():
    env = agent_envs.make("browser", difficulty=4)
    for seed in range(5):
        reward, info = run(env, seed, BrowserOracle())
        j = info["browser"]["judgement"]
        assert reward == 1.0 and j["flagged"] == [] and j["citation_precision"] == 1.0
        assert j["evidence_recall"] == 1.0 and j["cited_evidence_pages"] == 1.0
    env.close()


def test_citation_reward_terms_are_off_by_default_and_itemised_when_on():
    env = agent_envs.make("browser", citation_weight=0.5, evidence_weight=0.25, reward="f1")
    reward, info = run(env, 2)
    assert info["reward_components"] == {"f1": 1.0, "citations": 0.5, "evidence_recall": 0.25}
    assert reward == 1.75
    env.close()


def _tool_texts(env, calls):
    obs, _ = env.reset(seed=5)
    texts = []
    for recipient, args in calls:
        obs, _reward, term, trunc, info = env.step(
            f"<|channel|>analysis to={recipient} code<|message|>{args}<|call|>")
        assert not term and info["infra_error"] is None
        assert not trunc or info["truncated_reason"] == "tokens"  # the 1 MB title fills it
        last = get_codec().parse_conversation(obs)[-1]
        assert last.author.role == oh.Role.TOOL and last.channel == "analysis"
        texts.append((last.author.name, message_text(last), info))
    return texts


def test_malformed_calls_are_the_references_observations():
    env = agent_envs.make("browser", difficulty=1)
    env.reset(seed=5)
    backend = env.tool.backend
    docs = {d.url: (d.html, d.title) for d in backend.corpus.documents}
    task = env.task
    calls = [
        ("browser.open", json.dumps({"cursor": 3})),                  # no pages yet
        ("browser.search", "{not json"),                               # bad JSON
        ("browser.lookup", "{}"),                                      # unknown function
        ("browser.open", json.dumps({"id": "https://atlas.example/wiki/Nowhere"})),
        ("browser.open", json.dumps({"id": task.evidence[0]["url"]})),
        ("browser.open", json.dumps({"id": 4242})),                    # bad link id
        ("browser.open", json.dumps({"cursor": 9})),                   # bad cursor
        ("browser.open", json.dumps({"loc": 100000})),                 # bad loc
        ("browser.find", json.dumps({"pattern": "x"})),
        ("browser.find", json.dumps({"pattern": "x"})),                # on a find page
        ("browser.find", json.dumps({"pattern": "q" * 1_000_000})),    # a 1 MB pattern
    ]
    ref = make_reference_tool(docs, {})
    got = _tool_texts(env, calls)
    for (recipient, args), (author, text, info) in zip(calls, got):
        function = recipient.split(".", 1)[1]
        assert author == recipient
        assert text == reference_call(ref, function, args), (recipient, args[:80])
    assert got[0][2]["tool_outcome"]["ok"] is False and got[4][2]["tool_outcome"]["ok"] is True
    assert got[-1][2]["truncated_reason"] == "tokens"  # the reference's 1 MB text, as it is
    env.close()


def test_recipients_outside_the_namespace():
    env = agent_envs.make("browser")
    (author, text, _info), (_author2, text2, _info2) = _tool_texts(
        env, [("browser", "{}"), ("python", "print(1)")])
    assert author == "browser" and text == '{"error": "Invalid function arguments"}'
    assert "no tool 'python'" in text2 and "browser.search" in text2
    env.close()


class _Down(Backend):
    def search(self, query, topn):
        raise BackendUnavailable("replay cassette has no entry for this search")

    def fetch(self, url):
        raise BackendUnavailable("provider unreachable")


def test_backend_infra_faults_end_the_episode_flagged():
    env = BrowserEnv(backend=_Down())
    env.reset(seed=0)
    _obs, _reward, term, trunc, info = env.step(
        '<|channel|>analysis to=browser.search code<|message|>{"query": "x"}<|call|>')
    assert trunc and not term and info["truncated_reason"] == "infra"
    assert "no entry for this search" in info["infra_error"]
    env.close()


async def test_async_twins_match_sync():
    env_a = agent_envs.make("browser", difficulty=3)
    env_b = agent_envs.make("browser", difficulty=3)
    oracle = Oracle()
    obs_a, _ = env_a.reset(seed=4)
    obs_b, _ = await env_b.areset(seed=4)
    while True:
        act = oracle.act(obs_a, env_a.task)
        obs_a, ra, ta, tra, _ = env_a.step(act)
        obs_b, rb, _tb, _trb, _ = await env_b.astep(act)
        assert np.array_equal(obs_a, obs_b)
        if ta or tra:
            break
    assert ra == rb == 1.0


def test_seeded_resets_replay_and_unknown_arguments_get_did_you_mean():
    env = agent_envs.make("browser", difficulty=3)
    a, ia = env.reset(seed=11)
    b, _ = env.reset(options={"task_id": ia["task_id"]})
    assert np.array_equal(a, b)
    with pytest.raises(TypeError, match=re.escape("did you mean 'distractors'?")):
        agent_envs.make("browser", distracters=2)
    env.close()


def test_citations_of_lines_not_shown_or_without_the_evidence_are_flagged():
    env = agent_envs.make("browser", difficulty=1, deep_evidence=1.0)
    oracle = BrowserOracle()
    obs, _ = env.reset(seed=2)
    while True:
        text = oracle.act_text(obs, env.task)
        if "<|channel|>final" in text:
            break
        obs, *_ = env.step(text)
    good = re.findall(r"【\d+†L\d+(?:-L\d+)?】", text)
    assert good
    views = [v for v in env.tool.views if v.kind == "page"]
    page_view = views[0]  # the page as first opened: its evidence is further down
    unseen = max(v.last for v in views if v.page.url == page_view.page.url) + 3
    final = (f"<|channel|>final<|message|>Answer: {env.task.answer} {good[0]} "
             f"【{page_view.cursor}†L2】 【{page_view.cursor}†L{unseen}】<|return|>")
    _, reward, term, _, info = env.step(final)
    statuses = [c["status"] for c in info["browser"]["judgement"]["citations"]]
    assert term and reward == 1.0
    assert statuses == ["ok", "no_evidence", "not_displayed"]
    assert info["browser"]["judgement"]["citation_precision"] == pytest.approx(1 / 3)
    env.close()


def test_corpus_with_procedural_tasks_and_difficulty_with_loader_specs_are_errors(tmp_path):
    # Before: make("browser", corpus=PATH) accepted the corpus and ignored it, and difficulty
    # was ignored with search-r1: tasks.
    corpus = tmp_path / "corpus.jsonl"
    with pytest.raises(ValueError, match=re.escape(
            f"corpus='{corpus}' is for the loader specs: procedural tasks build their own pages "
            f"and would ignore it.")):
        agent_envs.make("browser", corpus=str(corpus))
    with pytest.raises(ValueError, match=re.escape(
            f"difficulty=2 applies to procedural tasks only, not to task source "
            f"'search-r1:{tmp_path / 'qa.jsonl'}'")):
        agent_envs.make("browser", task_source=f"search-r1:{tmp_path / 'qa.jsonl'}",
                        corpus=str(corpus), difficulty=2)


@pytest.mark.parametrize("call", ["search", "find"])
def test_a_megabyte_query_or_pattern_is_an_observation_without_a_tokenizer_panic(call, capfd):
    # Before: tiktoken panicked (StackOverflow) to stderr and the step took ~10-20 s.
    codec = get_codec()
    env = agent_envs.make("browser")
    prev, _ = env.reset(seed=0)
    if call == "find":
        prev, *_ = env.step('<|channel|>analysis to=browser.search<|message|>'
                            '{"query": "history"}<|call|>')
    key = "query" if call == "search" else "pattern"
    action = (codec.encode(f'<|channel|>analysis to=browser.{call}<|message|>{{"{key}": "')
              + codec.encode("x" * 1_000_000) + codec.encode('"}<|call|>'))
    obs, _, _, _, info = env.step(action)
    assert info["tool_outcome"]["recipient"] == f"browser.{call}"
    assert info["infra_error"] is None
    assert obs[: len(prev) + len(action)].tolist() == prev.tolist() + action
    assert "panicked" not in capfd.readouterr().err
    env.close()
