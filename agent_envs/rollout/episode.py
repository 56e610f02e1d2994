"""``Episode``: what one rollout produced, in the exact tokens the policy saw and sampled.

An episode is a list of *segments*. A segment is one training sample's worth of
tokens: a prompt (the env's first observation of the segment) followed by a
completion stream in which the policy's sampled tokens (loss mask 1, with the
sampler's log-probs) alternate with the tokens the env appended (tool results,
the next ``<|start|>assistant``; loss mask 0, log-prob 0.0). A new segment
starts when the env breaks the prefix (``info["new_segment"]``).

Episodes are saved as JSONL (one record per line) or Parquet (pyarrow), both
carrying ``SCHEMA_VERSION``. Trainers turn them into training samples
(``trainers.episode.segment_samples`` / ``turn_samples``); eval bundles and the viewer
read them as they are. Nothing here needs torch (pyarrow only for Parquet).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_envs.rollout.errors import EpisodeFormatError

__all__ = [
    "SCHEMA_VERSION", "Episode", "EpisodeFormatError", "Segment", "Turn", "load_episodes",
    "save_episodes",
]

SCHEMA_VERSION = 1



@dataclass(kw_only=True)
class Segment:
    """One prompt and the completion stream that extends it.

    Attributes:
        prompt: Token ids of the env observation that opened the segment.
        completion: Token ids after the prompt: sampled and env tokens interleaved.
        loss_mask: 1 where the token was sampled by the policy, 0 for env tokens.
        logprobs: The sampler's log-prob of each sampled token; 0.0 where mask is 0.
    """

    prompt: list[int]
    completion: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    def add_sampled(self, tokens: Sequence[int], logprobs: Sequence[float]) -> tuple[int, int]:
        """Append policy tokens; returns their ``[start, end)`` offsets in ``completion``."""
        start = len(self.completion)
        self.completion.extend(int(t) for t in tokens)
        self.loss_mask.extend([1] * len(tokens))
        self.logprobs.extend(float(x) for x in logprobs)
        return start, len(self.completion)

    def add_env(self, tokens: Sequence[int]) -> None:
        """Append env tokens (loss mask 0, log-prob 0.0)."""
        self.completion.extend(int(t) for t in tokens)
        self.loss_mask.extend([0] * len(tokens))
        self.logprobs.extend([0.0] * len(tokens))


@dataclass(kw_only=True)
class Turn:
    """One model turn (one ``env.step``).

    Attributes:
        segment: Index of the segment holding the turn's tokens.
        start: Offset of the turn's first sampled token in the segment's completion.
        end: Offset just past its last sampled token.
        env_tokens: Tokens the env appended after it.
        finish_reason: The sampler's finish reason (``stop``/``length``).
        tool_outcome: ``info["tool_outcome"]`` of the step (None without a call).
        model_error: ``info["model_error"]`` of the step.
        policy_s: Seconds spent waiting for the sample (including batching).
        env_s: Seconds spent in ``env.step``.
    """

    segment: int
    start: int
    end: int
    env_tokens: int = 0
    finish_reason: str = "stop"
    tool_outcome: dict[str, Any] | None = None
    model_error: str | None = None
    policy_s: float = 0.0
    env_s: float = 0.0


@dataclass(kw_only=True)
class Episode:
    """One rollout. Fields map one to one onto the JSONL/Parquet record.

    Attributes:
        episode_id: Unique in a run: ``"g{group}-e{index}"``.
        env_id: Versioned env id (``"python-tool-v0"``).
        env_version: The ``-vN`` suffix of ``env_id`` (``"v0"``).
        task_id: Task id (``source.get(task_id)`` rebuilds it).
        group_id: GRPO group: episodes with the same group share seed and task.
        index: Position of the episode in its group.
        seed: Seed given to ``env.reset``.
        sample_seed: Base seed of the policy's sampling for this episode.
        policy_id: ``Policy.policy_id``.
        policy_version: ``Policy.version`` when the episode was sampled.
        segments: The token streams (see ``Segment``).
        turns: One entry per model turn.
        reward: Final reward (sum of ``reward_components``).
        reward_components: Named reward terms.
        terminated: The model gave a final answer.
        truncated: A budget ran out (or an infra fault ended it).
        truncated_reason: None or ``turns``/``tokens``/``time``/``length``/``infra``.
        verdict: The verifier's judgement (``correct``, ``extracted``, ``reason``).
        infra_error: Why infrastructure failed, or None. Trainers must drop
            episodes where this is set (see ``infra``).
        env_s: Seconds in env reset/step calls.
        policy_s: Seconds waiting on the policy.
        total_s: Wall time of the episode.
        meta: Free-form extras.
        schema_version: ``SCHEMA_VERSION`` of the record.
    """

    episode_id: str
    env_id: str
    env_version: str
    task_id: str | None
    group_id: int
    index: int
    seed: int
    sample_seed: int
    policy_id: str
    policy_version: str
    segments: list[Segment] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    reward: float = 0.0
    reward_components: dict[str, float] = field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False
    truncated_reason: str | None = None
    verdict: dict[str, Any] | None = None
    infra_error: str | None = None
    env_s: float = 0.0
    policy_s: float = 0.0
    total_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def infra(self) -> bool:
        """True when an infrastructure fault spoiled the episode (drop it from training)."""
        return self.infra_error is not None

    @property
    def solved(self) -> bool:
        """True when the verifier judged the final answer correct."""
        return bool(self.verdict and self.verdict.get("correct"))

    @property
    def num_sampled_tokens(self) -> int:
        """Tokens the policy sampled, over all segments."""
        return sum(sum(s.loss_mask) for s in self.segments)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the JSONL record)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Episode:
        """Inverse of ``to_dict``.

        Raises:
            EpisodeFormatError: Unknown schema version or missing/extra fields.
        """
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise EpisodeFormatError(
                f"episode record has schema_version={version!r}, this code reads "
                f"{SCHEMA_VERSION}; re-collect the episodes or use the matching agent-envs version."
            )
        d = dict(d)
        try:
            d["segments"] = [Segment(**s) for s in d["segments"]]
            d["turns"] = [Turn(**t) for t in d["turns"]]
            return cls(**d)
        except (KeyError, TypeError) as e:
            raise EpisodeFormatError(f"malformed episode record ({e}); keys: {sorted(d)}") from e


# -- files --------------------------------------------------------------------------------------

_JSON_COLUMNS = ("turns", "reward_components", "verdict", "meta")


def save_episodes(episodes: Iterable[Episode], path: str | Path) -> Path:
    """Write episodes to ``path``: ``.jsonl`` (or ``.jsonl.gz``) or ``.parquet``.

    Returns:
        The path written.

    Raises:
        EpisodeFormatError: The extension is neither.
    """
    path = Path(path)
    kind = _kind(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        opener = _open_text(path, "wt")
        with opener as f:
            for ep in episodes:
                f.write(json.dumps(ep.to_dict(), allow_nan=True) + "\n")
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for ep in episodes:
        d = ep.to_dict()
        for col in _JSON_COLUMNS:
            d[col] = json.dumps(d[col])
        rows.append(d)
    table = pa.Table.from_pylist(rows, schema=_arrow_schema())
    table = table.replace_schema_metadata({"agent_envs.episode_schema": str(SCHEMA_VERSION)})
    pq.write_table(table, path)
    return path


def load_episodes(path: str | Path) -> list[Episode]:
    """Read episodes written by ``save_episodes``.

    Raises:
        EpisodeFormatError: Unknown extension, malformed record, or another schema version.
    """
    path = Path(path)
    if _kind(path) == "jsonl":
        out = []
        with _open_text(path, "rt") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    out.append(Episode.from_dict(json.loads(line)))
                except json.JSONDecodeError as e:
                    raise EpisodeFormatError(f"{path}:{n}: not valid JSON ({e})") from e
        return out
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    version = meta.get(b"agent_envs.episode_schema")
    if version is not None and int(version) != SCHEMA_VERSION:
        raise EpisodeFormatError(
            f"{path} holds episode schema {int(version)}, this code reads {SCHEMA_VERSION}."
        )
    out = []
    for d in table.to_pylist():
        for col in _JSON_COLUMNS:
            d[col] = json.loads(d[col])
        out.append(Episode.from_dict(d))
    return out


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise EpisodeFormatError(
        f"episode file {str(path)!r} must end in .jsonl, .jsonl.gz or .parquet."
    )


def _open_text(path: Path, mode: str) -> Any:
    if path.name.lower().endswith(".gz"):
        import gzip

        return gzip.open(path, mode, encoding="utf-8")
    return open(path, mode.replace("t", ""), encoding="utf-8")


def _arrow_schema() -> Any:
    import pyarrow as pa

    segment = pa.struct([
        ("prompt", pa.list_(pa.int32())), ("completion", pa.list_(pa.int32())),
        ("loss_mask", pa.list_(pa.int8())), ("logprobs", pa.list_(pa.float64())),
    ])
    return pa.schema([
        ("episode_id", pa.string()), ("env_id", pa.string()), ("env_version", pa.string()),
        ("task_id", pa.string()), ("group_id", pa.int64()), ("index", pa.int64()),
        ("seed", pa.int64()), ("sample_seed", pa.int64()), ("policy_id", pa.string()),
        ("policy_version", pa.string()), ("segments", pa.list_(segment)),
        ("turns", pa.string()), ("reward", pa.float64()), ("reward_components", pa.string()),
        ("terminated", pa.bool_()), ("truncated", pa.bool_()),
        ("truncated_reason", pa.string()), ("verdict", pa.string()),
        ("infra_error", pa.string()), ("env_s", pa.float64()), ("policy_s", pa.float64()),
        ("total_s", pa.float64()), ("meta", pa.string()), ("schema_version", pa.int32()),
    ])
