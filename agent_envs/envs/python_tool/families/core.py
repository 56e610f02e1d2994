"""The shape of a procedural task family, shared by every family module.

A family is three small pure functions: ``params(rng, difficulty)`` draws the
canonical parameters (JSON values only: they decide the split and are stored in
``task.meta``), ``prompt(params)`` words the problem, and ``solver(**params)``
computes the answer. The solver is also the reference solution: its source,
followed by one ``print`` call, is ``task.solution_code``. So a solver must be
a top-level function that uses only the standard library, imported inside its
body, and nothing else from its module.
"""

from __future__ import annotations

import functools
import inspect
import random
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent_envs.tasks.base import AnswerKind

__all__ = ["Family", "Params", "pick"]

Params = dict[str, Any]

MAX_DIFFICULTY = 5


def pick(table: tuple[Any, ...], difficulty: int) -> Any:
    """The entry of a per-difficulty table (index ``difficulty - 1``)."""
    return table[difficulty - 1]


@functools.cache
def _source(solver: Callable[..., object]) -> str:
    return textwrap.dedent(inspect.getsource(solver)).strip() + "\n"


@dataclass(frozen=True, kw_only=True)
class Family:
    """One procedural problem generator.

    Attributes:
        name: Short id used in task ids (``"modpow"``).
        area: Topic group (``"number_theory"``, ``"strings"``, ...).
        answer_kind: How answers are compared.
        params: ``(rng, difficulty) -> params``; difficulty is 1..5.
        prompt: ``params -> problem text``.
        solver: ``solver(**params) -> answer``; self-contained, stdlib only.
    """

    name: str
    area: str
    answer_kind: AnswerKind
    params: Callable[[random.Random, int], Params]
    prompt: Callable[[Params], str]
    solver: Callable[..., object]

    def answer(self, params: Params) -> str:
        """The canonical answer string for ``params``."""
        return str(self.solver(**params))

    def solution_code(self, params: Params) -> str:
        """Stdlib-only Python whose last printed line is the answer."""
        args = ", ".join(f"{key}={value!r}" for key, value in params.items())
        return f"{_source(self.solver)}\n\nprint({self.solver.__name__}({args}))\n"
