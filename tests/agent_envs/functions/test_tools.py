from __future__ import annotations

import asyncio
import enum
from typing import Literal

import jsonschema
import pydantic
import pytest

from agent_envs.envs.functions import (
    StatefulTools,
    Tool,
    ToolNames,
    ToolSet,
    tool,
    tool_from_schema,
)
from agent_envs.envs.functions.validation import ArgumentValidator, to_json_schema
from agent_envs.harmony import get_codec


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    street: str
    zip_code: int


def book(city: str, nights: int, guests: list[str], mode: Literal["fast", "cheap"] = "fast",
         address: Address | None = None, color: Color = Color.RED) -> dict:
    """Book a hotel.

    Args:
        city: Where to stay.
        nights: How many nights.
        guests: Names of the guests.
        mode: Booking mode.
        address: Billing address.
        color: Room color.
    """
    return {"city": city, "nights": nights, "address": address, "color": color}


def test_schema_from_hints_and_docstring():
    t = tool(book)
    p = t.parameters
    assert t.name == "book" and t.description == "Book a hotel."
    assert p["required"] == ["city", "nights", "guests"]
    assert p["properties"]["city"] == {"type": "string", "description": "Where to stay."}
    assert p["properties"]["guests"]["items"] == {"type": "string"}
    assert p["properties"]["mode"]["enum"] == ["fast", "cheap"]
    assert p["properties"]["color"]["enum"] == ["red", "blue"]
    # nested model inlined (no $ref left for harmony's renderer), titles stripped
    assert "$defs" not in p and "$ref" not in str(p) and "title" not in str(p)
    jsonschema.Draft202012Validator.check_schema(p)


def test_pydantic_converts_arguments_to_the_annotated_types():
    t = tool(book)
    args = t.convert({"city": "Oslo", "nights": 2, "guests": ["a"],
                      "address": {"street": "x", "zip_code": 1}, "color": "blue"})
    out = t.fn(**args)
    assert isinstance(out["address"], Address) and out["color"] is Color.BLUE
    assert "mode" not in args  # defaults are the function's own


def test_harmony_renders_the_tools_in_the_developer_message():
    toolset = ToolSet([tool(book), tool_from_schema({"name": "math.factorial", "parameters": {
        "type": "dict", "properties": {"number": {"type": "integer"}}, "required": ["number"]}})])
    text = get_codec().decode(get_codec().render_message(
        get_codec().developer_message("x", toolset.harmony_specs())))
    assert "namespace functions {" in text
    assert "type book = (_: {" in text and 'mode?: "fast" | "cheap"' in text
    assert "type math_factorial = (_: {" in text and "number: number" in text


def test_names_are_mapped_reversibly_and_collisions_get_suffixes():
    names = ToolNames(["math.factorial", "math_factorial", "my-tool", "3d.plot", "ok"])
    assert names.to_harmony["math_factorial"] == "math_factorial"  # valid names keep theirs
    assert names.to_harmony["math.factorial"] == "math_factorial_2"
    assert names.to_harmony["my-tool"] == "my_tool" and names.to_harmony["3d.plot"] == "_3d_plot"
    assert all(names.to_original[h] == o for o, h in names.to_harmony.items())
    assert names.renamed == {"math.factorial": "math_factorial_2", "my-tool": "my_tool",
                             "3d.plot": "_3d_plot"}
    with pytest.raises(ValueError, match="duplicate tool name"):
        ToolNames(["a", "a"])


def test_bfcl_types_become_json_schema():
    s = to_json_schema({"type": "dict", "properties": {
        "x": {"type": "float"}, "t": {"type": "tuple", "items": {"type": "integer"}},
        "a": {"type": "any"}, "d": {"type": "dict", "properties": {"k": {"type": "float"}}}}})
    assert s["type"] == "object" and s["properties"]["x"]["type"] == "number"
    assert s["properties"]["t"]["type"] == "array" and "type" not in s["properties"]["a"]
    assert s["properties"]["d"]["properties"]["k"]["type"] == "number"


def test_strict_validation_reports_field_paths():
    v = ArgumentValidator(tool(book).parameters, "strict")
    errs = v.errors({"city": 3, "guests": ["a", 5], "mode": "slow", "extra": 1,
                     "address": {"street": "s", "zip_code": "x", "more": 1}})
    joined = "\n".join(errs)
    assert "$: 'nights' is a required property" in joined
    assert "$.city: 3 is not of type 'string'" in joined
    assert "$.guests[1]: 5 is not of type 'string'" in joined
    assert "$.mode: 'slow' is not one of ['fast', 'cheap']" in joined
    assert "$.address.zip_code: 'x' is not of type 'integer'" in joined
    assert any(e.startswith("$: Additional properties are not allowed ('extra'") for e in errs)
    assert any(e.startswith("$.address: Additional properties") for e in errs)
    assert v.errors({"city": "a", "nights": 1, "guests": []}) == []


def test_lax_mode_allows_extra_keys_that_strict_refuses():
    schema = to_json_schema({"type": "dict", "properties": {"a": {"type": "integer"}}})
    assert ArgumentValidator(schema, "strict").errors({"a": 1, "b": 2})
    assert ArgumentValidator(schema, "lax").errors({"a": 1, "b": 2}) == []
    assert ArgumentValidator(schema, "lax").errors({"a": "x"})  # types still checked
    assert ArgumentValidator(schema, "off").errors({"a": "x"}) == []
    with pytest.raises(ValueError, match="validation mode must be"):
        ArgumentValidator(schema, "loose")  # type: ignore[arg-type]


def test_user_errors_in_tool_definitions_are_clear():
    def star(*args):
        return args

    with pytest.raises(TypeError, match=r"\*args/\*\*kwargs cannot be described"):
        tool(star)
    with pytest.raises(ValueError, match="needs a 'name' string"):
        tool_from_schema({"description": "no name"})
    with pytest.raises(ValueError, match="invalid parameter schema"):
        ArgumentValidator({"type": "object", "properties": {"a": {"type": 5}}})
    with pytest.raises(ValueError, match="has no public method"):
        StatefulTools(Counter, methods=["nope"])


class Counter:
    """A stateful tool class."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def add(self, n: int) -> int:
        """Add to the counter.

        Args:
            n: How much.
        """
        self.value += n
        return self.value

    async def read(self) -> int:
        """The value."""
        await asyncio.sleep(0)
        return self.value

    def _hidden(self) -> None:
        raise AssertionError


def test_stateful_tools_get_a_fresh_instance_per_bind():
    st = StatefulTools(Counter, config={"start": 10})
    assert [t.name for t in st.tools()] == ["add", "read"]
    assert st.tools()[0].parameters["properties"]["n"]["description"] == "How much."
    inst1, tools1 = st.bind()
    add1 = next(t for t in tools1 if t.name == "add")
    add1.fn(n=5)
    inst2, tools2 = st.bind()
    assert inst1.value == 15 and inst2.value == 10 and inst1 is not inst2
    assert next(t for t in tools2 if t.name == "read").is_async


def test_tool_is_usable_as_a_decorator_with_options():
    @tool(name="sum_two", description="Adds.")
    def f(a: int, b: int = 1) -> int:
        return a + b

    assert isinstance(f, Tool) and f.name == "sum_two" and f.description == "Adds."
    assert f.parameters["required"] == ["a"]


def test_a_broken_schema_is_refused_when_the_tool_is_defined():
    with pytest.raises(ValueError, match=r"tool 'f': invalid parameter schema"):
        tool_from_schema({"name": "f", "parameters": {
            "type": "object", "properties": {"a": {"type": "integer", "minimum": "zero"}}}})
