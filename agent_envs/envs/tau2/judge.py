"""An LLM judge for τ²'s natural-language assertions, through one of our policies.

τ²'s default evaluation leaves NL assertions out (and none of the served domains' tasks counts
them in its reward), so the env has no judge unless one is given, and says so in the episode
record and the bundle header. With a judge, the assertions are graded as τ²'s
``NLAssertionsEvaluator`` grades them: its system and user prompts (read from the installed
τ²), the trajectory written as ``role: content`` lines, one JSON object back with a ``results``
list. The prompt goes to the policy in harmony (the system prompt as the developer message)
and the final-channel text is parsed. A judge that fails or answers no JSON is an
infrastructure fault (:class:`JudgeError`), not the agent's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from agent_envs.envs.tau2.data import (
    Tau2Error,
    format_fstring,
    prompt_constant,
    prompt_fstring,
    tau2_version,
)
from agent_envs.envs.tau2.user import UserSimulatorError, _HarmonyCaller

__all__ = ["JUDGE_OFF", "JudgeError", "LLMJudge", "judge_messages"]

#: The judge identity of an env without a judge.
JUDGE_OFF = {"kind": "off", "note": "NL assertions are not graded (τ²'s default evaluation)"}
_MODULE = "tau2.evaluator.evaluator_nl_assertions"
_FUNCTION = "evaluate_nl_assertions"


class JudgeError(UserSimulatorError):
    """The judge could not grade the assertions (an infrastructure fault)."""


def judge_messages(trajectory: Sequence[Any], nl_assertions: Sequence[str]) -> tuple[str, str]:
    """(system prompt, user prompt) that τ²'s NL evaluator sends for a trajectory."""
    trajectory_str = "\n".join(f"{m.role}: {m.content}" for m in trajectory)
    system = prompt_constant(_MODULE, "system_prompt", _FUNCTION)
    user = format_fstring(prompt_fstring(_MODULE, "user_prompt", _FUNCTION),
                          trajectory_str=trajectory_str, nl_assertions=list(nl_assertions))
    return system, user


def parse_checks(text: str) -> list[dict[str, Any]]:
    """τ²'s reading of the judge's answer: ``results`` entries as NL assertion checks.

    Raises:
        ValueError: not a JSON object with well-formed ``results``.
    """
    data = json.loads(text)
    return [{"nl_assertion": r["expectedOutcome"], "met": bool(r["metExpectation"]),
             "justification": r["reasoning"]} for r in data.get("results", [])]


class LLMJudge:
    """Grades NL assertions with a policy (see the module docstring).

    Args:
        policy: An object with ``sample``/``asample`` (``trainers.policies``).
        model: Name recorded in the identity (default: the policy's ``policy_id``).
        temperature: Sampling temperature (τ² judges at 0; a policy needs > 0).
        max_tokens: Most tokens per answer.
        reasoning_effort: The judge's reasoning effort.
        max_attempts: Samples before giving up on a parsable answer.
    """

    kind = "llm"

    def __init__(self, policy: Any, *, model: str | None = None, temperature: float = 1e-4,
                 max_tokens: int = 4096,
                 reasoning_effort: Literal["low", "medium", "high"] = "low",
                 max_attempts: int = 3) -> None:
        if not (callable(getattr(policy, "sample", None))
                and callable(getattr(policy, "asample", None))):
            raise Tau2Error(f"LLMJudge needs a policy with sample() and asample(), got "
                            f"{type(policy).__name__}")
        self.policy = policy
        self.model = model or str(getattr(policy, "policy_id", type(policy).__name__))
        self.caller = _HarmonyCaller(policy=policy, temperature=temperature, top_p=1.0,
                                     max_tokens=max_tokens, reasoning_effort=reasoning_effort,
                                     max_attempts=1, what=f"the judge ({self.model})")
        self.max_attempts = max_attempts

    def identity(self) -> dict[str, Any]:
        system = prompt_constant(_MODULE, "system_prompt", _FUNCTION)
        user = "".join(p if isinstance(p, str) else "{" + p[0] + "}"
                       for p in prompt_fstring(_MODULE, "user_prompt", _FUNCTION))
        c = self.caller
        return {"kind": self.kind, "model": self.model, "tau2": tau2_version(),
                "prompt_sha256": hashlib.sha256((system + "\x1f" + user).encode()).hexdigest(),
                "reasoning_effort": c.reasoning_effort,
                "sampling": {"temperature": c.temperature, "max_tokens": c.max_tokens,
                             "max_attempts": self.max_attempts}}

    def assess(self, trajectory: Sequence[Any], nl_assertions: Sequence[str],
               seed: int = 0) -> list[dict[str, Any]]:
        """τ²'s NL assertion checks for a trajectory (τ²'s message objects).

        Raises:
            JudgeError: no parsable answer in ``max_attempts`` samples, or the policy failed.
        """
        system, user = judge_messages(trajectory, nl_assertions)
        last = ""
        for attempt in range(self.max_attempts):
            try:
                text = self.caller.call(system, [("user", user)], seed + attempt)
                return parse_checks(text)
            except UserSimulatorError as e:
                last = str(e)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                last = f"unparsable answer ({type(e).__name__}: {e})"
        raise JudgeError(f"the judge ({self.model}) gave no usable grading in "
                         f"{self.max_attempts} attempt(s): {last}")
