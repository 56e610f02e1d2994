"""The screenshots of docs/viewer.md, taken from real pages in Debian's chromium.

    python scripts/viewer_screenshots.py [--out docs/img/viewer] [--work DIR]

Makes the pages the screenshots show, from real runs (no hand-made data):
* an eval bundle of the ``functions`` suite (a seeded sample of 60 tasks) with the seeded
  coin-flip policy (the oracle's answer or a wrong one), for the list filtered to failures;
* episodes of each family (python-tool, browser, functions) from the scripted oracle and its
  wrong twin, with seeded log-probs, for one episode of each family and the raw-token view;
* a second coin bundle with another seed, for the comparison of the tasks that flipped.
Needs chromium and chromium-driver (apt-get install chromium chromium-driver) and, for the
browser pages' 【】 citation brackets, a CJK font (apt-get install fonts-wqy-microhei).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_envs.eval import EvalConfig, run_eval
from agent_envs.rollout.episode import save_episodes
from agent_envs.viewer import build_compare, build_viewer
from tests.agent_envs.eval.coin import CoinPolicy
from tests.agent_envs.viewer.helpers import ScriptedOracle, collect


def driver(profile: Path, height: int) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--window-size=1300,{height}",
                "--hide-scrollbars", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts,
                            service=Service(shutil.which("chromedriver") or "chromedriver"))


def shoot(d: Any, url: str, out: Path, script: str = "", wait_for: str = "",
          height: int = 900, after: str = "") -> None:
    d.set_window_size(1300, height)
    d.get("about:blank")
    d.get(url)
    end = time.monotonic() + 60
    while not d.execute_script("return document.body.dataset.ready"):
        if time.monotonic() > end:
            raise TimeoutError(url)
        time.sleep(0.05)
    if script:
        d.execute_script(script)
    while wait_for and not d.execute_script(f"return document.querySelector({wait_for!r})"):
        if time.monotonic() > end:
            raise TimeoutError(wait_for)
        time.sleep(0.05)
    if after:
        d.execute_script(after)
    time.sleep(0.5)
    d.save_screenshot(str(out))
    print(f"wrote {out}", flush=True)


SCROLL_TO_FIRST_CALL = ("document.querySelector('.call').scrollIntoView({block: 'start'});"
                        "window.scrollBy(0, -200)")
# The raw view's token box scrolled to the first sampled token (the prompt is above it).
SCROLL_TO_SAMPLED = ("const box = document.querySelector('.tokens');"
                     "const tok = box.querySelector('.tok.s');"
                     "box.scrollTop += tok.getBoundingClientRect().top"
                     " - box.getBoundingClientRect().top - 120;")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img/viewer"))
    ap.add_argument("--work", type=Path, default=None, help="keep the pages here")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="viewer-shots-"))
    work.mkdir(parents=True, exist_ok=True)

    cfg = {"trials": 1, "limit": 60, "concurrency": 8, "progress": False}
    a = run_eval("functions", CoinPolicy(), work / "coin-s0",
                 EvalConfig(seed=0, model="coin-s0", **cfg))
    b = run_eval("functions", CoinPolicy(), work / "coin-s1",
                 EvalConfig(seed=1, model="coin-s1", **cfg))
    families = ("python-tool", "browser", "functions")
    eps = [e for f in families
           for e in collect(f, 2, ScriptedOracle()) + collect(f, 2, ScriptedOracle(wrong=True))]
    jsonl = save_episodes(eps, work / "episodes.jsonl")
    bundle_page = build_viewer(a).path
    episodes_page = build_viewer(jsonl).path
    compare_page = build_compare(a, b).path

    d = driver(work / "profile", 900)
    try:
        shoot(d, bundle_page.as_uri(), args.out / "list.png",
              "const s = document.querySelector('#f-verdict'); s.value = 'failed';"
              "s.dispatchEvent(new Event('change'))")
        for family in families:
            i = next(n for n, e in enumerate(eps) if e.env_id.startswith(family + "-v")
                     and not e.solved)
            shoot(d, f"{episodes_page.as_uri()}#/e/{i}", args.out / f"episode-{family}.png",
                  wait_for=".call", height=1400, after=SCROLL_TO_FIRST_CALL)
        i = next(n for n, e in enumerate(eps) if e.env_id.startswith("python-tool-v"))
        shoot(d, f"{episodes_page.as_uri()}#/e/{i}", args.out / "raw-tokens.png",
              "document.querySelector('.toggle-raw').click()", ".raw-view .tok", height=1150,
              after=SCROLL_TO_SAMPLED)
        shoot(d, f"{compare_page.as_uri()}#/t/0", args.out / "compare.png",
              wait_for=".pane .episode-view", height=1500)
    finally:
        d.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
