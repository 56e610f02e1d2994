"""``toy-digit``: answer with one digit. A task a tiny random model can learn in minutes.

Why it exists: a randomly initialised gpt-oss never writes valid harmony, so it can
never earn a reward on ``python-tool``, and a trainer smoke test there learns
nothing. Here the env *prefills* the format and the model only has to choose a digit:

    ...<|start|>assistant<|channel|>final<|message|>   <- the observation ends here
    7<|return|>                                       <- the action: a digit, then stop

The prefill ``<|channel|>final<|message|>`` is made of env tokens (loss mask 0), so
the prefix-extension invariant holds as everywhere else; the one difference from the
base contract is that observations end with the prefill, not with ``<|start|>assistant``.
Every place where the base env hands the turn back to the model (a format notice, a
cut completion) also ends with the prefill.

Reward 1 when the final text is exactly the task's digit. With ``fixed_target=7``
(the default) every task has target 7 and the prompt does not say so: the policy must
learn it from reward alone (a trivially learnable smoke test). With
``fixed_target=None`` the target varies with the seed and the prompt states it (a
copy task, harder for a tiny model).

Sampling restriction: the tiny model has the real 201088-token vocabulary, so at
random init it almost never samples a digit. :meth:`ToyDigitEnv.allowed_token_ids`
lists the tokens that matter (``0``-``9`` and ``<|return|>``); a trainer can restrict
sampling to them (the sampler's processed log-probs are then a distribution over that
set) and must apply the *same* restriction when it computes training log-probs, or
trainer and sampler disagree and the rollout-correction weights explode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import openai_harmony as oh

from agent_envs.core import EnvConfig, HarmonyEnv
from agent_envs.errors import UnknownTaskError
from agent_envs.harmony import RETURN, AnalysisPolicy, HarmonyCodec, SystemConfig, get_codec
from agent_envs.tasks.base import Split, Task, TaskSource, Verdict

__all__ = [
    "PREFILL_TEXT", "DigitTaskSource", "PrefilledDigitsEnv", "ToyDigitEnv", "ToyOracle",
    "ToyTask", "toy_token_ids",
]

#: What the env writes after ``<|start|>assistant`` before the model's turn.
PREFILL_TEXT = "<|channel|>final<|message|>"

_TOY_DEFAULTS: dict[str, Any] = {"max_turns": 4, "max_tokens": 512, "reasoning_effort": "low"}


@dataclass(frozen=True, kw_only=True)
class ToyTask(Task):
    """A task of a toy env: ``answer`` is exactly the digits the model must write after the
    prefill (its own type, so that the oracle answers it as a toy task)."""


class ToyOracle:
    """The toy envs' oracle: the task's digits, then ``<|return|>`` (``wrong=True``: the
    first digit changed, so reward is below 1 and ``correct`` is False)."""

    def __init__(self, codec: HarmonyCodec | None = None, *, wrong: bool = False) -> None:
        self.wrong = wrong

    def act_text(self, obs: Any, task: Task) -> str:
        """The completion as text: the answer's digits and ``<|return|>``."""
        digits = task.answer
        if self.wrong and digits:
            digits = str((int(digits[0]) + 1) % 10) + digits[1:]
        return f"{digits}<|return|>"


class DigitTaskSource(TaskSource):
    """Digit tasks: ``fixed_target`` for every seed, or a seeded digit stated in the prompt.

    Args:
        fixed_target: The digit every task asks for (hidden from the prompt), or
            None for a target drawn from the seed and written in the prompt.
    """

    name = "toy-digit"

    def __init__(self, fixed_target: int | None = 7) -> None:
        if fixed_target is not None and (isinstance(fixed_target, bool)
                                         or fixed_target not in range(10)):
            raise ValueError(f"fixed_target={fixed_target!r} is invalid: it must be a digit "
                             f"0-9 or None. Use e.g. fixed_target=7, or None for the copy task.")
        self.fixed_target = fixed_target

    def _task(self, target: int, split: Split) -> Task:
        if self.fixed_target is None:
            prompt = f"Reply with the digit {target} and nothing else."
        else:
            prompt = "Reply with one digit and nothing else."
        return ToyTask(id=f"toy-digit/{split}/{target}", prompt=prompt, answer=str(target),
                    answer_kind="int", split=split, source=self.name,
                    meta={"fixed": self.fixed_target is not None})

    def sample(self, seed: int, split: Split = "train") -> Task:
        """The task for ``seed``: the fixed target, or ``seed``'s digit (hashed with the split)."""
        if self.fixed_target is not None:
            return self._task(self.fixed_target, split)
        mix = (int(seed) * 2654435761 + (0 if split == "train" else 97)) % (2**32)
        return self._task((mix >> 7) % 10, split)

    def get(self, task_id: str) -> Task:
        """The task with ``task_id`` (``toy-digit/<split>/<digit>``)."""
        parts = task_id.split("/")
        if (len(parts) != 3 or parts[0] != self.name or parts[1] not in ("train", "test")
                or parts[2] not in [str(d) for d in range(10)]
                or (self.fixed_target is not None and parts[2] != str(self.fixed_target))):
            raise UnknownTaskError(
                f"task id {task_id!r} was not made by this source (fixed_target="
                f"{self.fixed_target!r}); ids look like 'toy-digit/train/7'.")
        return self._task(int(parts[2]), parts[1])  # type: ignore[arg-type]


_TOY_IDS: dict[int, tuple[Any, tuple[int, ...], tuple[int, ...]]] = {}


def toy_token_ids(codec: HarmonyCodec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(PREFILL_TEXT's ids, the ids of the digits 0-9)`` for ``codec``'s encoding, encoded
    once per encoding (an env is made per episode; encoding is the slow part)."""
    key = id(codec.encoding)
    hit = _TOY_IDS.get(key)
    if hit is None or hit[0] is not codec.encoding:
        digits = tuple(codec.encode(str(d))[0] for d in range(10))
        hit = _TOY_IDS[key] = (codec.encoding, tuple(codec.encode(PREFILL_TEXT)), digits)
    return hit[1], hit[2]


class _PrefillCodec(HarmonyCodec):
    """A codec whose assistant turns open with a prefill the env writes."""

    def __init__(self, base: HarmonyCodec, prefill: Sequence[int]) -> None:
        # Share the base codec's encoding and caches instead of rendering them again: a
        # trainer makes one env per episode, and HarmonyCodec.__init__ costs milliseconds.
        self.__dict__.update(base.__dict__)
        self._plain_header = tuple(getattr(base, "_plain_header", base.assistant_header))
        self.set_prefill(prefill)

    def set_prefill(self, prefill: Sequence[int]) -> None:
        """Open every assistant turn with ``prefill`` from now on (an env's own codec only)."""
        self.prefill = tuple(int(t) for t in prefill)
        self.assistant_header = self._plain_header + self.prefill

    def render_prompt(self, messages: Sequence[oh.Message],
                      policy: AnalysisPolicy = "drop_completed_turns") -> list[int]:
        return super().render_prompt(messages, policy) + list(self.prefill)

    def parse_completion(self, tokens: Any) -> Any:
        ids = [int(t) for t in tokens]
        if not ids:
            return super().parse_completion(ids)
        return super().parse_completion(list(self.prefill) + ids)


class PrefilledDigitsEnv(HarmonyEnv):
    """Base of the toy envs: the model answers in digits on a prefilled ``final`` channel.

    The observation ends with ``<|start|>assistant`` + :data:`PREFILL_TEXT` (env tokens),
    the prompt is a system and a user message, and :meth:`allowed_token_ids` is the digits
    and ``<|return|>``. Subclasses give the task source, their config defaults and
    ``verify``.
    """

    config_classes = (EnvConfig,)  # what a subclass's **kwargs take (argument checks)
    budget_defaults: ClassVar[Mapping[str, Any]] = _TOY_DEFAULTS

    def __init__(self, task_source: TaskSource, *, split: Split = "train",
                 render_mode: str | None = None, codec: HarmonyCodec | None = None,
                 **kwargs: Any) -> None:
        configs, _ = self.split_kwargs(kwargs)  # the rest must be EnvConfig fields
        base = codec or get_codec()
        self.prefill: tuple[int, ...] = toy_token_ids(base)[0]
        super().__init__(task_source=task_source, split=split,
                         config=self.env_config(configs[EnvConfig]),
                         render_mode=render_mode, codec=_PrefillCodec(base, self.prefill))
        self._digit_ids = toy_token_ids(base)[1]

    def initial_messages(self, task: Task) -> list[oh.Message]:
        system = SystemConfig(reasoning_effort=self.config.reasoning_effort,
                              conversation_date=self.config.conversation_date)
        return [self.codec.system_message(system), self.codec.user_message(task.prompt)]

    def allowed_token_ids(self) -> tuple[int, ...]:
        """The tokens a policy needs here: the digits ``0``-``9`` and ``<|return|>``.

        Trainers may restrict sampling (and, identically, training log-probs) to them.
        """
        return self._digit_ids + (RETURN,)


class ToyDigitEnv(PrefilledDigitsEnv):
    """Answer with one digit on a prefilled ``final`` channel (see the module docstring).

    Args:
        fixed_target: Every task's digit (default 7, not shown in the prompt), or None
            for a seeded digit that the prompt states (a copy task).
        split: ``"train"`` or ``"test"``.
        render_mode: None or ``"ansi"``.
        **kwargs: Fields of :class:`~agent_envs.core.EnvConfig`; toy defaults are
            ``max_turns=4``, ``max_tokens=512``, ``reasoning_effort="low"``.
    """

    env_id = "toy-digit-v0"

    def __init__(self, *, fixed_target: int | None = 7, split: Split = "train",
                 render_mode: str | None = None, codec: HarmonyCodec | None = None,
                 **kwargs: Any) -> None:
        super().__init__(DigitTaskSource(fixed_target), split=split,
                         render_mode=render_mode, codec=codec, **kwargs)

    def verify(self, task: Task, final_text: str) -> Verdict:
        """Exact match of the stripped final text with the task's digit."""
        got = final_text.strip()
        if got == task.answer:
            return Verdict(correct=True, extracted=got, reason="match")
        return Verdict(correct=False, extracted=got or None,
                       reason=f"expected {task.answer}, got {got!r}")
