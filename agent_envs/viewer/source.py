"""What ``agent-envs view`` reads: an eval bundle, a run in progress, or an episodes file.

* a bundle directory (``agent-envs eval ... --out DIR``), or its ``DIR.tar.gz``: episodes,
  header, metrics, and each task's category from the suite manifest;
* an unfinished run directory (``run.json`` and ``episodes.log.jsonl``): the episodes logged
  so far, every attempt of each (task, trial);
* an episodes file from ``agent-envs rollout --out`` or training: ``.jsonl``, ``.jsonl.gz`` or
  ``.parquet`` (the ``agent_envs.rollout.episode`` record).
"""

from __future__ import annotations

import difflib
import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_envs.errors import AgentEnvsError

__all__ = ["Source", "ViewerError", "load_source", "missing_path_error", "unpack_bundle"]

EPISODE_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
_WHAT = ("an eval bundle directory (agent-envs eval SUITE --out DIR) or its .tar.gz, or an "
         "episodes file (.jsonl, .jsonl.gz or .parquet from agent-envs rollout --out or "
         "training)")


class ViewerError(AgentEnvsError):
    """A path the viewer cannot read, or inputs it cannot combine."""


@dataclass(frozen=True, kw_only=True)
class Source:
    """Episodes to show, and what is known about the run that made them.

    Attributes:
        path: What the user named.
        kind: ``bundle``, ``run`` (unfinished eval run) or ``episodes`` (a file).
        episodes: ``agent_envs.rollout.Episode`` records, in file order.
        categories: Task id -> suite category (bundles and runs), else empty.
        header: The bundle's header (suite, policy, sampling, ...), or None.
        metrics: The bundle's metrics, or None.
    """

    path: Path
    kind: str
    episodes: list[Any]
    categories: dict[str, str] = field(default_factory=dict)
    header: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None

    @property
    def title(self) -> str:
        """A short name for the page: suite and model, or the file name."""
        if self.header:
            return f"{self.header['suite']['name']} | {self.header['policy']['model']}"
        return self.path.name


def missing_path_error(p: Path) -> ViewerError:
    """The error for a path that does not exist, with a did-you-mean from its folder."""
    parent = p.parent if str(p.parent) else Path(".")
    hint = ""
    if parent.is_dir():
        names = [c.name for c in parent.iterdir()]
        close = difflib.get_close_matches(p.name, names, n=1)
        if close:
            hint = f" Did you mean {str(parent / close[0])!r}?"
    return ViewerError(f"{str(p)!r} does not exist.{hint} Give {_WHAT}.")


def load_source(path: str | Path) -> Source:
    """Read episodes (and the run's header, metrics and categories where there are any).

    Raises:
        ViewerError: The path is missing, is not one of the readable kinds, or is unreadable.
    """
    from agent_envs.rollout.episode import EpisodeFormatError, load_episodes

    p = Path(path)
    if not p.exists():
        raise missing_path_error(p)
    try:
        if p.is_dir():
            if (p / "bundle.json").exists():
                return _bundle(p)
            if (p / "episodes.log.jsonl").exists():
                return _run(p)
            raise ViewerError(f"{str(p)!r} is a directory without bundle.json or "
                              f"episodes.log.jsonl, so not an eval bundle or run. Give {_WHAT}.")
        if p.name.endswith(".tar.gz"):
            return _archive(p)
        if p.name.lower().endswith(EPISODE_SUFFIXES):
            return Source(path=p, kind="episodes", episodes=load_episodes(p))
    except EpisodeFormatError as e:
        raise ViewerError(f"{str(p)!r} is not a readable episodes file: {e}") from e
    raise ViewerError(f"{str(p)!r} is not something the viewer reads (suffix "
                      f"{''.join(p.suffixes) or 'none'!r}). Give {_WHAT}.")


def _bundle(p: Path) -> Source:
    from agent_envs.eval.bundle import BundleError, load_bundle

    try:
        b = load_bundle(p)
    except BundleError as e:
        raise ViewerError(str(e)) from e
    return Source(path=p, kind="bundle", episodes=b.episodes, categories=b.manifest.categories,
                  header=b.header, metrics=b.metrics)


def _run(p: Path) -> Source:
    from agent_envs.eval.suites import official_manifest
    from agent_envs.rollout.episode import Episode

    episodes = []
    with open(p / "episodes.log.jsonl", encoding="utf-8") as f:
        for line in f:
            try:
                episodes.append(Episode.from_dict(json.loads(line)["episode"]))
            except (ValueError, KeyError):  # the torn last line of a killed run
                continue
    categories: dict[str, str] = {}
    try:  # the pinned manifest's categories; an unpinned suite shows what the task ids say
        suite = json.loads((p / "run.json").read_text())["identity"]["suite"]
        manifest = official_manifest(suite)
        categories = manifest.categories if manifest is not None else {}
    except (OSError, ValueError, KeyError):
        categories = {}
    return Source(path=p, kind="run", episodes=episodes, categories=categories)


def unpack_bundle(archive: Path, into: Path) -> Path:
    """Unpack a bundle's ``DIR.tar.gz`` into ``into``; returns the bundle directory.

    Raises:
        ViewerError: Not a readable archive, or not one bundle inside.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):  # 3.10.12+: refuses links and paths outside
                tar.extractall(into, filter="data")
            else:  # pragma: no cover - older Pythons: refuse unsafe members ourselves
                for m in tar.getmembers():
                    if not (m.isfile() or m.isdir()) or m.name.startswith(("/", "..")) \
                            or "/../" in m.name:
                        raise ViewerError(f"{str(archive)!r} holds an unsafe member "
                                          f"{m.name!r}; not unpacking it")
                tar.extractall(into)
    except (tarfile.TarError, OSError) as e:
        raise ViewerError(f"{str(archive)!r} is not a readable .tar.gz ({e}). "
                          f"Give {_WHAT}.") from e
    dirs = [d for d in into.iterdir() if (d / "bundle.json").exists()]
    if len(dirs) != 1:
        raise ViewerError(f"{str(archive)!r} does not hold one bundle directory (found "
                          f"{len(dirs)}); is it an agent-envs eval bundle archive?")
    return dirs[0]


def _archive(p: Path) -> Source:
    """A bundle's ``DIR.tar.gz``: unpacked into a temporary directory and read from there."""
    with tempfile.TemporaryDirectory(prefix="agent-envs-view-") as tmp:
        src = _bundle(unpack_bundle(p, Path(tmp)))
    return Source(path=p, kind="bundle", episodes=src.episodes, categories=src.categories,
                  header=src.header, metrics=src.metrics)
