"""Answer extraction and checking: each kind, boxed nesting, phrases, garbage."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_envs.tasks import Task, check_answer, extract_answer, normalize_str, parse_number
from agent_envs.tasks.answers import last_boxed


def task(answer: str, kind: str = "str", tolerance: float | None = None) -> Task:
    return Task(id="t", prompt="?", answer=answer, answer_kind=kind, tolerance=tolerance)


@pytest.mark.parametrize(("text", "expected"), [
    (r"so \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"first \boxed{1} then \boxed{\sqrt{\frac{a}{b}}}", r"\sqrt{\frac{a}{b}}"),
    (r"\boxed {42}", "42"),
    (r"\boxed  { 7 }", "7"),
    (r"\fbox{x+1}", "x+1"),
    (r"thus \boxed 5.", "5"),
    (r"\boxed{3} but \boxed{unclosed 9", "3"),  # an unclosed box falls back to a complete one
    ("The answer is 42. Thanks for asking", "42"),
    ("**Answer:** 3.5", "3.5"),
    ("Final answer: Friday\nbye", "Friday"),
    ("answer = -17", "-17"),
    ("we get 1,234 and then 1,234,567 in total", "1,234,567"),
    ("ratio 3/7 overall", "3/7"),
    ("tiny: 1e-12", "1e-12"),
    ("nothing numeric here", None),
    ("", None),
])
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_boxed_preferred_over_phrase_and_numbers() -> None:
    text = r"The answer is 5. Checking: 6 7 8. \boxed{9} and later 10"
    assert extract_answer(text) == "9"
    assert extract_answer("The answer is 5, not 6 or 7 or 8") == "5, not 6 or 7 or 8"
    assert last_boxed("no box") is None


@pytest.mark.parametrize(("response", "answer"), [
    ("1,234", "1234"), ("1234.0", "1234"), ("+12", "12"), ("$12$", "12"), ("12.", "12"),
    (r"\boxed{-5}", "-5"), ("The answer is 12 apples.", "12"), (r"$\boxed{1{,}000}$", "1000"),
    (r"\boxed{\text{42}}", "42"), ("answer: 24/2", "12"),
])
def test_int_accepts(response: str, answer: str) -> None:
    verdict = check_answer(response, task(answer, "int"))
    assert verdict.correct, verdict


@pytest.mark.parametrize(("response", "answer"), [
    ("12.5", "12"), ("13", "12"), ("1,23", "123"), ("-12", "12"), (r"\boxed{x}", "12"),
    ("12 or 13", "12"),
])
def test_int_rejects(response: str, answer: str) -> None:
    assert not check_answer(response, task(answer, "int")).correct


@pytest.mark.parametrize("response", [
    "3/7", r"\frac{3}{7}", r"\dfrac{3}{7}", r"\tfrac{3}{7}", r"$\boxed{\frac{3}{7}}$", "6/14",
    r"\boxed{\frac{6}{14}}", "The answer is 3 / 7.",
])
def test_fraction_accepts(response: str) -> None:
    assert check_answer(response, task("3/7", "fraction")).correct


@pytest.mark.parametrize(("response", "answer", "ok"), [
    ("-3/7", "-3/7", True), (r"-\frac{3}{7}", "-3/7", True), (r"\frac{-3}{7}", "-3/7", True),
    ("3/7", "-3/7", False), ("0.5", "1/2", True), ("0.50", "1/2", True),
    ("0.4286", "3/7", False), ("0.428571428571", "3/7", False), (r"\frac34", "3/4", True),
    ("2", "2", True), ("4/2", "2", True), (r"\frac{1}{0}", "1", False),
])
def test_fraction_exactness(response: str, answer: str, ok: bool) -> None:
    assert check_answer(response, task(answer, "fraction")).correct is ok


def test_float_tolerance() -> None:
    assert check_answer("3.1415927", task("3.14159265", "float")).correct
    assert not check_answer("3.1416", task("3.14159265", "float")).correct
    assert check_answer("3.1416", task("3.14159265", "float", tolerance=1e-4)).correct
    assert check_answer("1e-12", task("0", "float")).correct  # absolute tolerance near 0
    assert not check_answer("1e-6", task("0", "float")).correct
    assert check_answer("1/8", task("0.125", "float")).correct
    assert not check_answer("1e999", task("1", "float")).correct


@pytest.mark.parametrize(("response", "answer", "ok"), [
    ("Friday", "Friday", True), ("  friday ", "Friday", True), ("'Friday'", "Friday", True),
    (r"\text{Friday}", "Friday", True), (r"\boxed{\text{FRIDAY}}", "Friday", True),
    ("The answer is Friday.", "Friday", True), ("Thursday", "Friday", False),
    (r"\boxed{\dfrac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}", True),
    (r"\boxed{\left( 1, 2 \right)}", "(1,2)", True), ("The 13th is a Friday", "Friday", False),
])
def test_str_answers(response: str, answer: str, ok: bool) -> None:
    assert check_answer(response, task(answer, "str")).correct is ok


def test_verdict_reasons() -> None:
    assert check_answer("no idea", task("4", "int")).reason == "no answer found"
    assert check_answer("no idea", task("4", "int")).extracted is None
    wrong = check_answer(r"\boxed{5}", task("4", "int"))
    assert (wrong.correct, wrong.extracted, wrong.reason) == (False, "5", "expected 4, got 5")
    assert "could not read" in check_answer(r"\boxed{abc}", task("4", "int")).reason


def test_parse_number_and_normalize() -> None:
    assert parse_number("1,234,567") == 1234567
    assert parse_number(r"-\dfrac{10}{4}") == Fraction(-5, 2)
    assert parse_number("1e3") == 1000
    assert parse_number("1e99999") is None  # huge exponents are refused, not computed
    assert parse_number("9" * 5000) is None
    assert parse_number("abc") is None
    assert normalize_str(r"$\text{ New  York }$.") == "newyork"


def test_pathological_inputs_are_fast_and_total() -> None:
    # Unbalanced boxes must not make extraction quadratic.
    assert extract_answer("\\boxed{" * 20000) is None
    assert extract_answer("answer is " * 5000 + "7") is not None
    assert not check_answer("9" * 100_000, task("1", "int")).correct


KINDS = st.sampled_from(["int", "fraction", "float", "str"])


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(), max_size=300), kind=KINDS,
       answer=st.sampled_from(["42", "3/7", "0.125", "Friday", "", "x^2"]))
def test_never_raises_on_any_text(text: str, kind: str, answer: str) -> None:
    extracted = extract_answer(text)
    assert extracted is None or isinstance(extracted, str)
    verdict = check_answer(text, task(answer, kind))
    assert isinstance(verdict.correct, bool) and isinstance(verdict.reason, str)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("\\boxedfrac{}$0123456789/.,- answer:is")),
                    max_size=200), kind=KINDS)
def test_never_raises_on_answerish_text(text: str, kind: str) -> None:
    check_answer(text, task("12", kind))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=-10**30, max_value=10**30))
def test_int_property(n: int) -> None:
    t = task(str(n), "int")
    assert check_answer(f"So the result is \\boxed{{{n:,}}}.", t).correct
    assert check_answer(f"The answer is {n}.", t).correct
    assert not check_answer(f"\\boxed{{{n + 1}}}", t).correct


@settings(max_examples=200, deadline=None)
@given(p=st.integers(min_value=-10**12, max_value=10**12),
       q=st.integers(min_value=1, max_value=10**12))
def test_fraction_property(p: int, q: int) -> None:
    value = Fraction(p, q)
    t = task(str(value), "fraction")
    assert check_answer(f"\\boxed{{\\frac{{{p}}}{{{q}}}}}", t).correct
    assert check_answer(f"{p}/{q}", t).correct
    assert not check_answer(str(value + Fraction(1, 7 * q)), t).correct
