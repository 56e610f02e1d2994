"""mkdocs hooks for the agent-envs site (configured in mkdocs.yml; not a page of the site).

* Figures that benchmarks commit under ``benchmarks/results/`` are published with the site, so a
  page links them as ``../benchmarks/results/NAME.png``: the same link works on GitHub and in
  the built site, and the figure is never copied by hand.
* ``<!-- generated: cli-help COMMAND -->`` in a page becomes that subcommand's ``--help`` text
  and ``<!-- generated: train-config -->`` the ``agent-envs train --help-config`` listing, both
  produced from the code when the site is built, so the reference cannot drift from it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files, InclusionLevel

ROOT = Path(__file__).resolve().parents[2]
RESULTS = "benchmarks/results"
FIGURE_SUFFIXES = {".png", ".svg", ".jpg", ".jpeg", ".gif"}
MARKER = re.compile(r"^<!-- generated: (cli-help [a-z-]+|train-config) -->$", re.M)


def on_files(files: Files, config: Any) -> Files:
    """Add the committed benchmark figures to the site under ``assets/benchmarks/``."""
    for path in sorted((ROOT / RESULTS).glob("*")):
        if path.suffix.lower() not in FIGURE_SUFFIXES:
            continue
        f = File(f"../{RESULTS}/{path.name}", src_dir=config["docs_dir"],
                 dest_dir=config["site_dir"], use_directory_urls=config["use_directory_urls"],
                 dest_uri=f"assets/benchmarks/{path.name}")
        f.abs_src_path = str(path)
        f.inclusion = InclusionLevel.INCLUDED
        files.append(f)
    return files


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    raise KeyError(f"agent-envs has no subcommand {name!r} (docs marker cli-help {name})")


def cli_help(command: str) -> str:
    """The ``--help`` text of ``agent-envs COMMAND``, as a terminal 88 columns wide prints it (the width of a page)."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"
    try:
        if command == "train":  # `agent-envs train` hands its arguments to trainers.cli
            from trainers.cli import build_parser as train_parser

            return train_parser("agent-envs train").format_help()
        from agent_envs.cli import build_parser

        return _subparser(build_parser(), command).format_help()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def train_config_help() -> str:
    """What ``agent-envs train --help-config`` prints: every config key, typed, with its help."""
    from trainers.config import config_help

    return config_help()


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Expand the ``<!-- generated: ... -->`` markers of a page."""
    def expand(m: re.Match[str]) -> str:
        what = m.group(1)
        if what == "train-config":
            return "```toml\n" + train_config_help().rstrip() + "\n```"
        with contextlib.redirect_stdout(io.StringIO()):
            text = cli_help(what.split()[1])
        return "```text\n" + text.rstrip() + "\n```"

    return MARKER.sub(expand, markdown)
