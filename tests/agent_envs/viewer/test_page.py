"""The page: what it holds, where it is written, what it refuses, and --serve."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from agent_envs.cli import main as cli_main
from agent_envs.eval import compare
from agent_envs.rollout.episode import load_episodes, save_episodes
from agent_envs.viewer import ViewerError, build_compare, build_viewer, default_output, serve_page
from agent_envs.viewer import page as page_module
from tests.agent_envs.viewer.conftest import FAMILIES
from tests.agent_envs.viewer.helpers import page_episode, read_page, write_test_bundle


def _check_rows_point_at_their_episodes(path: Path, episodes: list) -> dict:
    meta, blobs = read_page(path)
    rows = blobs["index"]["rows"]
    assert meta["rows"] == len(rows) == len(episodes)
    assert meta["chunks"] == sum(1 for k in blobs if k.startswith("c"))
    for row, ep in zip(rows, episodes, strict=True):
        view = blobs[f"c{row['c']}"][row["k"]]
        assert view["id"] == row["id"] == ep.episode_id
        assert view["task"] == row["task"] == ep.task_id
        assert row["verdict"] == ("correct" if ep.solved else "wrong")
    return meta


def test_a_jsonl_of_every_family_makes_one_self_contained_page(episodes_jsonl: Path) -> None:
    stats = build_viewer(episodes_jsonl)
    assert stats.path == episodes_jsonl.with_name("episodes.viewer.html")
    episodes = load_episodes(episodes_jsonl)
    meta = _check_rows_point_at_their_episodes(stats.path, episodes)
    assert meta["mode"] == "list" and meta["source"]["kind"] == "episodes"
    html = stats.path.read_text()
    # Nothing is fetched: no script or style source, no link, no import, no url().
    assert not re.search(r"<script[^>]+src=|<link\b|@import|url\(|<iframe|<img", html)
    assert not re.search(r"https?://", html.split('<script type="application/json"')[0])
    _, blobs = read_page(stats.path)
    assert {r["family"] for r in blobs["index"]["rows"]} == set(FAMILIES)
    # The token table covers every id of every episode.
    ids = {t for e in episodes for s in e.segments for t in s.prompt + s.completion}
    assert ids <= {int(k) for k in blobs["tokens"]}


def test_parquet_bundle_archive_and_unfinished_run_read_alike(bundle_pair, tmp_path: Path
                                                              ) -> None:
    a, _ = bundle_pair
    episodes = load_episodes(a / "episodes.parquet")
    stats = build_viewer(a, tmp_path / "bundle.html")
    meta = _check_rows_point_at_their_episodes(stats.path, episodes)
    assert meta["source"]["kind"] == "bundle" and meta["title"] == "viewer-test | model-a"
    assert meta["source"]["overall"]["value"] == 1.0
    _, blobs = read_page(stats.path)
    manifest_cats = {t: t.split("/")[2] for t in (e.task_id for e in episodes)}
    assert {r["task"]: r["cat"] for r in blobs["index"]["rows"]} == manifest_cats

    archive = Path(str(a) + ".tar.gz")
    stats = build_viewer(archive)
    assert stats.path == a.parent / "model-a.viewer.html"
    assert _check_rows_point_at_their_episodes(stats.path, episodes)["source"]["kind"] == "bundle"

    parquet = save_episodes(episodes, tmp_path / "eps.parquet")
    _check_rows_point_at_their_episodes(build_viewer(parquet).path, episodes)

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"identity": {"suite": "no-such-suite"}}')
    import json

    with open(run / "episodes.log.jsonl", "w") as f:
        f.writelines(json.dumps({"task_id": e.task_id, "trial": 0, "attempt": 1,
                                "episode": e.to_dict()}) + "\n" for e in episodes)
        f.write('{"task_id": "torn')  # a killed run's last line
    meta = _check_rows_point_at_their_episodes(build_viewer(run).path, episodes)
    assert meta["source"]["kind"] == "run"


def test_episodes_are_split_into_chunks_and_prompts_are_stored_once(
        family_episodes, tmp_path: Path, monkeypatch) -> None:
    once = [e for f in FAMILIES for e in family_episodes[f]]
    thrice = once * 3
    monkeypatch.setattr(page_module, "CHUNK_EPISODES", 5)
    small = build_viewer(save_episodes(once, tmp_path / "once.jsonl"))
    big = build_viewer(save_episodes(thrice, tmp_path / "thrice.jsonl"))
    assert (small.chunks, big.chunks) == (3, 8)
    # The same prompts: no new part for the repeats; one system message per family.
    messages = sum(s.prompt.count(200006) for e in once for s in e.segments)  # <|start|>
    assert big.parts == small.parts < messages
    _, blobs = read_page(big.path)
    for row, ep in zip(blobs["index"]["rows"], thrice, strict=True):
        view = page_episode(blobs, row)
        for seg, s in zip(ep.segments, view["segments"], strict=True):
            assert s["ids"] == seg.prompt + seg.completion
        assert view["segments"][0]["messages"][0]["role"] == "system"
    systems = {tuple(p["ids"]) for p in _parts(blobs) if p["messages"]
               and p["messages"][0]["role"] == "system"}
    assert len(systems) == len(FAMILIES)


def _parts(blobs: dict) -> list[dict]:
    return [blobs[f"p{c}"][k] for c, k in blobs["index"]["parts"]]


def test_compare_holds_the_flipped_tasks_of_eval_compare(bundle_pair) -> None:
    a, b = bundle_pair
    stats = build_compare(a, b)
    assert stats.path == a / "compare-model-b.html"
    meta, blobs = read_page(stats.path)
    expected = compare(a, b)
    assert [t["task"] for t in meta["tasks"]] == (expected["flipped"]["to_correct"]
                                                  + expected["flipped"]["to_wrong"])
    assert len(meta["tasks"]) == 3 and {t["dir"] for t in meta["tasks"]} == {"to_wrong"}
    rows = blobs["index"]["rows"]
    for t in meta["tasks"]:
        assert (t["a"], t["b"]) == (1.0, 0.0)
        for side, idx in (("model-a", t["ea"]), ("model-b", t["eb"])):
            assert len(idx) == 1
            row = rows[idx[0]]
            view = blobs[f"c{row['c']}"][row["k"]]
            assert view["task"] == t["task"]
            assert view["label"] == ("correct" if side == "model-a" else "wrong")
    assert meta["a"]["policy"]["model"] == "model-a" and meta["b"]["policy"]["model"] == "model-b"
    assert meta["diff"] == pytest.approx(expected["diff"])


def test_bad_paths_are_clear_errors(episodes_jsonl: Path, bundle_pair, tmp_path: Path) -> None:
    typo = episodes_jsonl.with_name("episodes.jsnl")
    with pytest.raises(ViewerError, match=re.escape(f"{str(typo)!r} does not exist. Did you "
                                                    f"mean {str(episodes_jsonl)!r}?")):
        build_viewer(typo)
    with pytest.raises(ViewerError, match="not an eval bundle or run"):
        build_viewer(tmp_path)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ViewerError, match=re.escape("is not something the viewer reads (suffix "
                                                    "'.txt')")):
        build_viewer(tmp_path / "notes.txt")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ViewerError, match="is not a readable episodes file"):
        build_viewer(tmp_path / "bad.jsonl")
    with pytest.raises(ViewerError, match=re.escape("compare needs two eval bundles; B = ")):
        build_compare(bundle_pair[0], episodes_jsonl)


def test_the_cli_writes_the_page_and_reports_errors_without_a_traceback(
        episodes_jsonl: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "page.html"
    assert cli_main(["view", str(episodes_jsonl), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "12 episodes, 1 chunks" in printed and out.as_uri() in printed
    assert cli_main(["view", str(tmp_path / "nope.jsonl"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err
    assert cli_main(["view", str(episodes_jsonl), "--serve", "--host", "0.0.0.0"]) == 2
    assert "not a loopback address" in capsys.readouterr().err


def test_default_outputs(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    assert default_output(tmp_path / "b") == tmp_path / "b" / "viewer.html"
    assert default_output(tmp_path / "x.jsonl.gz") == tmp_path / "x.viewer.html"
    assert default_output(tmp_path / "x.parquet") == tmp_path / "x.viewer.html"
    assert default_output(tmp_path / "b", tmp_path / "c.tar.gz") == tmp_path / "b/compare-c.html"


def test_serve_answers_the_page_on_loopback_only(episodes_jsonl: Path, tmp_path: Path) -> None:
    page = build_viewer(episodes_jsonl, tmp_path / "served.html").path
    urls: list[str] = []
    server = serve_page(page, port=0, ready=urls.append, block=False)
    try:
        (url,) = urls
        assert url.startswith("http://127.0.0.1:")
        r = httpx.get(url)
        assert r.status_code == 200 and r.content == page.read_bytes()
        assert r.headers["content-type"].startswith("text/html")
        assert httpx.get(url + "served.html").content == page.read_bytes()
        assert httpx.get(url + "../etc/passwd").status_code == 404
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ValueError, match="not a loopback address"):
        serve_page(page, host="0.0.0.0", block=False)


def test_serve_on_a_bad_or_busy_port_is_one_error_line(episodes_jsonl: Path, tmp_path: Path,
                                                       capsys) -> None:
    """Before: OverflowError / OSError tracebacks, after the page had been built."""
    import socket

    out = tmp_path / "page.html"
    assert cli_main(["view", str(episodes_jsonl), "--serve", "--port", "70000",
                     "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --port must be a TCP port from 0 to 65535 (0: any free "
                          "one), got 70000") and "Traceback" not in err
    assert not out.exists()  # refused before any work
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli_main(["view", str(episodes_jsonl), "--serve", "--port", str(port),
                         "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot serve the viewer on 127.0.0.1:{port}: ") \
            and "pick another --port, or --port 0" in err and "Traceback" not in err


def test_text_that_looks_like_html_stays_data(family_episodes, tmp_path: Path) -> None:
    import dataclasses

    evil = "</script><script>alert(1)</script>"
    eps = [dataclasses.replace(e, verdict=dict(e.verdict, reason=evil))
           for e in family_episodes["functions"]]
    bundle = write_test_bundle(tmp_path / "b", eps, model=evil)
    html = build_viewer(bundle).path.read_text()
    assert "<script>alert(1)" not in html
    assert html.count("</script>") == html.count("<script")
    meta, blobs = read_page(bundle / "viewer.html")
    assert meta["title"] == f"viewer-test | {evil}"  # the page shows it as text
    assert {r["reason"] for r in blobs["index"]["rows"]} == {evil}


def test_view_serve_from_the_command_line_until_ctrl_c(episodes_jsonl: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "agent_envs.cli", "view", str(episodes_jsonl), "--serve",
         "--port", "0", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ))
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[0].startswith("12 episodes, 1 chunks"), lines
        assert lines[1].startswith("serving on http://127.0.0.1:"), lines
        url = lines[1].split()[2]
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and b'id="b-index"' in page.content
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_nan_and_infinity_in_a_record_become_null(family_episodes, tmp_path: Path) -> None:
    import dataclasses

    ep = family_episodes["functions"][0]
    odd = dataclasses.replace(ep, reward=float("nan"), meta={"score": float("inf"), "n": 1},
                              verdict=dict(ep.verdict, margin=float("-inf")))
    page = build_viewer(save_episodes([odd], tmp_path / "nan.jsonl")).path
    _, blobs = read_page(page)
    row = blobs["index"]["rows"][0]
    view = blobs[f"c{row['c']}"][row["k"]]
    assert row["reward"] is None and view["reward"] is None
    assert view["meta"] == {"score": None, "n": 1} and view["verdict"]["margin"] is None
