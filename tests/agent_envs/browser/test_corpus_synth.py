"""The Wikipedia-shaped corpus generator: wiki-18's format, a deterministic stream whose
heads agree, and term statistics of the kind the scale benchmark relies on."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from agent_envs.envs.browser.corpus import Corpus, tokenize
from agent_envs.envs.browser.synth import (
    WikiConfig,
    iter_passages,
    main,
    sample_questions,
    write_corpus,
)

CFG = WikiConfig(vocab=50_000, articles_per_block=64)


def test_any_head_of_the_stream_is_the_same():
    long = list(iter_passages(900, CFG))
    assert list(iter_passages(333, CFG)) == long[:333]
    assert [r["id"] for r in long] == [str(i) for i in range(900)]
    assert list(iter_passages(50, WikiConfig(vocab=50_000, articles_per_block=64, seed=1))) \
        != long[:50]


def test_passages_look_like_wiki_18(tmp_path):
    path = write_corpus(tmp_path / "w.jsonl", 1500, CFG)
    corpus = Corpus.from_jsonl(path)  # wiki-18's {"id", "contents": "\"Title\"\ntext"}
    docs = corpus.documents
    assert len(docs) == 1500 and docs[0].url == "https://corpus.local/doc/0"
    titles = [d.title for d in docs]
    assert all(t and t[0].isupper() for t in titles)
    articles = Counter(titles)
    assert 2.0 < len(docs) / len(articles) < 6.0  # a few passages per article
    words = [len(d.text.split()) for d in docs]
    assert max(words) == 100 and sum(w == 100 for w in words) > len(docs) / 2
    first = {t: d for d, t in reversed(list(zip(docs, titles)))}
    assert all(d.text.startswith(t.split(" (")[0]) for t, d in first.items())
    terms = Counter(t for d in docs for t in tokenize(d.text))
    n_terms = sum(terms.values())
    assert 55 < n_terms / len(docs) < 80  # ~100 words, stopwords dropped
    freq = [c for _, c in terms.most_common()]
    assert freq[9] > 15 * freq[999]  # a long-tailed (Zipf-like) distribution of terms
    assert sum(1 for c in terms.values() if c == 1) > len(terms) / 3  # many rare terms
    assert "the" not in terms and "first" in terms


def test_questions_name_words_of_their_passage_and_ask_for_its_title(tmp_path):
    path = write_corpus(tmp_path / "w.jsonl", 800, CFG)
    rows = sample_questions(path, 12, seed=2)
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    by_id = {json.loads(line)["id"]: json.loads(line)["contents"]
             for line in path.read_text().splitlines()}
    for r in rows:
        contents = by_id[r["passage_id"]]
        assert contents.startswith(f'"{r["golden_answers"][0]}"\n')
        named = [t for t in tokenize(r["question"]) if t in set(tokenize(contents))]
        assert len(named) >= 2, r


def test_the_command_line(tmp_path, capsys):
    assert main(["--passages", "40", "--out", str(tmp_path / "c.jsonl"), "--qa",
                 str(tmp_path / "qa.jsonl"), "--questions", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"40 passages -> .*c\.jsonl", out) and "3 questions" in out
    assert len((tmp_path / "qa.jsonl").read_text().splitlines()) == 3
    with pytest.raises(SystemExit):
        main(["--passages", "0", "--out", str(tmp_path / "x.jsonl")])
    with pytest.raises(ValueError, match=re.escape("vocab must be >= 1000 words, got 10")):
        WikiConfig(vocab=10)
