"""JSONL task files: loading, sampling, round trips, and every error a user can cause."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from agent_envs.errors import TaskFileError, UnknownTaskError
from agent_envs.tasks import (
    JsonlTasks,
    ProceduralTasks,
    Task,
    TaskSource,
    make_task_source,
    save_tasks,
)


def write(path: Path, *lines: object) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines), encoding="utf-8")
    return path


ROWS = [
    {"id": "a", "prompt": "2+2?", "answer": "4", "answer_kind": "int"},
    {"id": "b", "prompt": "half?", "answer": "1/2", "answer_kind": "fraction", "split": "test"},
    {"id": "c", "prompt": "pi?", "answer": "3.14159", "answer_kind": "float",
     "tolerance": 1e-4, "difficulty": 3, "meta": {"topic": "geometry"}},
    {"id": "d", "prompt": "day?", "answer": "Friday", "solution_code": "print('Friday')"},
    {"id": "e", "prompt": "3*3?", "answer": 9, "answer_kind": "int"},
]


def test_load_fields_and_defaults(tmp_path: Path) -> None:
    source = JsonlTasks(write(tmp_path / "t.jsonl", *ROWS[:2], "", "   ", *ROWS[2:]))
    assert len(source) == 5 and [t.id for t in source] == ["a", "b", "c", "d", "e"]
    c, d, e = source.get("c"), source.get("d"), source.get("e")
    assert (c.answer_kind, c.tolerance, c.difficulty, c.meta) == ("float", 1e-4, 3, {
        "topic": "geometry"})
    assert (d.answer_kind, d.split, d.solution_code, d.source) == (
        "str", "train", "print('Friday')", "jsonl")
    assert e.answer == "9"  # an integer answer is kept as its decimal string
    assert [t.id for t in source.tasks("test")] == ["b"]
    assert JsonlTasks(tmp_path / "t.jsonl", name="mine").get("a").source == "mine"


def test_sample_is_deterministic_and_split_aware(tmp_path: Path) -> None:
    rows = [{"id": f"q{i}", "prompt": f"{i}?", "answer": str(i),
             "split": "test" if i % 4 == 0 else "train"} for i in range(40)]
    path = write(tmp_path / "many.jsonl", *rows)
    a, b = JsonlTasks(path), JsonlTasks(path)
    train = [a.sample(seed) for seed in range(200)]
    assert train == [b.sample(seed) for seed in range(200)]
    assert all(t.split == "train" for t in train)
    assert len({t.id for t in train}) >= 25  # covers most of the 30 train tasks
    assert {a.sample(seed, "test").id for seed in range(100)} <= {f"q{i}" for i in range(0, 40, 4)}


def test_round_trip_with_procedural_tasks(tmp_path: Path) -> None:
    source = ProceduralTasks(difficulty=2)
    tasks = [source.sample(seed, split) for seed in range(15) for split in ("train", "test")]
    assert save_tasks(tmp_path / "out.jsonl", tasks) == 30
    loaded = JsonlTasks(tmp_path / "out.jsonl")
    assert [replace(t, source="procedural") for t in loaded] == tasks
    assert not list(tmp_path.glob("*.tmp"))


def test_get_unknown_id_suggests(tmp_path: Path) -> None:
    source = JsonlTasks(write(tmp_path / "t.jsonl", {"id": "alpha-1", "prompt": "p",
                                                     "answer": "1"}))
    with pytest.raises(UnknownTaskError, match=re.escape("no task with id 'alpha-2' among 1 "
                                                         "tasks. Did you mean 'alpha-1'?")):
        source.get("alpha-2")


def err(path: Path, line: int | None = None) -> str:
    return re.escape(f"{path}:{line}: " if line else f"{path}: ")


@pytest.mark.parametrize(("lines", "line", "message"), [
    (['{"id": "a", "prompt": "p", "answer": "1"}', '{"id": "b", "prompt": '], 2,
     "invalid JSON"),
    (['[1, 2]'], 1, "expected a JSON object, got list"),
    (['{"id": "a", "answer": "1"}'], 1, "missing required field 'prompt'"),
    (['{"id": "a", "prompt": "p", "answer": "1", "anwser": 2}'], 1,
     "unknown field(s) 'anwser'"),
    (['{"id": 5, "prompt": "p", "answer": "1"}'], 1,
     "field 'id' must be a non-empty string, got int 5"),
    (['{"id": "a", "prompt": "p", "answer": 0.5}'], 1,
     "field 'answer' must be a string (or an integer), got float 0.5"),
    (['{"id": "a", "prompt": "p", "answer": "1", "answer_kind": "number"}'], 1,
     "field 'answer_kind' must be one of int, fraction, float, str, got str 'number'"),
    (['{"id": "a", "prompt": "p", "answer": "1", "split": "dev"}'], 1, "field 'split'"),
    (['{"id": "a", "prompt": "p", "answer": "1", "tolerance": -1}'], 1, "field 'tolerance'"),
    (['{"id": "a", "prompt": "p", "answer": "1", "difficulty": "hard"}'], 1,
     "field 'difficulty' must be an integer"),
    (['{"id": "a", "prompt": "p", "answer": "1", "meta": [1]}'], 1,
     "field 'meta' must be a JSON object"),
    (['{"id": "a", "prompt": "p", "answer": "1"}', "", '{"id": "a", "prompt": "q", "answer": "2"}'],
     3, "duplicate id 'a' (first on line 1)"),
])
def test_file_errors_name_file_line_and_problem(tmp_path: Path, lines: list[str], line: int,
                                                message: str) -> None:
    path = write(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(TaskFileError, match=err(path, line) + ".*" + re.escape(message)):
        JsonlTasks(path)


def test_file_level_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(TaskFileError, match=err(empty) + "the file has no tasks"):
        JsonlTasks(empty)
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(TaskFileError, match=err(missing) + "no such task file"):
        JsonlTasks(missing)
    only_train = write(tmp_path / "train.jsonl", {"id": "a", "prompt": "p", "answer": "1"})
    with pytest.raises(TaskFileError, match=err(only_train) + re.escape(
            "no tasks in split 'test' (train: 1, test: 0); sample another split, or mark some "
            'tasks with "split": "test"')):
        JsonlTasks(only_train).sample(0, "test")


def test_make_task_source(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", *ROWS)
    source = make_task_source(f"jsonl:{path}")
    assert isinstance(source, JsonlTasks) and len(source) == 5
    procedural = make_task_source("procedural", difficulty=3, families=["modpow"])
    assert isinstance(procedural, ProceduralTasks)
    assert procedural.sample(0).id == "procedural/v0/modpow/d3/train/0"
    assert make_task_source(procedural) is procedural
    with pytest.raises(UnknownTaskError, match="unknown task source spec 'csv:x'"):
        make_task_source("csv:x")
    with pytest.raises(UnknownTaskError, match="split must be 'train' or 'test'"):
        make_task_source("gsm8k:dev")
    with pytest.raises(UnknownTaskError, match="has no path"):
        make_task_source("jsonl:")
    with pytest.raises(TypeError, match="apply only to a spec string"):
        make_task_source(procedural, difficulty=2)


def test_sources_are_task_sources(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", *ROWS)
    for source in (JsonlTasks(path), ProceduralTasks()):
        assert isinstance(source, TaskSource)
        assert isinstance(source.sample(1), Task)
    with pytest.raises(TypeError, match="unbounded"):
        len(ProceduralTasks())
