"""Rewrite the pinned manifests of the built-in eval suites from today's code.

    python scripts/pin_suites.py [SUITE ...]

Run it only after a deliberate change to a suite's tasks, prompts, tools, budgets or
verifier, and bump that suite's ``version`` in agent_envs/eval/suites.py first: bundles made
with the old manifest stay comparable only with each other.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_envs.eval.suites import write_pinned_manifests

for m in write_pinned_manifests(sys.argv[1:] or None):
    print(f"{m.name} v{m.version}: {len(m.tasks)} tasks, suite hash {m.hash}")
