"""The ``agent-envs view`` subcommand (registered by ``agent_envs.cli``)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["cmd_view", "register"]

DESCRIPTION = """\
Look at episodes: write one self-contained HTML page (no server, no network: it opens from
disk and from a published bundle) for an eval bundle directory or its .tar.gz, an unfinished
eval run, or an episodes file (.jsonl, .jsonl.gz, .parquet from rollout --out or training).
Two bundles compare B with A on the tasks that flipped. --serve serves the page on loopback.

  agent-envs view runs/eval/python-tool/oracle-s0          -> .../viewer.html
  agent-envs view episodes.jsonl --out episodes.html
  agent-envs view BUNDLE_A BUNDLE_B                         -> BUNDLE_A/compare-B.html
  agent-envs view BUNDLE --serve --port 8765
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``view`` to the ``agent-envs`` subparsers."""
    v = subparsers.add_parser("view", help="write (or serve) an HTML viewer of episodes",
                              description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("path", help="bundle directory or .tar.gz, eval run directory, or episodes "
                                ".jsonl/.jsonl.gz/.parquet")
    v.add_argument("compare_to", nargs="?", default=None, metavar="PATH_B",
                   help="a second bundle: compare it with PATH on the tasks that flipped")
    v.add_argument("--out", default=None,
                   help="HTML file to write (default: BUNDLE/viewer.html, NAME.viewer.html "
                        "beside a file, BUNDLE_A/compare-B.html)")
    v.add_argument("--serve", action="store_true",
                   help="serve the page on loopback until interrupted (written to a temporary "
                        "file unless --out is given)")
    v.add_argument("--host", default="127.0.0.1", help="loopback address for --serve")
    v.add_argument("--port", type=int, default=8765, help="port for --serve (0: any free one)")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=cmd_view)
    return v


def cmd_view(args: argparse.Namespace) -> int:
    """Write the page, print where it is (and serve it with ``--serve``)."""
    from agent_envs.viewer.page import build_compare, build_viewer
    from agent_envs.viewer.serve import LOOPBACK, check_port, serve_page

    if args.serve and args.host not in LOOPBACK:
        raise ValueError(f"--host {args.host!r} is not a loopback address; the viewer serves "
                         "only on 127.0.0.1 or ::1 (to share a page, publish the HTML file)")
    if args.serve:
        check_port(args.port)  # before the page is built
    with tempfile.TemporaryDirectory(prefix="agent-envs-view-") as tmp:
        out = args.out or (str(Path(tmp) / "viewer.html") if args.serve else None)
        if args.compare_to is None:
            stats = build_viewer(args.path, out, progress=not args.quiet)
        else:
            stats = build_compare(args.path, args.compare_to, out, progress=not args.quiet)
        what = "flipped-task episodes" if args.compare_to else "episodes"
        print(f"{stats.episodes} {what}, {stats.chunks} chunks, "
              f"{stats.html_bytes / 1e6:.2f} MB HTML in {stats.seconds:.1f} s"
              + ("" if args.serve and not args.out else f": {stats.path}"))
        if not args.serve:
            print(f"open it: {stats.path.resolve().as_uri()}")
            return 0
        serve_page(stats.path, host=args.host, port=args.port,
                   ready=lambda url: print(f"serving on {url} (Ctrl-C stops)", flush=True))
    return 0

