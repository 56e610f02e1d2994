"""``toy-pattern``: write a digit pattern, L positions long. Long sampled sequences on CPU.

Why it exists: ``toy-digit`` samples two tokens per episode, too few for a per-token
trainer/sampler mismatch to compound the way it does over the hundreds of tokens of a
real agentic episode. Here the model writes ``length`` digits (each a sampled token), and
a tiny random gpt-oss can still learn the task in minutes because the reward is dense:

    ...<|start|>assistant<|channel|>final<|message|>   <- the observation ends here
    0101010101...01<|return|>                          <- the action: L digits, then stop

Reward: the fraction of the ``length`` target positions the answer gets right
(``pattern`` repeated to ``length`` characters, compared character by character; a short
answer loses its missing positions, characters past ``length`` are ignored). The verdict
is ``correct`` only for an exact answer. A completion cut by the token budget before
``<|return|>`` gets the base env's notice and the turn goes on; if the episode ends
there (``max_turns=1``, as trainers use it, or ``cut_completion="end"``) it is scored on
the digits it wrote, so the reward stays dense while the model learns where to stop.

The prefill ``<|channel|>final<|message|>`` is made of env tokens (loss mask 0), as in
``toy-digit``. The pattern is fixed for every seed and not shown in the prompt unless
``show_pattern=True``: the policy learns it from reward alone.
"""

from __future__ import annotations

from typing import Any

from agent_envs.core import _Plan
from agent_envs.envs.toy.env import PrefilledDigitsEnv, ToyTask
from agent_envs.errors import UnknownTaskError
from agent_envs.harmony import HarmonyCodec, message_text
from agent_envs.tasks.base import Split, Task, TaskSource, Verdict

__all__ = ["PATTERN_DEFAULTS", "PatternTaskSource", "PositionScoredEnv", "ToyPatternEnv",
           "pattern_score"]

#: toy-pattern's (and toy-cycle's) EnvConfig defaults: one answer may be thousands of digits.
PATTERN_DEFAULTS: dict[str, Any] = {"max_turns": 4, "max_tokens": 8192, "reasoning_effort": "low"}


def pattern_score(text: str, target: str) -> float:
    """The fraction of ``target``'s positions where ``text`` has the same character."""
    if not target:
        raise ValueError("target is empty: a pattern task needs at least one position")
    return sum(a == b for a, b in zip(text, target)) / len(target)


class PatternTaskSource(TaskSource):
    """Pattern tasks: ``pattern`` repeated to ``length`` digits, the same for every seed.

    Args:
        pattern: The digits to repeat (e.g. ``"7"`` or ``"01"``).
        length: L, the number of digits the answer must have (1-4096).
        show_pattern: State the pattern in the prompt (a copy task) instead of hiding it.
    """

    name = "toy-pattern"

    def __init__(self, pattern: str = "01", length: int = 32, show_pattern: bool = False) -> None:
        if not isinstance(pattern, str) or not pattern or not pattern.isdigit() or \
                not pattern.isascii():
            raise ValueError(f"pattern={pattern!r} is invalid: it must be a non-empty string of "
                             f"digits 0-9. Use e.g. pattern='01'.")
        if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 4096:
            raise ValueError(f"length={length!r} is invalid: it must be an int in [1, 4096]. "
                             f"Use e.g. length=32.")
        self.pattern = pattern
        self.length = length
        self.show_pattern = bool(show_pattern)
        self.target = (pattern * (length // len(pattern) + 1))[:length]

    def _task(self, split: Split) -> Task:
        if self.show_pattern:
            prompt = (f"Reply with the digits {self.pattern} repeated to {self.length} digits "
                      f"and nothing else.")
        else:
            prompt = f"Reply with {self.length} digits and nothing else."
        return ToyTask(id=f"{self.name}/{split}/{self.pattern}x{self.length}", prompt=prompt,
                    answer=self.target, answer_kind="str", split=split, source=self.name,
                    meta={"pattern": self.pattern, "length": self.length})

    def sample(self, seed: int, split: Split = "train") -> Task:
        """The task (the same for every seed: the pattern is fixed)."""
        return self._task(split)

    def get(self, task_id: str) -> Task:
        """The task with ``task_id`` (``toy-pattern/<split>/<pattern>x<length>``)."""
        parts = task_id.split("/")
        if (len(parts) != 3 or parts[0] != self.name or parts[1] not in ("train", "test")
                or parts[2] != f"{self.pattern}x{self.length}"):
            raise UnknownTaskError(
                f"task id {task_id!r} was not made by this source (pattern={self.pattern!r}, "
                f"length={self.length}); ids look like "
                f"'{self.name}/train/{self.pattern}x{self.length}'.")
        return self._task(parts[1])  # type: ignore[arg-type]


class PositionScoredEnv(PrefilledDigitsEnv):
    """Base of the toy envs scored per position: reward = the fraction of the answer's
    positions right (:meth:`score`), ``correct`` only for an exact answer
    (``task.answer``). A completion cut before ``<|return|>`` that ends the episode is
    scored on the digits it wrote. Subclasses say which part of the final text is the
    answer (:meth:`answer_text`) and which positions are right (:meth:`score`).
    """

    def __init__(self, task_source: TaskSource, **kwargs: Any) -> None:
        super().__init__(task_source, **kwargs)
        self._cut_text: str | None = None

    def answer_text(self, final_text: str) -> str:
        """The part of the final message's text that is scored (here: all of it, stripped)."""
        return final_text.strip()

    def score(self, text: str, task: Task) -> float:
        """The reward of answer ``text``: here :func:`pattern_score` against ``task.answer``."""
        return pattern_score(text, task.answer)

    def verify(self, task: Task, final_text: str) -> Verdict:
        """Exact match is ``correct``; the reward is the per-position score (see module)."""
        got = self.answer_text(final_text)
        score = self.score(got, task)
        if got == task.answer:
            return Verdict(correct=True, extracted=got, reason="match")
        return Verdict(correct=False, extracted=got or None,
                       reason=f"{score:.3f} of {len(task.answer)} positions right")

    def _plan(self, action: Any) -> _Plan:
        plan = super()._plan(action)
        self._cut_text = None
        last = plan.parsed.last
        if plan.parsed.truncated and last is not None and last.channel == "final":
            self._cut_text = self.answer_text(message_text(last))
        return plan

    def _reward_components(self, verdict: Verdict | None, infra_error: str | None
                           ) -> dict[str, float]:
        comps = super()._reward_components(verdict, infra_error)
        assert self.task is not None
        text = verdict.extracted if verdict is not None else self._cut_text
        comps["correct"] = self.score(text or "", self.task) \
            if infra_error is None else 0.0
        return comps


class ToyPatternEnv(PositionScoredEnv):
    """Write ``pattern`` repeated to ``length`` digits on a prefilled ``final`` channel.

    See the module docstring.

    Args:
        pattern: The digits to repeat (default ``"01"``).
        length: L, the answer's number of digits (default 32).
        show_pattern: State the pattern in the prompt.
        split: ``"train"`` or ``"test"``.
        render_mode: None or ``"ansi"``.
        **kwargs: Fields of :class:`~agent_envs.core.EnvConfig`; defaults here are
            ``max_turns=4``, ``max_tokens=8192``, ``reasoning_effort="low"`` (trainers
            pass ``max_turns=1``: one attempt per episode).
    """

    env_id = "toy-pattern-v0"
    budget_defaults = PATTERN_DEFAULTS

    def __init__(self, *, pattern: str = "01", length: int = 32, show_pattern: bool = False,
                 split: Split = "train", render_mode: str | None = None,
                 codec: HarmonyCodec | None = None, **kwargs: Any) -> None:
        super().__init__(PatternTaskSource(pattern, length, show_pattern),
                         split=split, render_mode=render_mode,
                         codec=codec, **kwargs)
