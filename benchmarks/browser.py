"""Browser benchmark: corpus search on a 100k-page corpus, index build, and env step overhead.

    python benchmarks/browser.py [--pages 100000] [--queries 300] [--baseline-queries 30]
                                 [--quick] [--out benchmarks/results/browser.png]
    python benchmarks/browser.py --passages 21000000 [...]   (Wikipedia scale: see
                                                              benchmarks/browser_scale.py)

1. A procedural world of ``--pages`` interlinked pages (people, companies, cities, countries
   and their near-duplicates) is generated and indexed by the ``corpus`` backend (bm25s,
   saved and loaded memory-mapped). Reported: generation time, index build time (from the
   documents), peak memory of the build (tracemalloc), the index's size on disk, and the
   load time from the cache.
2. The same tokenized documents are indexed by ``rank_bm25.BM25Okapi`` (the
   pure-Python/NumPy BM25 most RL search environments use; built from the same documents
   with the same tokenizer), and both answer the same
   queries, interleaved: entity names, aliases and whole questions. Reported: p50/p95 of
   ours (top-20 retrieval, and the whole search results page as the model sees it) and of
   the baseline (scores + top 20), and the ratio, on the same queries.
3. ``env.step`` overhead without the backend: oracle episodes of ``browser-v0`` at difficulty
   3 (after two warm-up episodes); each step's time minus the time spent inside the
   backend's ``search``/``fetch``, by function, split into parse, tool logic (page view and
   window, find), rendering the tool message's tokens, and the observation copy.

Prints the table, checks the target (search p50 <= 5 ms), and saves a plot and the numbers
as JSON next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_envs.envs.browser.corpus import Corpus, CorpusBackend, Document, tokenize
from agent_envs.envs.browser.world import World, WorldConfig


def say(msg: str) -> None:
    print(msg, flush=True)


def traced_peak_mb(build: Any) -> float:
    """Peak memory allocated while ``build()`` runs (tracemalloc: Python and NumPy)."""
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        kept = build()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del kept
    gc.collect()
    return peak / 2**20


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def build_corpus(pages: int) -> tuple[World, list[Document], float]:
    t0 = time.perf_counter()
    world = World(7, WorldConfig(entities=pages // 2, distractors=1))
    docs = [Document(url=u, title=t, html=h) for u, t, h in world.documents()]
    return world, docs[:pages], time.perf_counter() - t0


def queries_for(world: World, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    base = [e for e in world.entities if e.base]
    out = []
    for i in range(n):
        e = base[int(rng.integers(len(base)))]
        kind = i % 3
        if kind == 0:
            out.append(e.name)
        elif kind == 1:
            out.append(e.alias)
        else:
            out.append(world.question(i, hops=1 + i % 4).text)
    return out


def bench_search(world: World, docs: list[Document], args: argparse.Namespace,
                 tmp: Path) -> dict[str, Any]:
    say(f"\n[2/4] indexing {len(docs):,} pages with bm25s (ours) ...")
    t0 = time.perf_counter()
    ours = CorpusBackend(Corpus(docs, name="bench", fingerprint=f"bench-{len(docs)}"),
                         cache_dir=tmp)
    build_s = time.perf_counter() - t0
    say(f"      build {build_s:.1f} s; again under tracemalloc for its peak memory ...")
    build_rss = traced_peak_mb(lambda: CorpusBackend(
        Corpus(docs, name="bench", fingerprint=f"bench-{len(docs)}"), persist=False))
    disk = sum(f.stat().st_size for f in ours.index_dir.iterdir()) / 2**20
    t0 = time.perf_counter()
    again = CorpusBackend(Corpus(docs, name="bench", fingerprint=f"bench-{len(docs)}"),
                          cache_dir=tmp)
    load_s = time.perf_counter() - t0
    assert again.loaded_from_cache
    say(f"      build {build_s:.1f} s, peak {build_rss:.0f} MB, on disk {disk:.0f} MB, "
        f"load from cache (mmap) {load_s * 1000:.0f} ms")

    from rank_bm25 import BM25Okapi
    say("[3/4] indexing the same tokens with rank_bm25.BM25Okapi (baseline) ...")
    def baseline_build() -> Any:  # the same tokenizer as ours, then rank_bm25's index
        return BM25Okapi([tokenize(f"{d.title} {d.search_text()}") for d in docs],
                         k1=1.5, b=0.75)

    t0 = time.perf_counter()
    baseline = baseline_build()
    base_build_s = time.perf_counter() - t0
    base_rss = traced_peak_mb(baseline_build)
    say(f"      build {base_build_s:.1f} s, peak {base_rss:.0f} MB")

    queries = queries_for(world, args.queries)
    for q in queries[:20]:  # warm-up: page cache, regex compile, lazy imports
        again.search(q, 20)
    retrieval, page, base_times, ours_same = [], [], [], []
    say(f"      {len(queries)} queries; the first {args.baseline_queries} also on the baseline "
        "(interleaved)")
    from tqdm import tqdm
    for i, q in enumerate(tqdm(queries, desc="search", unit="q", file=sys.stderr,
                               disable=args.no_progress)):
        t0 = time.perf_counter()
        again.top(q, 20)
        t1 = time.perf_counter()
        again.search(q, 20)
        t2 = time.perf_counter()
        retrieval.append((t1 - t0) * 1000)
        page.append((t2 - t1) * 1000)
        if i < args.baseline_queries:
            t3 = time.perf_counter()
            scores = baseline.get_scores(tokenize(q))
            np.argsort(-scores)[:20]
            base_times.append((time.perf_counter() - t3) * 1000)
            ours_same.append(retrieval[-1])
    return {
        "pages": len(docs), "build_s": build_s, "build_peak_mb": build_rss,
        "index_disk_mb": disk, "load_s": load_s, "baseline_build_s": base_build_s,
        "baseline_build_peak_mb": base_rss,
        "ours_retrieval_ms": {"p50": pct(retrieval, 50), "p95": pct(retrieval, 95)},
        "ours_results_page_ms": {"p50": pct(page, 50), "p95": pct(page, 95)},
        "ours_same_queries_ms": {"p50": pct(ours_same, 50)},
        "baseline_ms": {"p50": pct(base_times, 50), "p95": pct(base_times, 95)},
        "ratio_p50": pct(base_times, 50) / pct(ours_same, 50),
        "queries": len(queries), "baseline_queries": len(base_times),
    }


class _TimedBackend:
    """Wraps a backend; adds the seconds spent inside it to ``spent``."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.spent = inner, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def search(self, query: str, topn: int) -> Any:
        t0 = time.perf_counter()
        try:
            return self.inner.search(query, topn)
        finally:
            self.spent += time.perf_counter() - t0

    def fetch(self, url: str) -> Any:
        t0 = time.perf_counter()
        try:
            return self.inner.fetch(url)
        finally:
            self.spent += time.perf_counter() - t0


def bench_step(args: argparse.Namespace) -> dict[str, Any]:
    import agent_envs
    from agent_envs.oracle import Oracle

    say("\n[4/4] env.step overhead without the backend (oracle episodes, difficulty 3) ...")
    env = agent_envs.make("browser", difficulty=3)
    oracle = Oracle()
    parts: dict[str, float] = defaultdict(float)

    def wrap(obj: Any, name: str, part: str) -> None:
        fn = getattr(obj, name)

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                parts[part] += time.perf_counter() - t0
        setattr(obj, name, timed)

    wrap(env.codec, "parse_completion", "parse")
    wrap(env.codec, "tool_result_tokens", "render")
    wrap(env, "_obs", "copy")
    by_fn: dict[str, list[float]] = defaultdict(list)
    split: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    backend_ms: list[float] = []
    for seed in range(args.episodes + 2):
        obs, _ = env.reset(seed=seed)
        timed = _TimedBackend(env.tool.backend)
        env.tool.backend = timed  # type: ignore[assignment]
        wrap(env.tool, "call", "tool")
        while True:
            action = oracle.act(obs, env.task)
            before = timed.spent
            parts.clear()
            t0 = time.perf_counter()
            obs, _, term, trunc, info = env.step(action)
            elapsed = time.perf_counter() - t0
            inside = timed.spent - before
            name = (info["tool_outcome"] or {}).get("recipient", "final")
            if seed >= 2:  # two warm-up episodes (token widths, first world and index)
                by_fn[name].append((elapsed - inside) * 1000)
                for part in ("parse", "render", "copy"):
                    split[name][part].append(parts[part] * 1000)
                split[name]["tool logic"].append((parts["tool"] - inside) * 1000)
                if inside:
                    backend_ms.append(inside * 1000)
            if term or trunc:
                break
    env.close()
    out: dict[str, Any] = {
        k: {"p50": pct(v, 50), "p95": pct(v, 95), "n": len(v),
            "parts_p50": {p: pct(x, 50) for p, x in split[k].items()}}
        for k, v in by_fn.items()}
    out["backend_call_ms"] = {"p50": pct(backend_ms, 50), "n": len(backend_ms)}
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, st = result["search"], result["step"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = ["ours: top-20", "ours: results page", "rank_bm25 baseline"]
    vals = [s["ours_retrieval_ms"]["p50"], s["ours_results_page_ms"]["p50"], s["baseline_ms"]["p50"]]
    a.bar(names, vals, color=["#2a7", "#5b9", "#c55"])
    a.set_yscale("log")
    a.axhline(5, color="gray", ls="--", lw=1, label="target 5 ms")
    a.set_ylabel("p50 ms per query (log)")
    a.set_title(f"search on {s['pages']:,} pages: {s['ratio_p50']:.0f}x faster")
    a.legend()
    fns = [k for k in st if k != "backend_call_ms"]
    b.bar(fns, [st[k]["p50"] for k in fns], color="#57a")
    b.set_ylabel("p50 ms per step, backend excluded")
    b.set_title("env.step overhead")
    for ax in (a, b):
        ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    if any(a in ("--passages", "--table") or a.startswith("--passages=")
           for a in sys.argv[1:]):
        import browser_scale  # the Wikipedia-scale mode: its own options and report

        browser_scale.main(sys.argv[1:])
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--baseline-queries", type=int, default=30)
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="10k pages, fewer queries and episodes")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/browser.png"))
    args = ap.parse_args()
    if args.quick:
        args.pages, args.queries, args.baseline_queries, args.episodes = 10_000, 100, 20, 10
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(Path(__file__).resolve().parents[2]
                                                         / "shared" / "vocab"))
    say(f"[1/4] generating a procedural world of {args.pages:,} pages ...")
    world, docs, gen_s = build_corpus(args.pages)
    say(f"      {len(docs):,} pages in {gen_s:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        search = bench_search(world, docs, args, Path(tmp))
    del docs
    step = bench_step(args)
    result = {"generate_s": gen_s, "search": search, "step": step}
    s = search
    say("\n=== corpus search (p50 / p95 ms) ===")
    say(f"ours, top-20 retrieval        {s['ours_retrieval_ms']['p50']:8.2f} / "
        f"{s['ours_retrieval_ms']['p95']:.2f}")
    say(f"ours, whole results page      {s['ours_results_page_ms']['p50']:8.2f} / "
        f"{s['ours_results_page_ms']['p95']:.2f}")
    say(f"rank_bm25 baseline            {s['baseline_ms']['p50']:8.2f} / "
        f"{s['baseline_ms']['p95']:.2f}   (same queries: ours {s['ours_same_queries_ms']['p50']:.2f})")
    say(f"ratio (baseline / ours, p50)  {s['ratio_p50']:8.0f}x")
    say(f"index build                   ours {s['build_s']:.1f} s ({s['build_peak_mb']:.0f} MB "
        f"peak, {s['index_disk_mb']:.0f} MB on disk, mmap load {s['load_s'] * 1000:.0f} ms); "
        f"baseline {s['baseline_build_s']:.1f} s ({s['baseline_build_peak_mb']:.0f} MB peak)")
    say("\n=== env.step overhead, backend excluded (p50 / p95 ms) ===")
    for k, v in step.items():
        if k != "backend_call_ms":
            parts = ", ".join(f"{p} {x:.3f}" for p, x in v["parts_p50"].items())
            say(f"{k:<16} {v['p50']:6.3f} / {v['p95']:.3f}   (n={v['n']}; p50 parts: {parts})")
    say(f"(backend calls themselves: p50 {step['backend_call_ms']['p50']:.2f} ms)")
    target = s["ours_results_page_ms"]["p50"] <= 5.0
    say(f"\ntarget: search p50 <= 5 ms on {s['pages']:,} pages: "
        f"{'met' if target else 'MISSED'} (whole results page "
        f"{s['ours_results_page_ms']['p50']:.2f} ms)")
    plot(result, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    say(f"plot: {args.out}  numbers: {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
