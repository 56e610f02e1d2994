"""Which engine for the browser's on-disk corpus index: ours (tantivy + exact rescoring)
against Lucene (Anserini, the engine under pyserini) and bm25s (today's in-memory backend),
on the same Wikipedia-shaped corpus, in one run.

    python benchmarks/browser_engines.py [--passages 1000000] [--bm25s-passages 500000]
        [--anserini-jar PATH] [--java-home PATH] [--jnius-python PATH]

Lucene runs as pyserini runs it: Anserini's fatjar (``IndexCollection`` over the JSONL with
its default English analyzer, one thread) and ``SimpleSearcher`` through pyjnius, in a
Python with pyjnius (``--jnius-python``; pyserini and pyjnius are not dependencies of this
project: scripts/setup_engines_bench.sh fetches the jar and makes that Python). Reported
per engine: build wall and CPU time, peak RSS of the build (all its processes), index size,
top-20 retrieval p50/p95 (warm: after one pass over the same queries; wall and CPU), and the
memory a searching process adds (private memory for ours, the JVM's RSS for Lucene, the whole
in-memory index for bm25s), with ratios to ours.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import browser_scale as bs

ROOT = bs.ROOT
_LUCENE_SEARCH = r"""
import json, os, sys, time
import jnius_config
jar, index, queries = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
def rss():
    s = open("/proc/self/status").read().split("\n")
    return {k: int(v.split()[0]) / 1024 for k, v in (l.split(":", 1) for l in s if ":" in l)
            if k in ("VmRSS", "RssAnon")}
before = rss()
jnius_config.add_options("-Xmx2g")
jnius_config.set_classpath(jar)
from jnius import autoclass
t = time.perf_counter()
searcher = autoclass("io.anserini.search.SimpleSearcher")(index)
open_ms = (time.perf_counter() - t) * 1000
def run():
    wall, cpu = [], []
    for q in queries:
        t, c = time.perf_counter(), time.process_time()
        hits = searcher.search(q, 20)
        ids = [hits[i].docid for i in range(len(hits))]
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return wall, cpu
run()
wall, cpu = run()
print(json.dumps({"open_ms": open_ms, "wall": wall, "cpu": cpu, "before": before,
                  "after": rss()}))
"""


def say(msg: str) -> None:
    print(msg, flush=True)


def timings(wall: list[float], cpu: list[float]) -> dict[str, float]:
    return {"p50": bs.pct(wall, 50), "p95": bs.pct(wall, 95), "cpu_p50": bs.pct(cpu, 50),
            "cpu_p95": bs.pct(cpu, 95)}


def _warm_times(fn: Any, queries: list[str]) -> tuple[list[float], list[float]]:
    for q in queries:  # one pass first: the same warm state as the other engines
        fn(q)
    wall, cpu = [], []
    for q in queries:
        t, c = time.perf_counter(), time.process_time()
        fn(q)
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return wall, cpu


def ours_search(index: str, queries: list[str]) -> dict[str, Any]:
    from agent_envs.envs.browser.diskindex import DiskCorpus

    before = bs._mem()
    corpus = DiskCorpus(index)
    backend = corpus.backend()
    out = {"top20": timings(*_warm_times(lambda q: backend.top(q, 20), queries)),
           "tantivy_only": timings(*_warm_times(lambda q: backend.candidates_of(q, 20),
                                                queries))}
    backend._docs.clear()  # the backend's own caches out of the way: a fresh process's cost
    after = bs._mem()
    out["added_mb"] = after["uss_mb"] - before["uss_mb"]
    out["added_rss_mb"] = after["rss_mb"] - before["rss_mb"]
    return out


def bm25s_run(corpus: str, queries: list[str]) -> dict[str, Any]:
    from agent_envs.envs.browser.corpus import Corpus, CorpusBackend

    before = bs._mem()
    t, c = time.perf_counter(), time.process_time()
    backend = CorpusBackend(Corpus.from_jsonl(corpus), persist=False)
    build_s, build_cpu = time.perf_counter() - t, time.process_time() - c
    after = bs._mem()
    return {"build_s": build_s, "build_cpu_s": build_cpu, "peak_rss_mb": bs._hwm_mb(),
            "top20": timings(*_warm_times(lambda q: backend.top(q, 20), queries)),
            "added_mb": after["uss_mb"] - before["uss_mb"], "passages": len(backend.corpus)}


def lucene(corpus: Path, data: Path, queries: list[str], args: argparse.Namespace
           ) -> dict[str, Any]:
    java = Path(args.java_home) / "bin" / "java"
    label = bs._label(args.passages)
    index = data / "engines" / f"lucene-{label}"
    log = index.with_name(index.name + ".build.json")
    if not log.is_file():
        inp = data / "engines" / f"lucene-input-{label}"
        inp.mkdir(parents=True, exist_ok=True)
        link = inp / corpus.name
        if not link.exists():
            link.symlink_to(corpus)
        import shutil
        shutil.rmtree(index, ignore_errors=True)
        cmd = [str(java), "-Xmx4g", "-cp", args.anserini_jar,
               "io.anserini.index.IndexCollection", "-collection", "JsonCollection", "-input",
               str(inp), "-index", str(index), "-generator", "DefaultLuceneDocumentGenerator",
               "-threads", "1"]
        say("      " + " ".join(cmd[3:]))
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        peak = 0.0
        while True:
            peak = max(peak, bs._tree_hwm_mb(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.2)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"Anserini's IndexCollection failed (exit {status})")
        log.write_text(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": peak,
                                   "cpu_s": usage.ru_utime + usage.ru_stime}))
    built = json.loads(log.read_text())
    qfile = data / "engines" / "queries.json"
    qfile.write_text(json.dumps(queries))
    env = {**os.environ, "JAVA_HOME": args.java_home}
    res = subprocess.run([args.jnius_python, "-c", _LUCENE_SEARCH, args.anserini_jar,
                          str(index), str(qfile)], capture_output=True, text=True, env=env,
                         check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    return {"build_s": built["seconds"], "build_cpu_s": built["cpu_s"],
            "peak_rss_mb": built["peak_rss_mb"], "index_mb": _du(index),
            "top20": timings(r["wall"], r["cpu"]), "open_ms": r["open_ms"],
            "added_mb": r["after"]["VmRSS"] - r["before"]["VmRSS"]}


def _du(p: Path) -> float:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20


def _child(fn: Any, *a: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as ex:
        return ex.submit(fn, *a).result()


def main() -> None:
    import psutil

    from agent_envs.envs.browser.synth import sample_questions

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=1_000_000)
    ap.add_argument("--bm25s-passages", type=int, default=None,
                    help="bm25s's size (default: --passages when it fits in memory)")
    ap.add_argument("--data-dir", default=os.environ.get("AGENT_ENVS_WIKI_DIR", "/work/data/wiki"))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--heap-mb", type=int, default=256)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--anserini-jar", default="/work/data/pyserini/pyserini/resources/jars/"
                                              "anserini-0.22.1-fatjar.jar")
    ap.add_argument("--java-home", default="/usr/lib/jvm/java-17-openjdk-amd64")
    ap.add_argument("--jnius-python", default="/work/data/pyserini/venv/bin/python")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/browser_engines.json")
    args = ap.parse_args()
    data = Path(args.data_dir)
    n = args.passages
    say(f"[1/4] the corpus: {n:,} Wikipedia-shaped passages")
    corpus = bs.corpus_file(n, data)
    queries = [str(r["question"]) for r in sample_questions(corpus, args.queries, seed=11)]

    say("[2/4] ours: tantivy candidates + exact rescoring (agent-envs corpus build; the "
        "index browser_scale.py builds, reused with its build log when it is there)")
    index = data / f"wiki-{bs._label(n)}.index"
    (data / "engines").mkdir(parents=True, exist_ok=True)
    bargs = argparse.Namespace(heap_mb=args.heap_mb, threads=1, workers=args.workers,
                               checkpoint=1_000_000)
    built = bs.build(corpus, index, bargs)
    ours = {"build_s": built["seconds"], "build_cpu_s": built["cpu_s"],
            "peak_rss_mb": built["peak_rss_mb"], "index_mb": built["index_mb"],
            **_child(ours_search, str(index), queries)}
    say(f"      build {ours['build_s']:.0f} s, peak {ours['peak_rss_mb']:.0f} MB, "
        f"top-20 p50 {ours['top20']['p50']:.2f} ms")

    say("[3/4] Lucene (Anserini 0.22.1, pyserini's engine), default analyzer, 1 thread")
    luc = lucene(corpus, data, queries, args)
    say(f"      build {luc['build_s']:.0f} s, peak {luc['peak_rss_mb']:.0f} MB, "
        f"top-20 p50 {luc['top20']['p50']:.2f} ms")

    m = args.bm25s_passages or n
    avail = psutil.virtual_memory().available / 2**30
    if m / 1e6 * 12 > avail * 0.8:
        m = int(avail * 0.8 / 12 * 1e6) // 100_000 * 100_000
    say(f"[4/4] bm25s (today's CorpusBackend, in memory) on {m:,} passages")
    small = bs.corpus_file(m, data)
    bm = _child(bm25s_run, str(small), queries)
    say(f"      build {bm['build_s']:.0f} s, peak {bm['peak_rss_mb']:.0f} MB, "
        f"top-20 p50 {bm['top20']['p50']:.2f} ms")

    result = {"passages": n, "queries": len(queries), "ours": ours, "lucene": luc,
              "bm25s": bm, "load_avg": os.getloadavg()}
    say(f"\n=== engines on {n:,} passages (bm25s on {bm['passages']:,}); ratio = engine / "
        "ours ===")
    rows = [("build wall (s)", "build_s"), ("build CPU (s)", "build_cpu_s"),
            ("build peak RSS (MB)", "peak_rss_mb"), ("index on disk (MB)", "index_mb"),
            ("searching process adds (MB)", "added_mb")]
    say(f"{'':<30}{'ours':>12}{'Lucene':>12}{'ratio':>8}{'bm25s':>12}{'ratio':>8}")

    def line(name: str, a: float, b: float, c: float | None) -> None:
        cs = f"{c:>12.1f}{c / a:>8.1f}" if c is not None else f"{'-':>12}{'':>8}"
        say(f"{name:<30}{a:>12.1f}{b:>12.1f}{b / a:>8.1f}{cs}")

    for name, key in rows:
        line(name, ours[key], luc[key], bm.get(key))
    for name, key in (("top-20 p50 wall (ms)", "p50"), ("top-20 p95 wall (ms)", "p95"),
                      ("top-20 p50 CPU (ms)", "cpu_p50")):
        line(name, ours["top20"][key], luc["top20"][key], bm["top20"][key])
    say(f"(tantivy alone, no rescoring: top-20 p50 {ours['tantivy_only']['p50']:.2f} ms; "
        f"load average {result['load_avg'][0]:.1f} on {os.cpu_count()} CPUs)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    say(f"numbers: {args.out}")


if __name__ == "__main__":
    main()
