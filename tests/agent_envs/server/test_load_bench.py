"""benchmarks/env_server.py --load end to end at a few sessions (the ramp to thousands is the
benchmark's): both arms, errors by kind, memory, latency, the table, the plot, the stops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import env_server_load


@pytest.mark.slow
def test_the_load_test_ramps_both_arms_and_reports_every_figure(tmp_path: Path, capsys) -> None:
    out = tmp_path / "load.png"
    assert env_server_load.main(["--levels", "3,6", "--steps", "2", "--sandbox", "local",
                                 "--reserve-gb", "0", "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert [r["arm"] for r in data["results"]] == ["server", "in-process"]
    for res in data["results"]:
        assert res["stopped"] == "after the last level"
        assert [r["sessions"] for r in res["rows"]] == [3, 6]
        for row in res["rows"]:
            assert row["errors"] == {} and row["lost"] == 0
            assert row["sandbox_mb_per_session"] > 0.5  # a keeper and a cell per session
            assert row["mb_per_session"] > row["marginal_mb_per_session"] > 0
            for phase in ("reset", "burst_step", "steady_step"):
                assert 0 < row[phase]["p50_ms"] <= row[phase]["p99_ms"] <= row[phase]["max_ms"]
            assert row["steps_per_s"] > 0 and row["cpu_ms_per_step"] >= 0
        server = res["rows"][-1].get("server_threads")
        if res["arm"] == "server":
            assert 0 < server < 40  # no thread per session
    assert out.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "server vs in-process (ratio server / in-process" in printed
    assert "MB/session" in printed and "steady step p50/p99 ms" in printed


def test_it_stops_before_a_level_the_memory_cannot_hold(tmp_path: Path, capsys) -> None:
    out = tmp_path / "load.png"
    assert env_server_load.main(["--levels", "2", "--arms", "in-process", "--sandbox", "local",
                                 "--reserve-gb", "100000", "--out", str(out)]) == 0
    (res,) = json.loads(out.with_suffix(".json").read_text())["results"]
    assert res["rows"] == []
    assert res["stopped"].startswith("before 2 sessions: they would need")
    assert "--reserve-gb 100000" in res["stopped"]


@pytest.mark.parametrize(("args", "message"), [
    (["--levels", "8,4"], "--levels must rise from >= 1"),
    (["--levels", "a"], "--levels must be comma-separated integers"),
    (["--arms", "both"], "--arms takes server and/or in-process"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--out", "x.json"], "--out must be a .png path"),
])
def test_bad_arguments_fail_before_any_work(args: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        env_server_load.main(args)
