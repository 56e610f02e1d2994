"""Result bundles: write, verify, re-score, compare and rank them.

A bundle is one directory (and ``DIR.tar.gz``, the same files) holding:

* ``manifest.json``: the suite manifest the run used (its hash is recomputed on verify);
* ``header.json``: suite name, hash and status (official / unofficial / unpinned), package
  version, git commit and dirty flag, key dependency versions, policy and model id, sampling
  settings, reasoning effort, seeds, trials, start and end time, infra counts, the
  digest of the episodes' content, and ``sample`` when the run covered a seeded sample of the
  suite (``--limit``);
* ``episodes.parquet``: every scored episode with its tokens (``agent_envs.rollout.episode`` schema),
  ids ``TASK#TRIAL``, in suite order;
* ``metrics.json``: overall and per-category metrics with 95% CIs (see ``metrics``);
* ``categories.png`` and ``pass_at_k.png``;
* ``bundle.json``: the sha256 of every other file.

``verify`` recomputes all of it. The episodes' content digest leaves out wall-clock timings,
so two runs with the same seeds give bundles with equal digests and metrics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import platform
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from agent_envs.errors import AgentEnvsError
from agent_envs.eval.metrics import Outcome, compute_metrics, paired_diff
from agent_envs.eval.suites import Manifest, official_manifest

__all__ = [
    "BundleError", "board", "compare", "episode_digest", "load_bundle", "rescore",
    "verify", "write_bundle",
]

FILES = ("manifest.json", "header.json", "episodes.parquet", "metrics.json")
PLOTS = ("categories.png", "pass_at_k.png")
KEY_DEPENDENCIES = ("openai-harmony", "gymnasium", "numpy", "pyarrow", "torch", "transformers",
                    "vllm", "httpx")
_TIMING = {"env_s", "policy_s", "total_s"}


class BundleError(AgentEnvsError):
    """A bundle is missing, malformed, or cannot be combined with another."""


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def episode_digest(ep: Any) -> str:
    """sha256 of an episode's content: tokens, log-probs, rewards, verdicts; not wall-clock
    timings (episode, turn and tool-call durations), which no two runs share."""
    d = ep.to_dict()
    for k in _TIMING:
        d.pop(k, None)
    turns = []
    for t in d["turns"]:
        t = {k: v for k, v in t.items() if k not in _TIMING}
        if isinstance(t.get("tool_outcome"), dict):
            t["tool_outcome"] = {k: v for k, v in t["tool_outcome"].items() if k != "duration_s"}
        turns.append(t)
    d["turns"] = turns
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _content_digest(episodes: Sequence[Any]) -> str:
    return hashlib.sha256("".join(episode_digest(e) for e in episodes).encode()).hexdigest()


def outcomes(manifest: Manifest, episodes: Sequence[Any]) -> list[Outcome]:
    """Per-task trials and correct counts (tasks with no scored episode have 0 trials)."""
    counts: dict[str, list[int]] = {t.id: [0, 0] for t in manifest.tasks}
    for ep in episodes:
        counts[ep.task_id][0] += 1
        counts[ep.task_id][1] += int(ep.solved)
    cats = manifest.categories
    return [Outcome(task_id=t, category=cats[t], trials=n, correct=c)
            for t, (n, c) in counts.items()]


def _git() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=root, capture_output=True, text=True, timeout=10,
                                    check=True).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in KEY_DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_bundle(out: Path, *, manifest: Manifest, run: dict[str, Any], episodes: Sequence[Any],
                 excluded: list[list[Any]], infra_retries: int) -> Path:
    """Write the bundle files into ``out`` and the archive ``out.tar.gz`` beside it."""
    import agent_envs
    from agent_envs.rollout.episode import save_episodes

    order = {t.id: i for i, t in enumerate(manifest.tasks)}
    # Stored ids come from (task, trial), not from the order the work was done in.
    episodes = [dataclasses.replace(e, episode_id=f"{e.task_id}#{e.index}",
                                    group_id=order[e.task_id]) for e in episodes]
    ident = run["identity"]
    manifest.save(out / "manifest.json")
    save_episodes(episodes, out / "episodes.parquet")
    metrics = compute_metrics(outcomes(manifest, episodes), trials=ident["trials"],
                              seed=ident["seed"])
    metrics["excluded_infra"] = {"count": len(excluded), "keys": excluded,
                                 "retries": infra_retries}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
    header = {
        "suite": {"name": manifest.name, "version": manifest.version, "hash": manifest.hash,
                  "status": ident["suite_status"], "env_id": manifest.env_id},
        "package": {"name": "agent-envs", "version": agent_envs.__version__, **_git()},
        "dependencies": _versions(),
        "python": platform.python_version(),
        "policy": {"id": ident["policy_id"], "version": ident["policy_version"],
                   "model": ident["model"]},
        "sampling": ident["sampling"], "reasoning_effort": ident["reasoning_effort"],
        "seed": ident["seed"], "trials": ident["trials"],
        "max_infra_retries": ident["max_infra_retries"],
        "started_at": _iso(run["started_at"]), "ended_at": _iso(run.get("ended_at")),
        "resumes": run.get("resumes", 0),
        "episodes": len(episodes), "content_digest": _content_digest(episodes),
    }
    if ident.get("env_args"):  # env arguments of the run outside the suite (a simulated user)
        header["env_args"] = ident["env_args"]
    for key in ("user_simulator", "judge"):  # who played the user / judged (tau2), per episode
        seen = _distinct(((getattr(e, "meta", None) or {}).get("episode") or {}).get(key)
                         for e in episodes)
        if seen:
            header[key] = seen[0] if len(seen) == 1 else seen
    if ident.get("limit"):
        header["sample"] = {"limit": ident["limit"], "of_tasks": len(manifest.tasks),
                            "seed": ident["seed"], "stratified_by": "category"}
    (out / "header.json").write_text(json.dumps(header, indent=1, sort_keys=True))
    _plots(out, metrics, header)
    files = [f for f in (*FILES, *PLOTS) if (out / f).exists()]
    (out / "bundle.json").write_text(json.dumps(
        {"files": {f: _sha256_file(out / f) for f in files}}, indent=1, sort_keys=True))
    _archive(out, [*files, "bundle.json"])
    return out


def _distinct(values: Any) -> list[Any]:
    """The distinct non-empty JSON values, in first-seen order."""
    out, keys = [], set()
    for v in values:
        if v:
            key = json.dumps(v, sort_keys=True, default=str)
            if key not in keys:
                keys.add(key)
                out.append(v)
    return out


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _archive(out: Path, files: Sequence[str]) -> None:
    """``out.tar.gz``: the bundle files, byte-stable (sorted, zeroed times and owners)."""
    with tarfile.open(out.with_name(out.name + ".tar.gz"), "w:gz") as tar:
        for name in sorted(files):
            data = (out / name).read_bytes()
            info = tarfile.TarInfo(f"{out.name}/{name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))


def _plots(out: Path, metrics: dict[str, Any], header: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional: pip install 'agent-envs[eval]'
        return
    title = f"{header['suite']['name']} | {header['policy']['model']}"
    cats = metrics["categories"]
    names = list(cats)
    vals = [cats[c]["accuracy"]["value"] or 0.0 for c in names]
    # max(0, .): a Wilson bound can sit a rounding error inside the point at 0 or 1.
    lo = [max(0.0, v - (cats[c]["accuracy"]["ci"][0] or 0.0)) for v, c in zip(vals, names)]
    hi = [max(0.0, (cats[c]["accuracy"]["ci"][1] or 0.0) - v) for v, c in zip(vals, names)]
    fig, ax = plt.subplots(figsize=(max(4, 1 + 0.8 * len(names)), 3.5))
    ax.bar(names, vals, yerr=[lo, hi], capsize=4, color="#4c72b0")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "categories.png", dpi=110)
    plt.close(fig)
    overall = metrics["overall"]
    ks = [k for k in range(1, header["trials"] + 1) if f"pass@{k}" in overall]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, color in (("pass@", "#4c72b0"), ("pass^", "#dd8452")):
        # None (no task scored, e.g. every episode excluded as infra) plots as a gap.
        ys = [_nan(overall[f"{name}{k}"]["value"]) for k in ks]
        los = [_nan(overall[f"{name}{k}"]["ci"][0]) for k in ks]
        his = [_nan(overall[f"{name}{k}"]["ci"][1]) for k in ks]
        ax.plot(ks, ys, marker="o", color=color, label=f"{name}k")
        ax.fill_between(ks, los, his, color=color, alpha=0.2)
    ax.set_xlabel("k")
    ax.set_xticks(ks)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (95% CI)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pass_at_k.png", dpi=110)
    plt.close(fig)


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


# -- reading --------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Bundle:
    """A bundle read from disk."""

    path: Path
    header: dict[str, Any]
    manifest: Manifest
    metrics: dict[str, Any]
    episodes: list[Any]

    def task_scores(self) -> dict[str, float]:
        """Task id -> fraction of its scored trials that were correct."""
        return {o.task_id: o.correct / o.trials
                for o in outcomes(self.manifest, self.episodes) if o.trials}


def load_bundle(path: str | Path) -> Bundle:
    """Read a bundle directory.

    Raises:
        BundleError: A file is missing or unreadable.
    """
    from agent_envs.rollout.episode import load_episodes

    p = Path(path)
    if _is_archive(p):
        raise BundleError(f"{p} is a bundle archive; extract it first (tar xzf {p}) and pass "
                          f"the directory (`agent-envs eval verify` takes the archive as is)")
    missing = [f for f in (*FILES, "bundle.json") if not (p / f).exists()]
    if missing:
        raise BundleError(f"{p} is not a complete bundle: missing {', '.join(missing)}; is "
                          "the run finished? (agent-envs eval SUITE --out DIR resumes it)")
    try:
        return Bundle(path=p, header=json.loads((p / "header.json").read_text()),
                      manifest=Manifest.load(p / "manifest.json"),
                      metrics=json.loads((p / "metrics.json").read_text()),
                      episodes=load_episodes(p / "episodes.parquet"))
    except (ValueError, KeyError) as e:
        raise BundleError(f"{p}: unreadable bundle ({e})") from e


def _is_archive(p: Path) -> bool:
    return p.is_file() and p.name.endswith((".tar.gz", ".tgz"))


def _extract_archive(archive: Path, into: Path) -> Path:
    """Unpack a bundle archive (``DIR.tar.gz``: one directory of plain files) into ``into``
    and return the bundle directory. Links, absolute paths and ``..`` are refused."""
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(into, filter="data")
    dirs = [d for d in into.iterdir() if d.is_dir() and (d / "bundle.json").is_file()]
    if len(dirs) != 1:
        raise BundleError(f"{archive} does not hold one bundle directory (with bundle.json); "
                          f"found {sorted(d.name for d in into.iterdir())}")
    return dirs[0]


def verify(path: str | Path) -> list[str]:
    """Every inconsistency in a bundle (empty when it verifies).

    ``path`` is a bundle directory or its archive ``DIR.tar.gz`` (unpacked to a temporary
    directory and checked there).

    Checks: file digests; the manifest's hash against the header (and the pinned manifest
    for official runs); episode ids, task ids and trial counts against the manifest; each
    reward against its components and verdict; the content digest; the metrics, recomputed.

    Raises:
        BundleError: ``path`` is neither a directory nor a readable ``.tar.gz`` archive.
    """
    p = Path(path)
    if _is_archive(p):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="agent-envs-verify-") as tmp:
            try:
                root = _extract_archive(p, Path(tmp))
            except (tarfile.TarError, OSError, EOFError) as e:
                raise BundleError(f"{p} is not a readable bundle archive: {e}") from e
            return verify(root)
    if not p.is_dir():
        raise BundleError(f"{p} is not a bundle directory or a bundle archive (DIR.tar.gz); "
                          f"`agent-envs eval verify` takes either")
    problems: list[str] = []
    try:
        listed = json.loads((p / "bundle.json").read_text())["files"]
    except (OSError, ValueError, KeyError) as e:
        return [f"bundle.json unreadable: {e}"]
    for name, digest in sorted(listed.items()):
        if not (p / name).exists():
            problems.append(f"{name}: missing")
        elif _sha256_file(p / name) != digest:
            problems.append(f"{name}: sha256 differs from bundle.json (edited after the run)")
    try:
        b = load_bundle(p)
    except BundleError as e:
        return [*problems, str(e)]
    h, m = b.header, b.manifest
    if h["suite"]["hash"] != m.hash:
        problems.append(f"manifest.json hashes to {m.hash[:12]}, header says "
                        f"{h['suite']['hash'][:12]}")
    if h["suite"]["status"] == "official":
        pinned = official_manifest(m.name)
        if pinned is None or pinned.hash != m.hash:
            problems.append("header says official, but the manifest is not the pinned one")
    cats = m.categories
    if h.get("sample"):
        sampled = set(m.sample(int(h["sample"]["limit"]), int(h["sample"]["seed"])))
        cats = {t: c for t, c in cats.items() if t in sampled}
    trials = int(h["trials"])
    seen: set[str] = set()
    for ep in b.episodes:
        if ep.task_id not in cats:
            where = "the header's sample" if h.get("sample") else "the suite"
            problems.append(f"episode {ep.episode_id}: task {ep.task_id!r} is not in {where}")
            continue
        if not 0 <= ep.index < trials or ep.episode_id != f"{ep.task_id}#{ep.index}":
            problems.append(f"episode {ep.episode_id}: id or trial index is inconsistent")
        if ep.episode_id in seen:
            problems.append(f"episode {ep.episode_id}: appears twice")
        seen.add(ep.episode_id)
        if abs(ep.reward - sum(ep.reward_components.values())) > 1e-9:
            problems.append(f"episode {ep.episode_id}: reward {ep.reward} is not the sum of "
                            f"its components {ep.reward_components}")
        if ep.reward_components.get("correct", 0.0) != float(ep.solved):
            problems.append(f"episode {ep.episode_id}: reward disagrees with its verdict")
        if ep.infra_error is not None:
            problems.append(f"episode {ep.episode_id}: an infra-flagged episode was scored")
    if len(b.episodes) != h["episodes"]:
        problems.append(f"{len(b.episodes)} episodes, header says {h['episodes']}")
    if _content_digest(b.episodes) != h["content_digest"]:
        problems.append("the episodes' content digest differs from the header's")
    in_suite = [e for e in b.episodes if e.task_id in cats]
    recomputed = compute_metrics(outcomes(m, in_suite), trials=trials, seed=int(h["seed"]))
    stored = {k: v for k, v in b.metrics.items() if k != "excluded_infra"}
    if json.loads(json.dumps(recomputed)) != stored:
        problems.append("metrics.json differs from the metrics recomputed from the episodes")
    return problems


def rescore(path: str | Path) -> list[dict[str, Any]]:
    """Re-judge every stored episode with today's env and verifier, by replay.

    Each episode's sampled completions are stepped, token for token, through a fresh env on
    the same task and seed (tools re-run; for functions the verdict depends on the final
    tool state, so the text alone would not do), and the final verdict is compared with
    the stored one.

    Returns:
        One entry per episode whose verdict changed: episode id, old and new correctness,
        the new extracted answer and reason, and the first turn whose observation no longer
        matched the stored one (None when the replay saw the same tool outputs).
    """
    import agent_envs

    b = load_bundle(path)
    kwargs = dict(b.manifest.env_kwargs, task_source=b.manifest.task_source)
    if b.header.get("reasoning_effort"):
        kwargs["reasoning_effort"] = b.header["reasoning_effort"]
    env = agent_envs.make(b.manifest.env_id, **kwargs)
    changed = []
    try:
        for ep in b.episodes:
            obs, info = env.reset(seed=ep.seed, options={"task_id": ep.task_id})
            diverged = None if list(obs) == list(ep.segments[0].prompt) else 0
            verdict: dict[str, Any] | None = None
            for n, turn in enumerate(ep.turns):
                seg = ep.segments[turn.segment]
                obs, _, terminated, truncated, info = env.step(
                    list(seg.completion[turn.start:turn.end]))
                if terminated or truncated:
                    verdict = info["verdict"]
                    break
                if diverged is None and not info["new_segment"]:
                    stored = list(seg.prompt) + list(seg.completion[:turn.end + turn.env_tokens])
                    if list(obs) != stored:
                        diverged = n
            correct = bool(verdict and verdict["correct"])
            if correct != ep.solved:
                changed.append({"episode": ep.episode_id, "old": ep.solved, "new": correct,
                                "extracted": (verdict or {}).get("extracted"),
                                "reason": (verdict or {}).get("reason", "no verdict"),
                                "diverged_at_turn": diverged})
    finally:
        env.close()
    return changed


def compare(a: str | Path, b: str | Path) -> dict[str, Any]:
    """Paired difference B - A on the tasks both bundles scored, and the tasks that flipped."""
    ba, bb = load_bundle(a), load_bundle(b)
    sa, sb = ba.task_scores(), bb.task_scores()
    result = paired_diff(sa, sb, seed=int(ba.header["seed"]))
    shared = sorted(set(sa) & set(sb))
    result["same_suite"] = ba.header["suite"]["hash"] == bb.header["suite"]["hash"]
    result["flipped"] = {
        "to_correct": [t for t in shared if sa[t] < 0.5 <= sb[t]],
        "to_wrong": [t for t in shared if sb[t] < 0.5 <= sa[t]],
    }
    result["a"] = {"path": str(ba.path), "model": ba.header["policy"]["model"],
                   "accuracy": ba.metrics["overall"]["accuracy"]["value"]}
    result["b"] = {"path": str(bb.path), "model": bb.header["policy"]["model"],
                   "accuracy": bb.metrics["overall"]["accuracy"]["value"]}
    return result


def board(paths: Sequence[str | Path], *, html_path: str | Path | None = None
          ) -> tuple[str, str]:
    """A leaderboard over bundles of one suite: (Markdown, HTML).

    Args:
        paths: Bundle directories.
        html_path: Where the HTML will be written. When given, each row links to its bundle's
            episode viewer (``BUNDLE/viewer.html``, written if missing or stale; see
            ``agent_envs.viewer.bundle_viewer``), relative to that file.

    Raises:
        BundleError: The bundles are of different suites (hashes); they cannot be ranked.
    """
    bundles = [load_bundle(p) for p in paths]
    if not bundles:
        raise BundleError("board needs at least one bundle directory")
    hashes = {b.header["suite"]["hash"] for b in bundles}
    if len(hashes) > 1:
        groups = "; ".join(f"{b.path} = {b.header['suite']['name']}@"
                           f"{b.header['suite']['hash'][:12]}" for b in bundles)
        raise BundleError(f"bundles of different suites cannot be ranked together: {groups}. "
                          "Make one board per suite hash.")
    trials = min(int(b.header["trials"]) for b in bundles)
    rows = []
    for b in bundles:
        o = b.metrics["overall"]
        acc = o["accuracy"]
        rows.append({
            "model": b.header["policy"]["model"], "accuracy": acc["value"],
            "ci": acc["ci"], "pass@k": o.get(f"pass@{trials}", {}).get("value"),
            "pass^k": o.get(f"pass^{trials}", {}).get("value"), "tasks": o["tasks"],
            "episodes": o["episodes"], "effort": b.header["reasoning_effort"],
            "status": b.header["suite"]["status"] + (
                f" (sample {b.header['sample']['limit']}/{b.header['sample']['of_tasks']})"
                if b.header.get("sample") else ""),
            "excluded": b.metrics.get("excluded_infra", {}).get("count", 0),
            "date": (b.header.get("ended_at") or "")[:10], "path": str(b.path)})
    rows.sort(key=lambda r: -(r["accuracy"] or 0.0))
    views = _viewer_links(bundles, html_path) if html_path is not None else {}
    s = bundles[0].header["suite"]
    cols = ["#", "model", "accuracy (95% CI)", f"pass@{trials}", f"pass^{trials}", "tasks",
            "episodes", "effort", "status", "infra excluded", "date"]

    def cells(i: int, r: dict[str, Any]) -> list[str]:
        return [str(i), r["model"], f"{_fmt(r['accuracy'])} [{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}]",
                _fmt(r["pass@k"]), _fmt(r["pass^k"]), str(r["tasks"]), str(r["episodes"]),
                r["effort"], r["status"], str(r["excluded"]), r["date"]]

    title = f"{s['name']} v{s['version']} (suite {s['hash'][:12]})"
    md = [f"## {title}", "", "| " + " | ".join(cols) + " |",
          "|" + "|".join("---" for _ in cols) + "|"]
    md += ["| " + " | ".join(cells(i, r)) + " |" for i, r in enumerate(rows, 1)]
    import html as _html

    def link(r: dict[str, Any]) -> str:
        href = views.get(r["path"])
        return "" if href is None else (f"<td><a href='{_html.escape(href)}'>episodes</a>"
                                        "</td>")

    body = "".join("<tr>" + "".join(f"<td>{_html.escape(c)}</td>" for c in cells(i, r))
                   + link(r) + "</tr>\n" for i, r in enumerate(rows, 1))
    page = (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{_html.escape(title)}"
            "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
            "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
            "td:nth-child(2){text-align:left}</style></head><body>\n"
            f"<h1>{_html.escape(title)}</h1>\n<table id='board'><thead><tr>"
            + "".join(f"<th>{_html.escape(c)}</th>" for c in cols)
            + ("<th>viewer</th>" if views else "")
            + f"</tr></thead><tbody>\n{body}</tbody></table>\n<p>Accuracy is the mean over "
            "tasks of the fraction of trials solved; the interval is a 95% task-level "
            "bootstrap (Wilson with one trial). Rows are ranked by accuracy; overlapping "
            "intervals are not a ranking.</p></body></html>\n")
    return "\n".join(md) + "\n", page


def _viewer_links(bundles: Sequence[Bundle], html_path: str | Path) -> dict[str, str]:
    """Bundle path -> URL of its viewer page, relative to the board's HTML file."""
    import os
    from urllib.parse import quote

    from agent_envs.viewer import bundle_viewer

    here = Path(html_path).resolve().parent
    fallback = here / f"{Path(html_path).stem}-viewers"
    out = {}
    for b in bundles:
        page = bundle_viewer(b.path, fallback_dir=fallback, progress=True)
        out[str(b.path)] = quote(Path(os.path.relpath(page.resolve(), here)).as_posix())
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"
