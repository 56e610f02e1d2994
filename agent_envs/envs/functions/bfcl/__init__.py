"""The Berkeley Function Calling Leaderboard (v4) from the installed ``bfcl-eval`` package."""

from __future__ import annotations

from agent_envs.envs.functions.bfcl.ast_check import AstVerdict, check_ast, normalize_string
from agent_envs.envs.functions.bfcl.data import CATEGORIES, GROUPS, resolve_categories
from agent_envs.envs.functions.bfcl.scoring import bfcl_overall, category_of, score_report
from agent_envs.envs.functions.bfcl.tasks import (
    DIVERGENCES,
    BfclAstTask,
    BfclMultiTurnTask,
    BfclRelevanceTask,
    BfclTasks,
    ground_truth_calls,
    quarantine,
)

__all__ = [
    "CATEGORIES", "DIVERGENCES", "GROUPS", "AstVerdict", "BfclAstTask", "BfclMultiTurnTask",
    "BfclRelevanceTask", "BfclTasks", "bfcl_overall", "category_of", "check_ast",
    "ground_truth_calls", "normalize_string", "quarantine", "resolve_categories", "score_report",
]
