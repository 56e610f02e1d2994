"""Linear algebra families: exact determinants, rational linear systems, matrix powers."""

from __future__ import annotations

import random

from agent_envs.envs.python_tool.families.core import Family, Params, pick

__all__ = ["FAMILIES"]

_MOD = 1_000_000_007


def _matrix(rng: random.Random, n: int, bound: int) -> list[list[int]]:
    return [[rng.randint(-bound, bound) for _ in range(n)] for _ in range(n)]


def _show(matrix: list[list[int]]) -> str:
    return "\n".join("[" + ", ".join(str(v) for v in row) + "]" for row in matrix)


# --- determinant ----------------------------------------------------------------

_DET = ((3, 5), (5, 9), (7, 20), (9, 50), (12, 99))


def _det_params(rng: random.Random, d: int) -> Params:
    n, bound = pick(_DET, d)
    return {"matrix": _matrix(rng, n, bound)}


def _det_prompt(p: Params) -> str:
    n = len(p["matrix"])
    return (f"Compute the exact determinant of this {n}x{n} integer matrix (rows listed "
            f"top to bottom):\n{_show(p['matrix'])}\nGive the answer as a single integer.")


def determinant(matrix: list) -> int:
    # Bareiss fraction-free elimination: every intermediate value is an integer minor.
    a = [list(row) for row in matrix]
    n = len(a)
    sign, prev = 1, 1
    for k in range(n - 1):
        if a[k][k] == 0:
            swap = next((i for i in range(k + 1, n) if a[i][k] != 0), None)
            if swap is None:
                return 0
            a[k], a[swap] = a[swap], a[k]
            sign = -sign
        for i in range(k + 1, n):
            for j in range(k + 1, n):
                a[i][j] = (a[i][j] * a[k][k] - a[i][k] * a[k][j]) // prev
        prev = a[k][k]
    return sign * a[n - 1][n - 1]


# --- linear_system: one unknown of A x = b, as an exact fraction ---------------------

_SYSTEM = ((2, 5), (3, 9), (4, 12), (6, 20), (8, 30))


def _system_params(rng: random.Random, d: int) -> Params:
    n, bound = pick(_SYSTEM, d)
    while True:  # redraw singular matrices (rare); the rng keeps this deterministic
        a = _matrix(rng, n, bound)
        if determinant(a) != 0:
            break
    b = [rng.randint(-bound, bound) for _ in range(n)]
    return {"a": a, "b": b, "j": rng.randint(1, n)}


def _system_prompt(p: Params) -> str:
    n = len(p["b"])
    names = [f"x{i}" for i in range(1, n + 1)]
    lines = []
    for row, rhs in zip(p["a"], p["b"]):
        terms = " + ".join(f"({c})*{x}" for c, x in zip(row, names))
        lines.append(f"{terms} = {rhs}")
    return (f"Solve this system of {n} linear equations in {', '.join(names)}:\n"
            + "\n".join(lines)
            + f"\nWhat is x{p['j']}? Give it exactly, as a reduced fraction p/q "
              f"(or an integer if it is whole).")


def linear_system(a: list, b: list, j: int) -> object:
    from fractions import Fraction
    # Gauss-Jordan elimination over the rationals.
    n = len(b)
    rows = [[Fraction(v) for v in row] + [Fraction(rhs)] for row, rhs in zip(a, b)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        lead = rows[col][col]
        rows[col] = [v / lead for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [v - factor * w for v, w in zip(rows[r], rows[col])]
    return rows[j - 1][n]


# --- matrix_power: one entry of M^e mod a prime ----------------------------------------

_POWER = ((2, (10, 100)), (2, (10**3, 10**5)), (3, (10**6, 10**9)), (3, (10**12, 10**18)),
          (4, (10**30, 10**40)))


def _power_params(rng: random.Random, d: int) -> Params:
    n, (lo, hi) = pick(_POWER, d)
    return {"matrix": [[rng.randint(0, 9) for _ in range(n)] for _ in range(n)],
            "e": rng.randint(lo, hi), "i": rng.randint(1, n), "j": rng.randint(1, n)}


def _power_prompt(p: Params) -> str:
    n = len(p["matrix"])
    return (f"Let M be this {n}x{n} matrix (rows listed top to bottom):\n{_show(p['matrix'])}\n"
            f"What is the entry in row {p['i']}, column {p['j']} (1-based) of M^{p['e']}, "
            f"taken modulo {_MOD}? Give the answer as a single integer.")


def matrix_power(matrix: list, e: int, i: int, j: int) -> int:
    mod = 1_000_000_007
    n = len(matrix)

    def mul(x: list, y: list) -> list:
        return [[sum(x[r][t] * y[t][c] for t in range(n)) % mod for c in range(n)]
                for r in range(n)]

    result = [[int(r == c) for c in range(n)] for r in range(n)]
    base = [[v % mod for v in row] for row in matrix]
    while e:
        if e & 1:
            result = mul(result, base)
        base = mul(base, base)
        e >>= 1
    return result[i - 1][j - 1]


FAMILIES = (
    Family(name="determinant", area="linear_algebra", answer_kind="int",
           params=_det_params, prompt=_det_prompt, solver=determinant),
    Family(name="linear_system", area="linear_algebra", answer_kind="fraction",
           params=_system_params, prompt=_system_prompt, solver=linear_system),
    Family(name="matrix_power", area="linear_algebra", answer_kind="int",
           params=_power_params, prompt=_power_prompt, solver=matrix_power),
)
