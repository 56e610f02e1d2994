"""Procedural tasks: seeding, splits, difficulty, ids, and reference solutions that really run."""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from fractions import Fraction

import pytest

from agent_envs.envs.python_tool.families import FAMILIES
from agent_envs.errors import UnknownTaskError
from agent_envs.tasks import ProceduralTasks, Task, check_answer, family_names, split_of

AREAS = {"number_theory", "combinatorics", "linear_algebra", "strings", "dates"}


def canonical(task: Task) -> str:
    return task.meta["family"] + json.dumps(task.meta["params"], sort_keys=True)


def test_families_cover_the_areas() -> None:
    assert len(family_names()) >= 10
    assert {FAMILIES[name].area for name in family_names()} == AREAS
    assert ProceduralTasks(families=["weekday", "modpow"]).families() == ("modpow", "weekday")


def test_same_seed_same_task_across_instances() -> None:
    for split in ("train", "test"):
        for seed in (0, 1, 12345, -7, 2**40):
            a = ProceduralTasks(difficulty=2).sample(seed, split)
            b = ProceduralTasks(difficulty=2).sample(seed, split)
            assert a == b
            assert a.split == split and a.difficulty == 2 and a.source == "procedural"


def test_seeding_does_not_depend_on_python_hash_salt() -> None:
    code = ("from agent_envs.tasks import ProceduralTasks\n"
            "t = ProceduralTasks(difficulty=2).sample(99, 'test')\n"
            "print(t.id, t.answer, len(t.prompt))")
    mine = ProceduralTasks(difficulty=2).sample(99, "test")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out == [mine.id, mine.answer, str(len(mine.prompt))]


def test_different_seeds_vary() -> None:
    source = ProceduralTasks(difficulty=1)
    tasks = [source.sample(seed) for seed in range(60)]
    assert len({t.prompt for t in tasks}) >= 55
    assert len({t.meta["family"] for t in tasks}) >= 12
    one = ProceduralTasks(difficulty=1, families=["modpow"])
    assert len({one.sample(seed).prompt for seed in range(30)}) == 30


def test_knobs_change_the_task() -> None:
    base = ProceduralTasks(difficulty=1).sample(5)
    assert ProceduralTasks(difficulty=2).sample(5) != base
    assert ProceduralTasks(difficulty=1).sample(5, "test") != base
    only = ProceduralTasks(difficulty=1, families=["friday13"]).sample(5)
    assert only.meta["family"] == "friday13"


def test_no_train_test_overlap() -> None:
    seen: dict[str, set[str]] = {"train": set(), "test": set()}
    for difficulty, count in ((1, 2000), (2, 1000)):
        source = ProceduralTasks(difficulty=difficulty)
        for split in ("train", "test"):
            for seed in range(count):
                task = source.sample(seed, split)
                assert task.split == split
                assert split_of(task.meta["family"], task.meta["params"]) == split
                seen[split].add(canonical(task))
    assert len(seen["test"]) > 1000 and len(seen["train"]) > 1500
    assert not seen["train"] & seen["test"]


@pytest.mark.parametrize("family", family_names())
def test_split_hash_sends_about_a_tenth_to_test(family: str) -> None:
    rng = random.Random(family)
    draws = [FAMILIES[family].params(rng, 2) for _ in range(1000)]
    test_share = sum(split_of(family, p) == "test" for p in draws) / len(draws)
    assert 0.05 < test_share < 0.16


SIZE = {
    "modpow": lambda p: p["e"], "prime_count": lambda p: p["hi"] - p["lo"],
    "divisor_sum": lambda p: p["n"], "factorial_nonzero": lambda p: p["n"],
    "binomial_mod": lambda p: p["n"], "fixed_points": lambda p: p["n"],
    "lattice_paths": lambda p: p["w"] * p["h"], "partitions": lambda p: p["n"],
    "determinant": lambda p: len(p["matrix"]), "linear_system": lambda p: len(p["b"]),
    "matrix_power": lambda p: p["e"], "palindromes": lambda p: len(p["s"]),
    "edit_distance": lambda p: len(p["s"]), "kgram": lambda p: len(p["s"]),
    "caesar_checksum": lambda p: len(p["cipher"]), "weekday": lambda p: p["days"],
    "days_between": lambda p: _days(p["end"]) - _days(p["start"]),
    "friday13": lambda p: p["last_year"] - p["first_year"],
}


def _days(iso: str) -> int:
    import datetime
    return datetime.date.fromisoformat(iso).toordinal()


@pytest.mark.parametrize("family", family_names())
def test_difficulty_grows_problem_size(family: str) -> None:
    assert set(SIZE) == set(family_names())
    medians = []
    for difficulty in range(1, 6):
        rng = random.Random(f"{family}/{difficulty}")
        medians.append(statistics.median(
            SIZE[family](FAMILIES[family].params(rng, difficulty)) for _ in range(25)))
    assert medians == sorted(medians) and len(set(medians)) == 5, medians


def test_get_round_trip() -> None:
    for difficulty in (1, 2, 3):
        source = ProceduralTasks(difficulty=difficulty)
        other = ProceduralTasks(difficulty=5, families=["weekday"])
        for seed in range(40):
            for split in ("train", "test"):
                task = source.sample(seed, split)
                assert task.id == (f"procedural/v0/{task.meta['family']}/d{difficulty}/"
                                   f"{split}/{seed}")
                assert source.get(task.id) == task
                assert other.get(task.id) == task  # the id alone rebuilds it


@pytest.mark.parametrize(("task_id", "message"), [
    ("procedural/v0/modpow/d1/train", "6 '/'-separated parts"),
    ("jsonl/v0/modpow/d1/train/3", "starting with 'procedural'"),
    ("procedural/v9/modpow/d1/train/3", "unknown version 'v9'"),
    ("procedural/v0/modpwo/d1/train/3", "Did you mean 'modpow'"),
    ("procedural/v0/modpow/d9/train/3", "must be d1 ... d5"),
    ("procedural/v0/modpow/x1/train/3", "must be d1 ... d5"),
    ("procedural/v0/modpow/d1/valid/3", "split part 'valid'"),
    ("procedural/v0/modpow/d1/train/seven", "seed part 'seven' is not an integer"),
    ("procedural/v0/modpow/d1/train/007", "not in canonical form"),
])
def test_get_rejects_bad_ids(task_id: str, message: str) -> None:
    with pytest.raises(UnknownTaskError, match=message):
        ProceduralTasks().get(task_id)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"difficulty": 0}, "difficulty must be an int from 1 to 5, got 0"),
    ({"difficulty": 2.0}, "difficulty must be an int"),
    ({"families": ["primes"]}, "unknown procedural family 'primes'"),
    ({"families": "modpow"}, "families must be a list"),
    ({"families": []}, "families is empty"),
    ({"version": "v1"}, "unknown procedural version 'v1'"),
])
def test_bad_knobs(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProceduralTasks(**kwargs)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        ProceduralTasks().sample(0, "validation")  # type: ignore[arg-type]


def _wrong(task: Task) -> str:
    if task.answer_kind == "str":
        days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
        return days[(days.index(task.answer) + 1) % 7]
    return str(Fraction(task.answer) + 1)


@pytest.mark.parametrize("family", family_names())
def test_solution_code_prints_the_answer(family: str) -> None:
    for difficulty in (1, 2, 3):
        source = ProceduralTasks(difficulty=difficulty, families=[family])
        for seed, split in ((0, "train"), (1, "test")):
            task = source.sample(seed, split)
            # -I -S: no site-packages and no cwd on the path, so stdlib-only is enforced.
            run = subprocess.run([sys.executable, "-I", "-S", "-c", task.solution_code],
                                 check=False, capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stderr
            assert run.stdout.strip().splitlines()[-1].strip() == task.answer, task.id
            assert check_answer(f"The answer is \\boxed{{{task.answer}}}.", task).correct
            assert check_answer(task.answer, task).correct
            assert not check_answer(f"\\boxed{{{_wrong(task)}}}", task).correct
            assert task.answer_kind in ("int", "fraction", "str") and task.tolerance is None


@pytest.mark.parametrize("difficulty", range(1, 6))
def test_every_task_fits_the_python_tool_limits(difficulty: int) -> None:
    """A seeded sample of train tasks of every family: the reference solution fits a code cell
    and prompt plus solution fit the token budget (kgram d5 once did not, issue 18)."""
    from agent_envs.core import EnvConfig
    from agent_envs.envs.python_tool import PythonToolConfig
    from agent_envs.harmony import get_codec

    codec = get_codec()
    cell, budget = PythonToolConfig().max_code_bytes, EnvConfig().max_tokens
    for family in family_names():
        source = ProceduralTasks(difficulty=difficulty, families=[family])
        for seed in (3, 1009):
            task = source.sample(seed, "train")
            code = task.solution_code or ""
            assert len(code.encode()) <= cell, (task.id, len(code.encode()))
            # ~1,000 tokens of system and developer messages, the answer and the tool's reply.
            tokens = len(codec.encode(task.prompt)) + len(codec.encode(code)) + 1000
            assert tokens <= budget, (task.id, tokens)
