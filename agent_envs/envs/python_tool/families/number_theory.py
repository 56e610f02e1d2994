"""Number theory families: modular powers, prime counts, divisor sums, factorial digits."""

from __future__ import annotations

import random

from agent_envs.envs.python_tool.families.core import Family, Params, pick

__all__ = ["FAMILIES"]

_INT_HINT = "Give the answer as a single integer."


# --- modpow: a^e mod m ------------------------------------------------------

_MODPOW = ((10**3, 10**4, 10**4), (10**6, 10**9, 10**6), (10**9, 10**15, 10**9),
           (10**12, 10**30, 10**12), (10**18, 10**60, 10**18))


def _modpow_params(rng: random.Random, d: int) -> Params:
    a_max, e_max, m_max = pick(_MODPOW, d)
    return {"a": rng.randint(2, a_max), "e": rng.randint(e_max // 10, e_max),
            "m": rng.randint(m_max // 10, m_max)}


def _modpow_prompt(p: Params) -> str:
    return (f"Compute {p['a']}^{p['e']} mod {p['m']}: the remainder when {p['a']} raised to "
            f"the power {p['e']} is divided by {p['m']}. {_INT_HINT}")


def modpow(a: int, e: int, m: int) -> int:
    return pow(a, e, m)


# --- prime_count: primes in [lo, hi] -----------------------------------------

_PRIMES = ((1000, 100), (10**5, 2000), (10**6, 2 * 10**4), (10**7, 10**5), (10**8, 5 * 10**5))


def _prime_count_params(rng: random.Random, d: int) -> Params:
    lo_max, width = pick(_PRIMES, d)
    lo = rng.randint(1, lo_max)
    return {"lo": lo, "hi": lo + rng.randint(width // 2, width)}


def _prime_count_prompt(p: Params) -> str:
    return f"How many prime numbers p satisfy {p['lo']} <= p <= {p['hi']}? {_INT_HINT}"


def prime_count(lo: int, hi: int) -> int:
    import math
    # Segmented sieve: small primes up to sqrt(hi), then cross off multiples in [lo, hi].
    root = math.isqrt(hi)
    small = bytearray([1]) * (root + 1)
    small[0] = small[1] = 0
    for i in range(2, math.isqrt(root) + 1):
        if small[i]:
            small[i * i :: i] = bytearray(len(range(i * i, root + 1, i)))
    seg = bytearray([1]) * (hi - lo + 1)
    for q in range(2, root + 1):
        if small[q]:
            start = max(q * q, (lo + q - 1) // q * q)
            seg[start - lo :: q] = bytearray(len(range(start, hi + 1, q)))
    for n in range(lo, min(2, hi + 1)):
        seg[n - lo] = 0
    return sum(seg)


# --- divisor_sum: sigma(n) ---------------------------------------------------

_DIVISORS = ((10**3, 10**4), (10**5, 10**6), (10**7, 10**8), (10**9, 10**10), (10**12, 10**13))


def _divisor_sum_params(rng: random.Random, d: int) -> Params:
    lo, hi = pick(_DIVISORS, d)
    return {"n": rng.randint(lo, hi)}


def _divisor_sum_prompt(p: Params) -> str:
    return (f"What is the sum of all positive divisors of {p['n']} (including 1 and "
            f"{p['n']} itself)? {_INT_HINT}")


def divisor_sum(n: int) -> int:
    # sigma is multiplicative: sigma(p^k) = 1 + p + ... + p^k.
    total, rest, p = 1, n, 2
    while p * p <= rest:
        if rest % p == 0:
            term, power = 1, 1
            while rest % p == 0:
                rest //= p
                power *= p
                term += power
            total *= term
        p += 1 if p == 2 else 2
    if rest > 1:
        total *= 1 + rest
    return total


# --- factorial_nonzero: (n! without trailing zeros) mod 10^5 ------------------

_FACTORIAL = ((10, 100), (100, 2000), (2000, 3 * 10**4), (3 * 10**4, 3 * 10**5),
              (3 * 10**5, 2 * 10**6))


def _factorial_params(rng: random.Random, d: int) -> Params:
    lo, hi = pick(_FACTORIAL, d)
    return {"n": rng.randint(lo, hi)}


def _factorial_prompt(p: Params) -> str:
    return (f"Let M be {p['n']}! (the factorial of {p['n']}) with all of its trailing zeros "
            f"removed. What is M mod 100000, i.e. the number formed by the last five digits "
            f"of M (leading zeros dropped)? {_INT_HINT}")


def factorial_nonzero(n: int) -> int:
    # n! = 2^a * 5^b * r with r coprime to 10; there are b trailing zeros (a >= b),
    # so n! / 10^b = 2^(a-b) * r.
    mod = 100000
    twos = fives = 0
    r = 1
    for i in range(2, n + 1):
        while i % 2 == 0:
            i //= 2
            twos += 1
        while i % 5 == 0:
            i //= 5
            fives += 1
        r = r * i % mod
    return r * pow(2, twos - fives, mod) % mod


FAMILIES = (
    Family(name="modpow", area="number_theory", answer_kind="int",
           params=_modpow_params, prompt=_modpow_prompt, solver=modpow),
    Family(name="prime_count", area="number_theory", answer_kind="int",
           params=_prime_count_params, prompt=_prime_count_prompt, solver=prime_count),
    Family(name="divisor_sum", area="number_theory", answer_kind="int",
           params=_divisor_sum_params, prompt=_divisor_sum_prompt, solver=divisor_sum),
    Family(name="factorial_nonzero", area="number_theory", answer_kind="int",
           params=_factorial_params, prompt=_factorial_prompt, solver=factorial_nonzero),
)
