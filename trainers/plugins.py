"""What ``trainers`` adds to ``agent_envs``: policy spec schemes and CLI subcommands.

``agent_envs`` never imports ``trainers``; it finds these by name through the entry points
declared in ``pyproject.toml`` (see :mod:`agent_envs.plugins`):

- ``agent_envs.policies``: ``http``/``https`` (``OpenAICompletionsPolicy``), ``hf``
  (``TransformersPolicy``), ``vllm`` (``VLLMPolicy``), ``llamacpp`` (``LlamaCppPolicy``); each a
  factory ``factory(spec, *, model=None) -> Policy``;
- ``agent_envs.commands``: ``train`` and ``export``; each ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent_envs.rollout.errors import RolloutConfigError
from agent_envs.rollout.policy import Policy

__all__ = ["hf_policy", "http_policy", "llamacpp_policy", "register_export", "register_train",
           "vllm_policy"]


# -- policy spec schemes ------------------------------------------------------------------------


def http_policy(spec: str, *, model: str | None = None) -> Policy:
    """``http://HOST:PORT`` / ``https://...``: an OpenAI-compatible completions server."""
    if not model:
        raise RolloutConfigError(
            f"policy {spec!r} is a server URL; also pass the served model name "
            "(--model NAME, as listed by GET /v1/models)."
        )
    from trainers.policies.http import OpenAICompletionsPolicy

    return OpenAICompletionsPolicy(spec, model)


def hf_policy(spec: str, *, model: str | None = None) -> Policy:
    """``hf:NAME_OR_PATH``: a transformers model in this process (``[train]`` extra)."""
    from trainers.policies.hf import TransformersPolicy

    return TransformersPolicy.from_pretrained(spec[len("hf:"):])


def vllm_policy(spec: str, *, model: str | None = None) -> Policy:
    """``vllm:NAME_OR_PATH``: vLLM in this process (``[gpu]`` extra)."""
    from trainers.policies.vllm import VLLMPolicy

    return VLLMPolicy(spec[len("vllm:"):])


def llamacpp_policy(spec: str, *, model: str | None = None) -> Policy:
    """``llamacpp:GGUF_OR_URL[,key=value...]``: llama.cpp's ``llama-server``."""
    from trainers.policies.llamacpp import LlamaCppPolicy

    return LlamaCppPolicy.from_spec(spec[len("llamacpp:"):])


# -- CLI subcommands ----------------------------------------------------------------------------


def register_train(sub: Any) -> None:
    """Add ``agent-envs train CONFIG [KEY=VALUE ...]`` to the ``agent-envs`` subparsers."""
    t = sub.add_parser("train", help="train with GRPO/PPO (see configs/)",
                       description="Train a policy with GRPO or PPO from a TOML config; "
                                   "KEY=VALUE overrides are dotted keys (algo.lr=1e-4 "
                                   "env.kwargs.max_turns=2).")
    from trainers.cli import add_arguments

    add_arguments(t)
    t.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    try:
        from trainers.cli import main as train_main
    except ImportError as e:
        print(f"error: training needs the [train] extra (torch, transformers): {e}. "
              f"Install it with: pip install 'agent-envs[train]'", file=sys.stderr)
        return 2
    flags = [f for f, on in (("--print-config", args.print_config),
                             ("--help-config", args.help_config)) if on]
    return int(train_main([*([args.config] if args.config else []), *args.overrides, *flags]))


def register_export(sub: Any) -> None:
    """Add ``agent-envs export gguf SOURCE OUT.gguf`` to the ``agent-envs`` subparsers."""
    x = sub.add_parser("export", add_help=False,
                       help="export a checkpoint for an engine: export gguf SOURCE OUT.gguf")
    x.add_argument("-h", "--help", dest="export_help", action="store_true")
    x.add_argument("argv", nargs=argparse.REMAINDER, help="gguf SOURCE OUT [--outtype TYPE]")
    x.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    try:
        from trainers.export.cli import main as export_main
    except ImportError as e:
        print(f"error: exporting needs the [train] and [llamacpp] extras: {e}. Install them "
              f"with: pip install 'agent-envs[train,llamacpp]'", file=sys.stderr)
        return 2
    return int(export_main((["--help"] if args.export_help else []) + list(args.argv)))
