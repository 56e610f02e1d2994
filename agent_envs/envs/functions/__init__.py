"""The ``functions`` environment family: developer functions called natively in harmony.

    >>> import agent_envs
    >>> env = agent_envs.make("functions", tasks="bfcl:simple_python")

Tools come from Python callables (:func:`tool`), JSON Schema (:func:`tool_from_schema`) or
stateful classes (:class:`StatefulTools`, a fresh instance per episode). Tasks: procedural
goals over stateful tool sets (``procedural``), the Berkeley Function Calling Leaderboard
from the installed ``bfcl-eval`` package (``bfcl:CATEGORY``), or JSONL (``jsonl:PATH``).
"""

from __future__ import annotations

from agent_envs.envs.functions import oracle as _oracle  # noqa: F401  (registers the oracle)
from agent_envs.envs.functions.env import DEFAULT_INSTRUCTIONS, FunctionsEnv, make_functions_source
from agent_envs.envs.functions.oracle import FunctionsOracle
from agent_envs.envs.functions.procedural import ProceduralFunctionTask, ProceduralFunctionTasks
from agent_envs.envs.functions.runtime import CallRecord, RunnerConfig, serialize_result
from agent_envs.envs.functions.tasks import CallsTask, EpisodeState, FunctionsTask
from agent_envs.envs.functions.tools import (
    StatefulTools,
    Tool,
    ToolNames,
    ToolSet,
    tool,
    tool_from_schema,
)
from agent_envs.envs.functions.verifier import VERIFIER_VERSION

__all__ = [
    "DEFAULT_INSTRUCTIONS", "VERIFIER_VERSION", "CallRecord", "CallsTask", "EpisodeState",
    "FunctionsEnv", "FunctionsOracle", "FunctionsTask", "ProceduralFunctionTask", "ProceduralFunctionTasks",
    "RunnerConfig", "StatefulTools", "Tool", "ToolNames", "ToolSet", "make_functions_source",
    "serialize_result", "tool", "tool_from_schema",
]
