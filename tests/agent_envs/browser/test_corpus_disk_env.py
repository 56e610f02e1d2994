"""Search-R1 over an on-disk index, end to end: the env, the oracle, the rollout CLI and the
``agent-envs corpus`` commands; the model sees the same tokens as over the JSONL."""

from __future__ import annotations

import json
import re

import pytest

import agent_envs
from agent_envs.cli import main
from agent_envs.envs.browser.corpus import CorpusError
from agent_envs.envs.browser.diskindex import DiskCorpusBackend, build_index
from agent_envs.envs.browser.synth import WikiConfig, sample_questions, write_corpus
from agent_envs.errors import DatasetError
from agent_envs.oracle import Oracle

pytest.importorskip("tantivy")


@pytest.fixture(scope="module")
def search_r1(tmp_path_factory):
    d = tmp_path_factory.mktemp("sr1")
    corpus = write_corpus(d / "wiki.jsonl", 600, WikiConfig(vocab=50_000, seed=4))
    qa = d / "qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in sample_questions(corpus, 4, seed=1)))
    index = build_index(corpus, d / "wiki.index", progress=False)
    return corpus, qa, index


def _call(function: str, args: dict) -> str:
    return (f"<|channel|>analysis to=browser.{function} code<|message|>"
            f"{json.dumps(args)}<|call|>")


def test_the_oracle_solves_search_r1_over_the_index(search_r1):
    _, qa, index = search_r1
    env = agent_envs.make("browser", task_source=f"search-r1:{qa}", corpus=str(index.directory),
                          split="test")
    oracle = Oracle()
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        assert isinstance(env.task_source.backend_for(env.task), DiskCorpusBackend)
        _, reward, term, _, info = env.step(oracle.act(obs, env.task))
        assert term and reward == 1.0
        assert info["browser"]["judgement"]["answer"] == env.task.answer
    env.close()


def test_the_model_sees_the_same_tokens_as_over_the_jsonl(search_r1):
    """The same calls (search, open a result, open by URL, find) through an env over the
    JSONL (today's in-memory backend) and one over its index: identical observations."""
    corpus, qa, index = search_r1
    question = json.loads(qa.read_text().splitlines()[0])["question"]
    envs = [agent_envs.make("browser", task_source=f"search-r1:{qa}", corpus=str(c),
                            split="test") for c in (corpus, index.directory)]
    actions = [_call("search", {"query": question}), _call("open", {"id": 3}),
               _call("find", {"pattern": "the"}),
               _call("open", {"id": "https://corpus.local/doc/17"}),
               _call("search", {"query": "first first national album"}),
               _call("open", {"id": "https://corpus.local/doc/999999"})]
    traces = []
    for env in envs:
        obs, _ = env.reset(seed=0)
        trace = [obs.tolist()]
        for a in actions:
            obs, _, term, _, _ = env.step(env.codec.encode(a))
            assert not term
            trace.append(obs.tolist())
        traces.append(trace)
        env.close()
    assert traces[0] == traces[1]
    text = envs[1].codec.decode(traces[1][1])
    assert "# Search Results" in text and "No contents returned for" in envs[1].codec.decode(
        traces[1][-1])


def test_browsecomp_plus_refuses_an_index(search_r1):
    _, qa, index = search_r1
    with pytest.raises(DatasetError, match=re.escape("BrowseComp-Plus takes its corpus JSONL, "
                                                     "not an on-disk index")):
        agent_envs.make("browser", task_source=f"browsecomp-plus:{qa}",
                        corpus=str(index.directory), split="test")


def test_cli_builds_inspects_searches_and_rolls_out(search_r1, tmp_path, capsys):
    corpus, qa, _ = search_r1
    out = tmp_path / "idx"
    assert main(["corpus", "build", str(corpus), str(out), "--quiet", "--checkpoint", "250"]) == 0
    assert "600 documents indexed in" in capsys.readouterr().out
    assert main(["corpus", "info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == 600 and info["engine"] == "tantivy" and info["index_bytes"] > 0
    assert info["row_runs"] is True
    assert main(["corpus", "search", str(out), "first national album", "--topn", "3"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("\nURL: \n# Search Results") and "【2†" in page and "【3†" not in page
    assert main(["rollout", "browser", "--tasks", f"search-r1:{qa}", "--env-arg",
                 f"corpus={out}", "--episodes", "4", "--split", "test", "--quiet",
                 "--transcripts", "0"]) == 0
    summary = capsys.readouterr().out
    assert "solved         4/4" in summary and "infra errors   0" in summary
    assert main(["corpus", "info", str(tmp_path)]) == 2
    assert "is not a corpus index" in capsys.readouterr().err


def test_a_folder_that_is_not_an_index_says_how_to_build_one(search_r1, tmp_path):
    _, qa, _ = search_r1
    with pytest.raises(CorpusError, match=re.escape("is not a corpus index (no corpus-index.json);"
                                                  " build one with: agent-envs corpus build")):
        agent_envs.make("browser", task_source=f"search-r1:{qa}", corpus=str(tmp_path),
                        split="test")
