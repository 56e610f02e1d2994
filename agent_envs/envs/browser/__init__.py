"""The browser environment family: gpt-oss's built-in browsing tool, offline and live.

* ``tool``/``page``/``view``: the tool, byte-identical to OpenAI's reference browser;
* ``backends``/``corpus``/``live``/``cassette``: where pages come from (BM25 corpus,
  the web through httpx, record/replay cassettes); ``diskindex``/``docstore``: the corpus
  on disk at Wikipedia scale; ``synth``: a Wikipedia-shaped corpus generator;
* ``world``/``tasks``/``loaders``: procedural multi-hop worlds and dataset loaders;
* ``verifier``: EM/F1, citations, evidence recall; ``oracle``: a scripted solver;
* ``env``: ``BrowserEnv`` (``browser-v0``).
"""

from __future__ import annotations

from agent_envs.envs.browser.backends import (
    Backend,
    BackendError,
    BackendUnavailable,
    SearchHit,
    results_page,
)
from agent_envs.envs.browser.corpus import Corpus, CorpusBackend, CorpusError, Document
from agent_envs.envs.browser.diskindex import DiskCorpus, DiskCorpusBackend, build_index
from agent_envs.envs.browser.env import (
    DEFAULT_INSTRUCTIONS,
    BrowserConfig,
    BrowserEnv,
    make_browser_tasks,
)
from agent_envs.envs.browser.oracle import BrowserOracle
from agent_envs.envs.browser.page import Page, page_from_html, page_from_text
from agent_envs.envs.browser.tasks import (
    DIFFICULTIES,
    BrowserTask,
    BrowserTaskSource,
    ProceduralBrowserTasks,
)
from agent_envs.envs.browser.tool import BrowserResult, BrowserTool, BrowserToolConfig, View
from agent_envs.envs.browser.verifier import VERIFIER_VERSION, Judgement, judge
from agent_envs.envs.browser.world import World, WorldConfig
from agent_envs.oracle import register_oracle

__all__ = [
    "DEFAULT_INSTRUCTIONS", "DIFFICULTIES", "VERIFIER_VERSION", "Backend", "BackendError",
    "BackendUnavailable", "BrowserConfig", "BrowserEnv", "BrowserOracle", "BrowserResult",
    "BrowserTask", "BrowserTaskSource", "BrowserTool", "BrowserToolConfig", "Corpus", "CorpusBackend",
    "CorpusError", "DiskCorpus", "DiskCorpusBackend", "Document", "Judgement", "Page",
    "ProceduralBrowserTasks", "SearchHit", "View", "World", "WorldConfig", "build_index",
    "judge", "make_browser_tasks", "page_from_html", "page_from_text", "results_page",
]

register_oracle(BrowserTask, BrowserOracle)
