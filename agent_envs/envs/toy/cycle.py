"""``toy-cycle``: continue a hidden digit cycle from the digit the env writes.

Why it exists: on ``toy-pattern`` (``01`` repeated) a policy that writes one digit
everywhere already scores 0.5, and GRPO on a tiny model collapses to exactly that, so an
experiment run there compares how fast arms collapse, not whether they learn. Here the
trivial policies score nothing and the optimum is 1.0:

    ...<|start|>assistant<|channel|>final<|message|>3   <- the observation ends here
    4567890123...<|return|>                             <- the action: L digits, then stop

The env picks a start digit ``s`` per task (from the seed), writes it as the first
character of the final message (an env token, loss mask 0) and says it in the prompt (a
user message only, no system message: ~20 prompt tokens, so that a CPU experiment spends
its compute on the answer rather than on harmony's ~60-token system header); the
answer is the ``pattern`` cycle continued from ``s`` for ``length`` digits (pattern
``0123456789``: count on from ``s``, modulo 10). The pattern is the same for every task and
is not shown: the policy learns it from reward alone, as the map from each digit to the
next (its *successor*).

Reward (:func:`cycle_score`): the fraction of the ``length`` positions that are right,
where position i is right when its digit is the successor of the digit before it (``s``
before the first) **and** does not occur among the K-1 digits before it (K = the pattern's
length). The exact answer gets 1.0. Any constant gets 0 (no digit is its own successor),
and so does any loop shorter than K (each digit repeats within K-1 positions), so neither
a collapsed policy nor one that learned a few transitions and loops between them earns
anything; the uniformly random policy gets ~0.04 for K = 10 (:func:`trivial_scores`).
Every digit is scored against the one before it, so the reward is dense: each right
transition earns its 1/L wherever it occurs (one wrong digit costs about two positions,
not the rest of the answer). As in ``toy-pattern``, a short answer loses its missing
positions, digits past ``length`` are ignored, a completion cut before ``<|return|>`` that
ends the episode is scored on what it wrote, and ``correct`` means an exact answer.
"""

from __future__ import annotations

from typing import Any

import openai_harmony as oh

from agent_envs.envs.toy.env import ToyTask
from agent_envs.envs.toy.pattern import PATTERN_DEFAULTS, PositionScoredEnv
from agent_envs.errors import UnknownTaskError
from agent_envs.harmony import HarmonyCodec
from agent_envs.tasks.base import Split, Task, TaskSource

__all__ = ["CycleTaskSource", "ToyCycleEnv", "cycle_score", "trivial_scores"]


def cycle_score(text: str, start: str, pattern: str, length: int) -> float:
    """The fraction of ``length`` positions of ``text`` that continue the cycle (see module).

    Position i is right when ``text[i]`` is the successor in ``pattern`` of the digit before
    it (``start`` before position 0) and is not among the ``len(pattern) - 1`` digits before
    it (``start`` included). Positions past ``len(text)`` are wrong; characters past
    ``length`` are ignored.
    """
    if length < 1:
        raise ValueError(f"length={length!r} is invalid: it must be >= 1")
    k = len(pattern)
    succ = {d: pattern[(i + 1) % k] for i, d in enumerate(pattern)}
    seq = start + text[:length]
    right = sum(1 for i in range(1, len(seq))
                if succ.get(seq[i - 1]) == seq[i] and seq[i] not in seq[max(0, i - k + 1):i])
    return right / length


def trivial_scores(pattern: str, length: int, *, samples: int = 2000, seed: int = 0
                   ) -> dict[str, float]:
    """Expected rewards of the policies that learn nothing, over uniformly drawn starts.

    Returns:
        ``best_constant``: the best policy writing one digit everywhere (0: no digit is its
        own successor); ``best_short_loop``: the best policy repeating any loop of 2 to K-1
        digits, from any phase (0); ``uniform``: the policy uniform over the pattern's digits
        (a Monte-Carlo estimate over ``samples`` answers); ``trivial``: the largest of the
        three (the line a learning curve must climb past).
    """
    import itertools
    import random

    def mean_over_starts(text: str) -> float:
        return sum(cycle_score(text, s, pattern, length) for s in pattern) / len(pattern)

    k = len(pattern)
    best_constant = max(mean_over_starts(d * length) for d in pattern)
    best_loop = 0.0
    for p in range(2, min(k, 5)):  # loops of 2-4 digits, exhaustively (longer: same argument)
        for loop in itertools.permutations(pattern, p):
            text = ("".join(loop) * (length // p + 1))[:length]
            best_loop = max(best_loop, mean_over_starts(text))
    rng = random.Random(seed)
    uniform = sum(cycle_score("".join(rng.choice(pattern) for _ in range(length)),
                              rng.choice(pattern), pattern, length)
                  for _ in range(samples)) / samples
    return {"best_constant": best_constant, "best_short_loop": best_loop, "uniform": uniform,
            "trivial": max(best_constant, best_loop, uniform)}


class CycleTaskSource(TaskSource):
    """Cycle tasks: ``pattern`` continued from a seeded start digit for ``length`` digits.

    Args:
        pattern: K >= 2 distinct digits, read as a cycle (``"0123456789"``: count mod 10).
        length: L, the number of digits the answer must have (1-4096).
    """

    name = "toy-cycle"

    def __init__(self, pattern: str = "0123456789", length: int = 32) -> None:
        if (not isinstance(pattern, str) or not pattern.isascii() or not pattern.isdigit()
                or len(set(pattern)) != len(pattern) or len(pattern) < 2):
            raise ValueError(
                f"pattern={pattern!r} is invalid: it must be 2-10 distinct digits 0-9 (a cycle "
                f"must say which digit follows each one). Use e.g. pattern='0123456789'.")
        if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 4096:
            raise ValueError(f"length={length!r} is invalid: it must be an int in [1, 4096]. "
                             f"Use e.g. length=32.")
        self.pattern = pattern
        self.length = length

    def target(self, start: str) -> str:
        """The ``length`` digits that follow ``start`` around the cycle."""
        k = len(self.pattern)
        i = self.pattern.index(start)
        return "".join(self.pattern[(i + 1 + j) % k] for j in range(self.length))

    def _task(self, start: str, split: Split) -> Task:
        prompt = f"Continue from {start}: the next {self.length} digits."
        # The id names the start and length, never the pattern (the hidden part).
        return ToyTask(id=f"{self.name}/{split}/{self.length}/{start}", prompt=prompt,
                    answer=self.target(start), answer_kind="str", split=split,
                    source=self.name, meta={"start": start, "length": self.length})

    def sample(self, seed: int, split: Split = "train") -> Task:
        """The task for ``seed``: a start digit hashed from the seed and the split."""
        mix = (int(seed) * 2654435761 + (0 if split == "train" else 97)) % (2**32)
        return self._task(self.pattern[(mix >> 7) % len(self.pattern)], split)

    def get(self, task_id: str) -> Task:
        """The task with ``task_id`` (``toy-cycle/<split>/<length>/<start digit>``)."""
        parts = task_id.split("/")
        if (len(parts) != 4 or parts[0] != self.name or parts[1] not in ("train", "test")
                or parts[2] != str(self.length) or len(parts[3]) != 1
                or parts[3] not in self.pattern):
            raise UnknownTaskError(
                f"task id {task_id!r} was not made by this source (length={self.length}, "
                f"starts: the pattern's digits); ids look like "
                f"'{self.name}/train/{self.length}/{self.pattern[0]}'.")
        return self._task(parts[3], parts[1])  # type: ignore[arg-type]


class ToyCycleEnv(PositionScoredEnv):
    """Continue a hidden digit cycle from a start digit the env writes (see the module).

    Args:
        pattern: The cycle's K distinct digits (default ``"0123456789"``), hidden.
        length: L, the answer's number of digits (default 32).
        split: ``"train"`` or ``"test"``.
        render_mode: None or ``"ansi"``.
        **kwargs: Fields of :class:`~agent_envs.core.EnvConfig`; defaults here are
            ``max_turns=4``, ``max_tokens=8192``, ``reasoning_effort="low"`` (trainers
            pass ``max_turns=1``: one attempt per episode).
    """

    env_id = "toy-cycle-v0"
    budget_defaults = PATTERN_DEFAULTS

    def __init__(self, *, pattern: str = "0123456789", length: int = 32, split: Split = "train",
                 render_mode: str | None = None, codec: HarmonyCodec | None = None,
                 **kwargs: Any) -> None:
        super().__init__(CycleTaskSource(pattern, length),
                         split=split, render_mode=render_mode, codec=codec, **kwargs)
        self._start_ids = {str(d): (t,) for d, t in enumerate(self._digit_ids)}

    def initial_messages(self, task: Task) -> list[oh.Message]:
        """The user message only (no system message; see the module docstring)."""
        # Every assistant turn of this episode opens with PREFILL_TEXT and the start digit.
        self.codec.set_prefill(self.prefill + self._start_ids[task.meta["start"]])  # type: ignore[attr-defined]
        return [self.codec.user_message(task.prompt)]

    def score(self, text: str, task: Task) -> float:
        """:func:`cycle_score` of the model's digits from the task's start digit."""
        return cycle_score(text, task.meta["start"], self.task_source.pattern,  # type: ignore[attr-defined]
                           self.task_source.length)  # type: ignore[attr-defined]

    def answer_text(self, final_text: str) -> str:
        """The digits after the env's start digit (the final message's text minus its first
        character, which the env wrote)."""
        text = final_text.strip()
        assert self.task is not None
        start = self.task.meta["start"]
        return text.removeprefix(start)
