"""Combinatorics families: binomials mod p, fixed points, blocked lattice paths, partitions."""

from __future__ import annotations

import random

from agent_envs.envs.python_tool.families.core import Family, Params, pick

__all__ = ["FAMILIES"]

_INT_HINT = "Give the answer as a single integer."
_MOD = 1_000_000_007


# --- binomial_mod: C(n, k) mod p ---------------------------------------------

_BINOMIAL = ((20, 200), (1000, 10**4), (10**4, 10**5), (10**5, 10**6), (10**6, 3 * 10**6))
_PRIMES = (10007, 65537, 1000003, 998244353, 1000000007)


def _binomial_params(rng: random.Random, d: int) -> Params:
    lo, hi = pick(_BINOMIAL, d)
    n = rng.randint(lo, hi)
    # Only primes above n: with a small p, Lucas' theorem makes the answer 0 too often.
    return {"n": n, "k": rng.randint(1, n - 1), "p": rng.choice([q for q in _PRIMES if q > n])}


def _binomial_prompt(p: Params) -> str:
    return (f"Compute the binomial coefficient C({p['n']}, {p['k']}) (the number of ways to "
            f"choose {p['k']} items out of {p['n']}) modulo the prime {p['p']}. {_INT_HINT}")


def binomial_mod(n: int, k: int, p: int) -> int:
    def small(a: int, b: int) -> int:  # C(a, b) mod p for a < p
        if b < 0 or b > a:
            return 0
        b = min(b, a - b)
        num = den = 1
        for i in range(b):
            num = num * (a - i) % p
            den = den * (i + 1) % p
        return num * pow(den, p - 2, p) % p

    # Lucas: C(n, k) = prod C(n_i, k_i) over the base-p digits.
    result = 1
    while (n or k) and result:
        result = result * small(n % p, k % p) % p
        n //= p
        k //= p
    return result


# --- fixed_points: permutations of n with exactly k fixed points --------------

_FIXED = ((5, 40, None), (40, 300, None), (10**3, 10**4, _MOD), (10**4, 10**5, _MOD),
          (10**5, 10**6, _MOD))


def _fixed_params(rng: random.Random, d: int) -> Params:
    lo, hi, mod = pick(_FIXED, d)
    n = rng.randint(lo, hi)
    return {"n": n, "k": rng.randint(0, min(5, n)), "mod": mod}


def _fixed_prompt(p: Params) -> str:
    what = (f"How many permutations of the numbers 1, 2, ..., {p['n']} have exactly {p['k']} "
            f"fixed points (positions i with perm(i) = i)?")
    if p["mod"] is None:
        return f"{what} Give the exact count as a single integer."
    return f"{what} Give the count modulo {p['mod']} as a single integer."


def fixed_points(n: int, k: int, mod: int | None) -> int:
    import math
    # Choose the k fixed points, derange the rest: C(n, k) * D(n - k),
    # with D(0) = 1, D(1) = 0, D(m) = (m - 1) * (D(m - 1) + D(m - 2)).
    m = n - k
    prev, cur = 1, 0  # D(0), D(1)
    if m == 0:
        cur = 1
    for j in range(2, m + 1):
        prev, cur = cur, (j - 1) * (cur + prev)
        if mod is not None:
            cur %= mod
    result = math.comb(n, k) * cur
    return result % mod if mod is not None else result


# --- lattice_paths: monotone grid paths avoiding blocked points ---------------

_LATTICE = ((4, 6), (8, 12), (15, 20), (25, 35), (40, 60))


def _lattice_params(rng: random.Random, d: int) -> Params:
    lo, hi = pick(_LATTICE, d)
    w, h = rng.randint(lo, hi), rng.randint(lo, hi)
    cells = [(x, y) for x in range(w + 1) for y in range(h + 1)
             if (x, y) not in ((0, 0), (w, h))]
    blocked = sorted(rng.sample(cells, (w + 1) * (h + 1) // 8))
    return {"w": w, "h": h, "blocked": [list(c) for c in blocked]}


def _lattice_prompt(p: Params) -> str:
    points = ", ".join(f"({x},{y})" for x, y in p["blocked"])
    return (f"A path starts at (0,0) and ends at ({p['w']},{p['h']}); each step adds 1 to "
            f"either the x or the y coordinate. The path may not visit any of these blocked "
            f"points: {points}. How many such paths are there? {_INT_HINT}")


def lattice_paths(w: int, h: int, blocked: list) -> int:
    bad = {tuple(c) for c in blocked}
    ways = [[0] * (h + 1) for _ in range(w + 1)]
    for x in range(w + 1):
        for y in range(h + 1):
            if (x, y) in bad:
                continue
            if x == 0 and y == 0:
                ways[x][y] = 1
            else:
                ways[x][y] = (ways[x - 1][y] if x else 0) + (ways[x][y - 1] if y else 0)
    return ways[w][h]


# --- partitions: integer partitions, with a variant ---------------------------

_PARTITIONS = ((10, 40), (60, 200), (200, 600), (600, 1500), (1500, 3000))
_VARIANTS = ("all", "distinct", "odd", "max_part")


def _partitions_params(rng: random.Random, d: int) -> Params:
    lo, hi = pick(_PARTITIONS, d)
    n = rng.randint(lo, hi)
    variant = rng.choice(_VARIANTS)
    return {"n": n, "variant": variant,
            "m": rng.randint(2, max(2, n // 3)) if variant == "max_part" else None}


def _partitions_prompt(p: Params) -> str:
    n = p["n"]
    rule = {
        "all": "into positive integer parts",
        "distinct": "into distinct positive integer parts (no part repeated)",
        "odd": "into odd positive integer parts (parts may repeat)",
        "max_part": f"into positive integer parts, each at most {p['m']}",
    }[p["variant"]]
    return (f"In how many ways can {n} be written as a sum {rule}? The order of the parts "
            f"does not matter (3+1 and 1+3 are the same way). {_INT_HINT}")


def partitions(n: int, variant: str, m: int | None) -> int:
    if variant == "max_part":
        parts = range(1, m + 1)
    elif variant == "odd":
        parts = range(1, n + 1, 2)
    else:
        parts = range(1, n + 1)
    ways = [1] + [0] * n
    for part in parts:
        if variant == "distinct":  # each part at most once: go downwards
            for total in range(n, part - 1, -1):
                ways[total] += ways[total - part]
        else:
            for total in range(part, n + 1):
                ways[total] += ways[total - part]
    return ways[n]


FAMILIES = (
    Family(name="binomial_mod", area="combinatorics", answer_kind="int",
           params=_binomial_params, prompt=_binomial_prompt, solver=binomial_mod),
    Family(name="fixed_points", area="combinatorics", answer_kind="int",
           params=_fixed_params, prompt=_fixed_prompt, solver=fixed_points),
    Family(name="lattice_paths", area="combinatorics", answer_kind="int",
           params=_lattice_params, prompt=_lattice_prompt, solver=lattice_paths),
    Family(name="partitions", area="combinatorics", answer_kind="int",
           params=_partitions_params, prompt=_partitions_prompt, solver=partitions),
)
