"""Developer functions as tools: from Python callables, from JSON Schema, from stateful classes.

* :func:`tool` turns a function (sync or async) into a :class:`Tool`. The argument schema
  comes from its type hints through ``pydantic`` and the descriptions from its docstring
  through ``docstring-parser`` (Google, NumPy, reST and Epydoc styles). Arguments are
  converted to the annotated types by the same pydantic model before the call.
* :func:`tool_from_schema` takes a raw JSON Schema (or an OpenAI tool dict) and a callable
  (or none: the call is then recorded and answered with a fixed text, as BFCL's
  single-turn tasks need).
* :class:`StatefulTools` wraps a class whose public methods are tools; :meth:`StatefulTools.bind`
  builds a *fresh instance* from the config every episode, so no state leaks between
  episodes.

Harmony carries a function as ``functions.NAME``; names it cannot carry (``math.factorial``,
``my-tool``) are mapped reversibly by :class:`ToolNames` and the map is recorded.
"""

from __future__ import annotations

import copy
import inspect
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import docstring_parser
import pydantic

from agent_envs.envs.functions.validation import (
    ArgumentValidator,
    ValidationMode,
    get_validator,
    to_json_schema,
)
from agent_envs.errors import AgentEnvsError

__all__ = ["StatefulTools", "Tool", "ToolNames", "ToolSet", "tool", "tool_from_schema"]

_EMPTY_PARAMS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True, kw_only=True)
class Tool:
    """One function the model may call.

    Attributes:
        name: The developer's name for it (may contain characters harmony cannot carry;
            see :class:`ToolNames`).
        description: What it does; the model reads this.
        parameters: JSON Schema of its single object argument.
        fn: The implementation, called with the validated arguments as keywords (sync or
            async). None: the call is only recorded (BFCL's single-turn tasks).
        convert: Turns validated JSON arguments into the keyword arguments ``fn`` takes
            (pydantic conversion for callables); None passes them as they are.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: dict(_EMPTY_PARAMS))
    fn: Callable[..., Any] | None = None
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def is_async(self) -> bool:
        """True when ``fn`` is a coroutine function."""
        return self.fn is not None and inspect.iscoroutinefunction(self.fn)

    def validator(self, mode: ValidationMode) -> ArgumentValidator:
        """The (cached) argument validator for ``mode``."""
        cache = self.__dict__.setdefault("_validators", {})
        if mode not in cache:
            cache[mode] = get_validator(self.parameters, mode)
        return cache[mode]

    def spec(self) -> dict[str, Any]:
        """``{"name", "description", "parameters"}`` (the developer's name)."""
        return {"name": self.name, "description": self.description,
                "parameters": dict(self.parameters)}


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items()
                if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _inline_refs(node: Any, defs: Mapping[str, Any], depth: int = 0) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and depth < 8:
            target = copy.deepcopy(defs.get(ref.removeprefix("#/$defs/"), {}))
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _inline_refs({**target, **rest}, defs, depth + 1)
        return {k: _inline_refs(v, defs, depth) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs, depth) for v in node]
    return node


def _pydantic_errors(e: pydantic.ValidationError) -> list[str]:
    out = []
    for err in e.errors(include_url=False):
        loc = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        out.append(f"{loc}: {err['msg']}")
    return out


class ArgumentConversionError(AgentEnvsError, ValueError):
    """Validated JSON arguments could not be converted to the function's declared types."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None,
         description: str | None = None) -> Any:
    """A :class:`Tool` from a Python function (also usable as a decorator).

    The schema comes from the type hints (any type pydantic understands: ``int``,
    ``Literal[...]``, ``list[float]``, ``TypedDict``, pydantic models, ``Enum``, ...) and
    the parameter descriptions from the docstring. Parameters with defaults are optional.

    Args:
        fn: A sync or async function (or a bound method).
        name: The tool name (default: ``fn.__name__``).
        description: Overrides the docstring's summary.

    Raises:
        TypeError: ``fn`` takes ``*args``/``**kwargs`` or a hint pydantic cannot describe
            (the message names the parameter).
    """
    if fn is None:
        return lambda f: tool(f, name=name, description=description)
    return _tool(fn, name=name, description=description, skip_first=False)


def _tool(fn: Callable[..., Any], *, name: str | None, description: str | None,
          skip_first: bool) -> Tool:
    if not callable(fn):
        raise TypeError(f"tool() needs a function, got {type(fn).__name__}: {fn!r}")
    tool_name = name or getattr(fn, "__name__", None)
    if not tool_name:
        raise TypeError(f"cannot name the tool for {fn!r}; pass name='...'")
    doc = docstring_parser.parse(inspect.getdoc(fn) or "")
    param_docs = {p.arg_name: (p.description or "") for p in doc.params}
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as e:  # noqa: BLE001 - unresolvable forward references
        raise TypeError(f"cannot resolve the type hints of {tool_name!r}: {e}") from None
    fields: dict[str, Any] = {}
    params = list(inspect.signature(fn).parameters.items())
    for pname, p in params[1:] if skip_first else params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"tool {tool_name!r}: parameter {p}: *args/**kwargs cannot be "
                            "described to the model; name every parameter")
        if p.kind is p.POSITIONAL_ONLY:
            raise TypeError(f"tool {tool_name!r}: parameter {pname!r} is positional-only; "
                            "tools are called with keyword arguments")
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[pname] = (hints.get(pname, Any),
                         pydantic.Field(default, description=param_docs.get(pname) or None))
    try:
        model = pydantic.create_model(f"{tool_name}_arguments",
                                      __config__=pydantic.ConfigDict(extra="forbid"), **fields)
        raw = model.model_json_schema()
    except (pydantic.PydanticUserError, pydantic.errors.PydanticSchemaGenerationError) as e:
        raise TypeError(f"tool {tool_name!r}: pydantic cannot describe its parameters: "
                        f"{e}") from None
    schema = _strip_titles(_inline_refs(raw, raw.get("$defs", {})))
    schema.setdefault("properties", {})
    summary = description if description is not None else " ".join(
        s for s in (doc.short_description, doc.long_description) if s)

    def convert(args: dict[str, Any]) -> dict[str, Any]:
        try:
            m = model.model_validate(args)
        except pydantic.ValidationError as e:
            raise ArgumentConversionError(_pydantic_errors(e)) from None
        return {k: getattr(m, k) for k in args}

    return Tool(name=tool_name, description=summary, parameters=schema, fn=fn, convert=convert)


def tool_from_schema(spec: Mapping[str, Any] | str, fn: Callable[..., Any] | None = None, *,
                     parameters: Mapping[str, Any] | None = None,
                     description: str = "", check: bool = True) -> Tool:
    """A :class:`Tool` from a JSON Schema.

    Args:
        spec: A tool name, or a dict ``{"name", "description", "parameters"}`` (an OpenAI
            ``{"type": "function", "function": {...}}`` dict works too). BFCL's Python-flavoured
            types (``dict``, ``float``, ``tuple``, ``any``) are mapped to JSON Schema.
        fn: Called with the validated arguments as keywords; None records the call only.
        parameters: The schema, when ``spec`` is a name.
        description: The description, when ``spec`` is a name.
        check: Check the schema against the JSON Schema meta-schema now (default). Checking
            costs ~10-40 ms per schema; data sets of vetted schemas that build thousands of
            tools (BFCL) pass False, and the schema is then checked when the tool is first
            called.

    Raises:
        ValueError: no name, the schema is not an object schema, or not valid JSON Schema.
    """
    if isinstance(spec, str):
        inner: Mapping[str, Any] = {"name": spec, "description": description,
                                    "parameters": parameters or _EMPTY_PARAMS}
    else:
        inner = spec.get("function", spec)  # type: ignore[assignment]
    name = inner.get("name")
    if not name or not isinstance(name, str):
        raise ValueError(f"a tool spec needs a 'name' string, got {dict(inner)!r:.200}; "
                         'expected {"name": ..., "description": ..., "parameters": {...}}')
    params = to_json_schema(inner.get("parameters") or _EMPTY_PARAMS)
    if params.get("type", "object") != "object":
        raise ValueError(f"tool {name!r}: parameters must be an object schema "
                         f"(type 'object'), got type {params.get('type')!r}")
    params.setdefault("type", "object")
    if check:
        try:
            get_validator(params, "lax")  # a broken schema is the developer's error: say so now
        except ValueError as e:
            raise ValueError(f"tool {name!r}: {e}") from None
    return Tool(name=name, description=str(inner.get("description") or ""), parameters=params,
                fn=fn)


class StatefulTools:
    """A class whose public methods are tools, with a fresh instance every episode.

    Args:
        cls: The class. Public methods (no leading ``_``) become tools.
        config: Constructor keyword arguments (deep-copied per episode), or the argument
            of ``setup``.
        setup: Optional ``setup(instance, config)`` run after ``cls()`` instead of passing
            ``config`` to the constructor (BFCL's backends load their scenario this way).
        methods: Only these method names (default: all public methods).
        schemas: Tool specs (``{"name", "description", "parameters"}``) to use instead of
            deriving schemas from the methods' hints (BFCL ships its own documents).

    Raises:
        ValueError: a name in ``methods`` or ``schemas`` is not a method of ``cls``.
    """

    def __init__(self, cls: type, *, config: Mapping[str, Any] | None = None,
                 setup: Callable[[Any, dict[str, Any]], None] | None = None,
                 methods: Sequence[str] | None = None,
                 schemas: Sequence[Mapping[str, Any]] | None = None) -> None:
        self.cls = cls
        self.config = dict(config or {})
        self.setup = setup
        public = [n for n, _ in inspect.getmembers(cls, callable) if not n.startswith("_")]
        names = list(methods) if methods is not None else (
            [s["name"] for s in schemas] if schemas is not None else public)
        missing = [n for n in names if n not in public]
        if missing:
            raise ValueError(f"{cls.__name__} has no public method(s) {missing}; "
                             f"its public methods: {', '.join(public)}")
        self.methods = tuple(names)
        self._schemas = {s["name"]: s for s in schemas} if schemas is not None else None
        self._templates = {n: self._template(n) for n in self.methods}

    def _template(self, name: str) -> Tool:
        if self._schemas is not None:
            return tool_from_schema(self._schemas[name])
        fn = inspect.getattr_static(self.cls, name)
        if isinstance(fn, (staticmethod, classmethod)):
            return _tool(getattr(self.cls, name), name=name, description=None, skip_first=False)
        return _tool(fn, name=name, description=None, skip_first=True)

    def tools(self) -> list[Tool]:
        """The tools without an instance (schemas only)."""
        return list(self._templates.values())

    def new_instance(self) -> Any:
        """A fresh instance built from the config."""
        cfg = copy.deepcopy(self.config)
        if self.setup is not None:
            inst = self.cls()
            self.setup(inst, cfg)
            return inst
        return self.cls(**cfg)

    def bind(self) -> tuple[Any, list[Tool]]:
        """A fresh instance and its tools (bound methods, same schemas)."""
        inst = self.new_instance()
        out = []
        for name, t in self._templates.items():
            bound = Tool(name=t.name, description=t.description, parameters=t.parameters,
                         fn=getattr(inst, name), convert=t.convert)
            # Share the template's validators: schemas do not change between episodes.
            bound.__dict__["_validators"] = t.__dict__.setdefault("_validators", {})
            out.append(bound)
        return inst, out


_HARMONY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ToolNames:
    """Reversible map between the developer's tool names and names harmony can carry.

    A name that is a valid identifier is kept; others get every other character replaced
    by ``_`` (``math.factorial`` -> ``math_factorial``), a leading ``_`` before a digit,
    and ``_2``, ``_3``, ... on a collision.

    Raises:
        ValueError: two tools share a name.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.to_harmony: dict[str, str] = {}
        self.to_original: dict[str, str] = {}
        names = list(names)
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate tool name(s) {dup}; give every tool a unique name")
        for n in names:  # valid names first, so they keep their own spelling
            if _HARMONY_NAME.match(n):
                self._add(n, n)
        for n in names:
            if not _HARMONY_NAME.match(n):
                base = self.sanitize(n)
                cand, k = base, 2
                while cand in self.to_original:
                    cand, k = f"{base}_{k}", k + 1
                self._add(n, cand)

    @staticmethod
    def sanitize(name: str) -> str:
        """``name`` with every character harmony cannot carry replaced (no collision check)."""
        if _HARMONY_NAME.match(name):
            return name
        base = re.sub(r"[^A-Za-z0-9_]", "_", name) or "_"
        return "_" + base if base[0].isdigit() else base

    def _add(self, original: str, harmony: str) -> None:
        self.to_harmony[original] = harmony
        self.to_original[harmony] = original

    @property
    def renamed(self) -> dict[str, str]:
        """Only the names that changed: ``{original: harmony_name}``."""
        return {o: h for o, h in self.to_harmony.items() if o != h}


class ToolSet:
    """The tools of one episode, by harmony name.

    Args:
        tools: The tools (bound to this episode's instances).
    """

    def __init__(self, tools: Sequence[Tool]) -> None:
        self._index(list(tools))

    def _index(self, tools: list[Tool]) -> None:
        self.tools = tools
        self.names = ToolNames(t.name for t in tools)
        self._by_harmony = {self.names.to_harmony[t.name]: t for t in tools}

    def get(self, harmony_name: str) -> Tool | None:
        """The tool the model calls as ``functions.<harmony_name>``, or None."""
        return self._by_harmony.get(harmony_name)

    def add(self, tools: Sequence[Tool]) -> None:
        """Add tools mid-episode (BFCL's held-out functions); existing names are kept."""
        self._index(self.tools + list(tools))

    def harmony_specs(self) -> list[dict[str, Any]]:
        """Specs for the developer message, under their harmony names."""
        return [{"name": self.names.to_harmony[t.name], "description": t.description,
                 "parameters": dict(t.parameters)} for t in self.tools]

    def harmony_names(self) -> list[str]:
        """The names the model sees, in declaration order."""
        return [self.names.to_harmony[t.name] for t in self.tools]
