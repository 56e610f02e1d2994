"""``agent-envs train CONFIG [key=value ...]``: the training command.

The lead's ``agent_envs/cli.py`` adds a ``train`` subparser whose handler calls
:func:`main` with the arguments after ``train``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "agent-envs train") -> argparse.ArgumentParser:
    """The argument parser of the ``train`` command."""
    p = argparse.ArgumentParser(
        prog=prog, description="Train a policy with GRPO or PPO (rollout correction included).",
        epilog="Overrides are dotted keys typed by the config: algo.lr=1e-4 "
               "rollout.group_size=4 env.kwargs.max_turns=2 correction.preset=seq_mis. "
               "Presets live in configs/.")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` arguments (also declared on the ``agent-envs train`` subparser)."""
    p.add_argument("config", nargs="?", help="TOML config file (e.g. configs/tiny-cpu.toml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as JSON and exit")
    p.add_argument("--help-config", action="store_true",
                   help="list every config key with its type, default and help, and exit")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``agent-envs train``. Returns the exit status (0 ok, 2 bad config/usage).

    Args:
        argv: the arguments after ``train`` (default: ``sys.argv[1:]``).
    """
    from trainers.config import ConfigError, config_help, config_to_dict, load_config

    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.help_config:
        print(config_help())
        return 0
    if args.config is None:
        parser.print_usage(sys.stderr)
        print("error: a CONFIG file is required, e.g. configs/tiny-cpu.toml", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(config_to_dict(config), indent=2, default=str))
        return 0
    from agent_envs.rollout.errors import PolicyConfigError, PolicyUnavailableError
    from trainers.train import train

    t0 = time.perf_counter()
    try:
        result = train(config)
    except (ConfigError, PolicyConfigError, PolicyUnavailableError) as e:
        # a setting that cannot work here (a device, a model, a sampler's package): one line
        print(f"error: {e}", file=sys.stderr)
        return 2
    last = result.history[-1] if result.history else {}
    print(json.dumps({
        "steps": result.step, "wall_s": round(time.perf_counter() - t0, 1),
        "final_reward_mean": last.get("reward/mean"), "out_dir": str(result.out_dir),
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "plot": str(result.plot) if result.plot else None,
    }, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
