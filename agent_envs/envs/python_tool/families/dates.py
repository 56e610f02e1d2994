"""Calendar families (proleptic Gregorian): weekdays, day counts, Friday-the-13ths."""

from __future__ import annotations

import datetime as dt
import random

from agent_envs.envs.python_tool.families.core import Family, Params, pick

__all__ = ["FAMILIES"]

_CALENDAR = "Use the proleptic Gregorian calendar (Gregorian rules extended to all years)."
_LAST = dt.date(9999, 12, 31).toordinal()


def _random_date(rng: random.Random, first_year: int, last_year: int) -> dt.date:
    lo = dt.date(first_year, 1, 1).toordinal()
    hi = dt.date(last_year, 12, 31).toordinal()
    return dt.date.fromordinal(rng.randint(lo, hi))


# --- weekday: the weekday some number of days after a date ------------------------

_WEEKDAY = (((1900, 2100), 1000), ((1600, 2400), 10**5), ((1000, 3000), 10**6),
            ((1, 5000), 2 * 10**6), ((1, 9999), 3 * 10**6))


def _weekday_params(rng: random.Random, d: int) -> Params:
    (y0, y1), offset_max = pick(_WEEKDAY, d)
    start = _random_date(rng, y0, y1)
    offset = rng.randint(0, min(offset_max, _LAST - start.toordinal()))
    return {"date": start.isoformat(), "days": offset}


def _weekday_prompt(p: Params) -> str:
    return (f"What day of the week is {p['days']} days after {p['date']} (YYYY-MM-DD)? "
            f"{_CALENDAR} Answer with the English name of the weekday, e.g. Monday.")


def weekday(date: str, days: int) -> str:
    import datetime
    names = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    target = datetime.date.fromisoformat(date) + datetime.timedelta(days=days)
    return names[target.weekday()]


# --- days_between: the number of days from one date to a later one -----------------

_BETWEEN = ((2000, 2030), (1900, 2100), (1600, 2400), (1000, 3000), (1, 9999))


def _between_params(rng: random.Random, d: int) -> Params:
    y0, y1 = pick(_BETWEEN, d)
    a, b = sorted((_random_date(rng, y0, y1), _random_date(rng, y0, y1)))
    return {"start": a.isoformat(), "end": b.isoformat()}


def _between_prompt(p: Params) -> str:
    return (f"How many days are there from {p['start']} to {p['end']} (YYYY-MM-DD)? That is, "
            f"the second date minus the first, in days (0 if they are equal). {_CALENDAR} "
            f"Give the answer as a single integer.")


def days_between(start: str, end: str) -> int:
    import datetime
    return (datetime.date.fromisoformat(end) - datetime.date.fromisoformat(start)).days


# --- friday13: Friday-the-13ths in a range of years -----------------------------------

_FRIDAYS = ((1, 3), (5, 15), (20, 60), (100, 300), (500, 2000))


def _friday_params(rng: random.Random, d: int) -> Params:
    lo, hi = pick(_FRIDAYS, d)
    span = rng.randint(lo, hi)
    first = rng.randint(1, 9999 - span + 1)
    return {"first_year": first, "last_year": first + span - 1}


def _friday_prompt(p: Params) -> str:
    return (f"How many months from January {p['first_year']} to December {p['last_year']} "
            f"(inclusive) have a 13th day that falls on a Friday? {_CALENDAR} "
            f"Give the answer as a single integer.")


def friday13(first_year: int, last_year: int) -> int:
    import datetime
    return sum(datetime.date(year, month, 13).weekday() == 4
               for year in range(first_year, last_year + 1) for month in range(1, 13))


FAMILIES = (
    Family(name="weekday", area="dates", answer_kind="str",
           params=_weekday_params, prompt=_weekday_prompt, solver=weekday),
    Family(name="days_between", area="dates", answer_kind="int",
           params=_between_params, prompt=_between_prompt, solver=days_between),
    Family(name="friday13", area="dates", answer_kind="int",
           params=_friday_params, prompt=_friday_prompt, solver=friday13),
)
