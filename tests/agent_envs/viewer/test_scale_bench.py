"""benchmarks/viewer_scale.py end to end on a small bundle (the BFCL run is the benchmark's)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from benchmarks import viewer_scale


@pytest.mark.skipif((shutil.which("chromium") is None or shutil.which("chromedriver") is None)
                    and not os.environ.get("CI"),
                    reason="needs Debian's chromium and chromium-driver")
def test_the_benchmark_measures_both_pages_and_writes_json_and_plot(bundle_pair, tmp_path: Path,
                                                                    capsys) -> None:
    a, _ = bundle_pair
    out = tmp_path / "scale.json"
    assert viewer_scale.main(["--bundle", str(a), "--repeats", "1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["episodes"] == 6 and r["repeats"] == 1
    ours, doc = r["ours"], r["giant_document"]
    assert ours["shown"] == "0 of 6 episodes"  # bundle A solves every task
    for side in (ours, doc):
        assert side["html_bytes"] > 0 and side["ready_ms"] > 0 and side["dom_nodes"] > 10
        assert side["filter_ms"] >= 0 and side["open_ms"] >= 0
    assert out.with_suffix(".png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "doc/ours" in printed and "navigation to usable page" in printed


def test_bad_arguments_fail_before_any_work(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        viewer_scale.main(["--out", str(tmp_path / "x.png")])
    assert "--out must be a .json path" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        viewer_scale.main(["--repeats", "0"])
    assert "--repeats must be >= 1" in capsys.readouterr().err
