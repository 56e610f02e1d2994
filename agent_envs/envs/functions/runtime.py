"""Running one function call: parse, look up, validate, call with a time limit, serialise.

Every failure is an outcome, never an exception: the model sees a tool message from
``functions.NAME`` that says what to fix, and the :class:`CallRecord` says which kind of
failure it was (``info["call"]["error_kind"]`` in the env). Model output is only ever
parsed with ``json.loads``; nothing reaches ``eval``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import decimal
import difflib
import enum
import json
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any, Literal

import pydantic

from agent_envs.core import ToolCall, ToolOutcome, check_field_types
from agent_envs.envs.functions.tools import ArgumentConversionError, Tool, ToolSet
from agent_envs.envs.functions.validation import ValidationMode

__all__ = [
    "CallRecord", "ErrorKind", "FunctionRunner", "RunnerConfig", "result_text", "serialize_result",
    "truncate",
]

ErrorKind = Literal["constrain", "too_large", "json", "unknown_function", "schema", "exception",
                    "timeout", "result"]

#: Threads that run sync tools under a time limit. A call that times out keeps its thread
#: until it returns (Python cannot kill a thread); its instance belongs to that episode only.
_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=32,
                                                  thread_name_prefix="functions-call")


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """How calls are checked and run.

    Attributes:
        validation: ``strict`` (default), ``lax`` or ``off`` (see ``validation.py``).
        call_timeout_s: Wall-clock limit of one call; None runs the call in the env's own
            thread with no limit (fastest).
        max_argument_chars: Larger argument strings are refused before parsing.
        max_result_chars: Longer results keep their head and tail around a marker.
        record_only_text: What a call to a tool with no implementation returns.
    """

    validation: ValidationMode = "strict"
    call_timeout_s: float | None = 10.0
    max_argument_chars: int = 65_536
    max_result_chars: int = 8_000
    record_only_text: str = "The call was recorded; this tool returns no result."

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.validation not in ("strict", "lax", "off"):
            raise ValueError(f"validation must be 'strict', 'lax' or 'off', "
                             f"got {self.validation!r}")
        if self.call_timeout_s is not None and not self.call_timeout_s > 0:
            raise ValueError(f"call_timeout_s must be > 0 or None, got {self.call_timeout_s!r}")
        for name in ("max_argument_chars", "max_result_chars"):
            if int(getattr(self, name)) < 64:
                raise ValueError(f"{name} must be >= 64, got {getattr(self, name)!r}")


@dataclass(frozen=True, kw_only=True)
class CallRecord:
    """One call the model made, as the verifiers see it.

    Attributes:
        harmony_name: The name after ``functions.`` in the recipient.
        name: The developer's name of the tool, or None when there is no such tool.
        arguments: The parsed JSON arguments, or None when they did not parse.
        ok: The function ran and returned.
        error_kind: Why not, when not ok.
        error: A short description of the failure.
        text: The tool message the model saw.
        value: What the function returned (None when it did not run).
        result_str: The result as text *at the time of the call* (a later call may mutate
            a returned object): a ``str`` as it is, a ``dict`` as ``json.dumps`` (``str()``
            when that fails), anything else ``str()``; None when the function did not run.
        exception: ``str(exception)`` when the function raised.
        turn: Index of the user turn the call belongs to.
        duration_s: Wall-clock seconds of the call.
    """

    harmony_name: str
    name: str | None
    arguments: dict[str, Any] | None
    ok: bool
    error_kind: ErrorKind | None = None
    error: str | None = None
    text: str = ""
    value: Any = None
    result_str: str | None = None
    exception: str | None = None
    turn: int = 0
    duration_s: float = 0.0


def _json_default(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if type(value).__repr__ is not object.__repr__:  # e.g. mpmath's mpf: its own text
        return str(value)
    raise TypeError(f"values of type {type(value).__name__} are not JSON-serialisable")


def serialize_result(value: Any) -> str:
    """A function's return value as the text the model sees: a ``str`` as it is, anything
    else as JSON with sorted keys (sets sorted, dataclasses and pydantic models as dicts,
    dates in ISO format), so the same value always gives the same text.

    Raises:
        TypeError: the value (or something inside it) cannot be written as JSON.
    """
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=_json_default)
    except TypeError as e:
        if "not supported between instances" not in str(e):
            raise
        # Keys of mixed types cannot be sorted: keep insertion order (still deterministic).
        return json.dumps(value, ensure_ascii=False, default=_json_default)


def result_text(value: Any) -> str:
    """A value as text the way Python programs usually show it (BFCL's executor does the
    same): a ``str`` as it is, a ``dict`` as ``json.dumps`` (``str()`` when that fails),
    anything else ``str()``."""
    if type(value) is str:
        return value
    if type(value) is dict:
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, head and tail kept around a marker."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return (f"{text[: limit // 2]}\n[... {cut} characters truncated ...]\n"
            f"{text[len(text) - limit // 2:]}")


def _traceback_tail(e: BaseException, frames: int = 2) -> str:
    """The last frames of the traceback (file names without their directories: the model
    needs the function and the line, not the host's paths)."""
    summary = traceback.extract_tb(e.__traceback__)[-frames:]
    out = []
    for fr in summary:
        out.append(f'  File "{os.path.basename(fr.filename)}", line {fr.lineno}, in {fr.name}')
        if fr.line:
            out.append(f"    {fr.line.strip()}")
    return "Traceback (last frames):\n" + "\n".join(out)


class FunctionRunner:
    """Checks and runs the model's ``functions.*`` calls against one episode's tools.

    Args:
        toolset: The episode's tools.
        config: Limits and validation mode.
    """

    def __init__(self, toolset: ToolSet, config: RunnerConfig) -> None:
        self.toolset = toolset
        self.config = config

    # -- the steps before the call --------------------------------------------

    def _prepare(self, call: ToolCall, turn: int
                 ) -> tuple[CallRecord | None, Tool | None, dict[str, Any], dict[str, Any], str]:
        hname = call.recipient.removeprefix("functions.")
        tool = self.toolset.get(hname)
        name = None if tool is None else tool.name

        def fail(kind: ErrorKind, error: str, text: str,
                 args: dict[str, Any] | None = None) -> CallRecord:
            return CallRecord(harmony_name=hname, name=name, arguments=args, ok=False,
                              error_kind=kind, error=error, text=f"Error: {text}", turn=turn)

        ctype = (call.content_type or "").strip()
        if ctype and "json" not in ctype:
            return fail("constrain", f"content type {ctype!r} is not json",
                        f"function arguments must be JSON; write <|constrain|>json, not "
                        f"{ctype!r}, before <|message|>."), None, {}, {}, hname
        size = len(call.text)
        if size > self.config.max_argument_chars:
            return fail("too_large", f"arguments too large ({size} characters)",
                        f"the arguments are {size} characters long; the limit is "
                        f"{self.config.max_argument_chars}. Send shorter arguments."), \
                None, {}, {}, hname
        raw = call.text.strip()
        try:
            args = json.loads(raw) if raw else {}
        except json.JSONDecodeError as e:
            return fail("json", f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}",
                        f"the arguments are not valid JSON ({e.msg} at line {e.lineno} "
                        f"column {e.colno}). Send one JSON object, e.g. "
                        '{"name": "value"}.'), None, {}, {}, hname
        if not isinstance(args, dict):
            return fail("json", f"arguments are a JSON {type(args).__name__}, not an object",
                        f"the arguments must be one JSON object with the parameters as keys, "
                        f"got a JSON {type(args).__name__}."), None, {}, {}, hname
        if tool is None:
            names = self.toolset.harmony_names()
            close = difflib.get_close_matches(hname, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            return fail("unknown_function", f"unknown function {hname!r}",
                        f"there is no function {hname!r}.{hint} Available functions: "
                        f"{', '.join(names) or 'none'}.", args), None, args, args, hname
        problems = tool.validator(self.config.validation).errors(args)
        if not problems and tool.convert is not None:
            try:
                args_for_fn = tool.convert(args)
            except ArgumentConversionError as e:
                problems = e.problems
            else:
                return None, tool, args_for_fn, args, hname
        if problems:
            listing = "\n".join(f"- {p}" for p in problems[:20])
            more = f"\n- ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            return fail("schema", f"invalid arguments: {'; '.join(problems[:5])}",
                        f"invalid arguments for {hname}:\n{listing}{more}\n"
                        f"Fix these and call {hname} again.", args), None, args, args, hname
        return None, tool, args, args, hname

    def _finish(self, tool: Tool, hname: str, args: dict[str, Any], json_args: dict[str, Any],
                turn: int, started: float, value: Any = None, exc: BaseException | None = None,
                timed_out: bool = False) -> CallRecord:
        dur = time.perf_counter() - started
        base = {"harmony_name": hname, "name": tool.name, "arguments": json_args, "turn": turn,
                "duration_s": dur}
        if timed_out:
            t = self.config.call_timeout_s
            return CallRecord(**base, ok=False, error_kind="timeout",
                              error=f"timed out after {t:g} s",
                              text=f"Error: {hname} did not return within {t:g} seconds and was "
                                   f"abandoned. Try simpler arguments or another approach.")
        if exc is not None:
            tail = _traceback_tail(exc)
            return CallRecord(**base, ok=False, error_kind="exception",
                              error=f"{type(exc).__name__}: {exc}"[:300], exception=str(exc),
                              text=truncate(f"Error: {hname} raised {type(exc).__name__}: {exc}"
                                            f"\n{tail}", self.config.max_result_chars))
        if tool.fn is None:
            return CallRecord(**base, ok=True, text=self.config.record_only_text)
        base["result_str"] = result_text(value)
        try:
            text = serialize_result(value)
        except (TypeError, ValueError) as e:
            return CallRecord(**base, ok=False, error_kind="result", value=value,
                              error=f"unserialisable result: {e}",
                              text=f"Error: {hname} returned a result that cannot be shown "
                                   f"({e}).")
        if text == "":
            text = "(empty result)"
        return CallRecord(**base, ok=True, value=value,
                          text=truncate(text, self.config.max_result_chars))

    @staticmethod
    def outcome(record: CallRecord) -> ToolOutcome:
        """The env's tool outcome for a record."""
        return ToolOutcome(text=record.text, ok=record.ok, error=record.error,
                           timed_out=record.error_kind == "timeout",
                           duration_s=record.duration_s)

    # -- sync / async -----------------------------------------------------------

    def run(self, call: ToolCall, turn: int = 0) -> CallRecord:
        """Check and run one call (sync)."""
        refused, tool, args, json_args, hname = self._prepare(call, turn)
        if refused is not None:
            return refused
        assert tool is not None
        t0 = time.perf_counter()
        if tool.fn is None:
            return self._finish(tool, hname, args, json_args, turn, t0)
        timeout = self.config.call_timeout_s
        try:
            if timeout is None and not tool.is_async:
                value = tool.fn(**args)
            elif tool.is_async:
                fut = _EXECUTOR.submit(asyncio.run, tool.fn(**args))
                value = fut.result(timeout=timeout)
            else:
                fut = _EXECUTOR.submit(tool.fn, **args)
                value = fut.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            return self._finish(tool, hname, args, json_args, turn, t0, timed_out=True)
        except Exception as e:  # noqa: BLE001 - the tool's own failure is the model's data
            return self._finish(tool, hname, args, json_args, turn, t0, exc=e)
        return self._finish(tool, hname, args, json_args, turn, t0, value=value)

    async def arun(self, call: ToolCall, turn: int = 0) -> CallRecord:
        """Check and run one call (async: async tools are awaited, sync ones run in a thread
        when there is a time limit)."""
        refused, tool, args, json_args, hname = self._prepare(call, turn)
        if refused is not None:
            return refused
        assert tool is not None
        t0 = time.perf_counter()
        if tool.fn is None:
            return self._finish(tool, hname, args, json_args, turn, t0)
        timeout = self.config.call_timeout_s
        try:
            if tool.is_async:
                value = await asyncio.wait_for(tool.fn(**args), timeout)
            elif timeout is None:
                value = tool.fn(**args)
            else:
                loop = asyncio.get_running_loop()
                fut = loop.run_in_executor(_EXECUTOR, lambda: tool.fn(**args))
                value = await asyncio.wait_for(fut, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return self._finish(tool, hname, args, json_args, turn, t0, timed_out=True)
        except Exception as e:  # noqa: BLE001
            return self._finish(tool, hname, args, json_args, turn, t0, exc=e)
        return self._finish(tool, hname, args, json_args, turn, t0, value=value)

