"""The documentation: the README is a front page, and the docs site builds with no broken link.

The site is mkdocs-material (``mkdocs.yml``, ``docs/``), built here exactly as CI builds it:
``mkdocs build --strict``, where a broken link or anchor, a page missing from the nav, or a
docstring mkdocstrings cannot parse is an error. The build test skips only when the ``docs``
extra is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FIRST_COMMANDS = [
    "bash scripts/setup.sh && .venv/bin/agent-envs train configs/tiny-cpu.toml",
    "bash .ci/run",
]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HAS_MKDOCS = all(importlib.util.find_spec(m) is not None
                 for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers"))


def _code_free(text: str) -> str:
    """The text with fenced code blocks and inline code removed (prose only)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _nav_pages(nav: list) -> list[str]:
    pages = []
    for item in nav:
        for value in (item.values() if isinstance(item, dict) else [item]):
            pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _mkdocs_config() -> dict:
    # mkdocs.yml uses no python/env tags, so plain YAML reads it.
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def test_readme_is_a_front_page_that_starts_with_the_two_commands() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; keep it <= 200 (move the rest to docs/)"
    assert lines[0].startswith("# "), "README.md must open with its title"
    body = [line for line in lines[1:] if line.strip()]
    assert body[0] == "```bash", f"the first thing after the title must be the commands, got {body[0]!r}"
    for expected, line in zip(FIRST_COMMANDS, body[1:3]):
        assert line.split("#", 1)[0].strip() == expected, (line, expected)
    assert body[3] == "```"


def test_readme_quick_start_is_at_most_15_lines() -> None:
    n = len(_readme_quick_start().strip("\n").splitlines())
    assert n <= 15, f"README's quick start is {n} lines; keep it <= 15"


def _readme_quick_start() -> str:
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "README's Quick start has no python block"
    return code.group(1)


def test_the_quick_start_is_the_same_in_the_readme_and_the_docs() -> None:
    page = (DOCS / "quickstart.md").read_text()
    assert _readme_quick_start() in page, "README's quick start differs from docs/quickstart.md's"


@pytest.mark.slow
def test_the_readme_quick_start_runs_as_written_in_a_fresh_shell(tmp_path: Path) -> None:
    """No TIKTOKEN_ENCODINGS_BASE, another working directory: what a newcomer pastes."""
    script = tmp_path / "quick_start.py"
    script.write_text(_readme_quick_start())
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_ENCODINGS_BASE"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reward, verdict = proc.stdout.strip().split(" ", 1)
    assert float(reward) == 1.0 and "'correct': True" in verdict, proc.stdout


def test_readme_has_no_test_counts_or_timings() -> None:
    prose = _code_free(README.read_text())
    timings = re.findall(r"~?\d[\d.,]*\s?(?:ms|us|s|sec|seconds|min|minutes|h)\b", prose)
    counts = re.findall(r"\b\d[\d,]*\s+tests?\b", prose)
    assert not timings and not counts, (
        f"README.md quotes timings {timings} / test counts {counts}: measured figures belong in "
        "benchmark outputs that docs/ quote with the command that produced them")


def test_readme_links_are_relative_links_that_exist_on_github() -> None:
    links = [t.split("#", 1)[0] for t in LINK.findall(README.read_text())
             if not t.startswith(("http://", "https://", "#", "mailto:"))]
    assert any(t.startswith("docs/") for t in links), "README.md links nowhere into docs/"
    missing = [t for t in links if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
    nav = set(_nav_pages(_mkdocs_config()["nav"]))
    outside = [t for t in links if t.startswith("docs/") and t.removeprefix("docs/") not in nav]
    assert not outside, f"README.md links to docs pages that are not in mkdocs.yml's nav: {outside}"


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = _mkdocs_config()
    excluded = {line.strip().rstrip("/") for line in config.get("exclude_docs", "").splitlines()
                if line.strip()}
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")
             if not set(p.relative_to(DOCS).parts) & excluded}
    nav = _nav_pages(config["nav"])
    assert sorted(set(nav) - pages) == [], "mkdocs.yml's nav names pages that do not exist"
    assert sorted(pages - set(nav)) == [], "docs pages missing from mkdocs.yml's nav"
    assert len(nav) == len(set(nav)), "a page is in the nav twice"


def test_the_docs_name_no_test_counts() -> None:
    """Counts of tests drift with every commit; the docs name the test file instead."""
    hits = []
    for page in sorted(DOCS.rglob("*.md")):
        for m in re.finditer(r"\b\d[\d,]*\s+tests\b", _code_free(page.read_text())):
            hits.append(f"{page.relative_to(ROOT)}: {m.group(0)!r}")
    assert not hits, "test counts in the docs:\n  " + "\n  ".join(hits)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MKDOCS, reason="the docs extra is not installed "
                    "(pip install -c requirements.lock -e '.[docs]')")
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    problems = [line for line in proc.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + (
        "\n".join(problems) or proc.stderr[-4000:])
    # The generated parts are really there: the API reference from the docstrings, each CLI
    # subcommand's --help, the train config keys, and the committed benchmark figures.
    api = (site / "api" / "agent_envs" / "index.html").read_text()
    assert 'id="agent_envs.make"' in api and 'id="agent_envs.harmony"' in api
    assert 'id="sandboxes.make_sandbox"' in (site / "api/sandboxes/index.html").read_text()
    assert 'id="agent_envs.rollout.RolloutCollector"' in api
    assert 'id="trainers.plugins.hf_policy"' in (site / "api/trainers/index.html").read_text()
    cli = (site / "cli" / "index.html").read_text()
    for command in ("list", "rollout", "train", "eval", "serve", "view"):
        assert f"usage: agent-envs {command}" in cli, command
    assert "--print-config" in cli and "--help-config" in cli
    assert "lora_alpha" in (site / "trainers" / "index.html").read_text()
    figure = site / "assets" / "benchmarks" / "rollout_correction.png"
    assert figure.read_bytes() == (ROOT / "benchmarks/results/rollout_correction.png").read_bytes()
    assert "../assets/benchmarks/rollout_correction.png" in (
        site / "rollout-correction" / "index.html").read_text()
