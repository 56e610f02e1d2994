"""A viewer for rollouts and eval bundles: ``agent-envs view PATH``.

One self-contained HTML page per bundle, run or episodes file: the list of episodes (sort,
filter, search), each episode as harmony messages (decoded with the real codec), its tool calls
beside the tools' answers, the verdict and reward breakdown, and a raw-token view with the loss
mask and the sampler's log-probs. Two bundles compare on the tasks that flipped.
"""

from __future__ import annotations

from agent_envs.viewer.episode import episode_row, episode_view
from agent_envs.viewer.page import (
    PageStats,
    build_compare,
    build_viewer,
    bundle_viewer,
    default_output,
)
from agent_envs.viewer.serve import serve_page
from agent_envs.viewer.source import Source, ViewerError, load_source

__all__ = [
    "PageStats", "Source", "ViewerError", "build_compare", "build_viewer", "bundle_viewer",
    "default_output",
    "episode_row", "episode_view", "load_source", "serve_page",
]
