"""Each family's solver against an independent brute-force oracle on small instances.

The solution-code test only shows that the code prints ``task.answer``; these
show that the answer is right.
"""

from __future__ import annotations

import datetime
import itertools
import math
import random
import string
from fractions import Fraction

from agent_envs.envs.python_tool.families import FAMILIES
from agent_envs.envs.python_tool.families import strings as string_families
from agent_envs.tasks import ProceduralTasks

NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def zeller(day: datetime.date) -> str:
    """Weekday by Zeller's congruence (no datetime arithmetic)."""
    y, m, q = day.year, day.month, day.day
    if m < 3:
        m, y = m + 12, y - 1
    h = (q + 13 * (m + 1) // 5 + y + y // 4 - y // 100 + y // 400) % 7  # 0 = Saturday
    return NAMES[(h + 5) % 7]


def civil_days(iso: str) -> int:
    """Days since 0000-03-01 by the proleptic Gregorian rules, without datetime."""
    y, m, d = (int(part) for part in iso.split("-"))
    y -= m <= 2
    era_days = 365 * y + y // 4 - y // 100 + y // 400
    return era_days + (153 * ((m + 9) % 12) + 2) // 5 + d - 1


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


def brute_lattice(w: int, h: int, blocked: set) -> int:
    def walk(x: int, y: int) -> int:
        if x > w or y > h or (x, y) in blocked:
            return 0
        if (x, y) == (w, h):
            return 1
        return walk(x + 1, y) + walk(x, y + 1)
    return walk(0, 0)


def brute_partitions(n: int, variant: str, m: int | None) -> int:
    def gen(rest: int, largest: int):
        if rest == 0:
            yield ()
        for part in range(min(rest, largest), 0, -1):
            for tail in gen(rest - part, part):
                yield (part,) + tail
    count = 0
    for parts in gen(n, n):
        if variant == "distinct" and len(set(parts)) != len(parts):
            continue
        if variant == "odd" and any(p % 2 == 0 for p in parts):
            continue
        if variant == "max_part" and max(parts) > m:
            continue
        count += 1
    return count


def leibniz(matrix: list) -> int:
    n = len(matrix)
    total = 0
    for perm in itertools.permutations(range(n)):
        inversions = sum(perm[i] > perm[j] for i in range(n) for j in range(i + 1, n))
        total += (-1) ** inversions * math.prod(matrix[i][perm[i]] for i in range(n))
    return total


def brute_edit(s: str, t: str) -> int:
    memo: dict = {}

    def go(i: int, j: int) -> int:
        if i == len(s) or j == len(t):
            return len(s) - i + len(t) - j
        if (i, j) not in memo:
            memo[i, j] = min(go(i + 1, j) + 1, go(i, j + 1) + 1,
                             go(i + 1, j + 1) + (s[i] != t[j]))
        return memo[i, j]
    return go(0, 0)


def params_of(family: str, seed: int, difficulty: int = 1) -> dict:
    task = ProceduralTasks(difficulty=difficulty, families=[family]).sample(seed)
    return task.meta["params"]


SEEDS = range(8)


def test_number_theory_oracles() -> None:
    for seed in SEEDS:
        p = params_of("modpow", seed)
        assert FAMILIES["modpow"].solver(**p) == p["a"] ** p["e"] % p["m"]
        p = params_of("prime_count", seed)
        assert FAMILIES["prime_count"].solver(**p) == sum(
            is_prime(n) for n in range(p["lo"], p["hi"] + 1))
        p = params_of("divisor_sum", seed)
        assert FAMILIES["divisor_sum"].solver(**p) == sum(
            d for d in range(1, p["n"] + 1) if p["n"] % d == 0)
        p = params_of("factorial_nonzero", seed, 2)
        value = math.factorial(p["n"])
        while value % 10 == 0:
            value //= 10
        assert FAMILIES["factorial_nonzero"].solver(**p) == value % 100000
    assert FAMILIES["prime_count"].solver(lo=1, hi=2) == 1


def test_combinatorics_oracles() -> None:
    for seed in SEEDS:
        p = params_of("binomial_mod", seed, 2)
        assert FAMILIES["binomial_mod"].solver(**p) == math.comb(p["n"], p["k"]) % p["p"]
        p = params_of("lattice_paths", seed)
        assert FAMILIES["lattice_paths"].solver(**p) == brute_lattice(
            p["w"], p["h"], {tuple(c) for c in p["blocked"]})
    # Lucas' theorem path (n >= p), which the generator avoids but the code supports.
    assert FAMILIES["binomial_mod"].solver(n=1000, k=321, p=13) == math.comb(1000, 321) % 13
    for n in range(8):
        for k in range(n + 1):
            brute = sum(sum(perm[i] == i for i in range(n)) == k
                        for perm in itertools.permutations(range(n)))
            assert FAMILIES["fixed_points"].solver(n=n, k=k, mod=None) == brute
            assert FAMILIES["fixed_points"].solver(n=n, k=k, mod=7) == brute % 7
    rng = random.Random(3)
    for _ in range(20):
        n, variant = rng.randint(1, 22), rng.choice(["all", "distinct", "odd", "max_part"])
        m = rng.randint(2, 6) if variant == "max_part" else None
        assert FAMILIES["partitions"].solver(n=n, variant=variant, m=m) == brute_partitions(
            n, variant, m)


def test_linear_algebra_oracles() -> None:
    for seed in SEEDS:
        p = params_of("determinant", seed)
        assert FAMILIES["determinant"].solver(**p) == leibniz(p["matrix"])
        p = params_of("linear_system", seed, 2)
        n = len(p["b"])
        x = [FAMILIES["linear_system"].solver(a=p["a"], b=p["b"], j=j) for j in range(1, n + 1)]
        for row, rhs in zip(p["a"], p["b"]):
            assert sum(Fraction(c) * v for c, v in zip(row, x)) == rhs
        p = params_of("matrix_power", seed)
        power = [[int(i == j) for j in range(len(p["matrix"]))] for i in range(len(p["matrix"]))]
        for _ in range(p["e"]):
            power = [[sum(r[t] * p["matrix"][t][c] for t in range(len(r)))
                      for c in range(len(r))] for r in power]
        assert FAMILIES["matrix_power"].solver(**p) == power[p["i"] - 1][p["j"] - 1] % (10**9 + 7)
    singular = [[1, 2, 3], [2, 4, 6], [0, 1, 5]]
    assert FAMILIES["determinant"].solver(matrix=singular) == 0
    swap_needed = [[0, 2, 1], [3, 0, 4], [5, 6, 0]]
    assert FAMILIES["determinant"].solver(matrix=swap_needed) == leibniz(swap_needed)


def test_string_oracles() -> None:
    for seed in SEEDS:
        s = params_of("palindromes", seed)["s"]
        assert FAMILIES["palindromes"].solver(s=s) == sum(
            s[i:j] == s[i:j][::-1] for i in range(len(s)) for j in range(i + 1, len(s) + 1))
        p = params_of("edit_distance", seed, 2)
        assert FAMILIES["edit_distance"].solver(**p) == brute_edit(p["s"], p["t"])
        p = params_of("kgram", seed)
        s, k = p["s"], p["k"]
        assert FAMILIES["kgram"].solver(**p) == max(
            sum(s[i:i + k] == s[j:j + k] for j in range(len(s) - k + 1))
            for i in range(len(s) - k + 1))
        p = params_of("caesar_checksum", seed)
        # The hint pins one shift, and that shift decodes to dictionary words only.
        decodings = [string_families._shift(p["cipher"], -k) for k in range(26)]
        matching = [d for d in decodings if p["hint"] in d.split()]
        assert len(matching) == 1
        assert set(matching[0].split()) <= set(string_families._WORDS)
        letters = matching[0].replace(" ", "")
        assert FAMILIES["caesar_checksum"].solver(**p) == sum(
            (i + 1) * (string.ascii_lowercase.index(c) + 1) for i, c in enumerate(letters))
    assert FAMILIES["palindromes"].solver(s="aaa") == 6


def test_date_oracles() -> None:
    for seed in SEEDS:
        for difficulty in (1, 5):
            p = params_of("weekday", seed, difficulty)
            target = datetime.date.fromordinal(
                datetime.date.fromisoformat(p["date"]).toordinal() + p["days"])
            assert FAMILIES["weekday"].solver(**p) == zeller(target)
            p = params_of("days_between", seed, difficulty)
            assert FAMILIES["days_between"].solver(**p) == civil_days(p["end"]) - civil_days(
                p["start"])
        p = params_of("friday13", seed, 2)
        assert FAMILIES["friday13"].solver(**p) == sum(
            zeller(datetime.date(y, m, 13)) == "Friday"
            for y in range(p["first_year"], p["last_year"] + 1) for m in range(1, 13))
    assert FAMILIES["weekday"].solver(date="2024-09-13", days=0) == "Friday"
