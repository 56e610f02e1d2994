"""``agent-envs export gguf SOURCE OUT.gguf``: export a gpt-oss checkpoint for llama.cpp.

``agent_envs/cli.py`` adds an ``export`` subparser whose handler calls :func:`main` with the
arguments after ``export``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from trainers.export.gguf import CONVERTER_TYPES, QUANTIZE_TYPES

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "agent-envs export") -> argparse.ArgumentParser:
    """The argument parser of the ``export`` command."""
    p = argparse.ArgumentParser(prog=prog, description="Export a trained gpt-oss model for an "
                                                       "inference engine.")
    sub = p.add_subparsers(dest="format", required=True)
    g = sub.add_parser(
        "gguf", help="GGUF for llama.cpp (llama-server), with llama.cpp's own converter",
        description="Convert a gpt-oss checkpoint to GGUF with the converter of the llama.cpp "
                    "that scripts/build_llama_server.sh builds (fetch it first: bash "
                    "scripts/build_llama_server.sh --source-only). Serve the result with "
                    "--policy llamacpp:OUT.gguf.")
    g.add_argument("source", help="a Hugging Face gpt-oss directory (config.json + "
                                  "safetensors), a trainer checkpoint "
                                  "(runs/.../checkpoints/step_NNNNNN.pt; LoRA is merged), or "
                                  "'tiny' (the trainer's tiny random model)")
    g.add_argument("out", help="the .gguf file to write")
    g.add_argument("--outtype", default="f32", choices=CONVERTER_TYPES + QUANTIZE_TYPES,
                   metavar="TYPE", help=f"tensor type: {', '.join(CONVERTER_TYPES)} (converter) "
                                        f"or {', '.join(QUANTIZE_TYPES)} (llama-quantize, needs "
                                        f"the built binaries); default f32")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``agent-envs export``. Returns 0, or 2 with a one-line error.

    Args:
        argv: the arguments after ``export`` (default: ``sys.argv[1:]``).
    """
    from trainers.export.gguf import GGUFExportError, export_gguf
    from trainers.export.llamacpp_dist import LlamaCppNotBuiltError
    from trainers.export.tokenizer import TokenizerBuildError

    args = build_parser().parse_args(argv)
    try:
        print(f"exporting {args.source} to {args.out} ({args.outtype}) with llama.cpp's "
              f"converter ...", file=sys.stderr, flush=True)
        result = export_gguf(args.source, args.out, outtype=args.outtype)
    except (GGUFExportError, LlamaCppNotBuiltError, TokenizerBuildError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {result.path} ({result.outtype}, {result.bytes / 2**20:.1f} MiB) in "
          f"{result.seconds:.1f} s; serve it with: --policy llamacpp:{result.path}")
    return 0
