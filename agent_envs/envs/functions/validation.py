"""Argument schemas: normalising them to JSON Schema and validating calls against them.

Three modes (``FunctionsEnv(validation=...)``):

``strict`` (default)
    The schema as given, tightened: every object that lists ``properties`` and does not
    say otherwise gets ``additionalProperties: false`` (no extra keys, at every depth).
    Types, ``required``, ``enum`` and nested objects/arrays are checked by ``jsonschema``.
``lax`` (opt-in)
    The schema exactly as the developer wrote it (extra keys allowed unless it forbids
    them).
``off``
    Only "the arguments are a JSON object"; nothing else is checked.

BFCL's function documents use a Python flavour of JSON Schema (``dict``, ``float``,
``tuple``, ``any``); :func:`to_json_schema` maps them to JSON Schema so openai-harmony
renders them and ``jsonschema`` checks them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, Literal

import jsonschema

__all__ = ["ArgumentValidator", "ValidationMode", "get_validator", "strict_schema",
           "to_json_schema"]

ValidationMode = Literal["strict", "lax", "off"]

# BFCL's type names (Python flavour) -> JSON Schema.
_TYPE_MAP = {"dict": "object", "float": "number", "tuple": "array", "list": "array",
             "str": "string", "int": "integer", "bool": "boolean"}
_JSON_TYPES = {"object", "number", "array", "string", "integer", "boolean", "null"}


def to_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` in JSON Schema: BFCL's ``dict``/``float``/``tuple`` become
    ``object``/``number``/``array`` and ``any`` drops its type constraint, recursively."""
    out = copy.deepcopy(dict(schema))
    _normalise(out)
    if "type" not in out and "properties" in out:
        out["type"] = "object"
    return out


def _normalise(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _normalise(item)
        return
    if not isinstance(node, dict):
        return
    t = node.get("type")
    if isinstance(t, str):
        if t in _TYPE_MAP:
            node["type"] = _TYPE_MAP[t]
        elif t not in _JSON_TYPES:  # "any", "" and other names JSON Schema lacks
            del node["type"]
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        sub = node.get(key)
        if isinstance(sub, dict):
            for v in sub.values():
                _normalise(v)
    for key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "not",
                "prefixItems"):
        if key in node:
            _normalise(node[key])


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` where every object with ``properties`` (and no explicit
    ``additionalProperties``) refuses extra keys."""
    out = copy.deepcopy(dict(schema))
    _tighten(out)
    return out


def _tighten(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _tighten(item)
        return
    if not isinstance(node, dict):
        return
    props = node.get("properties")
    if isinstance(props, dict) and props and "additionalProperties" not in node:
        node["additionalProperties"] = False
    for key in ("properties", "$defs", "definitions"):
        sub = node.get(key)
        if isinstance(sub, dict):
            for v in sub.values():
                _tighten(v)
    for key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems"):
        if key in node:
            _tighten(node[key])


def _path(error: jsonschema.ValidationError) -> str:
    parts = ["$"]
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else f".{p}")
    return "".join(parts)


def _flatten(errors: Any) -> list[jsonschema.ValidationError]:
    """anyOf/oneOf errors replaced by the problems of the one alternative whose type fits
    (``Address | None`` given a wrong address: the address's own field errors)."""
    out = []
    for err in errors:
        if err.context:
            branches: dict[Any, list[jsonschema.ValidationError]] = {}
            for sub in err.context:
                branches.setdefault(sub.relative_schema_path[0], []).append(sub)
            fitting = [subs for subs in branches.values()
                       if not any(s.validator == "type" and not s.relative_path for s in subs)]
            if len(fitting) == 1:
                out.extend(_flatten(fitting[0]))
                continue
        out.append(err)
    return out


class ArgumentValidator:
    """Checks call arguments against one function's parameter schema.

    Args:
        schema: JSON Schema of the arguments object (already normalised).
        mode: ``strict``, ``lax`` or ``off`` (see the module docstring).

    Raises:
        ValueError: ``mode`` is unknown, or the schema itself is not valid JSON Schema
            (the message names the problem; fix the tool's schema).
    """

    def __init__(self, schema: Mapping[str, Any], mode: ValidationMode = "strict") -> None:
        if mode not in ("strict", "lax", "off"):
            raise ValueError(f"validation mode must be 'strict', 'lax' or 'off', got {mode!r}")
        self.mode = mode
        self.schema = strict_schema(schema) if mode == "strict" else dict(schema)
        cls = jsonschema.validators.validator_for(self.schema,
                                                  default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(self.schema)
        except jsonschema.SchemaError as e:
            raise ValueError(f"invalid parameter schema: {e.message} (at "
                             f"{'/'.join(map(str, e.absolute_path)) or 'the top'}); "
                             f"fix the tool's JSON Schema") from None
        self._validator = cls(self.schema)

    def errors(self, arguments: Any) -> list[str]:
        """Readable problems with ``arguments`` (empty when they are valid), each with the
        field path (``$.items[0].qty: 'x' is not of type 'integer'``), sorted."""
        if not isinstance(arguments, dict):
            return [f"$: the arguments must be a JSON object, got {type(arguments).__name__}"]
        if self.mode == "off":
            return []
        out = []
        for err in _flatten(self._validator.iter_errors(arguments)):
            msg = err.message
            if err.validator == "additionalProperties" and err.validator_value is False:
                allowed = sorted((err.schema.get("properties") or {}).keys())
                msg += f" (allowed: {', '.join(allowed) or 'none'})"
            if len(msg) > 300:  # a huge value would flood the context
                msg = msg[:200] + f" ...[{len(msg) - 300} chars]... " + msg[-100:]
            out.append(f"{_path(err)}: {msg}")
        return sorted(set(out))


_CACHE: dict[tuple[str, str], ArgumentValidator] = {}


def get_validator(schema: Mapping[str, Any], mode: ValidationMode = "strict"
                  ) -> ArgumentValidator:
    """A shared validator for ``schema`` (checking a schema costs ~1 ms; tools that are
    rebuilt every episode, such as BFCL's, reuse the first one).

    Raises:
        ValueError: as :class:`ArgumentValidator`.
    """
    key = (json.dumps(schema, sort_keys=True, default=str), mode)
    v = _CACHE.get(key)
    if v is None:
        if len(_CACHE) >= 8192:
            _CACHE.clear()
        v = _CACHE[key] = ArgumentValidator(schema, mode)
    return v
