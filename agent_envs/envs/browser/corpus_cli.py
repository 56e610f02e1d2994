"""The ``agent-envs corpus`` subcommand: build, inspect and query on-disk corpus indexes, and
generate a Wikipedia-shaped corpus (registered by ``agent_envs.cli``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

__all__ = ["register"]

DESCRIPTION = """\
On-disk BM25 indexes for the browser env's corpus backend, for corpora too big to hold in
memory (Search-R1's 21M-passage wiki-18). The build streams the corpus in bounded memory,
shows progress and resumes from its last checkpoint when run again; the env then takes the
index directory as its corpus:

  agent-envs corpus build wiki-18.jsonl /data/wiki-18.index
  agent-envs corpus search /data/wiki-18.index "who won the 1930 world cup"
  agent-envs rollout browser --tasks search-r1:nq.jsonl --env-arg corpus=/data/wiki-18.index
  agent-envs corpus generate --passages 1000000 --out wiki-1m.jsonl   (a synthetic wiki-18)
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``corpus`` to the ``agent-envs`` subparsers."""
    c = subparsers.add_parser("corpus", help="build and query on-disk corpus indexes",
                              description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = c.add_subparsers(dest="corpus_cmd", required=True, metavar="{build,info,search,"
                                                                     "generate}")
    b = sub.add_parser("build", help="index a JSONL corpus into a directory (resumable)")
    b.add_argument("corpus", help='the JSONL corpus ({"id", "contents"} or {"url", "title", '
                                  '"html"|"text"} lines)')
    b.add_argument("index", help="the index directory to write")
    b.add_argument("--heap-mb", type=int, default=256,
                   help="memory budget of the index writer, all threads (default 256)")
    b.add_argument("--threads", type=int, default=1,
                   help="tantivy's indexing threads (default 1)")
    b.add_argument("--workers", type=int, default=1,
                   help="processes that parse and tokenize the corpus (default 1)")
    b.add_argument("--checkpoint", type=int, default=500_000,
                   help="documents between commits: a resumed build redoes at most these")
    b.add_argument("--restart", action="store_true", help="delete the directory and start over")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_build)
    i = sub.add_parser("info", help="print an index's manifest")
    i.add_argument("index")
    i.set_defaults(func=_cmd_info)
    s = sub.add_parser("search", help="print the results page the browser shows for a query")
    s.add_argument("index")
    s.add_argument("query")
    s.add_argument("--topn", type=int, default=10)
    s.set_defaults(func=_cmd_search)
    g = sub.add_parser("generate", help="write a Wikipedia-shaped corpus in wiki-18's format")
    g.add_argument("--passages", type=int, required=True)
    g.add_argument("--out", required=True, help="the JSONL to write")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--qa", default=None, help="also write Search-R1-style questions here")
    g.add_argument("--questions", type=int, default=64)
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_cmd_generate)
    return c


def _cmd_build(args: argparse.Namespace) -> int:
    from agent_envs.envs.browser.diskindex import build_index

    t0 = time.perf_counter()
    idx = build_index(args.corpus, args.index, heap_mb=args.heap_mb, threads=args.threads,
                      workers=args.workers, checkpoint=args.checkpoint, restart=args.restart,
                      progress=not args.quiet)
    print(f"{idx.documents:,} documents indexed in {args.index} "
          f"({idx.index_bytes() / 2**20:,.0f} MiB; this run {time.perf_counter() - t0:.0f} s)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from agent_envs.envs.browser.diskindex import DiskCorpus

    idx = DiskCorpus(args.index)
    print(json.dumps({**idx.meta, "index_bytes": idx.index_bytes(),
                      # rows from the segments' row runs (else: run the build again to add them)
                      "row_runs": idx.has_row_runs()}, indent=1))
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from agent_envs.envs.browser.diskindex import DiskCorpusBackend

    if args.topn < 1:
        raise ValueError(f"--topn must be >= 1, got {args.topn}")
    page = DiskCorpusBackend(args.index).search(args.query, args.topn)
    sys.stdout.write(page.text + "\n")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from agent_envs.envs.browser import synth

    argv = ["--passages", str(args.passages), "--out", args.out, "--seed", str(args.seed),
            "--questions", str(args.questions)]
    if args.qa:
        argv += ["--qa", args.qa]
    if args.quiet:
        argv.append("--quiet")
    return synth.main(argv)
