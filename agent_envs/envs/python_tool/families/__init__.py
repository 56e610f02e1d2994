"""The procedural task families, by name. See ``core.Family`` for the contract."""

from __future__ import annotations

from agent_envs.envs.python_tool.families import (
    combinatorics,
    dates,
    linear_algebra,
    number_theory,
    strings,
)
from agent_envs.envs.python_tool.families.core import MAX_DIFFICULTY, Family

__all__ = ["FAMILIES", "MAX_DIFFICULTY", "Family"]

FAMILIES: dict[str, Family] = {
    family.name: family
    for module in (number_theory, combinatorics, linear_algebra, strings, dates)
    for family in module.FAMILIES
}
