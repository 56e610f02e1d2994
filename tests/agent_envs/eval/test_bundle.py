"""Bundles: verify catches tampering, rescore re-judges, compare pairs, board ranks."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agent_envs.cli import main as cli_main
from agent_envs.eval import BundleError, EvalConfig, board, compare, rescore, run_eval, verify
from agent_envs.eval import bundle as bundle_module
from agent_envs.rollout import OraclePolicy
from agent_envs.rollout.episode import load_episodes, save_episodes
from agent_envs.tasks.base import Verdict
from tests.agent_envs.eval.coin import CoinPolicy

QUIET = {"progress": False, "concurrency": 8}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {
        "oracle": run_eval("python-tool", OraclePolicy(), root / "oracle",
                           EvalConfig(trials=1, **QUIET)),
        "coin": run_eval("python-tool", CoinPolicy(), root / "coin",
                         EvalConfig(trials=1, seed=1, model="coin-model", **QUIET)),
    }


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_episode(path: Path, index: int, **changes) -> None:
    eps = load_episodes(path / "episodes.parquet")
    eps[index] = dataclasses.replace(eps[index], **changes)
    save_episodes(eps, path / "episodes.parquet")


def test_verify_passes_untouched_and_via_the_cli(bundles, capsys) -> None:
    assert verify(bundles["oracle"]) == []
    assert cli_main(["eval", "verify", str(bundles["oracle"])]) == 0
    assert "OK" in capsys.readouterr().out


def test_verify_takes_the_archive_as_is(bundles, tmp_path: Path, capsys) -> None:
    # Before: `eval verify DIR.tar.gz` said "bundle.json unreadable: ... Not a directory".
    archive = bundles["oracle"].with_name(bundles["oracle"].name + ".tar.gz")
    assert verify(archive) == []
    assert cli_main(["eval", "verify", str(archive)]) == 0
    assert "OK: hashes, episodes and metrics verify" in capsys.readouterr().out
    # An archive of an edited bundle fails as the directory would.
    b = _copy(bundles["oracle"], tmp_path / "oracle")
    _edit_episode(b, 3, reward=0.0, reward_components={"correct": 0.0})
    edited = tmp_path / "edited.tar.gz"
    subprocess.run(["tar", "-czf", str(edited), "-C", str(tmp_path), "oracle"], check=True)
    assert any("reward disagrees with its verdict" in p for p in verify(edited))
    # Neither a directory nor an archive: one line, exit 2.
    assert cli_main(["eval", "verify", str(tmp_path / "missing.tar.gz")]) == 2
    err = capsys.readouterr().err
    assert "missing.tar.gz is not a bundle directory or a bundle archive (DIR.tar.gz)" in err
    assert "Traceback" not in err
    with pytest.raises(BundleError, match="is a bundle archive; extract it first"):
        bundle_module.load_bundle(archive)


def test_verify_fails_after_one_reward_is_edited(bundles, tmp_path: Path, capsys) -> None:
    b = _copy(bundles["oracle"], tmp_path / "b")
    _edit_episode(b, 3, reward=0.0, reward_components={"correct": 0.0})
    problems = verify(b)
    assert any("episodes.parquet: sha256" in p for p in problems)
    assert any("content digest" in p for p in problems)
    assert any("reward disagrees with its verdict" in p for p in problems)
    assert cli_main(["eval", "verify", str(b)]) == 1
    assert "does not verify" in capsys.readouterr().out
    # Edited consistently (reward, components and verdict): the metrics no longer match.
    c = _copy(bundles["oracle"], tmp_path / "c")
    _edit_episode(c, 3, reward=0.0, reward_components={"correct": 0.0},
                  verdict={"correct": False, "extracted": "0", "reason": "edited"})
    problems = verify(c)
    assert any("metrics.json differs" in p for p in problems)
    assert not any("disagrees" in p for p in problems)


def test_verify_fails_after_one_token_is_edited(bundles, tmp_path: Path) -> None:
    b = _copy(bundles["oracle"], tmp_path / "b")
    eps = load_episodes(b / "episodes.parquet")
    eps[0].segments[0].completion[2] += 1
    save_episodes(eps, b / "episodes.parquet")
    problems = verify(b)
    assert any("content digest" in p for p in problems)
    # Even with bundle.json's digest forged to match, the header's content digest catches it.
    listed = json.loads((b / "bundle.json").read_text())
    listed["files"]["episodes.parquet"] = bundle_module._sha256_file(b / "episodes.parquet")
    (b / "bundle.json").write_text(json.dumps(listed))
    assert verify(b) and all("sha256" not in p for p in verify(b))


def test_verify_fails_after_one_task_id_is_edited(bundles, tmp_path: Path) -> None:
    b = _copy(bundles["oracle"], tmp_path / "b")
    _edit_episode(b, 5, task_id="procedural/v0/modpow/d1/test/999999")
    problems = verify(b)
    assert any("is not in the suite" in p for p in problems)


def test_verify_fails_when_the_manifest_or_metrics_are_edited(bundles, tmp_path: Path) -> None:
    b = _copy(bundles["oracle"], tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    m["trials"] = 9
    (b / "manifest.json").write_text(json.dumps(m))
    assert any("hashes to" in p for p in verify(b))
    c = _copy(bundles["oracle"], tmp_path / "c")
    metrics = json.loads((c / "metrics.json").read_text())
    metrics["overall"]["accuracy"]["value"] = 0.99
    (c / "metrics.json").write_text(json.dumps(metrics))
    assert any("metrics.json" in p for p in verify(c))


def test_rescore_lists_verdicts_a_changed_verifier_flips(bundles, monkeypatch) -> None:
    assert rescore(bundles["oracle"]) == []
    from agent_envs.envs.python_tool.env import PythonToolEnv

    def strict_verify(self, task, text):  # a verifier that now rejects d1 answers
        if "/d1/" in task.id:
            return Verdict(correct=False, extracted=None, reason="stricter verifier")
        return Verdict(correct=True, extracted="ok", reason="match")

    monkeypatch.setattr(PythonToolEnv, "verify", strict_verify)
    changed = rescore(bundles["oracle"])
    assert len(changed) == 20
    assert all("/d1/" in c["episode"] and c["old"] and not c["new"] for c in changed)
    assert all(c["diverged_at_turn"] is None for c in changed)  # same tool outputs on replay


def test_compare_is_paired_and_lists_flips(bundles, capsys) -> None:
    r = compare(bundles["oracle"], bundles["coin"])
    assert r["shared_tasks"] == 100 and r["same_suite"]
    coin_acc = r["b"]["accuracy"]
    assert r["diff"] == pytest.approx(coin_acc - 1.0)
    assert r["ci"][0] < r["diff"] < r["ci"][1] < 0
    assert len(r["flipped"]["to_wrong"]) == round((1 - coin_acc) * 100)
    assert r["flipped"]["to_correct"] == []
    assert cli_main(["eval", "compare", str(bundles["oracle"]), str(bundles["coin"])]) == 0
    assert "correct -> wrong" in capsys.readouterr().out


def test_board_refuses_bundles_of_different_suites(bundles, tmp_path: Path) -> None:
    other = _copy(bundles["coin"], tmp_path / "other")
    header = json.loads((other / "header.json").read_text())
    header["suite"]["hash"] = "0" * 64
    (other / "header.json").write_text(json.dumps(header))
    with pytest.raises(BundleError, match="different suites"):
        board([bundles["oracle"], other])


class _Table(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None and not os.environ.get("CI"),
                    reason="needs Debian's chromium (.ci/run installs it; in CI this fails)")
def test_board_html_renders_in_headless_chromium(bundles, tmp_path: Path) -> None:
    html = tmp_path / "board.html"
    assert cli_main(["eval", "board", str(bundles["coin"]), str(bundles["oracle"]),
                     "--html", str(html)]) == 0
    dom = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         html.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    table = _Table()
    table.feed(dom)
    header, *rows = table.rows
    assert header[:3] == ["#", "model", "accuracy (95% CI)"]
    assert [r[1] for r in rows] == ["oracle", "coin-model"]  # ranked by accuracy
    assert rows[0][2] == "1.000 [0.963, 1.000]"  # Wilson, 100 of 100 tasks
    assert [r[0] for r in rows] == ["1", "2"]
