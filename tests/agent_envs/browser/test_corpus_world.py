"""Corpus backend (bm25s, on-disk cache, memory map), loaders, procedural worlds and the
verifier."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from agent_envs.envs.browser.corpus import Corpus, CorpusBackend, CorpusError, Document
from agent_envs.envs.browser.loaders import load_browsecomp_plus, load_search_r1
from agent_envs.envs.browser.page import page_from_html
from agent_envs.envs.browser.tasks import ProceduralBrowserTasks, question_split
from agent_envs.envs.browser.tool import BrowserTool
from agent_envs.envs.browser.verifier import extract_browser_answer, f1_score, normalize_answer
from agent_envs.envs.browser.view import get_token_counter, numbered, wrap_lines
from agent_envs.envs.browser.world import World, WorldConfig


def _docs(n=30):
    return [Document(url=f"https://c.example/{i}", title=f"Doc {i}",
                     html=f"<p>alpha {'beta ' * (i % 5)} gamma{i} shared words here</p>")
            for i in range(n)]


def test_bm25_scores_are_the_textbook_formula(tmp_path):
    """Lucene's BM25 written out (bm25s's default; Lucene dropped the constant (k1 + 1)
    factor, which does not change rankings): idf = ln(1 + (N - df + .5) / (df + .5)) times
    tf / (tf + k1 * (1 - b + b * dl / avgdl)), summed over the query terms."""
    import math
    from collections import Counter

    from agent_envs.envs.browser.corpus import tokenize
    docs = _docs()
    backend = CorpusBackend(Corpus(docs), cache_dir=tmp_path)
    texts = [tokenize(f"{d.title} {d.search_text()}") for d in docs]
    n, avgdl = len(texts), sum(map(len, texts)) / len(texts)
    df = Counter(t for text in texts for t in set(text))
    k1, b = 1.5, 0.75
    for query in ("beta", "gamma7 beta", "alpha shared", "doc 3", "unknownword"):
        expected = []
        for text in texts:
            tf = Counter(text)
            expected.append(sum(
                math.log(1 + (n - df[q] + 0.5) / (df[q] + 0.5))
                * tf[q] / (tf[q] + k1 * (1 - b + b * len(text) / avgdl))
                for q in tokenize(query) if q in df))
        assert np.allclose(backend.scores(query), expected, rtol=1e-5, atol=1e-6), query
        ranked = [i for i, _ in backend.top(query, 5)]  # the best 5 (ties in any order)
        best = sorted((e for e in expected if e > 0), reverse=True)[:5]
        assert np.allclose([expected[i] for i in ranked], best, rtol=1e-5)


def test_index_is_cached_on_disk_and_memory_mapped(tmp_path):
    corpus = Corpus(_docs())
    first = CorpusBackend(corpus, cache_dir=tmp_path)
    second = CorpusBackend(Corpus(_docs()), cache_dir=tmp_path)
    assert not first.loaded_from_cache and second.loaded_from_cache
    assert isinstance(second._data, np.memmap) and second.index_dir == first.index_dir
    assert first.top("gamma3 beta", 3) == second.top("gamma3 beta", 3)


def test_search_results_page_is_the_reference_layout(tmp_path):
    backend = CorpusBackend(Corpus(_docs()), cache_dir=tmp_path)
    page = backend.search("gamma4 beta", 3)
    assert page.url == "" and page.title == "gamma4 beta"
    assert page.text.startswith("\nURL: \n# Search Results\n\n  * 【0†Doc 4†c.example】")
    assert page.urls["0"] == "https://c.example/4" and len(page.urls) == 3


def test_jsonl_and_folder_corpora_and_their_errors(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"url": "https://x.example/a", "title": "A", "text": "hello"}) + "\n"
                 + json.dumps({"id": 7, "contents": '"Seven"\nseventh doc'}) + "\n")
    c = Corpus.from_jsonl(f)
    assert [d.title for d in c.documents] == ["A", "Seven"]
    assert c.get("https://corpus.local/doc/7").text == "seventh doc"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.html").write_text("<title>Hi</title><p>x</p>")
    (tmp_path / "site" / "b.md").write_text("# Bee\n\ntext")
    folder = Corpus.from_folder(tmp_path / "site", base_url="https://s.example/")
    assert [d.url for d in folder.documents] == ["https://s.example/a.html",
                                                 "https://s.example/b.md"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"url": "u"}\n')
    with pytest.raises(CorpusError, match=r"bad.jsonl:1: a document needs 'html' or 'text'"):
        Corpus.from_jsonl(bad)
    with pytest.raises(CorpusError, match="two documents with url"):
        Corpus([Document(url="u", text="a"), Document(url="u", text="b")])


def test_search_r1_and_browsecomp_plus_loaders_on_small_files(tmp_path):
    corpus = tmp_path / "wiki.jsonl"
    corpus.write_text("\n".join(json.dumps({"id": i, "contents": f'"Title {i}"\nbody {i} '
                                            f"{'river' if i == 3 else 'lake'}"})
                                for i in range(10)))
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"id": "q1", "question": "Which river?", "golden_answers":
                              ["Title 3", "three"], "data_source": "nq"}) + "\n")
    src = load_search_r1(qa, corpus=corpus)
    task = src.tasks()[0]
    assert task.answer == "Title 3" and task.aliases == ("three",) and task.split == "test"
    assert "Title 3" in src.backend_for(task).search("river", 5).text
    import agent_envs
    from agent_envs.oracle import Oracle
    env = agent_envs.make("browser", task_source=f"search-r1:{qa}", corpus=str(corpus),
                          split="test")
    obs, _ = env.reset(seed=0)
    assert "Which river?" in env.codec.decode(obs)
    _, reward, term, _, info = env.step(Oracle().act(obs, env.task))
    assert term and reward == 1.0 and info["browser"]["judgement"]["answer"] == "Title 3"
    env.close()
    docs = tmp_path / "bc_corpus.jsonl"
    docs.write_text("\n".join(json.dumps({"docid": f"d{i}", "text": f"Doc {i}\nfact {i}",
                                          "url": f"https://w.example/{i}"}) for i in range(5)))
    queries = tmp_path / "bc.jsonl"
    queries.write_text(json.dumps({"query_id": "7", "query": "What fact?", "answer": "fact 2",
                                   "evidence_docs": [{"docid": "d2", "text": "..."}],
                                   "gold_docs": [{"docid": "d2", "text": "..."}]}) + "\n")
    bc = load_browsecomp_plus(queries, corpus=docs)
    t = bc.tasks()[0]
    assert t.id == "browsecomp-plus/test/7" and t.evidence[0]["url"] == "https://w.example/2"
    env = agent_envs.make("browser", task_source=f"browsecomp-plus:{queries}", corpus=str(docs),
                          split="test")
    obs, _ = env.reset(seed=0)
    while True:
        obs, reward, term, trunc, info = env.step(Oracle().act(obs, env.task))
        if term or trunc:
            break
    assert reward == 1.0 and info["browser"]["judgement"]["evidence_recall"] == 1.0
    env.close()


def test_world_is_deterministic_and_knobs_shape_the_pages():
    cfg = WorldConfig(entities=60, distractors=2, deep_evidence=1.0, table_only=0.0)
    a, b = World(5, cfg), World(5, cfg)
    assert a.documents() == b.documents() and World(6, cfg).documents() != a.documents()
    names = {e.name for e in a.entities}
    base = [e for e in a.entities if e.base]
    assert len(a.entities) == 3 * len(base)  # two near-duplicates per entity
    q = a.question(0, hops=3)
    counter = get_token_counter()
    for ev in q.evidence:  # deep: the evidence line is past the first 1024-token view
        page = page_from_html(a.page_html(next(e for e in a.entities if e.url == ev["url"])),
                              ev["url"], ev["title"], display_urls=True)
        tool = BrowserTool(_OnePage(page))
        shown = tool.call("open", json.dumps({"id": ev["url"]})).text
        assert ev["text"] not in shown
        assert ev["text"] in "".join(wrap_lines(page.text))
    assert len(q.evidence) == 3 and q.answer and q.text.endswith("?")
    assert counter.widest >= 100 and names


def test_table_only_pages_carry_facts_only_in_the_table():
    w = World(1, WorldConfig(entities=40, table_only=1.0))
    e = w.entities[0]
    html = w.page_html(e)
    assert "<h2>Facts</h2>" not in html and "infobox" in html
    value = next(iter(e.attrs.values()))
    assert html.count(value) >= 1 and "Facts" not in page_from_html(html, e.url).text


def test_paraphrased_questions_put_decoys_above_the_gold_page():
    src = ProceduralBrowserTasks(difficulty=1, paraphrase=1.0, entities=60)
    below = 0
    for seed in range(12):
        task = src.sample(seed, "train")
        assert "also known as" in task.prompt and task.meta["paraphrased"]
        backend = src.backend_for(task)
        top = backend.corpus.documents[backend.top(task.evidence[0]["query"], 1)[0][0]]
        below += top.url != task.evidence[0]["url"]
    assert below >= 10


def test_splits_never_overlap_and_ids_rebuild_tasks():
    src = ProceduralBrowserTasks(difficulty=3, entities=60, questions_per_world=16)
    train = {src.sample(s, "train").prompt for s in range(80)}
    test = {src.sample(s, "test").prompt for s in range(80)}
    assert not train & test
    t = src.sample(33, "test")
    assert question_split(t.prompt, t.answer) == "test" and src.get(t.id) == t
    assert t.meta["hops"] in (2, 3)


@pytest.mark.slow
def test_a_world_of_10k_pages_builds_and_indexes_in_seconds():
    t0 = time.perf_counter()
    w = World(0, WorldConfig(entities=5000, distractors=1))
    docs = [Document(url=u, title=t, html=h) for u, t, h in w.documents()]
    backend = CorpusBackend(Corpus(docs), persist=False)
    elapsed = time.perf_counter() - t0
    assert len(docs) == 10_000 and elapsed < 30, elapsed
    assert backend.top(w.entities[0].name, 1)


def test_squad_normalisation_em_f1_and_answer_extraction():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert f1_score("the big red barn", "red barn") == pytest.approx(0.8)
    assert f1_score("x", "y") == 0.0
    assert extract_browser_answer("Thinking...\nAnswer: 12,345 【3†L4-L5】.") == "12,345"
    assert extract_browser_answer("So the answer is Paris. Done") == "Paris"
    assert extract_browser_answer("\\boxed{42}") == "42"
    assert numbered(("a", "b"), 7) == "L7: a\nL8: b"


class _OnePage:
    source = "one"

    def __init__(self, page):
        self.page = page

    def fetch(self, url):
        return self.page

    def search(self, query, topn):  # pragma: no cover
        raise AssertionError
