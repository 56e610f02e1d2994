"""Browser tasks: questions with exact answers, aliases and evidence pages, plus the corpus
each one is answered from.

* :class:`ProceduralBrowserTasks`: unlimited seeded multi-hop questions over generated
  worlds (``world.py``), with difficulty knobs. Train and test never overlap: their worlds
  come from different seeds, and on top of that every question belongs to one split by a
  stable hash of its text and answer (sampling redraws until it matches), so no test
  question is ever a train question, whatever seeds anyone uses.
* Loaders for public QA sets over a corpus are in ``loaders.py``.

A browser task source also says which backend serves a task (:meth:`backend_for`).
"""

from __future__ import annotations

import abc
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from agent_envs.envs.browser.backends import Backend
from agent_envs.envs.browser.corpus import Corpus, CorpusBackend, Document
from agent_envs.envs.browser.world import World, WorldConfig, stable_seed
from agent_envs.errors import UnknownTaskError
from agent_envs.tasks.base import Split, Task, TaskSource

__all__ = ["DIFFICULTIES", "BrowserTask", "BrowserTaskSource", "ProceduralBrowserTasks",
           "question_split"]


@dataclass(frozen=True, kw_only=True)
class BrowserTask(Task):
    """A question to answer by browsing.

    Attributes:
        aliases: Other accepted answers (the verifier takes the best match).
        evidence: Per evidence page, ``{url, title, text, query}``: where the fact is, the
            text that carries it, and a query that finds the page (may be empty).
    """

    aliases: tuple[str, ...] = ()
    evidence: tuple[dict[str, str], ...] = ()


class BrowserTaskSource(TaskSource):
    """A task source whose tasks are answered from a backend."""

    @abc.abstractmethod
    def backend_for(self, task: BrowserTask) -> Backend:
        """The backend (corpus) ``task`` is answered from."""


# difficulty -> hops (a range), distractors, deep_evidence, table_only, paraphrase, decoys
DIFFICULTIES: dict[int, dict[str, Any]] = {
    1: {"hops": (1, 1), "distractors": 0, "deep_evidence": 0.0, "table_only": 0.0,
        "paraphrase": 0.0},
    2: {"hops": (2, 2), "distractors": 1, "deep_evidence": 0.0, "table_only": 0.0,
        "paraphrase": 0.0},
    3: {"hops": (2, 3), "distractors": 2, "deep_evidence": 0.5, "table_only": 0.25,
        "paraphrase": 0.0},
    4: {"hops": (3, 4), "distractors": 3, "deep_evidence": 0.5, "table_only": 0.5,
        "paraphrase": 0.5},
    5: {"hops": (4, 4), "distractors": 4, "deep_evidence": 1.0, "table_only": 0.5,
        "paraphrase": 1.0},
}
_VERSION = "v0"
# Worlds and their indexes, shared by every source in the process (envs made per episode
# reuse them): (world seed, knobs) -> (world, backend or None). The last few are kept.
_WORLDS: OrderedDict[tuple[int, str], tuple[World, CorpusBackend | None]] = OrderedDict()
_WORLDS_LOCK = threading.Lock()
_WORLDS_KEPT = 8
TEST_FRACTION = 0.5  # of questions by hash; worlds are split-specific anyway


def question_split(text: str, answer: str) -> Split:
    """The split a question belongs to, by a stable hash of its text and answer."""
    return "test" if stable_seed("split", _VERSION, text, answer) < TEST_FRACTION * 2**64 \
        else "train"


def _fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
    return float(value)


class ProceduralBrowserTasks(BrowserTaskSource):
    """Unlimited seeded multi-hop questions over generated worlds.

    Args:
        difficulty: 1..5, a preset of the knobs below (see ``DIFFICULTIES``).
        hops: Pages per question: an int 1..4 or a ``(low, high)`` range.
        distractors: Near-duplicate entities per entity (0..8).
        deep_evidence: Fraction of pages whose facts are past the first view window.
        table_only: Fraction of pages whose facts are only in a table.
        paraphrase: Fraction of questions that name the first entity by an alias only
            (the world then has decoy pages that rank above it for that alias).
        entities: Base entities per world.
        questions_per_world: Consecutive seeds share a world (its index is built once).
        cache_dir: Where world indexes are saved (None: in memory only).

    Task ids: ``browser/v0/<knobs>/<split>/<seed>``; :meth:`get` rebuilds any of them.
    """

    name = "browser-procedural"

    def __init__(self, *, difficulty: int = 1, hops: int | tuple[int, int] | None = None,
                 distractors: int | None = None, deep_evidence: float | None = None,
                 table_only: float | None = None, paraphrase: float | None = None,
                 entities: int = 120, questions_per_world: int = 64,
                 cache_dir: str | None = None) -> None:
        if isinstance(difficulty, bool) or difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be an int from 1 to {max(DIFFICULTIES)}, got "
                             f"{difficulty!r}")
        preset = DIFFICULTIES[difficulty]
        self.difficulty = difficulty
        h = preset["hops"] if hops is None else hops
        if isinstance(h, int):
            h = (h, h)
        h = tuple(h)
        if len(h) != 2 or not all(isinstance(x, int) for x in h) or not 1 <= h[0] <= h[1] <= 4:
            raise ValueError(f"hops must be an int 1..4 or a (low, high) range within 1..4, got "
                             f"{hops!r}")
        self.hops: tuple[int, int] = (int(h[0]), int(h[1]))
        self.paraphrase = _fraction("paraphrase",
                                    preset["paraphrase"] if paraphrase is None else paraphrase)
        self.world_config = WorldConfig(
            entities=entities,
            distractors=preset["distractors"] if distractors is None else distractors,
            deep_evidence=_fraction("deep_evidence", preset["deep_evidence"]
                                    if deep_evidence is None else deep_evidence),
            table_only=_fraction("table_only", preset["table_only"]
                                 if table_only is None else table_only),
            decoys=3 if self.paraphrase > 0 else 0)
        if questions_per_world < 1:
            raise ValueError(f"questions_per_world must be >= 1, got {questions_per_world!r}")
        self.questions_per_world = int(questions_per_world)
        self.cache_dir = cache_dir

    @property
    def knobs(self) -> str:
        """The knobs as they appear in task ids."""
        c = self.world_config
        return (f"h{self.hops[0]}-{self.hops[1]}.x{c.distractors}.d{round(c.deep_evidence * 100)}"
                f".t{round(c.table_only * 100)}.p{round(self.paraphrase * 100)}.e{c.entities}"
                f".q{self.questions_per_world}")

    def __repr__(self) -> str:
        return f"ProceduralBrowserTasks(difficulty={self.difficulty}, knobs={self.knobs!r})"

    def world(self, split: Split, index: int) -> World:
        """World number ``index`` of ``split`` (cached process-wide, the last eight)."""
        seed = stable_seed("browser-world", _VERSION, split, index, self.knobs)
        key = (seed, self.knobs)
        with _WORLDS_LOCK:
            if key in _WORLDS:
                _WORLDS.move_to_end(key)
                return _WORLDS[key][0]
        world = World(seed, self.world_config)
        with _WORLDS_LOCK:
            _WORLDS.setdefault(key, (world, None))
            while len(_WORLDS) > _WORLDS_KEPT:
                _WORLDS.popitem(last=False)
            return _WORLDS[key][0]

    def sample(self, seed: int, split: Split = "train") -> Task:
        """The task for ``seed`` in ``split``."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        seed = int(seed)
        index, k = divmod(seed, self.questions_per_world)
        world = self.world(split, index)
        rng_seed = stable_seed("q", seed, split)
        for attempt in range(200):
            pick = stable_seed(rng_seed, attempt)
            hops = self.hops[0] + pick % (self.hops[1] - self.hops[0] + 1)
            paraphrase = (pick >> 8) % 10_000 < self.paraphrase * 10_000
            q = world.question(stable_seed(k, attempt), hops=hops, paraphrase=paraphrase)
            if question_split(q.text, q.answer) == split:
                break
        else:  # pragma: no cover - each draw lands in a split with probability 1/2
            raise RuntimeError("no question of the requested split found")
        return BrowserTask(
            id=f"browser/{_VERSION}/{self.knobs}/{split}/{seed}",
            prompt=q.text, answer=q.answer, aliases=q.aliases, evidence=q.evidence,
            split=split, difficulty=self.difficulty, source=self.name,
            meta={"world_seed": world.seed, "world_index": index, "hops": q.hops,
                  "paraphrased": q.paraphrased, "knobs": self.knobs})

    def get(self, task_id: str) -> Task:
        """Rebuild a task from its id (only ids with this source's knobs).

        Raises:
            UnknownTaskError: Malformed id, or knobs other than this source's.
        """
        m = re.fullmatch(r"browser/(v\d+)/([^/]+)/(train|test)/(\d+)", str(task_id))
        if m is None:
            raise UnknownTaskError(f"malformed browser task id {task_id!r}; expected "
                                   f"'browser/{_VERSION}/<knobs>/<train|test>/<seed>', e.g. "
                                   f"'browser/{_VERSION}/{self.knobs}/train/0'")
        version, knobs, split, seed = m.groups()
        if version != _VERSION or knobs != self.knobs:
            raise UnknownTaskError(f"task id {task_id!r} was made with knobs {knobs!r} "
                                   f"({version}); this source has {self.knobs!r} ({_VERSION}). "
                                   "Build the source with the same knobs to replay it")
        return self.sample(int(seed), split)  # type: ignore[arg-type]

    def backend_for(self, task: BrowserTask) -> Backend:
        """The corpus backend of the task's world (built on first use, then cached)."""
        world = self.world(task.split, int(task.meta["world_index"]))
        key = (world.seed, self.knobs)
        with _WORLDS_LOCK:
            backend = _WORLDS.get(key, (world, None))[1]
        if backend is None:
            docs = [Document(url=u, title=t, html=h) for u, t, h in world.documents()]
            corpus = Corpus(docs, name="atlas", fingerprint=f"world-{world.seed}-{self.knobs}")
            backend = CorpusBackend(corpus, cache_dir=self.cache_dir,
                                    persist=self.cache_dir is not None)
            with _WORLDS_LOCK:
                _WORLDS[key] = (world, backend)
                while len(_WORLDS) > _WORLDS_KEPT:
                    _WORLDS.popitem(last=False)
        return backend
