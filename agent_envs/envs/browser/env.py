"""``browser``: gpt-oss with its built-in browsing tool (``browser.search``/``open``/``find``).

A preset of the composed env (:class:`~agent_envs.envs.agent.env.AgentEnv`) with one tool,
:class:`~agent_envs.tools.browser.BrowserPart`. The system message declares the tool exactly as gpt-oss was trained with it
(openai-harmony's ``ToolNamespaceConfig.browser()``). The model calls
``<|channel|>analysis to=browser.search<|message|>{"query": ...}<|call|>``; the tool
answers as ``browser.search`` on the same channel, with the page text the reference tool
would show (byte for byte). The episode ends with a final answer, judged by exact match
(or F1) against the answer and its aliases; citations and evidence recall are checked and
reported in ``info["browser"]``, and can be added to the reward (off by default).

Every model mistake is an observation: bad JSON, an unknown function, a cursor, ``loc`` or
link id out of range, a missing page, a huge pattern; each gets the reference's text.
A backend that fails for reasons that are not the model's (a replay cassette without the
request, a search provider without its API key) ends the episode with ``infra_error``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

# The [browser] extra, imported here so that a missing one is reported when the env is made
# (agent_envs.make names the extra to install), not in the middle of an episode.
import bm25s  # noqa: F401
import html2text  # noqa: F401
import lxml.html  # noqa: F401

from agent_envs.core import EnvConfig, check_field_types
from agent_envs.envs.agent.env import AgentEnv, one_spec
from agent_envs.envs.browser import verifier
from agent_envs.envs.browser.backends import Backend
from agent_envs.envs.browser.tasks import BrowserTaskSource, ProceduralBrowserTasks
from agent_envs.envs.browser.tool import BrowserTool, BrowserToolConfig
from agent_envs.envs.browser.verifier import Judgement
from agent_envs.errors import UnknownTaskError
from agent_envs.harmony import HarmonyCodec
from agent_envs.tasks.base import Split, Task, Verdict, check_procedural_only

__all__ = ["DEFAULT_INSTRUCTIONS", "BrowserConfig", "BrowserEnv", "make_browser_tasks"]

DEFAULT_INSTRUCTIONS = (
    "Answer the user's question by browsing with the browser tool: search, open pages and "
    "find text in them. Rely only on what the pages say. End with a final message whose last "
    "line is `Answer: <the answer>`, followed by citations of the lines that support it, "
    "e.g. `Answer: 1873 【3†L12-L13】`."
)
_KNOBS = ("hops", "distractors", "deep_evidence", "table_only", "paraphrase", "entities",
          "questions_per_world")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BrowserConfig:
    """Settings of the browser env's reward (besides the tool's :class:`BrowserToolConfig`).

    Attributes:
        reward: ``"em"`` (1 for an exact match with the answer or an alias) or ``"f1"``
            (the best SQuAD F1).
        citation_weight: Reward term: weight times the share of citations that check out.
        evidence_weight: Reward term: weight times the evidence-page recall.
    """

    reward: Literal["em", "f1"] = "em"
    citation_weight: float = 0.0
    evidence_weight: float = 0.0

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.reward not in ("em", "f1"):
            raise ValueError(f"reward must be 'em' or 'f1', got {self.reward!r}")


def make_browser_tasks(spec: str | BrowserTaskSource, *, difficulty: int | None = None,
                       corpus: str | None = None, cache_dir: str | None = None,
                       split: Split = "test",
                       **knobs: Any) -> BrowserTaskSource:
    """A browser task source from a spec.

    Specs: ``procedural`` (``difficulty``, default 1, and the knobs ``hops``,
    ``distractors``, ``deep_evidence``, ``table_only``, ``paraphrase``, ``entities``,
    ``questions_per_world``), ``search-r1:QA_FILE`` and ``browsecomp-plus:QUERIES_FILE``
    (both with ``corpus=FILE``; their tasks are put in ``split``).

    Raises:
        UnknownTaskError: An unknown spec, or a loader spec without ``corpus``.
        ValueError: ``corpus`` with procedural tasks, or ``difficulty`` with a loader spec.
    """
    if isinstance(spec, BrowserTaskSource):
        check_procedural_only(spec, difficulty=difficulty)
        if corpus is not None:
            raise ValueError(f"corpus={corpus!r} is for the loader specs, not a ready "
                             f"{type(spec).__name__} (which has its pages); drop corpus=")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"task_source must be a spec string or a BrowserTaskSource, got "
                        f"{type(spec).__name__}")
    kind, sep, rest = spec.partition(":")
    if kind == "procedural" and not sep:
        if corpus is not None:
            raise ValueError(
                f"corpus={corpus!r} is for the loader specs: procedural tasks build their own "
                f"pages and would ignore it. Drop corpus=, or load questions over it with "
                f"task_source='search-r1:QA_FILE' or 'browsecomp-plus:QUERIES_FILE'.")
        return ProceduralBrowserTasks(difficulty=difficulty or 1, cache_dir=cache_dir, **knobs)
    if knobs:
        raise TypeError(f"{sorted(knobs)} apply only to task_source='procedural', not {spec!r}")
    check_procedural_only(spec, difficulty=difficulty)
    if kind in ("search-r1", "browsecomp-plus"):
        if not rest or corpus is None:
            raise UnknownTaskError(f"task source {spec!r} needs a questions file and a corpus: "
                                   f"task_source='{kind}:QUESTIONS.jsonl', corpus='CORPUS.jsonl'")
        from agent_envs.envs.browser.loaders import load_browsecomp_plus, load_search_r1
        loader = load_search_r1 if kind == "search-r1" else load_browsecomp_plus
        return loader(rest, corpus=corpus, cache_dir=cache_dir, split=split)
    raise UnknownTaskError(f"unknown browser task source {spec!r}; use 'procedural', "
                           "'search-r1:QA_FILE' or 'browsecomp-plus:QUERIES_FILE' (with corpus=)")


class BrowserEnv(AgentEnv):
    """gpt-oss answering questions with its browser tool.

    Args:
        task_source: ``"procedural"`` (default), ``"search-r1:QA_FILE"``,
            ``"browsecomp-plus:QUERIES_FILE"``, or a ``BrowserTaskSource``.
        tasks: Alias of ``task_source``.
        split: ``"train"`` or ``"test"``.
        difficulty: Procedural difficulty preset, 1..5 (default 1; procedural only).
        backend: A :class:`Backend` to use for every task instead of the task source's
            corpus (e.g. a ``LiveBackend``, or a ``ReplayBackend`` over a cassette).
        corpus: Corpus file for the loader specs (an error with procedural tasks).
        cache_dir: Where corpus indexes are saved (None: in memory).
        instructions: Developer instructions placed before the question.
        render_mode: None or ``"ansi"``.
        **kwargs: Fields of :class:`~agent_envs.core.EnvConfig` (here ``max_turns=32`` and
            ``max_tokens=65536`` by default), :class:`BrowserToolConfig` and
            :class:`BrowserConfig`, and the procedural knobs (``hops``, ``distractors``,
            ``deep_evidence``, ``table_only``, ``paraphrase``, ``entities``,
            ``questions_per_world``).
    """

    env_id = "browser-v0"
    config_classes = (EnvConfig, BrowserToolConfig, BrowserConfig)
    extra_arguments = _KNOBS
    # Multi-hop browsing takes more turns and tokens than the shared defaults allow.
    budget_defaults: Mapping[str, Any] = {"max_turns": 32, "max_tokens": 65_536}
    default_instructions = DEFAULT_INSTRUCTIONS

    def __init__(self, *, task_source: str | BrowserTaskSource | None = None,
                 tasks: str | BrowserTaskSource | None = None,
                 split: Split = "train", difficulty: int | None = None,
                 backend: Backend | None = None,
                 corpus: str | None = None, cache_dir: str | None = None,
                 instructions: str | None = None,
                 render_mode: str | None = None, codec: HarmonyCodec | None = None,
                 **kwargs: Any) -> None:
        from agent_envs.tools.browser import BrowserPart

        configs, knobs = self.split_kwargs(kwargs)
        part = BrowserPart(BrowserToolConfig(**configs[BrowserToolConfig]), backend=backend)
        self.browser_config = BrowserConfig(**configs[BrowserConfig])
        if "hops" in knobs and isinstance(knobs["hops"], list):
            knobs["hops"] = tuple(knobs["hops"])
        spec = one_spec(task_source, tasks)
        source = make_browser_tasks("procedural" if spec is None else spec,
                                    difficulty=difficulty, corpus=corpus,
                                    cache_dir=cache_dir, split=split, **knobs)
        self._final_text: str | None = None
        self._judged: tuple[str, Judgement] | None = None
        self._compose(parts=(part,), source=source, split=split, configs=configs,
                      instructions=instructions, render_mode=render_mode, codec=codec)

    @property
    def tool(self) -> BrowserTool | None:
        """This episode's browser (page stack and backend); None before the first reset."""
        return self.tools[0].tool  # type: ignore[attr-defined]

    @property
    def tool_config(self) -> BrowserToolConfig:
        """The browser tool's settings."""
        return self.tools[0].config  # type: ignore[attr-defined]

    def initial_messages(self, task: Task) -> list[Any]:
        self._final_text, self._judged = None, None
        return super().initial_messages(task)

    # -- judging ----------------------------------------------------------------------

    def record_final(self, final_text: str) -> None:
        self._final_text = final_text

    def verify(self, task: Task, final_text: str) -> Verdict:
        """Exact match with the answer or an alias (pure; see
        :func:`agent_envs.envs.browser.verifier.verify`)."""
        views = self.tool.views if self.tool is not None else []
        return verifier.verify(task, final_text, views)[0]

    @property
    def _judgement(self) -> Judgement | None:
        """The judgement of the last final answer (F1, citations, evidence recall)."""
        if self._final_text is None or self.task is None:
            return None
        if self._judged is None or self._judged[0] != self._final_text:
            views = self.tool.views if self.tool is not None else []
            self._judged = (self._final_text,
                            verifier.verify(self.task, self._final_text, views)[1])
        return self._judged[1]

    def _reward_components(self, verdict: Verdict | None, infra_error: str | None
                           ) -> dict[str, float]:
        comps = super()._reward_components(verdict, infra_error)
        j = self._judgement if verdict is not None else None
        if self.browser_config.reward == "f1":
            comps.pop("correct")
            comps = {"f1": j.f1 if j else 0.0, **comps}
        if self.browser_config.citation_weight:
            comps["citations"] = self.browser_config.citation_weight * (
                j.citation_precision if j else 0.0)
        if self.browser_config.evidence_weight:
            comps["evidence_recall"] = self.browser_config.evidence_weight * (
                j.evidence_recall if j else 0.0)
        return comps

    def family_info(self, done: bool) -> dict[str, Any]:
        """``browser``: the cursor and pages opened; at the end also the ``judgement``."""
        info = super().family_info(done)
        if done and self._final_text is not None:
            j = self._judgement
            if j is not None:
                info["browser"]["judgement"] = j.as_info()
        return info
