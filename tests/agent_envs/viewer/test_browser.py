"""The page in a real browser: Debian's chromium, driven by selenium through chromium-driver.

Opens the file from disk, filters to failed episodes, opens one, checks that its tool call and
the tool's answer are shown, toggles the raw-token view (loss mask and log-prob strips); the
comparison page; the page over --serve; and a page of 4,281 rows (BFCL's size) filtering
without drawing every row.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from agent_envs.harmony import get_codec, message_text
from agent_envs.rollout.episode import load_episodes
from agent_envs.viewer import build_compare, build_viewer, serve_page
from agent_envs.viewer import page as page_module

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    (CHROMIUM is None or DRIVER is None) and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
           "chromium-driver; in CI this fails)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, predicate, what: str, timeout: float = 20.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: predicate(d), message=what)


def _open(driver, url: str) -> None:
    driver.get(url)
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"),
          "the viewer did not start")
    assert driver.execute_script("return document.body.dataset.ready") == "1", _errors(driver)


def _errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _css(driver, sel: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, sel)


def _tool_answer(ep) -> str:
    """The first tool answer of an episode, decoded here from its env tokens."""
    seg, t = ep.segments[0], ep.turns[0]
    env = seg.completion[t.end:t.end + t.env_tokens]
    return message_text(get_codec().parse_conversation(env)[0])


def test_filter_failed_open_one_see_call_and_answer_toggle_mask(browser, episodes_jsonl: Path
                                                                 ) -> None:
    from selenium.webdriver.support.ui import Select

    page = build_viewer(episodes_jsonl).path
    _open(browser, page.as_uri())
    assert _css(browser, "#count")[0].text == "12 of 12 episodes"
    Select(_css(browser, "#f-verdict")[0]).select_by_value("failed")
    _wait(browser, lambda d: _css(d, "#count")[0].text == "6 of 12 episodes", "filter: failed")
    verdicts = [r.find_elements("css selector", ".badge")[0].text for r in _css(browser, ".row")]
    assert verdicts == ["wrong"] * 6
    Select(_css(browser, "#f-family")[0]).select_by_value("functions")
    _wait(browser, lambda d: len(_css(d, ".row")) == 2, "filter: functions")
    row = _css(browser, ".row")[0]
    ep = load_episodes(episodes_jsonl)[int(row.get_attribute("data-i"))]
    assert ep.env_id == "functions-v0" and not ep.solved
    row.click()
    _wait(browser, lambda d: _css(d, ".episode-view .call"), "the episode's tool call")
    call = _css(browser, ".call")[0]
    recipient = ep.turns[0].tool_outcome["recipient"]
    args = call.find_elements("css selector", ".args")[0].text
    answer = call.find_elements("css selector", ".answer")[0].text
    assert f"call → {recipient}" in args and '"guess": true' in args
    expected = _tool_answer(ep)
    assert expected.splitlines()[0] in answer and "tool error" in answer
    assert _css(browser, ".verdict-card .badge")[0].text == "wrong"
    assert _css(browser, ".msg.final")  # the final answer, told apart from analysis
    assert _css(browser, ".msg.analysis")
    assert len(_css(browser, "details.msg.sys")) == 2  # system and developer, folded

    _css(browser, ".toggle-raw")[0].click()
    _wait(browser, lambda d: _css(d, ".raw-view .tok"), "the raw tokens")
    seg = ep.segments[0]
    sampled = browser.execute_script("return document.querySelectorAll('.tok.s').length")
    env = browser.execute_script("return document.querySelectorAll('.tok.e').length")
    assert (sampled, env) == (sum(seg.loss_mask), len(seg.prompt) + len(seg.loss_mask)
                              - sum(seg.loss_mask))
    heat = browser.execute_script(
        "return [...document.querySelectorAll('.tok.s')]"
        ".map(s => s.style.getPropertyValue('--lp'))")
    assert len(set(heat)) > 3  # varied log-probs, varied colours
    widths = browser.execute_script(
        "return [...document.querySelectorAll('canvas.strip')].map(c => c.width)")
    assert len(widths) == 2 and min(widths) >= 200
    assert _css(browser, ".conversation")[0].is_displayed() is False
    _css(browser, ".toggle-raw")[0].click()
    assert _css(browser, ".conversation")[0].is_displayed()
    assert not _errors(browser)


def test_search_sort_and_keyboard_back(browser, episodes_jsonl: Path) -> None:
    eps = load_episodes(episodes_jsonl)
    page = build_viewer(episodes_jsonl).path
    _open(browser, page.as_uri())
    box = _css(browser, "#q")[0]
    box.send_keys(eps[5].task_id)
    _wait(browser, lambda d: _css(d, "#count")[0].text == "2 of 12 episodes",
          "search by task id")
    tasks = "return [...document.querySelectorAll('.row')].map(r => r.children[1].textContent)"
    assert set(browser.execute_script(tasks)) == {eps[5].task_id}
    box.clear()
    box.send_keys("zzz-no-such-thing")
    _wait(browser, lambda d: _css(d, "#count")[0].text == "0 of 12 episodes", "search: none")
    box.clear()
    box.send_keys(" ")
    _wait(browser, lambda d: _css(d, "#count")[0].text == "12 of 12 episodes", "search cleared")
    header = next(s for s in _css(browser, "#grid-head span") if s.text == "tokens")
    column = "return [...document.querySelectorAll('.row')].map(r => +r.children[10].textContent)"
    header.click()
    tokens = browser.execute_script(column)
    assert len(tokens) == 12 and tokens == sorted(tokens)
    header.click()
    assert browser.execute_script(column) == sorted(tokens, reverse=True)
    _css(browser, ".row")[0].click()
    _wait(browser, lambda d: _css(d, ".episode-view"), "open")
    from selenium.webdriver.common.keys import Keys

    _css(browser, "body")[0].send_keys(Keys.ESCAPE)
    _wait(browser, lambda d: _css(d, "#list")[0].is_displayed(), "Escape goes back to the list")


def test_compare_shows_both_episodes_of_a_flipped_task(browser, bundle_pair) -> None:
    a, b = bundle_pair
    page = build_compare(a, b).path
    _open(browser, page.as_uri())
    assert _css(browser, "#count")[0].text == "3 of 3 flipped tasks"
    assert "B − A" in _css(browser, "#summary")[0].text
    _css(browser, ".row")[0].click()
    _wait(browser, lambda d: len(_css(d, ".pane .episode-view")) == 2, "both panes")
    heads = [p.text for p in _css(browser, ".pane-head")]
    assert heads == ["A: model-a", "B: model-b"]
    badges = [v.text for v in _css(browser, ".pane .verdict-card .badge")]
    assert badges == ["correct", "wrong"]
    assert len(_css(browser, ".pane .call")) >= 2
    assert not _errors(browser)


def test_the_served_page(browser, episodes_jsonl: Path, tmp_path: Path) -> None:
    page = build_viewer(episodes_jsonl, tmp_path / "p.html").path
    urls: list[str] = []
    server = serve_page(page, port=0, ready=urls.append, block=False)
    try:
        _open(browser, urls[0] + "#/e/3")
        _wait(browser, lambda d: _css(d, ".episode-view"), "an episode by its URL")
        assert _css(browser, ".ep-head .task")[0].text == load_episodes(episodes_jsonl)[3].task_id
    finally:
        server.shutdown()
        server.server_close()


def test_a_bfcl_sized_list_opens_and_filters_without_drawing_every_row(
        browser, family_episodes, tmp_path: Path) -> None:
    """4,281 rows (all of BFCL), their episodes in compressed chunks: a seeded sample of
    the benchmark (benchmarks/viewer_scale.py measures the real BFCL bundle)."""
    import json
    import random

    from agent_envs.viewer.episode import (
        PartStore,
        TokenTable,
        episode_row,
        episode_view,
        first_user_text,
    )

    codec = get_codec()
    table = TokenTable(codec)
    store = PartStore(codec, table)
    eps = [e for f in ("functions", "browser") for e in family_episodes[f]]
    views = [episode_view(e, codec, store, table) for e in eps]
    rng = random.Random(0)
    chunks, rows = page_module._Chunks(), []
    for i in range(4281):
        j = rng.randrange(len(eps))
        view = dict(views[j], id=f"e{i}")
        row = episode_row(eps[j], i, category=f"cat{i % 17}",
                          question=first_user_text(view, store))
        row["id"] = view["id"]
        row["c"], row["k"] = chunks.add(json.dumps(view, separators=(",", ":")))
        rows.append(row)
    meta = {"mode": "list", "title": "scale", "source": {"path": "x", "kind": "episodes",
                                                         "episodes": 4281}}
    stats = page_module._write(tmp_path / "big.html", meta, rows, chunks, store, table,
                               time.perf_counter())
    assert stats.chunks >= 134  # at most 32 episodes (or 256 kB of JSON) a chunk
    t0 = time.perf_counter()
    _open(browser, stats.path.as_uri())
    load_s = time.perf_counter() - t0
    assert _css(browser, "#count")[0].text == "4281 of 4281 episodes"
    drawn = len(_css(browser, ".row"))
    assert 10 < drawn < 80  # a window of rows, not 4,281 of them
    failed = sum(r["verdict"] in ("wrong", "unfinished") for r in rows)
    ms = browser.execute_script("""
        const t = performance.now();
        const s = document.querySelector('#f-verdict'); s.value = 'failed';
        s.dispatchEvent(new Event('change'));
        return performance.now() - t;""")
    assert _css(browser, "#count")[0].text == f"{failed} of 4281 episodes"
    assert ms < 1000, f"filtering 4,281 rows took {ms:.0f} ms"
    browser.execute_script("document.querySelector('#grid').scrollTop = 60000")
    drawn_ids = "return [...document.querySelectorAll('.row')].map(r => +r.dataset.i)"
    _wait(browser, lambda d: min(d.execute_script(drawn_ids)) > 1500, "scrolled rows drawn")
    browser.execute_script("document.querySelector('.row:last-child').click()")
    _wait(browser, lambda d: _css(d, ".episode-view"), "open an episode from the end")
    assert load_s < 30
