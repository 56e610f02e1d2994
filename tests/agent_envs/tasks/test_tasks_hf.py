"""GSM8K and MATH loaders, run through the real ``datasets`` code on small local files.

No network: HF_DATASETS_OFFLINE/HF_HUB_OFFLINE are set before ``datasets`` is imported.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path

os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from agent_envs.errors import DatasetError
from agent_envs.tasks import check_answer, load_gsm8k, load_math, make_task_source

pytest.importorskip("datasets")

GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many?",
     "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
    {"question": "A farm sells 1,250 eggs a day. How many in two days?",
     "answer": "1250 * 2 = <<1250*2=2500>>2500\n#### 2,500"},
    {"question": "Owes $5 and pays $8. Net?", "answer": "5 - 8 = -3\n#### -3"},
]

MATH_ROWS = [
    {"problem": "What is $1+1$?", "solution": "Clearly $1+1=\\boxed{2}$.",
     "level": "Level 1", "type": "Prealgebra"},
    {"problem": "Compute $\\frac{6}{8}$ in lowest terms.",
     "solution": "Divide by 2: $\\boxed{\\dfrac{3}{4}}$.", "level": "Level 2", "type": "Algebra"},
    {"problem": "Find $\\sin 60^\\circ$.", "solution": "It is $\\boxed{\\frac{\\sqrt{3}}{2}}$.",
     "level": "Level 3", "type": "Precalculus"},
    {"problem": "Solve for the pair.", "solution": "So $(x,y)=\\boxed{(1, 2)}$.",
     "level": "Level ?", "type": "Algebra"},
    {"problem": "No box here.", "solution": "The answer is 5.", "level": "Level 1",
     "type": "Algebra"},
    {"problem": "A decimal.", "solution": "We get $\\boxed{0.5}$.", "level": "Level 5",
     "type": "Algebra"},
]


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_gsm8k_from_jsonl(tmp_path: Path) -> None:
    files = jsonl(tmp_path / "gsm8k_test.jsonl", GSM8K_ROWS)
    source = load_gsm8k("test", data_files=str(files), cache_dir=str(tmp_path / "cache"))
    assert len(source) == 3 and source.name == "gsm8k"
    tasks = list(source)
    assert [t.answer for t in tasks] == ["7", "2500", "-3"]
    assert {t.answer_kind for t in tasks} == {"int"}
    assert [t.id for t in tasks] == ["gsm8k/test/0", "gsm8k/test/1", "gsm8k/test/2"]
    assert tasks[1].prompt == GSM8K_ROWS[1]["question"] and tasks[1].split == "test"
    assert source.get("gsm8k/test/1") == tasks[1]
    assert source.sample(4, "test") == source.sample(4, "test")
    assert check_answer("So the answer is 2,500 eggs.", tasks[1]).correct
    assert not check_answer("\\boxed{2499}", tasks[1]).correct
    with pytest.raises(DatasetError, match=r"only the 'test' split.*load_gsm8k\(split='train'\)"):
        source.sample(0, "train")


def test_gsm8k_from_parquet_and_make_task_source(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    files = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(GSM8K_ROWS), files)
    source = make_task_source("gsm8k:train", data_files=[files], cache_dir=str(tmp_path / "c"))
    assert [t.answer for t in source] == ["7", "2500", "-3"]
    assert all(t.split == "train" for t in source)


def test_gsm8k_bad_rows(tmp_path: Path) -> None:
    files = jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "no marker"}])
    with pytest.raises(DatasetError, match=r"GSM8K test row 0: the answer field has no '####"):
        load_gsm8k(data_files=files, cache_dir=str(tmp_path / "cache"))
    wrong_cols = jsonl(tmp_path / "cols.jsonl", [{"q": "x", "a": "#### 1"}])
    with pytest.raises(DatasetError, match=r"missing \['question', 'answer'\]"):
        load_gsm8k(data_files=wrong_cols, cache_dir=str(tmp_path / "cache2"))
    with pytest.raises(DatasetError, match="cannot tell the format of data file"):
        load_gsm8k(data_files=tmp_path / "data.txt")


def test_math_from_jsonl(tmp_path: Path) -> None:
    files = jsonl(tmp_path / "math.jsonl", MATH_ROWS)
    source = load_math("test", data_files=files, cache_dir=str(tmp_path / "cache"))
    assert source.skipped == 1 and len(source) == 5
    by_problem = {t.prompt: t for t in source}
    two = by_problem["What is $1+1$?"]
    assert (two.answer, two.answer_kind, two.difficulty) == ("2", "int", 1)
    frac = by_problem["Compute $\\frac{6}{8}$ in lowest terms."]
    assert (frac.answer, frac.answer_kind) == ("3/4", "fraction")
    assert check_answer("$\\frac{3}{4}$", frac).correct and check_answer("0.75", frac).correct
    assert not check_answer("0.7", frac).correct
    root = by_problem["Find $\\sin 60^\\circ$."]
    assert (root.answer, root.answer_kind) == ("\\frac{\\sqrt{3}}{2}", "str")
    assert check_answer("\\boxed{\\dfrac{\\sqrt{3}}{2}}", root).correct
    assert not check_answer("\\boxed{\\frac{\\sqrt{2}}{2}}", root).correct
    pair = by_problem["Solve for the pair."]
    assert (pair.difficulty, pair.meta["type"]) == (0, "Algebra")
    assert check_answer("\\boxed{(1,2)}", pair).correct
    half = by_problem["A decimal."]
    assert (half.answer, half.answer_kind) == ("1/2", "fraction")
    assert [t.id for t in source][-1] == "math/test/5"  # ids keep the original row numbers


def test_missing_datasets_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DatasetError, match=r"pip install 'agent-envs\[data\]'"):
        load_gsm8k(data_files=jsonl(tmp_path / "g.jsonl", GSM8K_ROWS))


def test_hub_load_offline_is_a_dataset_error(tmp_path: Path) -> None:
    # The advice is one the command line can act on (it has no data_files= flag).
    with pytest.raises(DatasetError, match=r"could not load GSM8K \(openai/gsm8k/main.*" + re.escape(
            "(on the command line: --tasks gsm8k:test:FILE), a .jsonl, .json, .parquet or .csv "
            "file with columns question, answer; or set HF_DATASETS_OFFLINE=1")):
        load_gsm8k("test", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="unknown MATH subjects"):
        load_math("test", subjects=["alchemy"])
    with pytest.raises(DatasetError, match="split must be 'train' or 'test', got 'dev'"):
        load_math("dev")  # type: ignore[arg-type]


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening: connecting is refused at once
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_hub_fails_fast_with_advice_the_cli_can_act_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: offline, datasets retried for ~25 s, then advised data_files= (no CLI flag).
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy",
                "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    t0 = time.perf_counter()
    with pytest.raises(DatasetError, match=re.escape(
            f"cannot reach the Hugging Face Hub to download MATH ({endpoint}: "
            f"ConnectionRefusedError")) as e:
        make_task_source("math:train", cache_dir=str(tmp_path / "cache"))
    assert time.perf_counter() - t0 < 5.0
    assert "task_source='math:train:FILE' (on the command line: --tasks math:train:FILE)" \
        in str(e.value)


def test_spec_with_a_local_file_loads_it(tmp_path: Path) -> None:
    files = jsonl(tmp_path / "gsm8k_test.jsonl", GSM8K_ROWS)
    source = make_task_source(f"gsm8k:test:{files}", cache_dir=str(tmp_path / "cache"))
    assert [t.answer for t in source] == ["7", "2500", "-3"]  # type: ignore[attr-defined]
    with pytest.raises(Exception, match=re.escape("split must be 'train' or 'test', e.g. "
                                                  "'gsm8k:test' or 'gsm8k:test:FILE'")):
        make_task_source(f"gsm8k:dev:{files}")


def test_a_split_the_source_lacks_names_the_one_it_holds_and_the_flag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Following the offline advice (--tasks gsm8k:test:FILE) with rollout's default --split
    # train said "this source holds only the 'test' split; load that one, e.g.
    # load_gsm8k(split='train')": unclear which split, and no flag the command line has.
    import datasets

    from agent_envs.cli import main

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    files = jsonl(tmp_path / "gsm8k_test.jsonl", GSM8K_ROWS)
    source = make_task_source(f"gsm8k:test:{files}")
    with pytest.raises(DatasetError, match=re.escape(
            "no tasks in split 'train' (train: 0, test: 3); this source holds only the 'test' "
            "split: sample that one (split='test'; on the command line: --split test), or load "
            "the 'train' split (task_source='gsm8k:train[:FILE]', or "
            "load_gsm8k(split='train'))")):
        source.sample(0, "train")
    args = ["rollout", "python-tool", "--sandbox", "local", "--tasks", f"gsm8k:test:{files}",
            "--episodes", "1", "--quiet", "--transcripts", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "on the command line: --split test" in err and "Traceback" not in err
    assert main([*args, "--split", "test"]) == 0
