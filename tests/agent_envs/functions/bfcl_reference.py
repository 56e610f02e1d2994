"""bfcl_eval's own checkers, imported as a test-only oracle.

``ast_checker`` imports ``bfcl_eval.constants.model_config``, which imports every vendor
SDK; a stub module stands in for it (a mapping whose entries have ``underscore_to_dot``).
The multi-turn checker caches backend instances in module globals keyed by
``model_name``: callers pass a fresh name per entry (:func:`fresh_model_name`).
"""

from __future__ import annotations

import itertools
import sys
import types
from typing import Any

import pytest

pytest.importorskip("bfcl_eval", reason="bfcl-eval is not installed (test-only oracle)")


class _Config:
    underscore_to_dot = False


class _Mapping(dict):
    def __missing__(self, key: str) -> _Config:
        return _Config()


if "bfcl_eval.constants.model_config" not in sys.modules:
    _stub = types.ModuleType("bfcl_eval.constants.model_config")
    _stub.MODEL_CONFIG_MAPPING = _Mapping()  # type: ignore[attr-defined]
    sys.modules["bfcl_eval.constants.model_config"] = _stub

from bfcl_eval.constants.enums import Language
from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import (
    multi_turn_checker,
)

_counter = itertools.count()


def fresh_model_name() -> str:
    """A model name no earlier call used (the multi-turn checker caches by it)."""
    return f"agentenvs_oracle_{next(_counter)}"


def bfcl_ast_valid(docs: list[dict[str, Any]], calls: list[dict[str, Any]],
                   answers: list[dict[str, Any]], category: str) -> bool:
    return bool(ast_checker(docs, calls, answers, Language.PYTHON, category,
                            fresh_model_name())["valid"])


def bfcl_multi_turn_valid(decoded: list[list[list[str]]], ground_truth: list[list[str]],
                          entry: dict[str, Any], category: str) -> dict[str, Any]:
    return multi_turn_checker(decoded, ground_truth, entry, category, fresh_model_name())
