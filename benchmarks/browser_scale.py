"""The browser's corpus backend at Wikipedia scale (``benchmarks/browser.py --passages N``).

    python benchmarks/browser.py --passages 1000000 [--data-dir /work/data/wiki]
        [--queries 400] [--compare 200000] [--heap-mb 256] [--threads 1]

For a generated Wikipedia-shaped corpus of N passages in wiki-18's format
(``agent_envs.envs.browser.synth``; the head of a bigger one when there is one), it
measures the on-disk backend (:mod:`agent_envs.envs.browser.diskindex`):

1. the build (``agent-envs corpus build``, a child process): wall time, peak RSS, index size
   on disk. It is resumable: run the benchmark again after a stop and the build goes on,
   and the times of all its runs are added up (``INDEX.build.json``);
2. in a fresh process after the index and corpus are evicted from the page cache
   (``posix_fadvise(DONTNEED)``): opening the index, then **cold** searches (the whole
   results page the model sees) and ``open`` of random passages (``fetch``);
3. **warm**: the same queries again with a new backend object (the page cache warm, the
   backend's own caches empty), p50/p95 of wall time and of CPU time (this machine is
   shared, so wall time includes waiting for a core);
4. the memory an env process adds by serving the index: RSS and USS (private) before opening
   and after the searches; then 4 processes searching at once, with their RSS, USS and PSS
   (shared file pages are counted once: no copy of the index per process);
5. the ranking against today's in-memory ``CorpusBackend`` (bm25s) on the first
   ``--compare`` passages, where it fits in memory: identical top-20 rankings, identical
   results pages, overlap@20, and tantivy's own ranking's overlap@20; at every size, the
   share of searches whose top 20 are proven to be ``CorpusBackend``'s (``stats``), and
   the candidates scored per search.

The numbers go to ``benchmarks/results/browser_scale.json`` (one entry per size, kept across
runs) and the plot of every size measured so far to ``benchmarks/results/browser_scale.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"build_peak_gb": 8.0, "warm_p50_ms": 20.0, "env_added_gb": 1.0}


def say(msg: str) -> None:
    print(msg, flush=True)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def _label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else f"{n // 1000}k"


# -- the corpus -------------------------------------------------------------------------

def corpus_file(n: int, data: Path) -> Path:
    """The N-passage corpus: made by ``head`` of a bigger generated one, else generated."""
    from agent_envs.envs.browser.synth import write_corpus

    out = data / f"wiki-{_label(n)}.jsonl"
    if out.is_file():
        return out
    bigger = sorted((p for p in data.glob("wiki-*.jsonl") if _lines_at_least(p, n)),
                    key=lambda p: p.stat().st_size)
    if bigger:
        say(f"      the first {n:,} lines of {bigger[0].name} -> {out.name}")
        tmp = out.with_name(out.name + ".part")
        with bigger[0].open("rb") as src, tmp.open("wb") as dst:
            for i, line in enumerate(src):
                if i == n:
                    break
                dst.write(line)
        tmp.replace(out)
        return out
    say(f"      generating {n:,} passages -> {out}")
    return write_corpus(out, n, progress=True)


def _lines_at_least(p: Path, n: int) -> bool:
    # passages are ~550 bytes: a file far too small cannot have n lines
    if p.stat().st_size < n * 300:
        return False
    with p.open("rb") as f:
        return sum(1 for _ in f) >= n


# -- the build ----------------------------------------------------------------------------

def build(corpus: Path, index: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Build (or resume) the index in a child process; times and peaks of all runs."""
    log_path = index.with_name(index.name + ".build.json")
    log = json.loads(log_path.read_text()) if log_path.is_file() else {"runs": []}
    from agent_envs.envs.browser.diskindex import MANIFEST
    if not (index / MANIFEST).is_file():
        cmd = [sys.executable, "-m", "agent_envs.cli", "corpus", "build", str(corpus),
               str(index), "--heap-mb", str(args.heap_mb), "--threads", str(args.threads),
               "--workers", str(args.workers), "--checkpoint", str(args.checkpoint)]
        say(f"      {' '.join(cmd[2:])}")
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT)
        peak = peak_anon = 0.0
        while True:  # VmHWM: the child's own peak (ru_maxrss would start at ours, at fork)
            peak = max(peak, _tree_hwm_mb(proc.pid))
            peak_anon = max(peak_anon, _tree_hwm_mb(proc.pid, "RssAnon"))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
        run = {"seconds": round(seconds, 1), "peak_rss_mb": round(peak, 1),
               "peak_anon_mb": round(peak_anon, 1),
               "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
               "status": os.waitstatus_to_exitcode(status)}
        log["runs"].append(run)
        log_path.write_text(json.dumps(log, indent=1))
        if run["status"] != 0:
            raise SystemExit(f"the build stopped (exit {run['status']}); run the benchmark "
                             "again to resume it")
    runs = log["runs"]
    from agent_envs.envs.browser.diskindex import DiskCorpus
    idx = DiskCorpus(index)
    return {"seconds": sum(r["seconds"] for r in runs), "cpu_s": sum(r["cpu_s"] for r in runs),
            "peak_rss_mb": max((r["peak_rss_mb"] for r in runs), default=float("nan")),
            "peak_anon_mb": max((r.get("peak_anon_mb", float("nan")) for r in runs),
                                default=float("nan")),
            "runs": len(runs), "index_mb": idx.index_bytes() / 2**20,
            "corpus_mb": corpus.stat().st_size / 2**20, "documents": idx.documents}


def _hwm_mb(pid: int | str = "self", field: str = "VmHWM") -> float:
    """The process's peak RSS so far (VmHWM; or another field of its status, such as
    RssAnon, its anonymous memory now), in MB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _tree_hwm_mb(pid: int, field: str = "VmHWM") -> float:
    """The peaks (or ``field``) of a process and its children (the build's workers), added
    up."""
    import psutil
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return 0.0
    return _hwm_mb(pid, field) + sum(_hwm_mb(k.pid, field) for k in kids)


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (so the next reads go to the disk)."""
    for p in paths:
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fdatasync(fd)  # dirty pages are not dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# -- measurements in fresh processes ----------------------------------------------------

def _mem() -> dict[str, float]:
    """RSS, USS (pages no other process maps: a file mapped by this process alone counts),
    PSS, and the anonymous part of RSS (heap: what no other process could ever share)."""
    import psutil
    m = psutil.Process().memory_full_info()
    status = dict(line.split(":", 1) for line in
                  Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": m.rss / 2**20, "uss_mb": m.uss / 2**20, "pss_mb": m.pss / 2**20,
            "anon_mb": int(status["RssAnon"].split()[0]) / 1024,
            "file_mb": int(status["RssFile"].split()[0]) / 1024}


def serve(index: str, queries: list[str], urls: list[str], evict_first: list[str]
          ) -> dict[str, Any]:
    """One env process: open the index cold, search and open pages cold, then warm."""
    import agent_envs.envs.browser.diskindex as di

    if evict_first:
        evict([Path(p) for p in evict_first])
    before = _mem()
    t0 = time.perf_counter()
    corpus = di.DiskCorpus(index)
    backend = corpus.backend()
    backend.search(queries[0], 20)  # opening = the manifest, the maps, and a first search
    open_s = time.perf_counter() - t0

    def timed(fn: Any, items: list[str]) -> tuple[list[float], list[float]]:
        wall, cpu = [], []
        for x in items:
            t, c = time.perf_counter(), time.process_time()
            fn(x)
            wall.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        return wall, cpu

    growth: list[tuple[int, float]] = []  # RSS added after n searches: mapped index pages

    def cold(q: str) -> None:
        backend.search(q, 20)
        n = backend.stats["searches"]
        if n % 100 == 0:
            growth.append((n, _mem()["rss_mb"] - before["rss_mb"]))

    cold_search, cold_search_cpu = timed(cold, queries[1:])
    cold_open, _ = timed(backend.fetch, urls)
    stats_cold = dict(backend.stats)
    warm = corpus.backend()  # the page cache is warm; this backend's own caches are empty
    warm_search, warm_search_cpu = timed(lambda q: warm.search(q, 20), queries[1:])
    warm_top, warm_top_cpu = timed(lambda q: warm.top(q, 20), queries[1:])
    warm_open, _ = timed(warm.fetch, urls)
    after = _mem()  # what serving adds (before the alternative below maps more of the index)
    # The alternative, side by side: every term in tantivy's query (no optional terms), as
    # the backend searched before common terms were only sought into. Same rankings.
    plain = corpus.backend(common=1.0)
    plain_search, plain_search_cpu = timed(lambda q: plain.search(q, 20), queries[1:])
    same = sum(warm.top(q, 20) == plain.top(q, 20) for q in queries[1:101])
    return {
        "open_index_ms": open_s * 1000,
        "cold_search_ms": {"p50": pct(cold_search, 50), "p95": pct(cold_search, 95),
                           "cpu_p50": pct(cold_search_cpu, 50)},
        "cold_open_ms": {"p50": pct(cold_open, 50), "p95": pct(cold_open, 95)},
        "warm_search_ms": {"p50": pct(warm_search, 50), "p95": pct(warm_search, 95),
                           "cpu_p50": pct(warm_search_cpu, 50),
                           "cpu_p95": pct(warm_search_cpu, 95)},
        "warm_top20_ms": {"p50": pct(warm_top, 50), "p95": pct(warm_top, 95),
                          "cpu_p50": pct(warm_top_cpu, 50)},
        "warm_open_ms": {"p50": pct(warm_open, 50), "p95": pct(warm_open, 95)},
        "plain_search_ms": {"p50": pct(plain_search, 50), "p95": pct(plain_search, 95),
                            "cpu_p50": pct(plain_search_cpu, 50),
                            "same_top20": same / len(queries[1:101])},
        "proven_share": stats_cold["proven"] / max(1, stats_cold["searches"]),
        "candidates_per_search": stats_cold["candidates"] / max(1, stats_cold["searches"]),
        "mem_before": before, "mem_after": after,
        "added_rss_mb": after["rss_mb"] - before["rss_mb"],
        "rss_growth_mb": growth,
        "added_uss_mb": after["uss_mb"] - before["uss_mb"],
        "added_anon_mb": after["anon_mb"] - before["anon_mb"],
        "queries": len(queries) - 1, "opens": len(urls),
    }


def shared(index: str, queries: list[str], start_at: float) -> dict[str, float]:
    """One of several processes searching the same index at once."""
    import agent_envs.envs.browser.diskindex as di

    base = _mem()
    backend = di.DiskCorpusBackend(index)
    while time.time() < start_at:
        time.sleep(0.01)
    wall = []
    for q in queries:
        t = time.perf_counter()
        backend.search(q, 20)
        wall.append((time.perf_counter() - t) * 1000)
    m = _mem()
    return {**m, "added_uss_mb": m["uss_mb"] - base["uss_mb"],
            "added_anon_mb": m["anon_mb"] - base["anon_mb"], "p50_ms": pct(wall, 50)}


def ranking(index: str, queries: list[str], budget: int) -> dict[str, Any]:
    """At any size: the default ranking and a ``max_postings`` budget's against the proven
    one (``exact=True``: CorpusBackend's top 20 whenever proven), and their times."""
    from agent_envs.envs.browser.diskindex import DiskCorpus

    corpus = DiskCorpus(index)
    exact = corpus.backend(exact=True)
    t0 = time.process_time()
    want = [exact.top(q, 20) for q in queries]
    exact_cpu = (time.process_time() - t0) / len(queries) * 1000
    out: dict[str, Any] = {"queries": len(queries), "exact_proven": exact.stats["proven"],
                           "exact_cpu_ms_mean": exact_cpu}
    for name, backend in (("default", corpus.backend()),
                          ("budget", corpus.backend(max_postings=budget))):
        for q in queries:  # warm
            backend.top(q, 20)
        backend.stats = dict.fromkeys(backend.stats, 0)
        same, overlap, wall = 0, [], []
        for q, w in zip(queries, want):
            t = time.perf_counter()
            got = backend.top(q, 20)
            wall.append((time.perf_counter() - t) * 1000)
            same += got == w
            ws = {r for r, _ in w}
            overlap.append(len(ws & {r for r, _ in got}) / max(1, len(ws)))
        out[name] = {"identical_top20": same / len(queries), "overlap20": float(np.mean(overlap)),
                     "top20_ms": {"p50": pct(wall, 50), "p95": pct(wall, 95)},
                     "budgeted": backend.stats["budgeted"], "proven": backend.stats["proven"]}
    out["budget_postings"] = budget
    return out


def compare(corpus: str, index: str, queries: list[str]) -> dict[str, Any]:
    """Today's in-memory CorpusBackend against the on-disk one on the same corpus."""
    from agent_envs.envs.browser.corpus import Corpus, CorpusBackend
    from agent_envs.envs.browser.diskindex import DiskCorpus

    t0, c0 = time.perf_counter(), time.process_time()
    ref = CorpusBackend(Corpus.from_jsonl(corpus), persist=False)
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _hwm_mb()
    ours = DiskCorpus(index).backend()
    same_rank = same_page = 0
    overlap, overlap_tantivy, ref_ms = [], [], []
    ref_cpu: list[float] = []
    for q in queries:
        t, c = time.perf_counter(), time.process_time()
        page_ref = ref.search(q, 20)
        ref_ms.append((time.perf_counter() - t) * 1000)
        ref_cpu.append((time.process_time() - c) * 1000)
        want = ref.top(q, 20)
        got = ours.top(q, 20)
        same_rank += want == got
        same_page += page_ref.text == ours.search(q, 20).text
        w = {i for i, _ in want}
        overlap.append(len(w & {i for i, _ in got}) / max(1, len(w)))
        raw = ours.candidates_of(q, 20)[0]
        overlap_tantivy.append(len(w & set(raw)) / max(1, len(w)))
    return {"passages": len(ref.corpus), "queries": len(queries),
            "identical_top20": same_rank / len(queries),
            "identical_pages": same_page / len(queries),
            "overlap20": float(np.mean(overlap)),
            "tantivy_own_overlap20": float(np.mean(overlap_tantivy)),
            "bm25s_build_s": build_s, "bm25s_build_cpu_s": build_cpu, "bm25s_peak_rss_mb": peak,
            "bm25s_search_ms": {"p50": pct(ref_ms, 50), "p95": pct(ref_ms, 95),
                                "cpu_p50": pct(ref_cpu, 50)}}


def _in_child(fn: Any, *a: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as ex:
        return ex.submit(fn, *a).result()


# -- the run ------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from agent_envs.envs.browser.synth import sample_questions

    n, data = args.passages, Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    say(f"[1/6] the corpus: {n:,} Wikipedia-shaped passages (wiki-18's format)")
    corpus = corpus_file(n, data)
    index = data / f"wiki-{_label(n)}.index"
    if args.rebuild:
        import shutil
        shutil.rmtree(index, ignore_errors=True)
        index.with_name(index.name + ".build.json").unlink(missing_ok=True)
    say(f"[2/6] the index: {index}")
    built = build(corpus, index, args)
    say(f"      {built['documents']:,} documents; build {built['seconds']:,.0f} s over "
        f"{built['runs']} run(s), peak RSS {built['peak_rss_mb']:,.0f} MB, index "
        f"{built['index_mb']:,.0f} MB on disk (corpus {built['corpus_mb']:,.0f} MB)")
    qa = sample_questions(corpus, args.queries + 1, seed=args.seed)
    queries = [str(r["question"]) for r in qa]
    rng = np.random.default_rng(args.seed)
    urls = [f"https://corpus.local/doc/{int(i)}" for i in rng.integers(0, n, args.opens)]
    say(f"[3/6] one env process: cold (page cache evicted), then warm; {args.queries} "
        f"queries, {args.opens} opens")
    served = _in_child(serve, str(index), queries, urls, [str(index), str(corpus)])
    s = served
    say(f"      open the index {s['open_index_ms']:.0f} ms; search cold p50/p95 "
        f"{s['cold_search_ms']['p50']:.1f}/{s['cold_search_ms']['p95']:.1f} ms, warm "
        f"{s['warm_search_ms']['p50']:.1f}/{s['warm_search_ms']['p95']:.1f} ms (CPU p50 "
        f"{s['warm_search_ms']['cpu_p50']:.1f} ms); open cold {s['cold_open_ms']['p50']:.2f}"
        f", warm {s['warm_open_ms']['p50']:.2f} ms; adds RSS {s['added_rss_mb']:.0f} MB "
        f"(anonymous {s['added_anon_mb']:.0f} MB)")
    say(f"      proven identical to CorpusBackend's top 20: {s['proven_share']:.1%} of "
        f"searches ({s['candidates_per_search']:.0f} candidates scored per search)")
    say(f"      ranking against the proven one (exact=True) on {args.ranking_queries} "
        f"queries; and with a budget of {args.budget:,} postings")
    rk = _in_child(ranking, str(index), queries[1:1 + args.ranking_queries], args.budget)
    served["ranking"] = rk
    say(f"      all proven: {rk['exact_proven']}/{rk['queries']}; default: identical "
        f"{rk['default']['identical_top20']:.1%}, overlap@20 {rk['default']['overlap20']:.4f}, "
        f"top-20 p50 {rk['default']['top20_ms']['p50']:.1f} ms; budget: identical "
        f"{rk['budget']['identical_top20']:.1%}, overlap@20 {rk['budget']['overlap20']:.4f}, "
        f"top-20 p50 {rk['budget']['top20_ms']['p50']:.1f} ms "
        f"({rk['budget']['budgeted']} searches budgeted)")
    say(f"[4/6] {args.processes} processes searching the index at once")
    ctx = get_context("spawn")
    start = time.time() + 5
    with ProcessPoolExecutor(args.processes, mp_context=ctx) as ex:
        futs = [ex.submit(shared, str(index), queries[1 + i::args.processes][:100], start)
                for i in range(args.processes)]
        procs = [f.result() for f in futs]
    say("      " + "; ".join(f"RSS {p['rss_mb']:.0f} / USS {p['uss_mb']:.0f} / PSS "
                            f"{p['pss_mb']:.0f} / anonymous {p['anon_mb']:.0f} MB"
                            for p in procs))
    result: dict[str, Any] = {
        "passages": n, "build": built, "serve": served, "processes": procs,
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(),
                    "mem_gb": psutil.virtual_memory().total / 2**30},
        "heap_mb": args.heap_mb, "threads": args.threads, "workers": args.workers,
    }
    m = min(n, args.compare)
    need_gb = m / 1_000_000 * 12  # today's backend: ~11.6 GB at 1M passages
    avail = psutil.virtual_memory().available / 2**30
    if m > 0 and need_gb < avail * 0.8:
        say(f"[5/6] today's CorpusBackend (bm25s, in memory) on the first {m:,} passages, "
            "against the on-disk index of the same file")
        small = corpus_file(m, data)
        small_index = data / f"wiki-{_label(m)}.index"
        build(small, small_index, args)
        cmp_ = _in_child(compare, str(small), str(small_index), queries[1:args.compare_queries])
        result["compare"] = cmp_
        say(f"      identical top-20 rankings {cmp_['identical_top20']:.1%}, identical "
            f"results pages {cmp_['identical_pages']:.1%}, overlap@20 "
            f"{cmp_['overlap20']:.4f} (tantivy's own BM25: {cmp_['tantivy_own_overlap20']:.3f});"
            f" bm25s: build {cmp_['bm25s_build_s']:.0f} s, peak RSS "
            f"{cmp_['bm25s_peak_rss_mb']:,.0f} MB, search p50 "
            f"{cmp_['bm25s_search_ms']['p50']:.1f} ms")
    else:
        say(f"[5/6] skipped: today's backend on {m:,} passages needs ~{need_gb:.0f} GB, "
            f"{avail:.0f} GB available")
    say("[6/6] the Search-R1 path end to end: agent-envs rollout browser --tasks "
        "search-r1:QA --env-arg corpus=INDEX (the oracle), and a search/open/answer episode")
    result["search_r1"] = search_r1(corpus, index, data, args)
    e = result["search_r1"]
    say(f"      rollout: {e['rollout']['solved']} solved, {e['rollout']['wall_s']:.1f} s, peak "
        f"RSS {e['rollout']['peak_rss_mb']:.0f} MB; first episode (imports, opening) "
        f"{e['episode']['first_episode_ms']:.0f} ms, then a search step "
        f"{e['episode']['search_ms']:.1f} ms, an open step {e['episode']['open_ms']:.1f} ms, "
        f"(p50 of {e['episode']['episodes'] - 1}), mean reward {e['episode']['reward']}")
    return result


def episode(index: str, qa: str, n: int = 8) -> dict[str, Any]:
    """Env episodes over the index: search the question, open the first result, answer. The
    first (imports, opening the index) is timed whole; the steps of the others, p50."""
    import json as json_

    import agent_envs

    t = time.perf_counter()
    env = agent_envs.make("browser", task_source=f"search-r1:{qa}", corpus=index, split="test")
    steps: dict[str, list[float]] = {"search": [], "open": [], "search_cpu": []}
    rewards, first_ms = [], 0.0
    for seed in range(n + 1):
        env.reset(seed=seed)
        for name, args in (("search", {"query": env.task.prompt}), ("open", {"id": 0})):
            action = (f"<|channel|>analysis to=browser.{name} code<|message|>"
                      f"{json_.dumps(args)}<|call|>")
            t1, c1 = time.perf_counter(), time.process_time()
            env.step(env.codec.encode(action))
            if seed:
                steps[name].append((time.perf_counter() - t1) * 1000)
                if name == "search":
                    steps["search_cpu"].append((time.process_time() - c1) * 1000)
        final = f"<|channel|>final<|message|>Answer: {env.task.answer}<|return|>"
        rewards.append(env.step(env.codec.encode(final))[1])
        if seed == 0:
            first_ms = (time.perf_counter() - t) * 1000
    env.close()
    return {"first_episode_ms": first_ms, "search_ms": pct(steps["search"], 50),
            "search_cpu_ms": pct(steps["search_cpu"], 50),
            "open_ms": pct(steps["open"], 50), "episodes": n + 1,
            "reward": float(np.mean(rewards))}


def search_r1(corpus: Path, index: Path, data: Path, args: argparse.Namespace
              ) -> dict[str, Any]:
    from agent_envs.envs.browser.synth import sample_questions

    qa = data / f"qa-{_label(args.passages)}.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n"
                          for r in sample_questions(corpus, args.episodes, seed=args.seed)))
    cmd = [sys.executable, "-m", "agent_envs.cli", "rollout", "browser", "--tasks",
           f"search-r1:{qa}", "--env-arg", f"corpus={index}", "--episodes", str(args.episodes),
           "--split", "test", "--quiet", "--transcripts", "0"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _tree_hwm_mb(proc.pid))
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else ""
    solved = next((ln.split(None, 1)[1] for ln in out.splitlines() if ln.startswith("solved")),
                  "?")
    rollout = {"command": " ".join(cmd[2:]), "solved": solved, "exit": proc.returncode,
               "wall_s": time.perf_counter() - t, "peak_rss_mb": peak}
    return {"rollout": rollout, "episode": _in_child(episode, str(index), str(qa))}


def report(result: dict[str, Any]) -> None:
    b, s = result["build"], result["serve"]
    say(f"\n=== {result['passages']:,} passages (on-disk index: tantivy + exact rescoring) ===")
    sw, sc = s["warm_search_ms"], s["cold_search_ms"]
    rows = [
        ("build", f"{b['seconds']:,.0f} s wall, {b['cpu_s']:,.0f} s CPU ({b['runs']} run(s))"),
        ("build peak RSS",
         f"{b['peak_rss_mb']:,.0f} MB (target <= {TARGETS['build_peak_gb']:.0f} GB)"),
        ("index on disk", f"{b['index_mb']:,.0f} MB (+ the corpus, {b['corpus_mb']:,.0f} MB)"),
        ("open the index", f"{s['open_index_ms']:.0f} ms (cold)"),
        ("search, cold p50 / p95", f"{sc['p50']:.1f} / {sc['p95']:.1f} ms"),
        ("search, warm p50 / p95",
         (f"{sw['p50']:.1f} / {sw['p95']:.1f} ms (target p50 <= {TARGETS['warm_p50_ms']:.0f}"
          f" ms); CPU {sw['cpu_p50']:.1f} / {sw['cpu_p95']:.1f} ms")),
        ("top-20 only, warm p50", f"{s['warm_top20_ms']['p50']:.1f} ms"),
    ]
    if "plain_search_ms" in s:
        pl = s["plain_search_ms"]
        rows.append(("search, warm, plain query p50/p95",
                     (f"{pl['p50']:.1f} / {pl['p95']:.1f} ms (every term in tantivy's query; "
                      f"CPU p50 {pl['cpu_p50']:.1f} ms): the staged search is "
                      f"{pl['p50'] / sw['p50']:.1f}x faster at p50, same top 20 in "
                      f"{pl['same_top20']:.0%}")))
    rows += [
        ("open a passage, cold p50 / p95",
         f"{s['cold_open_ms']['p50']:.2f} / {s['cold_open_ms']['p95']:.2f} ms"),
        ("open a passage, warm p50 / p95",
         f"{s['warm_open_ms']['p50']:.2f} / {s['warm_open_ms']['p95']:.2f} ms"),
        ("env process adds",
         (f"{s['added_rss_mb']:.0f} MB RSS, of it {s.get('added_anon_mb', float('nan')):.0f} MB"
          f" anonymous (the rest: index pages, shared) (target <= "
          f"{TARGETS['env_added_gb']:.0f} GB)")),
        ("RSS added after n searches",
         ", ".join(f"{n}: {mb:.0f} MB" for n, mb in s.get("rss_growth_mb", []))),
        ("4 processes at once, each",
         ", ".join(f"RSS {p['rss_mb']:.0f} / PSS {p['pss_mb']:.0f} MB"
                   for p in result["processes"])),
        ("proven = CorpusBackend's top 20", f"{s['proven_share']:.1%} of searches"),
    ]
    if "ranking" in s:
        rk = s["ranking"]
        for name in ("default", "budget"):
            r = rk[name]
            label = ("ranking (default)" if name == "default"
                     else f"ranking, max_postings={rk['budget_postings']:,}")
            rows.append((label, (f"identical top 20 {r['identical_top20']:.1%}, overlap@20 "
                                 f"{r['overlap20']:.4f}, top-20 p50 {r['top20_ms']['p50']:.1f} "
                                 f"ms (vs exact=True on {rk['queries']} queries, "
                                 f"{rk['exact_proven']} proven)")))
    if "compare" in result:
        c = result["compare"]
        rows.append((f"vs CorpusBackend ({c['passages']:,} passages)",
                     (f"identical pages {c['identical_pages']:.1%}, overlap@20 "
                      f"{c['overlap20']:.4f}; tantivy's own BM25 "
                      f"{c['tantivy_own_overlap20']:.3f}")))
        rows.append(("CorpusBackend (bm25s) there",
                     (f"build {c['bm25s_build_s']:.0f} s wall, "
                      f"{c.get('bm25s_build_cpu_s', float('nan')):.0f} s CPU, peak "
                      f"{c['bm25s_peak_rss_mb']:,.0f} MB,"
                      f" search p50 {c['bm25s_search_ms']['p50']:.1f} ms")))
    if "search_r1" in result:
        e = result["search_r1"]
        rows.append(("Search-R1 rollout (oracle)",
                     (f"{e['rollout']['solved']}, {e['rollout']['wall_s']:.1f} s, peak RSS "
                      f"{e['rollout']['peak_rss_mb']:.0f} MB")))
        rows.append(("env.step p50: search / open",
                     (f"{e['episode']['search_ms']:.1f} / {e['episode']['open_ms']:.1f} ms "
                      f"(search CPU {e['episode']['search_cpu_ms']:.1f} ms) "
                      f"(first episode, imports and opening: "
                      f"{e['episode']['first_episode_ms']:.0f} ms)")))
    for k, v in rows:
        say(f"{k:<34} {v}")
    say(f"(machine: {result['machine']['cpus']} CPUs, load average "
        f"{result['machine']['load_avg'][0]:.1f} during the run)")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results, key=int)
    xs = [int(k) / 1e6 for k in sizes]
    r = [results[k] for k in sizes]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))
    a.plot(xs, [x["build"]["seconds"] / 60 for x in r], "o-", label="build (min)")
    a.set_xlabel("passages (M)")
    a.set_ylabel("build wall time (min)")
    a2 = a.twinx()
    a2.plot(xs, [x["build"]["peak_rss_mb"] / 1024 for x in r], "s--", color="#c55",
            label="peak RSS (GB)")
    a2.axhline(TARGETS["build_peak_gb"], color="#c55", lw=0.8, ls=":")
    a2.set_ylabel("build peak RSS (GB); target 8")
    a.set_title("build")
    for key, style, label in (("cold_search_ms", "o-", "cold"), ("warm_search_ms", "s-", "warm")):
        b.plot(xs, [x["serve"][key]["p50"] for x in r], style, label=f"{label} p50")
        b.plot(xs, [x["serve"][key]["p95"] for x in r], style, alpha=0.4, label=f"{label} p95")
    b.plot(xs, [x["serve"]["warm_search_ms"]["cpu_p50"] for x in r], "^:", label="warm CPU p50")
    plain = [(xv, x["serve"]["plain_search_ms"]["p50"]) for xv, x in zip(xs, r)
             if "plain_search_ms" in x["serve"]]
    if plain:
        b.plot(*zip(*plain), "x--", color="#777", label="warm p50, plain query (every term)")
    b.axhline(TARGETS["warm_p50_ms"], color="gray", ls="--", lw=1, label="target p50")
    b.set_yscale("log")
    b.set_xlabel("passages (M)")
    b.set_ylabel("ms per search (whole results page)")
    b.set_title("search")
    b.legend(fontsize=7)
    pos = np.arange(len(xs))
    c.bar(pos - 0.2, [x["build"]["index_mb"] / 1024 for x in r], 0.4, color="#57a",
          label="index on disk")
    c.bar(pos + 0.2, [x["serve"]["added_rss_mb"] / 1024 for x in r], 0.4,
          color="#2a7", label="env process adds (RSS)")
    c.set_xticks(pos, [f"{x:g}M" for x in xs])
    c.set_ylabel("GB")
    c.set_title("index on disk; memory an env adds")
    c.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def markdown(results: dict[str, Any]) -> str:
    """The table of every size measured so far, as the docs quote it."""
    sizes = sorted(results, key=int)
    r = [results[k] for k in sizes]

    def row(name: str, fn: Any) -> str:
        cells = []
        for x in r:
            try:
                cells.append(fn(x))
            except (KeyError, TypeError):
                cells.append("")
        return f"| {name} | " + " | ".join(cells) + " |"

    head = "| | " + " | ".join(f"{int(k) / 1e6:g}M passages" for k in sizes) + " |"
    lines = [head, "|---|" + "---|" * len(sizes)]
    b, sv = (lambda x: x["build"]), (lambda x: x["serve"])
    lines += [
        row("build: wall / CPU", lambda x: f"{b(x)['seconds'] / 60:,.0f} min / "
                                           f"{b(x)['cpu_s'] / 60:,.0f} min"),
        row("build: peak RSS (of it anonymous)",
            lambda x: f"{b(x)['peak_rss_mb'] / 1024:.2f} GB" + (
                f" ({b(x)['peak_anon_mb'] / 1024:.2f})" if b(x).get("peak_anon_mb", 0) > 0
                else " (not recorded)")),
        row("index on disk (corpus)", lambda x: f"{b(x)['index_mb'] / 1024:.2f} GB "
                                                f"({b(x)['corpus_mb'] / 1024:.1f} GB)"),
        row("open the index, cold", lambda x: f"{sv(x)['open_index_ms']:.0f} ms"),
        row("search, cold: p50 / p95 wall", lambda x: f"{sv(x)['cold_search_ms']['p50']:.0f} / "
                                                      f"{sv(x)['cold_search_ms']['p95']:.0f} ms"),
        row("search, warm: p50 / p95 wall", lambda x: f"{sv(x)['warm_search_ms']['p50']:.0f} / "
                                                      f"{sv(x)['warm_search_ms']['p95']:.0f} ms"),
        row("search, warm: p50 / p95 CPU",
            lambda x: f"{sv(x)['warm_search_ms']['cpu_p50']:.1f} / "
                      f"{sv(x)['warm_search_ms']['cpu_p95']:.1f} ms"),
        row("search, warm, plain query (every term): p50 / p95 wall (staged: x faster)",
            lambda x: f"{sv(x)['plain_search_ms']['p50']:.0f} / "
                      f"{sv(x)['plain_search_ms']['p95']:.0f} ms "
                      f"({sv(x)['plain_search_ms']['p50'] / sv(x)['warm_search_ms']['p50']:.1f}x)"),
        row("open a passage: cold / warm p50",
            lambda x: f"{sv(x)['cold_open_ms']['p50']:.2f} / {sv(x)['warm_open_ms']['p50']:.2f} ms"),
        row("an env process adds (RSS / anonymous)",
            lambda x: f"{sv(x)['added_rss_mb']:.0f} / {sv(x)['added_anon_mb']:.0f} MB"),
        row("RSS an env process adds after 100 / 400 searches",
            lambda x: " / ".join(f"{mb:.0f}" for n, mb in sv(x)["rss_growth_mb"]
                                 if n in (100, 400)) + " MB"),
        row("4 processes at once: RSS / PSS each",
            lambda x: f"{np.mean([p['rss_mb'] for p in x['processes']]):.0f} / "
                      f"{np.mean([p['pss_mb'] for p in x['processes']]):.0f} MB"),
        row("searches proven = CorpusBackend's", lambda x: f"{sv(x)['proven_share']:.0%}"),
        row("top 20 identical to exact=True's",
            lambda x: f"{sv(x)['ranking']['default']['identical_top20']:.0%} of "
                      f"{sv(x)['ranking']['queries']}"),
        row("with max_postings=1M: overlap@20 / top-20 p50",
            lambda x: f"{sv(x)['ranking']['budget']['overlap20']:.3f} / "
                      f"{sv(x)['ranking']['budget']['top20_ms']['p50']:.0f} ms"),
        row("vs today's CorpusBackend (bm25s, in memory): passages / queries",
            lambda x: f"{x['compare']['passages'] / 1e6:g}M / {x['compare']['queries']}"),
        row("results pages byte-identical to today's",
            lambda x: f"{x['compare']['identical_pages']:.1%}"),
        row("top 20 identical to today's / overlap@20 (tantivy's own BM25's)",
            lambda x: f"{x['compare']['identical_top20']:.1%} / {x['compare']['overlap20']:.3f}"
                      f" ({x['compare']['tantivy_own_overlap20']:.3f})"),
        row("today's build on those passages: wall / peak RSS",
            lambda x: f"{x['compare']['bm25s_build_s'] / 60:,.0f} min / "
                      f"{x['compare']['bm25s_peak_rss_mb'] / 1024:.1f} GB"),
        row("Search-R1 rollout (oracle)", lambda x: x["search_r1"]["rollout"]["solved"]),
        row("env.step p50: search / open",
            lambda x: f"{x['search_r1']['episode']['search_ms']:.0f} / "
                      f"{x['search_r1']['episode']['open_ms']:.1f} ms"),
        row("load average during the run", lambda x: f"{x['machine']['load_avg'][0]:.0f}"),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=None)
    ap.add_argument("--table", action="store_true",
                    help="print the Markdown table of every size in the results JSON, draw "
                         "its plot again, and exit")
    ap.add_argument("--data-dir", default=os.environ.get("AGENT_ENVS_WIKI_DIR", "/work/data/wiki"),
                    help="where corpora and indexes go (big: ~0.55 GB + ~0.5 GB per 1M)")
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--opens", type=int, default=200)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--episodes", type=int, default=16, help="Search-R1 rollout episodes")
    ap.add_argument("--compare", type=int, default=200_000,
                    help="passages to compare with today's in-memory backend (0: skip)")
    ap.add_argument("--compare-queries", type=int, default=300)
    ap.add_argument("--ranking-queries", type=int, default=120,
                    help="queries ranked with exact=True as the reference at this size")
    ap.add_argument("--budget", type=int, default=1_000_000,
                    help="max_postings of the budgeted searches measured beside the default")
    ap.add_argument("--heap-mb", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="tantivy's indexing threads")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes that parse and tokenize the corpus in the build")
    ap.add_argument("--rebuild", action="store_true",
                    help="delete this size's index and its build log first")
    ap.add_argument("--checkpoint", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/browser_scale.png")
    args = ap.parse_args(argv)
    if args.table:  # and the plot again, from the same numbers
        results = json.loads(args.out.with_suffix(".json").read_text())
        print(markdown(results))
        plot(results, args.out)
        return
    if args.passages is None:
        ap.error("--passages N is required (or --table)")
    result = run(args)
    report(result)
    store = args.out.with_suffix(".json")
    results = json.loads(store.read_text()) if store.is_file() else {}
    earlier = results.get(str(args.passages), {})
    if "compare" not in result and "compare" in earlier:  # --compare 0: keep the last one
        result["compare"] = {**earlier["compare"], "from_an_earlier_run": True}
    results[str(args.passages)] = result
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps(results, indent=1))
    plot(results, args.out)
    say(f"plot: {args.out}  numbers: {store}")


if __name__ == "__main__":
    main()
