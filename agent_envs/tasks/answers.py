"""Answer extraction and checking: turn a model's final message into a verdict.

``extract_answer`` pulls the answer string out of free text (the last
``\\boxed{...}``, else an "answer is X" phrase, else the last number).
``check_answer`` compares it with ``task.answer`` according to
``task.answer_kind``:

- ``int``: exact integer; ``"1,234"``, ``"1234.0"``, ``"+12"``, ``"$12$"`` and
  ``"12."`` all mean 12, but ``"12.5"`` is not 12.
- ``fraction``: exact rational (``fractions.Fraction``); accepts ``"3/7"``,
  ``"\\frac{3}{7}"``, ``"\\dfrac{3}{7}"``, ``"-3/7"``, and a decimal only when it
  is exactly equal (``"0.5"`` for ``1/2``, never ``"0.4286"`` for ``3/7``).
- ``float``: relative tolerance ``task.tolerance`` (default 1e-6), plus an
  absolute 1e-9 so that answers near 0 compare sensibly.
- ``str``: case-folded, whitespace-insensitive, with surrounding quotes,
  ``$``, ``\\text{}`` and light LaTeX noise (``\\left``, ``\\!``, ``dfrac``) removed.

Both functions are total: they never raise on any ``str`` input.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from agent_envs.tasks.base import Task, Verdict

__all__ = [
    "DEFAULT_FLOAT_TOLERANCE", "check_answer", "extract_answer", "last_boxed",
    "normalize_str", "parse_number",
]

DEFAULT_FLOAT_TOLERANCE = 1e-6
_ABS_TOLERANCE = 1e-9
# Python refuses int() on strings longer than this (sys.int_info.default_max_str_digits).
_MAX_DIGITS = 4000
# For str answers, a whole reply this short (and without a box or phrase) is taken as the answer.
_BARE_ANSWER_CHARS = 200

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_PHRASE_RE = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is|:|=)\s*(?:\*\*)?\s*:?\s*([^\n]+)", re.IGNORECASE
)
_NUMBER_RE = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?")
# A number or a LaTeX fraction with plain contents, for the last-number fallback.
_NUMBER_OR_FRAC_RE = re.compile(
    r"[-+]?\\[dt]?frac\s*(?:\{[^{}]*\}|\d)\s*(?:\{[^{}]*\}|\d)|" + _NUMBER_RE.pattern)
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")
_GROUPED_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_FRAC_RE = re.compile(r"([+-]?)\\[dt]?frac\s*(?:\{([^{}]*)\}|(\d))\s*(?:\{([^{}]*)\}|(\d))")
_WRAPPER_RE = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{(.*)\}$", re.DOTALL)


def _braced(text: str, start: int, stop: int) -> tuple[str, int] | None:
    """The content of the brace group opening at ``text[start] == '{'`` and the end index."""
    depth = 0
    for i in range(start, stop):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}`` in ``text``.

    Nested braces are honoured (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``),
    whitespace before the brace is allowed, and ``\\boxed 5`` gives ``5``. An
    unclosed box is skipped in favour of an earlier, complete one.

    Args:
        text: Any string.

    Returns:
        The box content, stripped, or None when there is no complete box.
    """
    # If the group opening at i never closes, no earlier group can close after i
    # either (it would need even more closers), so later scans stop at i: O(len).
    stop = len(text)
    for match in reversed(list(_BOX_RE.finditer(text))):
        i = match.end()
        while i < len(text) and text[i] in " \t\n":
            i += 1
        if i < len(text) and text[i] == "{":
            group = _braced(text, i, stop)
            if group is not None:
                return group[0].strip()
            stop = min(stop, i)
        elif match.end() < i < len(text):  # "\boxed 5": one token after a space
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0).rstrip(".,;")
    return None


def _phrase_answer(text: str) -> str | None:
    matches = list(_PHRASE_RE.finditer(text))
    if not matches:
        return None
    value = matches[-1].group(1).strip()
    # "The answer is 42. Thanks!" -> "42": cut at a sentence end, not inside "3.5".
    value = re.split(r"(?<=[^\d\s])\.\s|\.\s+(?=[A-Z])", value, maxsplit=1)[0]
    value = value.strip().strip("*").strip()
    return value or None


def extract_answer(text: str) -> str | None:
    """The answer string a response commits to, or None.

    Preference order: the last ``\\boxed{...}`` (or ``\\fbox``), then the last
    "answer is X" / "Answer: X" phrase (up to the end of its line or sentence),
    then the last number in the text (``1,234``, ``-3.5`` and ``3/7`` count as
    numbers).

    Args:
        text: The model's final message (any string).

    Returns:
        The extracted answer, stripped, or None when nothing answer-like is found.
    """
    if not isinstance(text, str) or not text:
        return None
    boxed = last_boxed(text)
    if boxed:
        return boxed
    phrase = _phrase_answer(text)
    if phrase:
        return phrase
    numbers = _NUMBER_OR_FRAC_RE.findall(text)
    if numbers:
        return numbers[-1].strip().rstrip(",")
    return None


def _unwrap(text: str) -> str:
    """Strip whitespace, ``$``, ``\\( \\)``, quotes, markdown bold, ``\\text{}`` and a final period."""
    s = text.strip()
    for _ in range(8):  # a few layers at most; each pass removes one
        before = s
        s = s.strip().strip("*").strip()
        if s.startswith("\\(") and s.endswith("\\)") or s.startswith("\\[") and s.endswith("\\]"):
            s = s[2:-2]
        s = s.strip("$").strip()
        if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'`":
            s = s[1:-1]
        wrapped = _WRAPPER_RE.match(s)
        if wrapped:
            s = wrapped.group(1)
        s = s.removesuffix(".")
        if s == before:
            break
    return s.strip()


def parse_number(text: str) -> Fraction | None:
    """Parse an exact rational number from an answer string, or None.

    Understands integers (``"+12"``, ``"1,234"``), decimals (``"0.125"``,
    ``"1e-3"``), ``"p/q"``, ``"\\frac{p}{q}"``/``"\\dfrac"``/``"\\tfrac"``
    (also ``"\\frac34"``), with surrounding ``$``, quotes, ``\\text{}`` and a
    trailing period removed.

    Args:
        text: Any string.

    Returns:
        The exact value, or None when ``text`` is not a single number.
    """
    s = _unwrap(text).replace("\\!", "").replace("\\,", "").replace("{,}", ",")
    s = s.replace("\\left", "").replace("\\right", "").replace(" ", "")
    if not s or len(s) > _MAX_DIGITS:
        return None
    frac = _FRAC_RE.fullmatch(s)
    if frac:
        sign, num_b, num_d, den_b, den_d = frac.groups()
        num = parse_number(num_b if num_b is not None else num_d)
        den = parse_number(den_b if den_b is not None else den_d)
        if num is None or den is None or den == 0:
            return None
        return -num / den if sign == "-" else num / den
    if "/" in s:
        num_s, _, den_s = s.partition("/")
        num, den = _decimal(num_s), _decimal(den_s.strip("()"))
        if num is None or den is None or den == 0:
            return None
        return num / den
    return _decimal(s)


def _decimal(s: str) -> Fraction | None:
    s = s.strip("()")
    if _GROUPED_RE.fullmatch(s):
        s = s.replace(",", "")
    if not _DECIMAL_RE.fullmatch(s):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def _lenient_number(text: str) -> Fraction | None:
    """``parse_number``, else the only number in a short phrase ("12 apples")."""
    value = parse_number(text)
    if value is not None:
        return value
    numbers = _NUMBER_RE.findall(text)
    if len(numbers) == 1:
        return parse_number(numbers[0])
    return None


_LATEX_NOISE = (
    ("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\ ", ""),
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("^\\circ", ""), ("^{\\circ}", ""),
    ("\\%", ""), ("\\$", ""), ("\\displaystyle", ""),
)


def normalize_str(text: str) -> str:
    """Canonical form used for ``str`` answers: unwrapped, case-folded, no whitespace or LaTeX noise."""
    s = _unwrap(text)
    for old, new in _LATEX_NOISE:
        s = s.replace(old, new)
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", s)
    s = _unwrap(s)
    return re.sub(r"\s+", "", s).casefold()


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_answer(response_text: str, task: Task) -> Verdict:
    """Judge a response against ``task.answer`` according to ``task.answer_kind``.

    Args:
        response_text: The model's final message (any string; never raises).
        task: The task whose ``answer``, ``answer_kind`` and ``tolerance`` apply.

    Returns:
        A ``Verdict`` with the extracted answer and a short reason.
    """
    if not isinstance(response_text, str):
        return Verdict(correct=False, extracted=None, reason="no answer found")
    if task.answer_kind == "str":
        # A name or expression: a bare short reply ("Friday") is the answer itself,
        # and the last number in "the 13th is a Friday" would be the wrong guess.
        extracted = last_boxed(response_text) or _phrase_answer(response_text)
        if extracted is None and 0 < len(response_text.strip()) <= _BARE_ANSWER_CHARS:
            extracted = response_text.strip()
    else:
        extracted = extract_answer(response_text)
    if extracted is None:
        return Verdict(correct=False, extracted=None, reason="no answer found")
    expected = task.answer
    kind = task.answer_kind
    got = _shorten(extracted)
    if kind == "str":
        ok = normalize_str(extracted) == normalize_str(expected)
        return Verdict(correct=ok, extracted=extracted,
                       reason="match" if ok else f"expected {expected!r}, got {got!r}")
    want = parse_number(expected)
    value = _lenient_number(extracted)
    if want is None:
        # The task's own answer does not parse as its kind: fall back to text equality.
        ok = normalize_str(extracted) == normalize_str(expected)
        return Verdict(correct=ok, extracted=extracted,
                       reason="match" if ok else f"expected {expected!r}, got {got!r}")
    if value is None:
        return Verdict(correct=False, extracted=extracted,
                       reason=f"could not read {got!r} as a number ({kind})")
    if kind == "float":
        tol = task.tolerance if task.tolerance is not None else DEFAULT_FLOAT_TOLERANCE
        try:
            ok = math.isclose(float(value), float(want), rel_tol=tol, abs_tol=_ABS_TOLERANCE)
        except OverflowError:
            ok = value == want
    else:  # int and fraction are exact; an int task simply has denominator 1
        ok = value == want
    return Verdict(correct=ok, extracted=extracted,
                   reason="match" if ok else f"expected {expected}, got {got}")
