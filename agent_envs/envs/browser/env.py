"""``browser``: gpt-oss with its built-in browsing tool (``browser.search``/``open``/``find``).

The system message declares the tool exactly as gpt-oss was trained with it
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
import json
from typing import Any, Literal

# The [browser] extra, imported here so that a missing one is reported when the env is made
# (agent_envs.make names the extra to install), not in the middle of an episode.
import bm25s  # noqa: F401
import html2text  # noqa: F401
import lxml.html  # noqa: F401
import numpy as np
import openai_harmony as oh

from agent_envs.core import EnvConfig, HarmonyEnv, ToolCall, ToolOutcome, check_field_types
from agent_envs.envs.browser.backends import Backend
from agent_envs.envs.browser.tasks import BrowserTaskSource, ProceduralBrowserTasks
from agent_envs.envs.browser.tool import BrowserTool, BrowserToolConfig
from agent_envs.envs.browser.verifier import Judgement, judge
from agent_envs.errors import UnknownTaskError
from agent_envs.harmony import HarmonyCodec, SystemConfig
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
    """Settings of the browser env (besides the tool's :class:`BrowserToolConfig`).

    Attributes:
        reward: ``"em"`` (1 for an exact match with the answer or an alias) or ``"f1"``
            (the best SQuAD F1).
        citation_weight: Reward term: weight times the share of citations that check out.
        evidence_weight: Reward term: weight times the evidence-page recall.
        instructions: Developer instructions placed before the question.
    """

    reward: Literal["em", "f1"] = "em"
    citation_weight: float = 0.0
    evidence_weight: float = 0.0
    instructions: str = DEFAULT_INSTRUCTIONS

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


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    BrowserEnv.check_arguments(kwargs)
    groups = [{f.name for f in dataclasses.fields(c)}
              for c in (EnvConfig, BrowserToolConfig, BrowserConfig)]
    groups.append(set(_KNOBS))
    out: list[dict[str, Any]] = [{} for _ in groups]
    for key, value in kwargs.items():
        out[next(i for i, names in enumerate(groups) if key in names)][key] = value
    return tuple(out)


class BrowserEnv(HarmonyEnv):
    """gpt-oss answering questions with its browser tool.

    Args:
        task_source: ``"procedural"`` (default), ``"search-r1:QA_FILE"``,
            ``"browsecomp-plus:QUERIES_FILE"``, or a ``BrowserTaskSource``.
        split: ``"train"`` or ``"test"``.
        difficulty: Procedural difficulty preset, 1..5 (default 1; procedural only).
        backend: A :class:`Backend` to use for every task instead of the task source's
            corpus (e.g. a ``LiveBackend``, or a ``ReplayBackend`` over a cassette).
        corpus: Corpus file for the loader specs (an error with procedural tasks).
        cache_dir: Where corpus indexes are saved (None: in memory).
        render_mode: None or ``"ansi"``.
        **kwargs: Fields of :class:`~agent_envs.core.EnvConfig`,
            :class:`BrowserToolConfig` and :class:`BrowserConfig`, and the procedural
            knobs (``hops``, ``distractors``, ``deep_evidence``, ``table_only``,
            ``paraphrase``, ``entities``, ``questions_per_world``).
    """

    env_id = "browser-v0"
    config_classes = (EnvConfig, BrowserToolConfig, BrowserConfig)
    extra_arguments = _KNOBS

    def __init__(self, *, task_source: str | BrowserTaskSource = "procedural",
                 split: Split = "train", difficulty: int | None = None,
                 backend: Backend | None = None,
                 corpus: str | None = None, cache_dir: str | None = None,
                 render_mode: str | None = None, codec: HarmonyCodec | None = None,
                 **kwargs: Any) -> None:
        env_kw, tool_kw, browser_kw, knobs = _split_kwargs(kwargs)
        # Multi-hop browsing takes more turns and tokens than the shared defaults allow.
        env_kw.setdefault("max_turns", 32)
        env_kw.setdefault("max_tokens", 65_536)
        self.tool_config = BrowserToolConfig(**tool_kw)
        self.browser_config = BrowserConfig(**browser_kw)
        if "hops" in knobs and isinstance(knobs["hops"], list):
            knobs["hops"] = tuple(knobs["hops"])
        source = make_browser_tasks(task_source, difficulty=difficulty, corpus=corpus,
                                    cache_dir=cache_dir, split=split, **knobs)
        super().__init__(task_source=source, split=split, config=EnvConfig(**env_kw),
                         render_mode=render_mode, codec=codec)
        self._fixed_backend = backend
        self.tool: BrowserTool | None = None
        self._judgement: Judgement | None = None

    # -- conversation -----------------------------------------------------------------

    def initial_messages(self, task: Task) -> list[oh.Message]:
        backend = self._fixed_backend
        if backend is None:
            assert isinstance(self.task_source, BrowserTaskSource)
            backend = self.task_source.backend_for(task)  # type: ignore[arg-type]
        self.tool = BrowserTool(backend, self.tool_config)
        self._judgement = None
        system = SystemConfig(reasoning_effort=self.config.reasoning_effort,
                              conversation_date=self.config.conversation_date,
                              browser_tool=True)
        return [self.codec.system_message(system),
                self.codec.developer_message(self.browser_config.instructions),
                self.codec.user_message(task.prompt)]

    def tool_names(self) -> list[str]:
        return ["browser.search", "browser.open", "browser.find"]

    # -- the tool ---------------------------------------------------------------------

    def _route(self, call: ToolCall) -> str | ToolOutcome:
        if call.recipient == "browser":  # the reference: no function, no arguments
            text = json.dumps({"error": "Invalid function arguments"})
            return ToolOutcome(text=text, ok=False, error=text, author="browser")
        if not call.recipient.startswith("browser."):
            return self.unknown_recipient(call)
        return call.recipient[len("browser."):]

    @staticmethod
    def _outcome(result: Any, seconds: float = 0.0) -> ToolOutcome:
        return ToolOutcome(text=result.text, ok=result.ok, error=result.error,
                           infra_error=result.infra_error, author=result.author,
                           duration_s=seconds)

    def call_tool(self, call: ToolCall) -> ToolOutcome:
        route = self._route(call)
        if isinstance(route, ToolOutcome):
            return route
        assert self.tool is not None
        return self._outcome(self.tool.call(route, call.text))

    async def acall_tool(self, call: ToolCall) -> ToolOutcome:
        route = self._route(call)
        if isinstance(route, ToolOutcome):
            return route
        assert self.tool is not None
        return self._outcome(await self.tool.acall(route, call.text))

    # -- judging ----------------------------------------------------------------------

    def verify(self, task: Task, final_text: str) -> Verdict:
        aliases = getattr(task, "aliases", ())
        evidence = getattr(task, "evidence", ())
        views = self.tool.views if self.tool is not None else []
        j = judge(final_text, task.answer, aliases, evidence, views)
        self._judgement = j
        correct = j.em
        reason = "match" if j.em else (f"expected {task.answer!r}, got {j.answer!r}"
                                       if j.answer else "no answer found")
        return Verdict(correct=bool(correct), extracted=j.answer, reason=reason)

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

    def _browser_info(self, done: bool) -> dict[str, Any]:
        tool = self.tool
        info: dict[str, Any] = {
            "cursor": tool.current_cursor if tool is not None else -1,
            "pages_opened": sum(v.kind == "page" for v in tool.views) if tool else 0,
        }
        if done and self._judgement is not None:
            info["judgement"] = self._judgement.as_info()
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        info["browser"] = self._browser_info(False)
        return obs, info

    async def areset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
                     ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = await super().areset(seed=seed, options=options)
        info["browser"] = self._browser_info(False)
        return obs, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        info["browser"] = self._browser_info(terminated or truncated)
        return obs, reward, terminated, truncated, info

    async def astep(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = await super().astep(action)
        info["browser"] = self._browser_info(terminated or truncated)
        return obs, reward, terminated, truncated, info
