"""GSM8K and MATH through the Hugging Face ``datasets`` library (the ``[data]`` extra).

Where the data comes from:

- GSM8K: ``datasets.load_dataset("openai/gsm8k", "main", split=...)``. The
  answer is what follows ``####`` in the ``answer`` field, commas removed
  (an ``int`` task).
- MATH: ``EleutherAI/hendrycks_math``, one config per subject (algebra,
  counting_and_probability, geometry, intermediate_algebra, number_theory,
  prealgebra, precalculus), loaded and concatenated in that order. (The
  original ``hendrycks/competition_math`` repo is no longer served.) The answer
  is the last ``\\boxed{}`` of ``solution``: an ``int`` or ``fraction`` task when
  it is a plain number, else a ``str`` task compared after LaTeX
  normalisation (``agent_envs.tasks.answers.normalize_str``). Rows whose
  solution has no box are skipped (``source.skipped`` counts them).

Offline, or for a local copy, pass ``data_files`` (JSON/JSONL, Parquet or CSV
with the same columns): the same parsing code runs on them. As a task source spec that is
``gsm8k:test:FILE`` (``--tasks gsm8k:test:FILE`` on the command line). When the Hub cannot be
reached, loading fails at once with that advice instead of retrying for half a minute.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from agent_envs.errors import DatasetError
from agent_envs.tasks.answers import last_boxed, parse_number
from agent_envs.tasks.base import AnswerKind, Split, Task
from agent_envs.tasks.finite import FiniteTasks

__all__ = ["GSM8K_PATH", "MATH_PATH", "MATH_SUBJECTS", "DatasetTasks", "hub_problem",
           "load_gsm8k", "load_math"]

GSM8K_PATH = "openai/gsm8k"
MATH_PATH = "EleutherAI/hendrycks_math"
MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                 "number_theory", "prealgebra", "precalculus")

DataFiles = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


class DatasetTasks(FiniteTasks):
    """A finite task source built from one split of a public dataset.

    Attributes:
        skipped: Rows dropped because no answer could be read from them.
    """

    error_class = DatasetError

    def __init__(self, *, name: str, tasks: Sequence[Task], origin: str, split: Split,
                 skipped: int = 0) -> None:
        super().__init__(name=name, tasks=tasks, origin=origin)
        self.split = split
        self.skipped = skipped

    def _empty_split_fix(self, split: str) -> str:
        return (f"this source holds only the {self.split!r} split: sample that one "
                f"(split={self.split!r}; on the command line: --split {self.split}), or load "
                f"the {split!r} split (task_source='{self.name}:{split}[:FILE]', or "
                f"load_{self.name}(split={split!r}))")


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as e:
        raise DatasetError("loading GSM8K/MATH needs the 'datasets' package, which is not "
                           "installed; install it with: pip install 'agent-envs[data]'") from e
    return datasets


def _check_split(split: object) -> Split:
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    return split  # type: ignore[return-value]


def _builder_for(data_files: DataFiles) -> str:
    first = data_files if isinstance(data_files, (str, os.PathLike)) else next(iter(data_files))
    suffix = os.fspath(first).lower()
    for ext, builder in ((".parquet", "parquet"), (".csv", "csv"), (".json", "json"),
                         (".jsonl", "json")):
        if suffix.endswith(ext):
            return builder
    raise DatasetError(f"cannot tell the format of data file {os.fspath(first)!r}; use a "
                       ".jsonl, .json, .parquet or .csv file, or pass path='json' (etc.)")


def _offline_advice(what: str, split: Split, columns: tuple[str, ...]) -> str:
    kind = what.lower()
    return (f"Offline, use a local copy of the data: task_source='{kind}:{split}:FILE' "
            f"(on the command line: --tasks {kind}:{split}:FILE), a .jsonl, .json, .parquet or "
            f".csv file with columns {', '.join(columns)}; or set HF_DATASETS_OFFLINE=1 to use "
            f"a copy already in the datasets cache.")


def hub_problem(timeout_s: float = 3.0) -> str | None:
    """Why the Hugging Face Hub cannot be reached from here (None when it can, when offline
    mode is on, or when a proxy is configured: ``datasets`` then decides)."""
    if any(os.environ.get(v, "").strip() not in ("", "0", "false", "False")
           for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")):
        return None
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parts = urlsplit(endpoint)
    host = parts.hostname or endpoint
    port = parts.port or (80 if parts.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as e:
        return f"{endpoint}: {type(e).__name__}: {e}"


def _load(*, what: str, path: str, config: str | None, split: Split,
          data_files: DataFiles | None, cache_dir: str | None,
          columns: tuple[str, ...]) -> Any:
    datasets = _datasets()
    if data_files is None and "/" in path:  # a Hub repo id: fail fast when it cannot be reached
        problem = hub_problem()
        if problem is not None:
            raise DatasetError(f"cannot reach the Hugging Face Hub to download {what} "
                               f"({problem}). {_offline_advice(what, split, columns)}")
    try:
        if data_files is not None:
            files = ([os.fspath(data_files)] if isinstance(data_files, (str, os.PathLike))
                     else [os.fspath(f) for f in data_files])
            ds = datasets.load_dataset(path, data_files={split: files}, split=split,
                                       cache_dir=cache_dir)
        else:
            ds = datasets.load_dataset(path, config, split=split, cache_dir=cache_dir)
    except Exception as e:  # the library's many network/format errors, translated here
        raise DatasetError(
            f"could not load {what} ({path}{'/' + config if config else ''}, split {split!r}): "
            f"{type(e).__name__}: {e}. {_offline_advice(what, split, columns)}") from e
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DatasetError(f"{what} data has columns {ds.column_names}, missing "
                           f"{missing}; the loader expects {', '.join(columns)}")
    return ds


def _kind_of(answer: str) -> tuple[AnswerKind, str]:
    """Exact number answers become int/fraction tasks; anything else stays a string."""
    value = parse_number(answer)
    if value is None:
        return "str", answer
    if value.denominator == 1:
        return "int", str(value.numerator)
    return "fraction", str(value)


def load_gsm8k(split: Split = "test", *, path: str | None = None,
               data_files: DataFiles | None = None, cache_dir: str | None = None
               ) -> DatasetTasks:
    """GSM8K grade-school math word problems as a finite task source.

    Args:
        split: ``"train"`` (7473 problems) or ``"test"`` (1319).
        path: Dataset repo id or builder; default ``"openai/gsm8k"``, or the
            format of ``data_files`` when given.
        data_files: Local files with ``question`` and ``answer`` columns.
        cache_dir: ``datasets`` cache directory (default: the library's).

    Returns:
        Tasks with ids ``gsm8k/<split>/<row>``.

    Raises:
        DatasetError: ``datasets`` is missing, loading failed, or a row has no
            ``####`` answer.
    """
    split = _check_split(split)
    builder = path or (_builder_for(data_files) if data_files is not None else GSM8K_PATH)
    ds = _load(what="GSM8K", path=builder, config=None if data_files is not None else "main",
               split=split, data_files=data_files, cache_dir=cache_dir,
               columns=("question", "answer"))
    tasks = []
    for row_index, row in enumerate(ds):
        solution = row["answer"]
        if not isinstance(solution, str) or "####" not in solution:
            raise DatasetError(f"GSM8K {split} row {row_index}: the answer field has no "
                               f"'#### <number>' line: {str(solution)[-80:]!r}")
        final = solution.rsplit("####", 1)[1].strip().replace(",", "")
        kind, answer = _kind_of(final)
        tasks.append(Task(id=f"gsm8k/{split}/{row_index}", prompt=row["question"],
                          answer=answer, answer_kind=kind, split=split, source="gsm8k",
                          meta={"dataset": builder, "row": row_index, "solution": solution}))
    return DatasetTasks(name="gsm8k", tasks=tasks, origin=f"gsm8k ({builder}, {split})",
                        split=split)


def load_math(split: Split = "test", *, path: str | None = None,
              data_files: DataFiles | None = None, subjects: Sequence[str] | None = None,
              cache_dir: str | None = None) -> DatasetTasks:
    """The MATH competition problems (Hendrycks et al.) as a finite task source.

    Args:
        split: ``"train"`` (7500 problems) or ``"test"`` (5000).
        path: Dataset repo id; default ``"EleutherAI/hendrycks_math"`` (one config
            per subject), or the format of ``data_files`` when given.
        data_files: Local files with ``problem``, ``solution`` (and optionally
            ``level``, ``type``) columns; ``subjects`` does not apply to them.
        subjects: Subject configs to load (default all of ``MATH_SUBJECTS``).
        cache_dir: ``datasets`` cache directory.

    Returns:
        Tasks with ids ``math/<split>/<row>`` (rows numbered across subjects in
        order) and ``difficulty`` from ``level`` ("Level 3" -> 3, else 0).
    """
    split = _check_split(split)
    columns = ("problem", "solution")
    if data_files is not None:
        builder = path or _builder_for(data_files)
        parts = [_load(what="MATH", path=builder, config=None, split=split,
                       data_files=data_files, cache_dir=cache_dir, columns=columns)]
    else:
        builder = path or MATH_PATH
        chosen = tuple(subjects) if subjects is not None else MATH_SUBJECTS
        unknown = [s for s in chosen if s not in MATH_SUBJECTS]
        if unknown or not chosen:
            raise DatasetError(f"unknown MATH subjects {unknown or chosen!r}; choose from "
                               f"{', '.join(MATH_SUBJECTS)}")
        parts = [_load(what="MATH", path=builder, config=subject, split=split,
                       data_files=None, cache_dir=cache_dir, columns=columns)
                 for subject in chosen]
    tasks, skipped, row_index = [], 0, -1
    for ds in parts:
        for row in ds:
            row_index += 1
            boxed = last_boxed(row["solution"]) if isinstance(row["solution"], str) else None
            if not boxed:
                skipped += 1
                continue
            kind, answer = _kind_of(boxed)
            level = str(row.get("level") or "")
            digits = level.removeprefix("Level").strip()
            tasks.append(Task(
                id=f"math/{split}/{row_index}", prompt=row["problem"], answer=answer,
                answer_kind=kind, split=split, source="math",
                difficulty=int(digits) if digits.isdigit() else 0,
                meta={"dataset": builder, "row": row_index, "type": row.get("type"),
                      "level": level, "solution": row["solution"]}))
    return DatasetTasks(name="math", tasks=tasks, origin=f"math ({builder}, {split})",
                        split=split, skipped=skipped)
