"""Regenerate ``quarantine.json``: the BFCL entries that no answer can pass here.

    python -m agent_envs.envs.functions.bfcl.quarantine [--check]

Runs the oracle (the ground truth) through the env on every served entry with the
default settings and records each entry it fails, with the reason read from the episode:
a ground-truth call that violates its own schema (refused by strict validation), a
ground-truth call to a function that is not declared yet (miss_func), or possible
answers that BFCL's own check rejects whatever is chosen (a required parameter whose only
accepted value is "omit it", a parameter the function does not have). ``--check`` only
compares with the shipped file and exits 1 when they differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["find_quarantine", "main"]


def _reason(env: Any, verdict: dict[str, Any] | None) -> str:
    from agent_envs.envs.functions.bfcl.tasks import BfclMultiTurnTask
    reason = (verdict or {}).get("reason") or "episode did not finish"
    if not isinstance(env.task, BfclMultiTurnTask):  # AST scoring counts refused calls too
        return f"BFCL's own check rejects every combination of accepted values: {reason}"
    for c in env.episode.calls:
        if c.error_kind == "schema":
            return (f"a ground-truth call violates its own schema and is refused by strict "
                    f"validation: {c.harmony_name}: {c.error}")
        if c.error_kind == "unknown_function":
            return (f"the ground truth calls {c.harmony_name!r} in turn {c.turn}, before that "
                    "function is declared (held out until a later turn)")
    return f"the ground truth fails BFCL's multi-turn check: {reason}"


def find_quarantine(categories: list[str] | None = None, progress: bool = True
                    ) -> dict[str, str]:
    """``{entry id: reason}`` for every entry the oracle fails (see the module docstring)."""
    from tqdm import tqdm

    from agent_envs.envs.functions.bfcl.tasks import BfclTasks
    from agent_envs.envs.functions.env import FunctionsEnv
    from agent_envs.envs.functions.oracle import FunctionsOracle

    source = BfclTasks(categories)
    env = FunctionsEnv(tasks=source, max_turns=400, max_tokens=1_000_000)
    oracle = FunctionsOracle()
    out = {}
    for task in tqdm(list(source), desc="bfcl oracle", disable=not progress, file=sys.stderr):
        obs, info = env.reset(options={"task_id": task.id})
        reward, done = 0.0, False
        while not done:
            obs, reward, term, trunc, info = env.step(oracle.act(obs, env.task))
            done = term or trunc
        if reward < 1.0:
            out[task.id] = _reason(env, info["verdict"])
    env.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    args = p.parse_args(argv)
    found = find_quarantine()
    path = Path(__file__).with_name("quarantine.json")
    if args.check:
        shipped = json.loads(path.read_text(encoding="utf-8"))["entries"]
        if shipped != found:
            print(f"quarantine differs: shipped {sorted(shipped)}, found {sorted(found)}")
            return 1
        print(f"quarantine.json is up to date ({len(found)} entries)")
        return 0
    from importlib.metadata import version
    path.write_text(json.dumps({"bfcl_eval": version("bfcl-eval"), "entries": found},
                               indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(found)} entries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
