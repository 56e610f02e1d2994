"""Tools as parts of an env: one small interface (:class:`ToolPart`) and its three kinds.

    >>> import agent_envs
    >>> env = agent_envs.make("agent", tools=["python", "browser"])

* ``python`` (:class:`~agent_envs.tools.python.PythonPart`): a sandbox session per episode;
* ``browser`` (:class:`~agent_envs.tools.browser.BrowserPart`): a backend and the page stack;
* ``functions`` (:class:`~agent_envs.tools.functions.FunctionsPart`): a toolset of developer
  functions.

:func:`make_part` builds one by name (importing its module only then: the browser needs the
``[browser]`` extra, functions the ``[functions]`` extra).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Any

from agent_envs.errors import MissingDependencyError, UnknownArgumentError
from agent_envs.tools.base import Declaration, ToolCall, ToolOutcome, ToolPart

__all__ = ["PART_NAMES", "Declaration", "ToolCall", "ToolOutcome", "ToolPart", "make_part",
           "part_class"]

#: name -> ("module:Class", the extra its dependencies come with)
_PARTS: dict[str, tuple[str, str | None]] = {
    "python": ("agent_envs.tools.python:PythonPart", None),
    "browser": ("agent_envs.tools.browser:BrowserPart", "browser"),
    "functions": ("agent_envs.tools.functions:FunctionsPart", "functions"),
}
#: The tool names ``tools=[...]`` takes, in the reference's order (chat.py declares the
#: browser first, then python; developer functions live in the developer message).
PART_NAMES: tuple[str, ...] = ("browser", "python", "functions")


def part_class(name: str) -> type[ToolPart]:
    """The :class:`ToolPart` class called ``name``.

    Raises:
        UnknownArgumentError: no such tool (with a did-you-mean).
        MissingDependencyError: its extra is not installed.
    """
    if name not in _PARTS:
        close = difflib.get_close_matches(str(name), list(_PARTS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise UnknownArgumentError(
            f"tools has an unknown tool {name!r}{hint} Tools: {', '.join(PART_NAMES)} (or a "
            f"ToolPart instance; functions: a list of callables is a 'functions' tool)")
    path, extra = _PARTS[name]
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as e:
        if extra is None or e.name is None or e.name.split(".")[0] == "agent_envs":
            raise
        raise MissingDependencyError(
            f"the {name} tool needs the {e.name!r} module, which comes with the [{extra}] "
            f"extra: pip install 'agent-envs[{extra}]'") from e


def config_class(name: str) -> type | None:
    """The settings dataclass of tool ``name``, or None when its extra is missing."""
    try:
        return part_class(name).config_class
    except MissingDependencyError:
        return None


def make_part(name: str, configs: Mapping[type, Mapping[str, Any]], **options: Any) -> ToolPart:
    """Tool ``name`` with its settings from ``configs`` (config class -> field values) and
    ``options`` (``sandbox_instance=`` for python, ``backend=`` for the browser, ``tools=``
    for functions)."""
    cls = part_class(name)
    values = dict(configs.get(cls.config_class, {})) if cls.config_class else {}
    config = cls.config_class(**values) if cls.config_class else None
    return cls(config, **options)  # type: ignore[call-arg]
