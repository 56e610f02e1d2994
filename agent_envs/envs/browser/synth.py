"""A Wikipedia-shaped corpus at any size, in Search-R1's wiki-18 format.

Search-R1 (and most browsing-RL work) searches wiki-18: 21M passages of 100 words cut from
Wikipedia articles, one JSON object a line, ``{"id": "0", "contents": "\\"Title\\"\\ntext"}``.
That file is not on these machines, so the scale benchmarks and tests use this generator: the
same format and passage shape, with term statistics like the real one's:

* a Zipf-distributed vocabulary of made-up words (shorter words are the frequent ones), so
  posting lists have the long-tailed lengths of real text, plus years and other numbers;
* English function words at about a third of the tokens (the tokenizer drops the stopwords
  among them; "first", "also", "one" stay, as in the real corpus);
* articles of 1 to ~100 passages (lognormal, mean ~3.5 passages, as wiki-18's 21M passages
  from ~6M articles), each with its own topic words (a few dozen mid-frequency words that
  recur in its passages, as an article's subject terms do) and a title whose words
  recur in its passages; sentences with capitals, commas and full stops.

The stream is cut into blocks of articles, each drawn from its own seeded generator, so the
first N passages are the same whatever size is asked for: a 1M-passage corpus is the head of
the 21M one (``head -n``), and any block can be regenerated alone.

    python -m agent_envs.envs.browser.synth --passages 1000000 --out wiki-1m.jsonl
    python -m agent_envs.envs.browser.synth --passages 2000 --out w.jsonl --qa qa.jsonl
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["WikiConfig", "iter_passages", "sample_questions", "write_corpus"]

#: English function words and common words by rough frequency (the first are the most
#: frequent); the tokenizer drops the ones in bm25s's stopword list, the others stay.
_FUNCTION = ["the", "of", "and", "in", "a", "to", "was", "is", "for", "on", "as", "by", "with", "he", "at", "from", "his", "an", "were", "are", "which", "it", "that", "also", "first", "be", "has", "had", "one", "their", "its", "new", "after", "who", "they", "not", "but", "two", "her", "she", "been", "other", "when", "there", "all", "during", "into", "this", "school", "more", "time", "only", "most", "three", "later", "years", "these", "may", "would", "some", "such", "over", "world", "while", "made", "part", "about", "can", "then", "between", "where", "both", "under", "until", "area", "before", "several", "city", "national", "state", "used", "known", "since", "university", "several", "team", "season", "film", "album", "war", "number", "called", "family", "include", "including", "became", "born"]
_ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "ch", "cr", "dr", "fl", "gr", "kr", "pl", "pr", "sh", "st", "th", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "y", "ai", "au", "ea", "ei", "ia", "io", "ou"]
_PUNCT_SUFFIXES = ("(album)", "(film)", "(band)", "(river)", "(novel)", "(village)")


@dataclass(frozen=True, kw_only=True)
class WikiConfig:
    """The shape of the generated corpus.

    Attributes:
        seed: Seeds every block's generator.
        vocab: Made-up words in the Zipf vocabulary.
        zipf: Zipf exponent of the vocabulary.
        function_share: Share of tokens that are English function words.
        number_share: Share of tokens that are numbers (years and counts).
        topic_share: Share of tokens drawn from the article's own topic words and title.
        topic_words: Topic words per article.
        passage_words: Words per passage (the last passage of an article is shorter).
        articles_per_block: Articles in each independently seeded block.
    """

    seed: int = 0
    vocab: int = 5_000_000
    zipf: float = 1.05
    function_share: float = 0.34
    number_share: float = 0.03
    topic_share: float = 0.18
    topic_words: int = 40
    passage_words: int = 100
    articles_per_block: int = 4096

    def __post_init__(self) -> None:
        if self.vocab < 1000:
            raise ValueError(f"vocab must be >= 1000 words, got {self.vocab}")
        shares = self.function_share + self.number_share + self.topic_share
        if not 0 <= shares < 1:
            raise ValueError(f"function_share + number_share + topic_share must be in [0, 1), "
                             f"got {shares:.3f}")
        if self.passage_words < 10:
            raise ValueError(f"passage_words must be >= 10, got {self.passage_words}")


class _Vocab:
    """Word strings by Zipf rank, and the function words and numbers."""

    def __init__(self, cfg: WikiConfig) -> None:
        self.words = np.asarray(_make_words(cfg.vocab), dtype=object)
        f = 1.0 / np.arange(1, len(_FUNCTION) + 1) ** 0.9
        self.function_cdf = np.cumsum(f / f.sum())
        self.function = np.asarray(_FUNCTION, dtype=object)
        # years 1000..2029, then counts 2..501
        self.numbers = np.asarray([str(y) for y in range(1000, 2030)]
                                  + [str(n) for n in range(2, 502)], dtype=object)


def _zipf_ranks(rng: np.random.Generator, n: int, vocab: int, s: float,
                q: float = 20.0) -> np.ndarray:
    """``n`` ranks in ``[0, vocab)`` from a continuous Zipf-Mandelbrot law
    ``p(r) ~ (r + q) ** -s``, by inverting its CDF (no table lookups)."""
    u = rng.random(n)
    if abs(s - 1.0) < 1e-9:
        lo, hi = np.log(1 + q), np.log(vocab + 1 + q)
        x = np.exp(lo + u * (hi - lo)) - q
    else:
        e = 1.0 - s
        lo, hi = (1 + q) ** e, (vocab + 1 + q) ** e
        x = (lo + u * (hi - lo)) ** (1.0 / e) - q
    return np.clip(x.astype(np.int64) - 1, 0, vocab - 1)


def _make_words(n: int) -> list[str]:
    """``n`` distinct pronounceable words, shortest first (onset + vowel syllables: a word's
    syllables are read back uniquely, so no two ranks share a spelling)."""
    syllables = [o + v for o in _ONSETS for v in _VOWELS]
    words: list[str] = []
    length = 1
    while len(words) < n:
        need = n - len(words)
        count = min(need, len(syllables) ** length)
        idx = np.arange(count, dtype=np.int64)
        digits = []
        for _ in range(length):
            digits.append(idx % len(syllables))
            idx //= len(syllables)
        cols = [np.asarray(syllables, dtype=object)[d] for d in digits]
        words.extend("".join(parts) for parts in zip(*cols))
        length += 1
    return words


_VOCABS: dict[tuple[int], _Vocab] = {}


def _vocab(cfg: WikiConfig) -> _Vocab:
    key = (cfg.vocab,)
    if key not in _VOCABS:
        _VOCABS.clear()
        _VOCABS[key] = _Vocab(cfg)
    return _VOCABS[key]


def _block(cfg: WikiConfig, block: int) -> Iterator[tuple[str, str]]:
    """The ``(title, text)`` passages of one block of articles."""
    voc = _vocab(cfg)
    rng = np.random.default_rng([cfg.seed, block])
    n_art, v = cfg.articles_per_block, cfg.vocab
    n_pass = 1 + np.minimum(np.floor(rng.lognormal(0.55, 1.0, n_art)), 99).astype(np.int64)
    # Topic words: mid-frequency ranks (log-uniform over 300..vocab), per article.
    lo, hi = np.log(300), np.log(v)
    topics = np.exp(rng.uniform(lo, hi, (n_art, cfg.topic_words))).astype(np.int64) - 1
    title_len = rng.choice([1, 2, 2, 3], n_art)
    title_ranks = np.exp(rng.uniform(np.log(2000), hi, (n_art, 3))).astype(np.int64) - 1
    suffix = rng.random(n_art) < 0.05
    # passage lengths: full passages, the article's last one shorter
    lengths = np.full(int(n_pass.sum()), cfg.passage_words, dtype=np.int64)
    last = np.cumsum(n_pass) - 1
    lengths[last] = rng.integers(10, cfg.passage_words + 1, n_art)
    article = np.repeat(np.arange(n_art), n_pass)  # article of each passage
    total = int(lengths.sum())
    tok_article = np.repeat(article, lengths)
    kind = rng.random(total)
    out = voc.words[_zipf_ranks(rng, total, v, cfg.zipf)]
    f_cut = cfg.function_share
    n_cut = f_cut + cfg.number_share
    t_cut = n_cut + cfg.topic_share
    fn = kind < f_cut
    out[fn] = voc.function[np.searchsorted(voc.function_cdf, rng.random(int(fn.sum())))]
    nums = (kind >= f_cut) & (kind < n_cut)
    out[nums] = voc.numbers[rng.integers(0, len(voc.numbers), int(nums.sum()))]
    tp = np.flatnonzero((kind >= n_cut) & (kind < t_cut))
    pick = rng.integers(0, cfg.topic_words + 2, len(tp))
    is_topic = pick < cfg.topic_words
    out[tp[is_topic]] = voc.words[topics[tok_article[tp[is_topic]], pick[is_topic]]]
    title_tok = tp[~is_topic]  # filled below with a word of the title
    title_pick = pick[~is_topic] - cfg.topic_words
    tokens = out.tolist()
    titles_words = [[voc.words[r].capitalize() for r in title_ranks[a, :title_len[a]]]
                    for a in range(n_art)]
    for i, k in zip(title_tok.tolist(), title_pick.tolist()):
        tw = titles_words[tok_article[i]]
        tokens[i] = tw[k % len(tw)]
    sentence = rng.integers(6, 22, total // 6 + len(lengths) + 2).tolist()
    s = start = 0
    first = np.zeros(len(lengths), dtype=bool)
    first[np.cumsum(n_pass) - n_pass] = True
    for p, (n, a) in enumerate(zip(lengths.tolist(), article.tolist())):
        tw = titles_words[a]
        title = " ".join(tw)
        if suffix[a]:
            title += " " + _PUNCT_SUFFIXES[a % len(_PUNCT_SUFFIXES)]
        body = tokens[start:start + n]
        if first[p]:  # an article opens with its title, as Wikipedia's do
            body[:len(tw)] = tw
        start += n
        parts, i = [], 0
        while i < n:
            j = min(n, i + sentence[s])
            s += 1
            sent = " ".join(body[i:j])
            parts.append(sent[:1].upper() + sent[1:] + ("." if j == n or j - i > 3 else ","))
            i = j
        yield title, " ".join(parts)


def iter_passages(n: int, cfg: WikiConfig | None = None) -> Iterator[dict[str, str]]:
    """The first ``n`` passages as wiki-18 rows ``{"id", "contents"}`` (ids ``"0"``...)."""
    cfg = cfg or WikiConfig()
    row, block = 0, 0
    while row < n:
        for title, text in _block(cfg, block):
            if row >= n:
                return
            yield {"id": str(row), "contents": f'"{title}"\n{text}'}
            row += 1
        block += 1


def write_corpus(path: str | os.PathLike[str], n: int, cfg: WikiConfig | None = None, *,
                 progress: bool = False) -> Path:
    """Write the first ``n`` passages to ``path`` (JSONL), through a temporary file."""
    import orjson

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, unit="passage", unit_scale=True, file=sys.stderr,
                   desc=f"generating {out.name}")
    with tmp.open("wb", buffering=1 << 22) as f:
        for i, row in enumerate(iter_passages(n, cfg)):
            f.write(orjson.dumps(row))
            f.write(b"\n")
            if bar is not None and i % 10_000 == 9_999:
                bar.update(10_000)
    if bar is not None:
        bar.update(n - bar.n)
        bar.close()
    tmp.replace(out)
    return out


def sample_questions(path: str | os.PathLike[str], n: int, *, seed: int = 0,
                     passages: int | None = None) -> list[dict[str, object]]:
    """``n`` Search-R1-style QA rows over a wiki-18 JSONL: each names a few content words of a
    random passage and asks for its article's title (the golden answer).

    Reads only the ``n`` sampled lines (by byte offset), so it is quick on any size of file.
    """
    import orjson

    from agent_envs.envs.browser.corpus import tokenize

    p = Path(path)
    size = p.stat().st_size
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    with p.open("rb") as f:
        while len(rows) < n:
            f.seek(int(rng.integers(0, size)))
            f.readline()  # to the next line start
            line = f.readline()
            if not line.strip():
                continue
            row = orjson.loads(line)
            first, _, text = str(row["contents"]).partition("\n")
            title = first.strip('"')
            words = [w for w in tokenize(text) if not w.isdigit() and w not in
                     {t.lower() for t in title.split()}]
            if len(words) < 4 or not title:
                continue
            pick = [words[int(i)] for i in rng.choice(len(words), 3, replace=False)]
            style = len(rows) % 3
            question = (f"which article mentions {pick[0]}, {pick[1]} and {pick[2]}?"
                        if style == 0 else
                        f"what is the {pick[0]} of the {pick[1]} {pick[2]}?" if style == 1
                        else f"who was the first {pick[0]} in {pick[1]}")
            rows.append({"id": f"q{len(rows)}", "question": question,
                         "golden_answers": [title], "data_source": "synth",
                         "passage_id": row["id"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m agent_envs.envs.browser.synth``."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, required=True, help="passages to write")
    ap.add_argument("--out", type=Path, required=True, help="the JSONL to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--qa", type=Path, default=None,
                    help="also write Search-R1-style questions over it here (JSONL)")
    ap.add_argument("--questions", type=int, default=64, help="questions for --qa")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.passages < 1:
        ap.error(f"--passages must be >= 1, got {args.passages}")
    import orjson

    t0 = time.perf_counter()
    write_corpus(args.out, args.passages, WikiConfig(seed=args.seed), progress=not args.quiet)
    print(f"{args.passages:,} passages -> {args.out} "
          f"({args.out.stat().st_size / 2**20:,.0f} MiB, {time.perf_counter() - t0:.0f} s)")
    if args.qa is not None:
        rows = sample_questions(args.out, args.questions, seed=args.seed)
        args.qa.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        print(f"{len(rows)} questions -> {args.qa}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
