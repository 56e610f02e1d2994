"""String families: palindromic substrings, edit distance, k-gram counts, Caesar checksums."""

from __future__ import annotations

import random

from agent_envs.envs.python_tool.families.core import Family, Params, pick

__all__ = ["FAMILIES"]

_INT_HINT = "Give the answer as a single integer."


def _text(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choices(alphabet, k=n))


# --- palindromes: palindromic substrings counted by position -------------------

_PALINDROMES = ((20, 40, "ab"), (100, 200, "ab"), (400, 800, "abc"), (1500, 3000, "abc"),
                (5000, 8000, "abcd"))


def _palindromes_params(rng: random.Random, d: int) -> Params:
    lo, hi, alphabet = pick(_PALINDROMES, d)
    return {"s": _text(rng, alphabet, rng.randint(lo, hi))}


def _palindromes_prompt(p: Params) -> str:
    return (f"How many non-empty substrings of the string below are palindromes? Count by "
            f"position: every pair of start and end indices counts separately, even if the "
            f"same text occurs elsewhere (so \"aaa\" has 6).\n{p['s']}\n{_INT_HINT}")


def palindromes(s: str) -> int:
    # Expand around each of the 2n-1 centres.
    count = 0
    n = len(s)
    for centre in range(2 * n - 1):
        lo, hi = centre // 2, (centre + 1) // 2
        while lo >= 0 and hi < n and s[lo] == s[hi]:
            count += 1
            lo -= 1
            hi += 1
    return count


# --- edit_distance: Levenshtein distance between two related strings ------------

_EDIT = ((6, 10), (20, 40), (60, 100), (150, 250), (400, 600))


def _edit_params(rng: random.Random, d: int) -> Params:
    lo, hi = pick(_EDIT, d)
    s = _text(rng, "acgt", rng.randint(lo, hi))
    t = list(s)
    for _ in range(max(1, len(s) // 4)):  # mutate a copy so the distance is informative
        op = rng.randrange(3)
        pos = rng.randrange(len(t) + (op == 1))
        if op == 0 and t:
            t[min(pos, len(t) - 1)] = rng.choice("acgt")
        elif op == 1:
            t.insert(pos, rng.choice("acgt"))
        elif t:
            del t[min(pos, len(t) - 1)]
    return {"s": s, "t": "".join(t)}


def _edit_prompt(p: Params) -> str:
    return (f"What is the edit (Levenshtein) distance between the two strings below: the "
            f"least number of single-character insertions, deletions and substitutions that "
            f"turn the first into the second?\n{p['s']}\n{p['t']}\n{_INT_HINT}")


def edit_distance(s: str, t: str) -> int:
    row = list(range(len(t) + 1))
    for i, a in enumerate(s, 1):
        prev, row[0] = row[0], i
        for j, b in enumerate(t, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (a != b))
    return row[len(t)]


# --- kgram: occurrences of the most frequent length-k substring ----------------------

# d5 was 50,000-100,000 characters until issue 18: every such task needed a code cell over the
# python tool's 65,536-byte limit and a prompt alone over its 32,768-token budget, so no d5
# kgram task could be solved (the only family and level where that was so). At 20,000-30,000
# characters the reference solution is ~30 KB and prompt plus cell ~26k tokens.
_KGRAM = ((40, 60, "abc"), (300, 500, "abc"), (2000, 4000, "abcd"), (10**4, 2 * 10**4, "abcd"),
          (2 * 10**4, 3 * 10**4, "abcde"))


def _kgram_params(rng: random.Random, d: int) -> Params:
    lo, hi, alphabet = pick(_KGRAM, d)
    return {"s": _text(rng, alphabet, rng.randint(lo, hi)), "k": rng.randint(2, 5)}


def _kgram_prompt(p: Params) -> str:
    return (f"Consider every substring of length {p['k']} of the string below. Occurrences "
            f"may overlap. How many times does the most frequent one occur?\n{p['s']}\n"
            f"{_INT_HINT}")


def kgram(s: str, k: int) -> int:
    from collections import Counter
    counts = Counter(s[i : i + k] for i in range(len(s) - k + 1))
    return max(counts.values())


# --- caesar_checksum: decode a Caesar cipher, then checksum the plaintext ---------------

_WORDS = (
    "apple", "river", "stone", "cloud", "green", "light", "north", "table", "sugar", "music",
    "paper", "horse", "water", "field", "house", "bread", "dream", "glass", "smile", "quiet",
    "train", "storm", "plant", "ocean", "tiger", "brave", "lemon", "chair", "happy", "metal",
    "candle", "forest", "winter", "summer", "garden", "window", "yellow", "silver", "market",
    "rocket", "planet", "bridge", "castle", "dragon", "island", "jungle", "pencil", "rabbit",
    "school", "spring", "valley", "wizard",
)
_CAESAR = ((4, 6), (10, 20), (30, 60), (80, 150), (200, 400))


def _shift(text: str, k: int) -> str:
    return "".join(chr((ord(c) - 97 + k) % 26 + 97) if c.isalpha() else c for c in text)


def _caesar_params(rng: random.Random, d: int) -> Params:
    lo, hi = pick(_CAESAR, d)
    while True:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(lo, hi))]
        cipher = _shift(" ".join(words), rng.randint(1, 25))
        hint = rng.choice(words)
        # The hint must single out the shift, or the problem would be ambiguous.
        shifts = [k for k in range(26) if hint in _shift(cipher, k).split()]
        if len(shifts) == 1:
            return {"cipher": cipher, "hint": hint}


def _caesar_prompt(p: Params) -> str:
    return (f"The text below is lowercase English words encrypted with a Caesar cipher "
            f"(every letter shifted forward by the same unknown amount, wrapping z to a; "
            f"spaces unchanged). The plaintext contains the word \"{p['hint']}\".\n"
            f"{p['cipher']}\nDecrypt it. Then number the letters of the plaintext 1, 2, 3, ... "
            f"in order, skipping spaces, and give the checksum: the sum over all letters of "
            f"(its number) * (its alphabet position, a=1 ... z=26). {_INT_HINT}")


def caesar_checksum(cipher: str, hint: str) -> int:
    for back in range(26):
        plain = "".join(chr((ord(c) - 97 - back) % 26 + 97) if c != " " else c for c in cipher)
        if hint in plain.split():
            letters = plain.replace(" ", "")
            return sum(i * (ord(c) - 96) for i, c in enumerate(letters, 1))
    raise ValueError("no shift reveals the hint word")


FAMILIES = (
    Family(name="palindromes", area="strings", answer_kind="int",
           params=_palindromes_params, prompt=_palindromes_prompt, solver=palindromes),
    Family(name="edit_distance", area="strings", answer_kind="int",
           params=_edit_params, prompt=_edit_prompt, solver=edit_distance),
    Family(name="kgram", area="strings", answer_kind="int",
           params=_kgram_params, prompt=_kgram_prompt, solver=kgram),
    Family(name="caesar_checksum", area="strings", answer_kind="int",
           params=_caesar_params, prompt=_caesar_prompt, solver=caesar_checksum),
)
