"""The on-disk corpus index (tantivy candidates, exact rescoring, the document store) against
today's in-memory ``CorpusBackend`` on the same corpus: same rankings, byte-identical
results pages and pages, the proof of exactness, resumable builds, lookups and errors."""

from __future__ import annotations

import json
import multiprocessing
import re

import numpy as np
import pytest

from agent_envs.envs.browser.corpus import (
    Corpus,
    CorpusBackend,
    CorpusError,
    Document,
    tokenize,
)
from agent_envs.envs.browser.diskindex import (
    DiskCorpus,
    DiskCorpusBackend,
    build_index,
    is_index,
)
from agent_envs.envs.browser.docstore import terms_text
from agent_envs.envs.browser.synth import WikiConfig, sample_questions, write_corpus

pytest.importorskip("tantivy")

EDGE_QUERIES = [
    "first", "he was first", "first first national", "album album album", "", "the of and",
    "zzzzqqqq", "1987", "Which ARTICLE mentions", "x" * 300, "ΟΔΟΣ Ünïcode straße",
]


@pytest.fixture(scope="module")
def wiki(tmp_path_factory):
    """A 2,000-passage Wikipedia-shaped corpus, its on-disk index and today's backend."""
    d = tmp_path_factory.mktemp("wiki")
    path = write_corpus(d / "wiki.jsonl", 2000, WikiConfig(vocab=100_000))
    index = build_index(path, d / "index", progress=False, checkpoint=1000)
    ref = CorpusBackend(Corpus.from_jsonl(path), persist=False)
    questions = [str(r["question"]) for r in sample_questions(path, 60, seed=3)]
    return path, index, ref, questions


def test_rankings_and_results_pages_are_todays(wiki):
    _, index, ref, questions = wiki
    ours = index.backend()
    for q in questions + EDGE_QUERIES:
        assert ours.top(q, 20) == ref.top(q, 20), q
        for k in (1, 5):
            assert ours.top(q, k) == ref.top(q, k), (q, k)
        a, b = ours.search(q, 20), ref.search(q, 20)
        assert a.text == b.text and a.urls == b.urls and a.title == b.title, q
    s = ours.stats
    assert s["searches"] > len(questions) and s["proven"] / s["searches"] > 0.8
    # scores are bm25s's float32 values, bit for bit
    for q in questions[:20]:
        rows = [r for r, _ in ref.top(q, 50)]
        assert np.array_equal(ours.score_rows(q, rows), ref.scores(q)[rows]), q


def test_exact_mode_proves_every_ranking(wiki):
    _, index, ref, questions = wiki
    ours = index.backend(exact=True, candidates=20)
    for q in questions[:30] + EDGE_QUERIES:
        assert ours.top(q, 20) == ref.top(q, 20), q
    assert ours.stats["proven"] == ours.stats["searches"]


def _spy_engine(backend):
    """Record, for every tantivy query the backend makes, its optional terms."""
    calls = []
    engine = backend._engine

    def spy(counts, k, optional=None):
        calls.append(dict(optional or {}))
        return engine(counts, k, optional)

    backend._engine = spy
    return calls


@pytest.mark.parametrize("common", [0.0, 0.02, 0.3])
def test_common_terms_are_only_sought_and_rankings_stay_todays(wiki, common):
    """Common terms are optional (sought into for the documents with a rarer term): every
    search proven is today's ranking, as many are proven as with the plain query, and the
    optional terms are used."""
    _, index, ref, questions = wiki
    ours, plain = index.backend(common=common), index.backend(common=1.0)
    calls = _spy_engine(ours)
    for q in questions + EDGE_QUERIES:
        before = ours.stats["proven"]
        got = ours.top(q, 20)
        if ours.stats["proven"] > before:
            assert got == ref.top(q, 20), q
    assert any(calls), "no search sought into optional terms"
    assert ours.stats["proven"] >= plain.stats["proven"]
    assert ours.stats["proven"] / ours.stats["searches"] > 0.8
    exact = index.backend(common=common, exact=True, candidates=20)
    for q in questions[:30] + EDGE_QUERIES:
        assert exact.top(q, 20) == ref.top(q, 20), q
    assert exact.stats["proven"] == exact.stats["searches"]


def test_no_seeking_when_the_rare_terms_are_not_fewer(wiki):
    _, index, ref, questions = wiki
    ours = index.backend(common=0.0, seek_share=0.0)
    calls = _spy_engine(ours)
    for q in questions[:20]:
        assert ours.top(q, 20) == ref.top(q, 20) or ours.stats["proven"] < ours.stats["searches"]
    assert calls and not any(calls)


def test_a_terms_most_bounds_every_document_and_is_kept_on_disk(wiki, tmp_path, monkeypatch):
    """What a common term can add at most (the slack of the proof) is at least its exact
    value in every document that has it; tantivy's best score per term is found once and
    kept in the index directory for the next process."""
    path, index, _, questions = wiki
    ours = index.backend()
    terms = sorted({t for q in questions[:15] for t in tokenize(q)
                    if ours._idf_of(t) is not None}, key=lambda t: -ours._df[t])[:8]
    assert terms
    for t in terms:
        rows, _, complete = ours.candidates_of(t, 5000)
        assert complete and rows
        values = ours.score_rows(t, rows)
        most = ours._most(t, 1)
        assert float(values.max()) <= most < ours._idf[t] * 1.001, t
        assert ours._most(t, 3) == pytest.approx(3 * most)
    saved = json.loads((index.directory / "term-max.json").read_text())
    assert set(terms) <= set(saved["terms"])
    import agent_envs.envs.browser.diskindex as di

    with monkeypatch.context() as m:  # a lookup from the file needs no search
        m.setattr(di, "_tantivy", lambda: pytest.fail("searched for a saved term"))
        assert DiskCorpus(index.directory).term_max(terms[0]) == index.term_max(terms[0])
    # where the index directory is read-only the value is still found, and nothing is left
    ro = DiskCorpus(index.directory)

    def refuse(*_a, **_k):
        raise PermissionError(13, "Read-only file system")

    with monkeypatch.context() as m:
        m.setattr(di.os, "replace", refuse)
        assert ro.term_max("zzzz-not-a-term") == 0.0
        assert ro.term_max(terms[0]) == index.term_max(terms[0])
    assert not list(index.directory.glob(".term-max.json.*"))
    # a file from another build of the index is ignored
    stale = tmp_path / "copy"
    import shutil
    shutil.copytree(index.directory, stale)
    (stale / "term-max.json").write_text(json.dumps({"index": "0" * 16,
                                                    "terms": {terms[0]: 1e9}}))
    assert DiskCorpus(stale, corpus=path).term_max(terms[0]) == index.term_max(terms[0])


def test_rows_come_from_the_segments_row_runs(wiki, tmp_path):
    """The build records where each segment's documents sit among the rows; the lookup
    gives every document the row tantivy's fast field holds, and an index without the
    runs (or with runs of another build) reads the fast field, and gets them when the
    build is run again."""
    import shutil

    import tantivy as tv

    path, index, _, questions = wiki
    copy = tmp_path / "idx"
    shutil.copytree(index.directory, copy)
    corpus = DiskCorpus(copy, corpus=path)
    meta = json.loads((copy / "tantivy" / "meta.json").read_text())
    assert len(meta["segments"]) > 1  # the lookup has runs to choose between
    searcher = corpus.index.searcher()
    addresses = [tv.DocAddress(o, d) for o, seg in enumerate(meta["segments"])
                 for d in range(seg["max_doc"])]
    want = [int(r) for r in searcher.fast_field_values("row", addresses)]
    assert (copy / "row-runs.json").is_file()
    assert corpus.rows_of(searcher, addresses) == want
    assert sorted(want) == list(range(corpus.documents))
    # another build's runs are not used; nor is a missing file: the fast field is
    saved = json.loads((copy / "row-runs.json").read_text())
    (copy / "row-runs.json").write_text(json.dumps({**saved, "tantivy": "0" * 16}))
    stale = DiskCorpus(copy, corpus=path)
    assert stale.rows_of(searcher, addresses) == want and not stale.has_row_runs()
    (copy / "row-runs.json").unlink()
    bare = DiskCorpus(copy, corpus=path)
    for q in questions[:10]:
        assert bare.backend().top(q, 20) == index.backend().top(q, 20), q
    assert not bare.has_row_runs()
    again = build_index(path, copy, progress=False)  # finished: adds the runs
    assert json.loads((copy / "row-runs.json").read_text())["segments"] == saved["segments"]
    assert again.rows_of(searcher, addresses) == want and again.has_row_runs()


def test_a_bad_share_of_common_terms_is_refused(wiki):
    _, index, _, _ = wiki
    with pytest.raises(ValueError, match=re.escape("common must be a share of the documents "
                                                   "in [0, 1], got 2.0")):
        index.backend(common=2.0)


@pytest.mark.parametrize("k1,b", [(1.5, 0.75), (0.9, 0.4), (2.0, 0.9)])
def test_the_bound_behind_the_proof_holds_for_every_matching_document(wiki, k1, b):
    """score(doc) <= bound * tantivy(doc) for every document with a term of the query: what
    makes 'proven' mean the top k are today's."""
    path, index, _, questions = wiki
    ours = index.backend(k1=k1, b=b)
    ref = CorpusBackend(Corpus.from_jsonl(path), persist=False, k1=k1, b=b)
    for q in questions[:10] + ["first", "album album"]:
        rows, tscores, complete = ours.candidates_of(q, 5000)
        assert complete  # every matching document
        exact = ours.score_rows(q, rows)
        assert np.all(exact <= ours.bound * np.asarray(tscores) * (1 + 1e-4)), q
        assert np.array_equal(exact, ref.scores(q)[rows])
        assert ours.top(q, 10) == ref.top(q, 10)


def test_html_and_text_documents_match_todays_backend(tmp_path):
    """HTML (tags, entities, scripts), capital sigma (lower() depends on context),
    whitespace before punctuation, empty and repeated-term documents."""
    docs = [
        Document(url="https://h.example/a", title="Alpha &amp; co",
                 html="<html><title>A</title><script>beta()</script><p>alpha <b>beta</b>"
                      " , gamma &eacute;t&eacute; ΟΔΟΣ .Α</p></html>"),
        Document(url="https://h.example/b", title="",
                 html="<title>Beta page</title><p>beta beta beta alpha</p>"),
        Document(url="https://h.example/c", title="Sigma", text="ΟΔΟΣ .ΑΒ and ΟΔΟΣ ,x οδος"),
        Document(url="https://h.example/d", title="Empty", text=""),
        Document(url="https://h.example/e", title="Gamma", text="gamma\n\n gamma  ; alpha"),
        *[Document(url=f"https://h.example/f{i}", title=f"Filler {i}",
                   text=f"filler words {i} alpha" if i % 3 else "other words")
          for i in range(40)],
    ]
    f = tmp_path / "c.jsonl"
    f.write_text("".join(json.dumps({"url": d.url, "title": d.title, "html": d.html}
                                    if d.html is not None else
                                    {"url": d.url, "title": d.title, "text": d.text}) + "\n"
                         for d in docs))
    ref = CorpusBackend(Corpus.from_jsonl(f), persist=False)
    ours = build_index(f, tmp_path / "idx", progress=False).backend()
    for d in docs:  # the terms the shortcut reads are the search text's terms
        assert tokenize(terms_text(d)) == tokenize(f"{d.title} {d.search_text()}")
    for q in ["alpha", "beta", "οδος", "ΟΔΟΣ", "οδοσ", "été", "gamma alpha", "filler 7", "co"]:
        assert ours.top(q, 20) == ref.top(q, 20), q
        assert ours.search(q, 20).text == ref.search(q, 20).text, q
    for d in docs[:6]:
        assert ours.fetch(d.url).text == ref.fetch(d.url).text
        assert ours.fetch("view-source:" + d.url).text == ref.fetch(d.url).text
        assert ours.fetch_source(d.url) == ref.fetch_source(d.url)
    from agent_envs.envs.browser.backends import BackendError
    with pytest.raises(BackendError, match=re.escape("No contents returned for https://nope")):
        ours.fetch("https://nope")


def test_the_document_store_reads_documents_and_urls(wiki):
    _, index, ref, _ = wiki
    store = index.store
    assert len(store) == len(index) == len(ref.corpus) == 2000
    for row in (0, 1, 1234, 1999):
        assert store.document(row) == ref.corpus.documents[row]
        assert store.row_of(ref.corpus.documents[row].url) == row
    assert store.row_of("https://corpus.local/doc/2000") is None
    assert int(store.terms[7]) == len(__import__(
        "agent_envs.envs.browser.corpus", fromlist=["tokenize"]).tokenize(
        f"{ref.corpus.documents[7].title} {ref.corpus.documents[7].search_text()}"))
    with pytest.raises(IndexError, match=re.escape("row 2000 is out of range (the corpus has "
                                                   "2000 documents)")):
        store.document(2000)


def test_url_lookup_survives_hash_collisions(tmp_path, monkeypatch):
    import agent_envs.envs.browser.docstore as ds

    monkeypatch.setattr(ds, "url_hash", lambda url: len(url) % 3)  # nearly all collide
    f = tmp_path / "c.jsonl"
    f.write_text("".join(json.dumps({"url": f"https://u.example/{i}", "text": f"doc {i}"}) + "\n"
                         for i in range(50)))
    idx = build_index(f, tmp_path / "idx", progress=False)
    for i in (0, 7, 49):
        assert idx.get(f"https://u.example/{i}").text == f"doc {i}"
    assert idx.get("https://u.example/50") is None


def test_duplicate_urls_are_refused_like_todays_corpus(tmp_path):
    f = tmp_path / "dup.jsonl"
    f.write_text("".join(json.dumps({"url": u, "text": "x"}) + "\n"
                         for u in ("https://a", "https://b", "https://a")))
    with pytest.raises(CorpusError, match=re.escape("has two documents with url 'https://a' "
                                                    "(rows 0 and 2); URLs must be unique")):
        build_index(f, tmp_path / "idx", progress=False)


def _same_index(a: DiskCorpus, b: DiskCorpus, queries: list[str]) -> None:
    for name in ("starts.npy", "lengths.npy", "url_hash.npy", "url_row.npy", "terms.npy"):
        assert np.array_equal(np.load(a.directory / name), np.load(b.directory / name)), name
    assert a.meta["tokens"] == b.meta["tokens"] and a.documents == b.documents
    ba, bb = a.backend(), b.backend()
    for q in queries:
        assert ba.search(q, 20).text == bb.search(q, 20).text


def test_an_interrupted_build_resumes_from_its_last_checkpoint(wiki, tmp_path):
    path, index, _, questions = wiki
    seen = []

    def stop(rows: int) -> None:
        seen.append(rows)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(path, tmp_path / "idx", progress=False, checkpoint=500, on_checkpoint=stop)
    assert seen == [500, 1000] and is_index(tmp_path / "idx")
    with pytest.raises(CorpusError, match="is not finished; run the build again to resume"):
        DiskCorpus(tmp_path / "idx")
    resumed: list[int] = []
    again = build_index(path, tmp_path / "idx", progress=False, checkpoint=500,
                        on_checkpoint=resumed.append)
    assert resumed == [1500, 2000]  # went on from 1,000, not from the start
    _same_index(again, index, questions[:15])


def _killed_build(path: str, out: str, when: str) -> None:
    """A build that dies by SIGKILL: after its 2nd commit, or between writing its 3rd
    checkpoint's part and committing it."""
    import os
    import signal

    import agent_envs.envs.browser.docstore as ds
    from agent_envs.envs.browser.diskindex import build_index

    flush, count = ds.StoreWriter.flush, [0]

    def flush_then_die(self, *a):
        part = flush(self, *a)
        count[0] += 1
        if when == "before-commit" and count[0] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return part

    ds.StoreWriter.flush = flush_then_die
    build_index(path, out, progress=False, checkpoint=400,
                on_checkpoint=lambda rows: os.kill(os.getpid(), signal.SIGKILL)
                if when == "after-commit" and rows == 800 else None)


@pytest.mark.parametrize("when", ["after-commit", "before-commit"])
def test_a_killed_build_resumes(wiki, tmp_path, when):
    path, index, _, questions = wiki
    p = multiprocessing.get_context("spawn").Process(
        target=_killed_build, args=(str(path), str(tmp_path / "idx"), when))
    p.start()
    p.join(120)
    assert p.exitcode == -9
    parts = sorted((tmp_path / "idx" / "parts").glob("*.npz"))
    assert len(parts) == (2 if when == "after-commit" else 3)
    again = build_index(path, tmp_path / "idx", progress=False, checkpoint=400)
    _same_index(again, index, questions[:10])


def _search_in_child(index_dir: str, queries: list[str]) -> list[str]:
    from agent_envs.envs.browser.diskindex import DiskCorpusBackend

    backend = DiskCorpusBackend(index_dir)
    return [backend.search(q, 20).text for q in queries]


def test_processes_share_one_index(wiki):
    """Spawned and forked processes (Ray workers, server sessions) open the same files."""
    _, index, ref, questions = wiki
    want = [ref.search(q, 20).text for q in questions[:8]]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        got = pool.starmap(_search_in_child, [(str(index.directory), questions[:8])] * 2)
    assert got == [want] * 2
    backend = index.backend()
    backend.search(questions[0], 5)  # opened here, then used in forked children
    _FORK_BACKEND[:] = [backend]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        texts = pool.map(_forked_search, [questions[:8]] * 2)
    assert texts == [want] * 2


_FORK_BACKEND: list[DiskCorpusBackend] = []


def _forked_search(queries: list[str]) -> list[str]:
    return [_FORK_BACKEND[0].search(q, 20).text for q in queries]


def test_errors_name_the_problem_and_the_fix(wiki, tmp_path):
    path, index, _, _ = wiki
    with pytest.raises(CorpusError, match=re.escape("is not a corpus index (no corpus-index.json);"
                                                    " build one with: agent-envs corpus build")):
        DiskCorpus(tmp_path)
    with pytest.raises(CorpusError, match=re.escape("does not exist; pass a JSONL file")):
        build_index(tmp_path / "missing.jsonl", tmp_path / "i1", progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(CorpusError, match=re.escape("exists and is not a corpus index; pick an "
                                                    "empty or new directory")):
        build_index(path, tmp_path / "full", progress=False)
    with pytest.raises(ValueError, match=re.escape("heap_mb=8 is too small for threads=1: "
                                                   "tantivy needs at least 16 MB per thread")):
        build_index(path, tmp_path / "i2", heap_mb=8, progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": 1, "contents": "ok"}) + "\n\n{not json\n")
    with pytest.raises(CorpusError, match=re.escape(f"{bad}:3: not valid JSON")):
        build_index(bad, tmp_path / "i3", progress=False)
    # the corpus changed after the build
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps({"id": 1, "contents": '"T"\nbody'}) + "\n")
    built = build_index(small, tmp_path / "i4", progress=False)
    size = small.stat().st_size
    small.write_text(json.dumps({"id": 1, "contents": '"T"\nbody, longer now'}) + "\n")
    with pytest.raises(CorpusError, match=re.escape(f"not the {size} it was indexed at; "
                                                    "rebuild")):
        DiskCorpus(built.directory)
    with pytest.raises(CorpusError, match=re.escape("holds an unfinished build of")):
        (tmp_path / "i5").mkdir()
        (tmp_path / "i5" / "build.json").write_text(json.dumps(
            {"corpus": "/elsewhere.jsonl", "corpus_bytes": 1, "corpus_mtime_ns": 1}))
        build_index(small, tmp_path / "i5", progress=False)
    with pytest.raises(ValueError, match=re.escape("candidates must be >= 1, got 0")):
        DiskCorpusBackend(index, candidates=0)


def test_a_posting_budget_proves_only_what_it_can(wiki):
    """With a budget, common terms leave tantivy's query: every search the backend calls
    proven is still today's ranking, and the budget is counted."""
    _, index, ref, questions = wiki
    ours = index.backend(max_postings=300)
    overlap = []
    for q in questions + EDGE_QUERIES:
        proven = ours.stats["proven"]
        got, want = ours.top(q, 20), ref.top(q, 20)
        if ours.stats["proven"] > proven:
            assert got == want, q
        w = {r for r, _ in want}
        overlap.append(len(w & {r for r, _ in got}) / max(1, len(w)))
    assert ours.stats["budgeted"] > len(questions) // 2
    assert 0.5 < sum(overlap) / len(overlap) < 1.0  # it does cost ranking


def test_worker_processes_build_the_same_index(wiki, tmp_path):
    path, index, _, questions = wiki
    again = build_index(path, tmp_path / "idx", progress=False, workers=2, checkpoint=700)
    _same_index(again, index, questions[:10])


def test_workers_read_the_corpus_only_as_fast_as_the_index_takes_it():
    # Pool.imap read its whole input ahead and kept every parsed chunk the writer had not
    # taken: on a busy machine the 21M build's memory grew by ~1 GB per million passages.
    from agent_envs.envs.browser.diskbuild import _in_order

    drawn = 0

    def items():
        nonlocal drawn
        for i in range(200):
            drawn += 1
            yield i

    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = []
        for x in _in_order(pool, abs, items(), 8):
            assert drawn - len(got) <= 8  # in flight, never more than the window
            got.append(x)
    assert got == list(range(200))
