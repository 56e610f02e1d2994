"""Leaderboards: versioned suites, a resumable eval runner, and verifiable result bundles.

    agent-envs eval python-tool --policy http://127.0.0.1:8000 --model openai/gpt-oss-20b

See ``suites`` (what is run, pinned by hashes), ``runner`` (``run_eval``), ``metrics``
(accuracy, pass@k, pass^k with CIs) and ``bundle`` (write, verify, rescore, compare, board).
"""

from __future__ import annotations

from agent_envs.eval.bundle import BundleError, board, compare, load_bundle, rescore, verify
from agent_envs.eval.metrics import compute_metrics, pass_at_k, pass_hat_k, wilson_interval
from agent_envs.eval.runner import EvalConfig, EvalRunError, run_eval
from agent_envs.eval.suites import (
    Manifest,
    SuiteMismatchError,
    SuiteSpec,
    build_manifest,
    get_suite,
    list_suites,
    official_manifest,
    register_suite,
)

__all__ = [
    "BundleError", "EvalConfig", "EvalRunError", "Manifest", "SuiteMismatchError", "SuiteSpec",
    "board", "build_manifest", "compare", "compute_metrics", "get_suite", "list_suites",
    "load_bundle", "official_manifest", "pass_at_k", "pass_hat_k", "register_suite", "rescore",
    "run_eval", "verify", "wilson_interval",
]
