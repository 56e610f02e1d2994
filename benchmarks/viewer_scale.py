"""The viewer at BFCL's scale: our page (episodes decoded on demand) against one giant document.

    python benchmarks/viewer_scale.py [--bundle DIR] [--work DIR] [--limit N] [--repeats 3]
                                      [--out benchmarks/results/viewer_scale.json]

The bundle is all of BFCL (``functions-bfcl``, 4,281 episodes) scored with a seeded coin-flip
policy (the oracle's answer or a wrong one, so there are failures to filter to), run once into
``--work`` and reused; ``--bundle`` takes any bundle instead, ``--limit`` a seeded sample.

Ours: ``agent-envs view`` (a list of rows, the episodes in gzip chunks decoded when opened,
each distinct prompt message stored once). The alternative: the same decoded episodes written
up front as one HTML document (a table and every conversation in a ``<details>``, messages
only, no raw tokens), which is what a static report of a run looks like. Both open in
Debian's chromium (selenium + chromium-driver), fresh each time; measured: HTML size, time
from navigation to a usable page, DOM nodes and JS heap after load, time to filter to the
failed episodes, and time to show one episode. Prints both side by side with the ratio
(document / ours: above 1, ours is smaller or faster), saves the numbers as JSON and a bar
plot beside it.
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_envs.eval import EvalConfig, run_eval
from agent_envs.harmony import get_codec
from agent_envs.viewer import build_viewer, load_source
from agent_envs.viewer.episode import PartStore, episode_view

DEFAULT_WORK = Path.home() / ".cache" / "agent-envs" / "bench" / "viewer-scale"


def say(msg: str) -> None:
    print(msg, flush=True)


def bfcl_bundle(work: Path, limit: int | None) -> Path:
    """All of BFCL (or a seeded sample) with the seeded coin policy; resumes, then reuses."""
    from tests.agent_envs.eval.coin import CoinPolicy

    out = work / (f"bfcl-coin-n{limit}" if limit else "bfcl-coin")
    if (out / "bundle.json").exists():
        say(f"bundle: reusing {out}")
        return out
    say(f"bundle: running functions-bfcl with the coin policy into {out} (minutes)")
    return run_eval("functions-bfcl", CoinPolicy(), out,
                    EvalConfig(trials=1, concurrency=16, limit=limit, progress=True,
                               model="coin"))


def giant_document(bundle: Path, out: Path) -> dict[str, Any]:
    """The alternative: every episode's conversation in one HTML document, up front."""
    t0 = time.perf_counter()
    src = load_source(bundle)
    codec = get_codec()
    store = PartStore(codec)
    rows, bodies = [], []
    for i, ep in enumerate(src.episodes):
        view = store.expand(episode_view(ep, codec, store))
        verdict = "correct" if ep.solved else ("infra" if ep.infra else "wrong")
        rows.append(f"<tr data-verdict='{verdict}'><td>{i}</td><td><a href='#e{i}'>"
                    f"{html.escape(ep.task_id)}</a></td><td>{verdict}</td><td>{ep.reward:g}</td>"
                    f"<td>{len(ep.turns)}</td></tr>")
        msgs = "".join(
            f"<div class='m'><b>{html.escape(m['role'])} {html.escape(m['channel'] or '')} "
            f"{html.escape(m['to'] or '')}</b><pre>{html.escape(m['text'] or '')}</pre></div>"
            for s in view["segments"] for m in s["messages"] if not m.get("history"))
        bodies.append(f"<details id='e{i}' data-verdict='{verdict}'><summary>"
                      f"{html.escape(ep.task_id)}</summary>{msgs}</details>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>episodes</title><style>"
            "pre{white-space:pre-wrap}.m{border:1px solid #ddd;margin:4px;padding:4px}</style>"
            "</head><body><table id='list'>" + "".join(rows) + "</table><div id='episodes'>"
            + "".join(bodies) + "</div></body></html>")
    out.write_text(page, encoding="utf-8")
    first_failed = next((i for i, e in enumerate(src.episodes) if not e.solved), 0)
    return {"path": str(out), "html_bytes": out.stat().st_size,
            "build_s": time.perf_counter() - t0, "first_failed": first_failed}


def browser(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                "--enable-precise-memory-info", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts,
                              service=Service(shutil.which("chromedriver") or "chromedriver"))
    driver.set_page_load_timeout(600)
    driver.set_script_timeout(600)
    return driver


def _wait(driver: Any, js: str, timeout: float = 600.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(js)
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(js)


PAGE_STATE = """return {nodes: document.getElementsByTagName('*').length,
                        heap: performance.memory ? performance.memory.usedJSHeapSize : null}"""


def measure_ours(driver: Any, page: Path, open_index: int) -> dict[str, float]:
    driver.get("about:blank")
    driver.get(page.as_uri())
    _wait(driver, "return document.body.dataset.ready")
    ready = driver.execute_script("return window.viewerReadyMs")
    state = driver.execute_script(PAGE_STATE)
    filter_ms = driver.execute_script("""
        const t = performance.now(); const s = document.querySelector('#f-verdict');
        s.value = 'failed'; s.dispatchEvent(new Event('change'));
        document.body.offsetHeight; return performance.now() - t;""")
    shown = driver.execute_script("return document.querySelector('#count').textContent")
    open_ms = driver.execute_async_script("""
        const done = arguments[arguments.length - 1]; const t = performance.now();
        location.hash = '#/e/' + arguments[0];
        (function poll() {
          if (document.querySelector('.episode-view')) {
            document.body.offsetHeight; done(performance.now() - t);
          } else requestAnimationFrame(poll);
        })();""", open_index)
    return {"ready_ms": ready, "dom_nodes": state["nodes"], "heap_mb": _mb(state["heap"]),
            "filter_ms": filter_ms, "open_ms": open_ms, "shown": shown}


def measure_giant(driver: Any, page: Path, open_index: int) -> dict[str, float]:
    driver.get("about:blank")
    driver.get(page.as_uri())
    _wait(driver, "return document.readyState === 'complete'")
    ready = driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].loadEventEnd")
    state = driver.execute_script(PAGE_STATE)
    filter_ms = driver.execute_script("""
        const t = performance.now();
        for (const tr of document.querySelectorAll('#list tr'))
          tr.style.display = tr.dataset.verdict === 'correct' ? 'none' : '';
        document.body.offsetHeight; return performance.now() - t;""")
    open_ms = driver.execute_script("""
        const t = performance.now(); const d = document.getElementById('e' + arguments[0]);
        d.open = true; d.scrollIntoView(); document.body.offsetHeight;
        return performance.now() - t;""", open_index)
    return {"ready_ms": ready, "dom_nodes": state["nodes"], "heap_mb": _mb(state["heap"]),
            "filter_ms": filter_ms, "open_ms": open_ms}


def _mb(x: float | None) -> float | None:
    return None if x is None else x / 2**20


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in runs[0].items():
        vals = [r[k] for r in runs]
        out[k] = statistics.median(vals) if isinstance(v, (int, float)) and None not in vals \
            else v
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours, alt = result["ours"], result["giant_document"]
    panels = [("HTML size (MB)", ours["html_bytes"] / 1e6, alt["html_bytes"] / 1e6),
              ("open: navigation to usable page (s)", ours["ready_ms"] / 1e3,
               alt["ready_ms"] / 1e3),
              ("DOM nodes after load (thousands)", ours["dom_nodes"] / 1e3,
               alt["dom_nodes"] / 1e3),
              ("JS heap after load (MB)", ours["heap_mb"] or 0, alt["heap_mb"] or 0),
              ("filter to failed (ms)", ours["filter_ms"], alt["filter_ms"]),
              ("show one episode (ms)", ours["open_ms"], alt["open_ms"])]
    fig, axes = plt.subplots(2, 3, figsize=(11, 6))
    for ax, (title, a, b) in zip(axes.flat, panels):
        ax.bar(["agent-envs view", "one document"], [a, b], color=["#4c72b0", "#c44e52"])
        ax.set_title(title, fontsize=9)
        for x, v in enumerate((a, b)):
            ax.text(x, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"{result['episodes']} episodes ({result['bundle_name']}), chromium "
                 f"{result['chromium']}; median of {result['repeats']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=None, help="a bundle directory to use")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK,
                    help=f"where the BFCL bundle is made and kept (default {DEFAULT_WORK})")
    ap.add_argument("--limit", type=int, default=None,
                    help="a seeded sample of N BFCL tasks instead of all 4,281")
    ap.add_argument("--repeats", type=int, default=3, help="fresh page loads per page")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/viewer_scale.json"))
    args = ap.parse_args(argv)
    if args.out.suffix != ".json":
        ap.error(f"--out must be a .json path (the plot goes beside it), got {args.out}")
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            ap.error(f"{tool} is not installed: apt-get install chromium chromium-driver")
    args.out.parent.mkdir(parents=True, exist_ok=True)

    bundle = args.bundle or bfcl_bundle(args.work, args.limit)
    with tempfile.TemporaryDirectory(prefix="viewer-scale-") as tmp:
        tmpd = Path(tmp)
        say("ours: agent-envs view (decoding every episode)")
        stats = build_viewer(bundle, tmpd / "viewer.html", progress=True)
        say(f"  {stats.episodes} episodes, {stats.chunks} chunks, {stats.parts} prompt parts, "
            f"{stats.html_bytes / 1e6:.2f} MB in {stats.seconds:.1f} s")
        say("alternative: one document with every conversation")
        giant = giant_document(bundle, tmpd / "giant.html")
        say(f"  {giant['html_bytes'] / 1e6:.2f} MB in {giant['build_s']:.1f} s")
        driver = browser(tmpd / "profile")
        try:
            version = driver.capabilities.get("browserVersion", "?")
            failed_first = giant["first_failed"]
            ours_runs, alt_runs = [], []
            for r in range(args.repeats):
                say(f"chromium: load {r + 1}/{args.repeats} of each page")
                ours_runs.append(measure_ours(driver, stats.path, failed_first))
                alt_runs.append(measure_giant(driver, Path(giant["path"]), failed_first))
        finally:
            driver.quit()
    parquet = bundle / "episodes.parquet"
    archive = bundle.with_name(bundle.name + ".tar.gz")
    result = {
        "bundle": str(bundle), "bundle_name": bundle.name, "episodes": stats.episodes,
        "chromium": version, "repeats": args.repeats,
        "bundle_bytes": {"episodes.parquet": parquet.stat().st_size,
                         "tar.gz": archive.stat().st_size if archive.exists() else None},
        "ours": dict(median_of(ours_runs), html_bytes=stats.html_bytes, build_s=stats.seconds,
                     chunks=stats.chunks, parts=stats.parts),
        "giant_document": dict(median_of(alt_runs), html_bytes=giant["html_bytes"],
                               build_s=giant["build_s"]),
        "runs": {"ours": ours_runs, "giant_document": alt_runs},
    }
    o, g = result["ours"], result["giant_document"]
    say(f"\n{result['episodes']} episodes of {bundle.name}; chromium {version}; median of "
        f"{args.repeats} fresh loads\n")
    say(f"{'':38} {'agent-envs view':>16} {'one document':>14} {'doc/ours':>9}")
    for label, key, scale, unit in (
            ("HTML size", "html_bytes", 1e-6, "MB"), ("navigation to usable page", "ready_ms",
                                                     1e-3, "s"),
            ("DOM nodes after load", "dom_nodes", 1, ""), ("JS heap after load", "heap_mb", 1,
                                                           "MB"),
            ("filter to failed", "filter_ms", 1, "ms"), ("show one episode", "open_ms", 1, "ms")):
        a, b = o[key], g[key]
        ratio = f"{b / a:.1f}x" if a and b else "-"
        fa = "-" if a is None else f"{a * scale:.3g} {unit}"
        fb = "-" if b is None else f"{b * scale:.3g} {unit}"
        say(f"{label:38} {fa:>16} {fb:>14} {ratio:>9}")
    say(f"{'page build (decode + write)':38} {o['build_s']:>14.1f} s {g['build_s']:>12.1f} s")
    say(f"\nthe bundle itself: episodes.parquet {parquet.stat().st_size / 1e6:.2f} MB"
        + (f", {archive.name} {archive.stat().st_size / 1e6:.2f} MB" if archive.exists()
           else "") + f"; list after the filter: {o['shown']}")
    args.out.write_text(json.dumps(result, indent=1))
    plot(result, args.out.with_suffix(".png"))
    say(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
