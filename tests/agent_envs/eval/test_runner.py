"""The eval runner end to end through the real env, sandbox and collector."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_envs.eval import (
    EvalConfig,
    EvalRunError,
    SuiteMismatchError,
    board,
    build_manifest,
    get_suite,
    list_suites,
    load_bundle,
    official_manifest,
    run_eval,
    verify,
)
from agent_envs.eval import suites as suites_module
from agent_envs.rollout import OraclePolicy
from tests.agent_envs.eval.coin import CoinPolicy

ROOT = Path(__file__).resolve().parents[3]
QUIET = {"progress": False, "concurrency": 8}


@pytest.fixture(scope="module")
def oracle_bundle(tmp_path_factory) -> Path:
    return run_eval("python-tool", OraclePolicy(), tmp_path_factory.mktemp("o") / "b",
                    EvalConfig(trials=2, **QUIET))


@pytest.fixture(scope="module")
def coin_bundle(tmp_path_factory) -> Path:
    return run_eval("python-tool", CoinPolicy(), tmp_path_factory.mktemp("c") / "b",
                    EvalConfig(trials=2, seed=5, **QUIET))


# The tau2 suites (9 to 114 tasks, a simulated user, a database per episode) have their own
# manifest and oracle checks in tests/agent_envs/tau2/test_suites.py, the multi-tool suites
# (tens of tool calls per episode) in tests/agent_envs/agent/test_suites.py.
PINNED = [s.name for s in list_suites()
          if s.pinned and not s.name.startswith(("tau2-", "agent-"))]
# Tasks per suite in the oracle sweep below: a seeded sample stratified by category, so every
# category of every pinned suite is exercised in seconds. The whole of every suite (BFCL's
# 4,281 entries, twice) is `python benchmarks/suite_sweep.py`, a lane of its own.
SWEEP_SAMPLE = 48
DIFFICULTIES = {"d1", "d2", "d3", "d4", "d5"}
CATEGORIES = {"python-tool": DIFFICULTIES, "functions": DIFFICULTIES,
              "browser": {"1-hop", "2-hop", "3-hop", "4-hop"},
              "functions-bfcl": {"simple_python", "multiple", "parallel", "parallel_multiple",
                                 "irrelevance", "multi_turn_base", "live_simple",
                                 "live_relevance"}}


@pytest.mark.parametrize("suite", PINNED)
def test_the_pinned_manifest_is_what_the_code_builds(suite: str) -> None:
    """Fails when a task, prompt, tool description, budget or verifier changes without a
    version bump and `python scripts/pin_suites.py`."""
    built = build_manifest(get_suite(suite))
    pinned = official_manifest(suite)
    assert pinned is not None
    assert built.hash == pinned.hash, pinned.diff(built)
    assert len(built.tasks) >= 100 and len({t.id for t in built.tasks}) == len(built.tasks)
    assert CATEGORIES[suite] <= {t.category for t in built.tasks}


@pytest.mark.parametrize("suite", PINNED)
def test_every_pinned_suite_oracle_scores_all_and_wrong_scores_none(suite: str,
                                                                   tmp_path: Path) -> None:
    """On a seeded, category-stratified sample of each pinned suite (the full sweep is
    benchmarks/suite_sweep.py): the oracle solves every sampled task, its wrong twin none."""
    manifest = official_manifest(suite)
    sample = set(manifest.sample(SWEEP_SAMPLE, seed=0))
    assert CATEGORIES[suite] <= {manifest.categories[t] for t in sample}  # every category
    scores = {}
    for name, policy in (("oracle", OraclePolicy()), ("wrong", OraclePolicy(wrong=True))):
        b = run_eval(suite, policy, tmp_path / name,
                     EvalConfig(trials=1, limit=SWEEP_SAMPLE, **QUIET))
        m = json.loads((b / "metrics.json").read_text())
        assert m["excluded_infra"]["count"] == 0
        assert m["overall"]["tasks"] == len(sample) == SWEEP_SAMPLE
        assert {e.task_id for e in load_bundle(b).episodes} == sample
        scores[name] = m["overall"]["accuracy"]["value"]
        assert verify(b) == []
    assert scores == {"oracle": 1.0, "wrong": 0.0}, scores


def test_a_sample_is_seeded_stratified_and_nested() -> None:
    m = official_manifest("functions-bfcl")
    sizes = {}
    for t in m.tasks:
        sizes[t.category] = sizes.get(t.category, 0) + 1
    a, again, other = m.sample(100, seed=3), m.sample(100, seed=3), m.sample(100, seed=4)
    assert a == again and a != other and len(a) == len(set(a)) == 100
    assert list(a) == [t.id for t in m.tasks if t.id in set(a)]  # manifest order
    got = {}
    for t in a:
        got[m.categories[t]] = got.get(m.categories[t], 0) + 1
    assert set(got) == set(sizes)  # every category, the smallest included
    rest, room = 100 - len(sizes), len(m.tasks) - len(sizes)
    for cat, n in sizes.items():  # one each, the rest in proportion, within one task
        assert abs(got[cat] - 1 - rest * (n - 1) / room) < 1, (cat, got[cat], n)
    small = set(m.sample(50, seed=3))
    for cat in sizes:  # a larger limit takes a superset within each category
        assert ({t for t in small if m.categories[t] == cat}
                <= {t for t in a if m.categories[t] == cat})
    assert m.sample(10**6) == tuple(t.id for t in m.tasks)
    with pytest.raises(ValueError, match="limit must be >= 1"):
        m.sample(0)
    with pytest.raises(ValueError, match="limit must be >= 1"):
        EvalConfig(limit=0)


def test_a_sampled_bundle_says_so_and_verify_holds_it_to_its_sample(tmp_path: Path) -> None:
    import dataclasses

    from agent_envs.rollout.episode import save_episodes

    b = run_eval("python-tool", OraclePolicy(), tmp_path / "s",
                 EvalConfig(trials=1, limit=10, seed=2, **QUIET))
    header = json.loads((b / "header.json").read_text())
    assert header["sample"] == {"limit": 10, "of_tasks": 100, "seed": 2,
                                "stratified_by": "category"}
    assert header["episodes"] == 10 and verify(b) == []
    md, _ = board([b])
    assert "official (sample 10/100)" in md
    # The same directory cannot silently be resumed as a whole-suite run.
    with pytest.raises(EvalRunError, match="differs in limit"):
        run_eval("python-tool", OraclePolicy(), b, EvalConfig(trials=1, seed=2, **QUIET))
    # An episode of a task outside the recorded sample is reported.
    bundle = load_bundle(b)
    outside = next(t.id for t in bundle.manifest.tasks
                   if t.id not in {e.task_id for e in bundle.episodes})
    eps = [*bundle.episodes[:-1],
           dataclasses.replace(bundle.episodes[-1], task_id=outside,
                               episode_id=f"{outside}#0")]
    save_episodes(eps, b / "episodes.parquet")
    assert any(f"task {outside!r} is not in the header's sample" in p for p in verify(b))


def test_oracle_scores_everything_and_the_bundle_verifies(oracle_bundle: Path) -> None:
    m = json.loads((oracle_bundle / "metrics.json").read_text())
    assert m["overall"]["accuracy"]["value"] == 1.0
    assert m["overall"]["pass^2"]["value"] == 1.0
    assert m["overall"]["episodes"] == 200 and m["excluded_infra"]["count"] == 0
    assert all(c["accuracy"]["value"] == 1.0 for c in m["categories"].values())
    assert verify(oracle_bundle) == []
    header = json.loads((oracle_bundle / "header.json").read_text())
    assert header["suite"]["status"] == "official"
    assert header["policy"]["id"] == "oracle" and header["trials"] == 2
    assert header["package"]["commit"] and isinstance(header["package"]["dirty"], bool)
    assert header["dependencies"]["openai-harmony"]
    assert (oracle_bundle / "categories.png").stat().st_size > 1000
    assert (oracle_bundle / "pass_at_k.png").stat().st_size > 1000
    assert (oracle_bundle.parent / "b.tar.gz").stat().st_size > 1000


def test_wrong_policy_scores_zero(tmp_path: Path) -> None:
    b = run_eval("python-tool", OraclePolicy(wrong=True), tmp_path / "w",
                 EvalConfig(trials=1, **QUIET))
    acc = json.loads((b / "metrics.json").read_text())["overall"]["accuracy"]
    assert acc["value"] == 0.0 and acc["ci_method"] == "wilson" and acc["ci"][1] < 0.05


def test_same_seeds_give_the_same_bundle_and_other_seeds_do_not(coin_bundle: Path,
                                                                tmp_path: Path) -> None:
    again = run_eval("python-tool", CoinPolicy(), tmp_path / "again",
                     EvalConfig(trials=2, seed=5, **QUIET))
    other = run_eval("python-tool", CoinPolicy(), tmp_path / "other",
                     EvalConfig(trials=2, seed=6, **QUIET))
    h1, h2, h3 = (json.loads((b / "header.json").read_text()) for b in
                  (coin_bundle, again, other))
    m1, m2, m3 = (json.loads((b / "metrics.json").read_text()) for b in
                  (coin_bundle, again, other))
    assert h1["content_digest"] == h2["content_digest"] and m1 == m2
    assert h1["content_digest"] != h3["content_digest"] and m1 != m3
    assert 0.3 < m1["overall"]["accuracy"]["value"] < 0.7  # a real mix, not all or nothing


def test_intervals_shrink_with_more_trials(coin_bundle: Path, tmp_path: Path) -> None:
    one = run_eval("python-tool", CoinPolicy(), tmp_path / "one",
                   EvalConfig(trials=1, seed=5, **QUIET))
    w1 = json.loads((one / "metrics.json").read_text())["overall"]["accuracy"]["ci"]
    w2 = json.loads((coin_bundle / "metrics.json").read_text())["overall"]["accuracy"]["ci"]
    assert (w2[1] - w2[0]) < (w1[1] - w1[0])


def test_kill_9_then_resume_equals_an_uninterrupted_run(coin_bundle: Path, tmp_path: Path
                                                        ) -> None:
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "agent_envs.cli", "eval", "python-tool", "--policy",
           "py:tests.agent_envs.eval.coin:make_policy", "--trials", "2", "--seed", "5",
           "--concurrency", "4", "--out", str(out), "--quiet"]
    log = out / "episodes.log.jsonl"
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE) as proc:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and log.read_bytes().count(b"\n") >= 40:
                break
            time.sleep(0.05)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        err = proc.communicate()[1]
    assert alive, f"the run ended before it could be killed: {err!r}"
    done = log.read_bytes().count(b"\n")
    assert 40 <= done < 200 and not (out / "bundle.json").exists()
    with open(log, "ab") as f:  # a record torn mid-write by the kill
        f.write(b'{"task_id": "procedural/v0/x", "trial": 0, "epis')
    resumed = run_eval("python-tool", CoinPolicy(), out, EvalConfig(trials=2, seed=5, **QUIET))
    ref_h = json.loads((coin_bundle / "header.json").read_text())
    res_h = json.loads((resumed / "header.json").read_text())
    assert res_h["content_digest"] == ref_h["content_digest"]
    assert res_h["resumes"] == 1 and res_h["episodes"] == 200
    assert json.loads((resumed / "metrics.json").read_text()) == json.loads(
        (coin_bundle / "metrics.json").read_text())
    b = load_bundle(resumed)
    assert len({e.episode_id for e in b.episodes}) == 200  # nothing counted twice
    assert verify(resumed) == []


def test_resuming_with_other_settings_is_refused(coin_bundle: Path) -> None:
    with pytest.raises(EvalRunError, match="differs in seed"):
        run_eval("python-tool", CoinPolicy(), coin_bundle, EvalConfig(trials=2, seed=6, **QUIET))


def test_infra_episodes_are_retried_then_excluded_not_scored(tmp_path: Path) -> None:
    from agent_envs.rollout.policy import Sample

    class Flaky(OraclePolicy):
        """Fails (an infra fault) on every request for two tasks, and once for a third."""

        def __init__(self) -> None:
            super().__init__()
            self.seen: dict[str, int] = {}

        def sample(self, requests):  # type: ignore[override]
            out = []
            for r in requests:
                tid = r.context.task.id
                n = self.seen[tid] = self.seen.get(tid, 0) + 1
                if tid in always or (tid == once and n == 1):
                    out.append(Sample(token_ids=[], logprobs=[], finish_reason="error",
                                      error="server down"))
                else:
                    out += super().sample([r])
            return out

    ids = [t.id for t in official_manifest("python-tool").tasks]
    always, once = set(ids[:2]), ids[2]
    b = run_eval("python-tool", Flaky(), tmp_path / "f",
                 EvalConfig(trials=1, max_infra_retries=2, **QUIET))
    m = json.loads((b / "metrics.json").read_text())
    assert m["excluded_infra"]["count"] == 2
    assert sorted(k[0] for k in m["excluded_infra"]["keys"]) == sorted(always)
    assert m["excluded_infra"]["retries"] == 2 * 2 + 1
    assert m["overall"]["tasks"] == 98 and m["overall"]["accuracy"]["value"] == 1.0
    assert verify(b) == []


def test_a_changed_suite_is_refused_or_labelled_unofficial(tmp_path: Path, monkeypatch) -> None:
    spec = get_suite("python-tool")
    changed = type(spec)(**{**spec.__dict__, "env_kwargs": {**spec.env_kwargs,
                                                             "max_turns": 9}})
    monkeypatch.setitem(suites_module._SUITES, "python-tool", changed)
    with pytest.raises(SuiteMismatchError, match="env_kwargs"):
        run_eval("python-tool", OraclePolicy(), tmp_path / "x", EvalConfig(trials=1, **QUIET))
    b = run_eval("python-tool", OraclePolicy(), tmp_path / "y",
                 EvalConfig(trials=1, allow_modified=True, **QUIET))
    assert json.loads((b / "header.json").read_text())["suite"]["status"] == "unofficial"
