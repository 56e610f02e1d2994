"""Tokenizing long runs: openai-harmony in one pass against ``agent_envs.harmony.longtext``.

    python benchmarks/long_run_tokenize.py [--max-one-pass 100000] [--out benchmarks/results/long_run_tokenize.json]

openai-harmony's tokenizer byte-pair-merges each pre-token in time that grows with the
square of its length, and overflows the Rust stack (a panic printed to stderr) at about a
megabyte. ``encode_ordinary`` keeps one pass while a text's long runs would cost the
tokenizer less than ~2 s (``RUN_BUDGET``) and cuts them into 64-character chunks beyond.
For runs of ``x`` and of random letters at growing lengths this prints both times side by
side with their ratio (the one-pass side is skipped past ``--max-one-pass`` characters,
where it takes minutes, then panics), whether the two token lists are equal (they are while
the text stays under the budget), and saves the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from agent_envs.harmony import get_codec
from agent_envs.harmony.longtext import encode_ordinary, has_long_run

LENGTHS = (1_000, 10_000, 30_000, 100_000, 1_000_000)


def _time(fn, text: str) -> tuple[float, list[int]]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    ids = fn(text)
    return time.perf_counter() - t0, ids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-one-pass", type=int, default=100_000,
                   help="longest run given to the tokenizer in one pass (default 100000)")
    p.add_argument("--out", default="benchmarks/results/long_run_tokenize.json")
    args = p.parse_args(argv)
    encoding = get_codec().encoding
    rng = random.Random(0)
    rows = []
    print(f"{'text':<22} {'chunked?':>8} {'one pass s':>11} {'ours s':>9} {'ratio':>8} "
          f"{'same tokens':>11}", flush=True)
    for n in LENGTHS:
        for kind, text in (("x", "x" * n), ("random a-e", "".join(rng.choices("abcde", k=n)))):
            ours_s, ours = _time(lambda t: encode_ordinary(encoding, t), text)
            one_s = same = None
            if n <= args.max_one_pass:
                one_s, ref = _time(lambda t: list(encoding.encode(t, disallowed_special=())),
                                   text)
                same = ref == ours
            ratio = f"{one_s / ours_s:.1f}x" if one_s is not None else "-"
            print(f"{kind + ' ' + format(n, ','):<22} {has_long_run(text)!s:>8} "
                  f"{'skipped' if one_s is None else f'{one_s:.3f}':>11} {ours_s:>9.3f} "
                  f"{ratio:>8} {'-' if same is None else str(same):>11}", flush=True)
            rows.append({"text": kind, "chars": n, "chunked": has_long_run(text),
                         "one_pass_s": one_s, "ours_s": ours_s, "same_tokens": same})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "rows": rows},
                              indent=1))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
