"""Tiers 1-3 of the built-in world: problems whose chain of thought is a few steps a small model can learn.

The original kinds (``_problems``, tier 4) ask for multi-digit long division, Euclid's algorithm and
products of several two-digit numbers. A model of about a million parameters cannot learn that in a few
minutes of CPU training, so on the original world alone nothing the pipeline does (curation, the
curriculum, DPO) moves its accuracy. These kinds give the world a learnable bottom:

* **Tier 1**: one computation that copies digits from the prompt or uses one small fact
  (``58 × 10``, the last digit of a number, ``x + 6 = 147``, ``143 + 5``). The one-digit addition and
  subtraction never carry or borrow: the leading digits are copied and one single-digit fact changes
  the last, so a tier-1 answer needs copying and one fact, nothing more.
* **Tier 2**: two or three computations on one- and two-digit numbers: column addition with an explicit
  carry, a two-step equation, a count of whole numbers in a range, a remainder read off the last digit.
* **Tier 3**: three to seven computations of the same small kinds chained further: three-digit column
  addition, a digit-sum remainder, an equation with x on both sides, a tally of one digit.

Each tier reuses the skills of the one below, and the chains get longer with the tier, so response
length stays the difficulty signal the select stage reads. Every kind follows the rules of
``_problems`` (templates independent of the numbers, binary computations or the two fixed forms), and
``n_steps`` counts the computations. Each kind has one short, fixed wording (the instruction suffix
follows it): every prompt token a tiny model reads costs training time, and the skill these tiers
teach is the computation, not reading varied text (near duplicates and the other planted classes add
their own wording edits). A column-addition line reads "Tens: 4 + 3 = 7, plus the carry:
7 + 1 = 8; write 8.": every computation in it is a binary ``A + B = C`` the tests re-check.
"""

from __future__ import annotations

import random
from typing import Final

from infialign.pipeline.world._problems import Kind, Params

__all__ = ["KINDS"]

Built = tuple[dict[str, str], list[str], int, int] | None

_COLUMNS: Final = ("Ones", "Tens", "Hundreds", "Thousands")


def _column_addition(a: int, b: int) -> tuple[list[str], int]:
    """Add ``a + b`` column by column, one line per column; returns the lines and the number of computations."""
    da, db = str(a)[::-1], str(b)[::-1]
    width = max(len(da), len(db))
    lines, steps, carry = [], 0, 0
    for i in range(width):
        x, y = int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0
        s = x + y
        line = f"{_COLUMNS[i]}: {x} + {y} = {s}"
        steps += 1
        if carry:
            line += f", plus the carry: {s} + 1 = {s + 1}"
            s += 1
            steps += 1
        last = i == width - 1
        if last or s < 10:
            line += f"; write {s}." if last else f"; write {s} and carry 0."
            carry = 0
        else:
            line += f"; write {s - 10} and carry 1."
            carry = 1
        lines.append(line)
    return lines, steps


# --- tier 1: one computation ---------------------------------------------------------------------


def _times_ten_sample(rng: random.Random) -> Params:
    return (rng.randint(2, 9999),)


def _times_ten_build(p: Params) -> Built:
    (n,) = p
    if n < 2:
        return None
    lines = [f"Multiplying by 10 appends a zero: {n} × 10 = {n * 10}.", f"So the value is {n * 10}."]
    return {"n": str(n)}, lines, 1, n * 10


def _last_digit_sample(rng: random.Random) -> Params:
    return (rng.randint(11, 99999),)


def _last_digit_build(p: Params) -> Built:
    (n,) = p
    if n < 11:
        return None
    q, r = divmod(n, 10)
    lines = [f"Divide {n} by 10: {n} = {q} × 10 + {r}.", f"So the remainder is {r}."]
    return {"n": str(n)}, lines, 1, r


def _one_step_sample(rng: random.Random) -> Params:
    x = rng.randint(0, 199)
    return x, rng.randint(1, 9 - x % 10) if x % 10 < 9 else 0


def _one_step_build(p: Params) -> Built:
    x, b = p
    if x < 0 or not 1 <= b <= 9 or x % 10 + b > 9:  # no borrow: copy the leading digits, one fact on the last
        return None
    c = x + b
    lines = [f"Subtract {b} from both sides: x = {c} - {b} = {x}.", f"So x = {x}."]
    return {"b": str(b), "c": str(c)}, lines, 1, x


def _marbles_sample(rng: random.Random) -> Params:
    a = rng.randint(10, 199)
    return a, rng.randint(1, 9 - a % 10) if a % 10 < 9 else 0


def _marbles_build(p: Params) -> Built:
    a, b = p
    if a < 10 or not 1 <= b <= 9 or a % 10 + b > 9:  # no carry: copy the leading digits, one fact on the last
        return None
    lines = [f"Each marble is one way to pick (the sum rule): {a} + {b} = {a + b}.", f"So there are {a + b} ways."]
    return {"a": str(a), "b": str(b)}, lines, 1, a + b


# --- tier 2: two or three computations -----------------------------------------------------------


def _add_two_digit_sample(rng: random.Random) -> Params:
    return rng.randint(10, 99), rng.randint(10, 99)


def _add_two_digit_build(p: Params) -> Built:
    a, b = p
    if not (10 <= a <= 99 and 10 <= b <= 99):
        return None
    lines, steps = _column_addition(a, b)
    lines.append(f"So {a} + {b} = {a + b}.")
    return {"a": str(a), "b": str(b)}, lines, steps, a + b


def _last_digit_mod_sample(rng: random.Random) -> Params:
    return rng.randint(10, 99999), rng.choice((2, 5))


def _last_digit_mod_build(p: Params) -> Built:
    n, m = p
    if n < 10 or m not in (2, 5):
        return None
    d = n % 10
    lines = [
        f"{n} - {d} = {n - d}, which ends in 0, so it is a multiple of 10 and of {m}.",
        f"{d} leaves remainder {d % m} when divided by {m}.",
        f"So the remainder is {d % m}.",
    ]
    return {"n": str(n), "m": str(m)}, lines, 2, d % m


def _two_step_sample(rng: random.Random) -> Params:
    return rng.randint(2, 9), rng.randint(1, 12), rng.randint(1, 40)


def _two_step_build(p: Params) -> Built:
    a, x, b = p
    if not 2 <= a <= 9 or x < 1 or b < 1:
        return None
    ax = a * x
    c = ax + b
    lines = [
        f"Subtract {b} from both sides: {a}x = {c} - {b} = {ax}.",
        f"Divide both sides by {a}: x = {ax} ÷ {a} = {x}.",
        f"So x = {x}.",
    ]
    return {"a": str(a), "b": str(b), "c": str(c)}, lines, 2, x


def _range_count_sample(rng: random.Random) -> Params:
    a = rng.randint(1, 89)
    return a, rng.randint(a + 1, 99)


def _range_count_build(p: Params) -> Built:
    a, b = p
    if not 1 <= a < b <= 99:
        return None
    d = b - a
    lines = [
        f"Count the steps from {a} up to {b}, then add one for {a} itself.",
        f"{b} - {a} = {d}.",
        f"{d} + 1 = {d + 1}.",
        f"So there are {d + 1} whole numbers.",
    ]
    return {"a": str(a), "b": str(b)}, lines, 2, d + 1


# --- tier 3: three to seven computations ---------------------------------------------------------


def _add_three_digit_sample(rng: random.Random) -> Params:
    return rng.randint(100, 999), rng.randint(100, 999)


def _add_three_digit_build(p: Params) -> Built:
    a, b = p
    if not (100 <= a <= 999 and 100 <= b <= 999):
        return None
    lines, steps = _column_addition(a, b)
    lines.append(f"So {a} + {b} = {a + b}.")
    return {"a": str(a), "b": str(b)}, lines, steps, a + b


def _digit_sum_mod_sample(rng: random.Random) -> Params:
    return rng.randint(1000, 99999), rng.choice((3, 9))


def _digit_sum_mod_build(p: Params) -> Built:
    n, m = p
    if not 1000 <= n <= 99999 or m not in (3, 9):
        return None
    digits = [int(c) for c in str(n)]
    lines = [f"A number and the sum of its digits leave the same remainder when divided by {m}."]
    acc = digits[0]
    for d in digits[1:]:
        lines.append(f"{acc} + {d} = {acc + d}.")
        acc += d
    lines.append(f"{acc} leaves remainder {acc % m} when divided by {m}.")
    lines.append(f"So the remainder is {acc % m}.")
    return {"n": str(n), "m": str(m)}, lines, len(digits), acc % m


def _both_sides_sample(rng: random.Random) -> Params:
    a = rng.randint(4, 9)
    return a, rng.randint(2, a - 2), rng.randint(1, 12), rng.randint(1, 30)


def _both_sides_build(p: Params) -> Built:
    a, c, x, b = p
    k = a - c
    if not (2 <= c and 2 <= k and 1 <= x and 1 <= b and a <= 9):
        return None
    kx = k * x
    d = kx + b
    lines = [
        f"Subtract {c}x from both sides: {a} - {c} = {k}, so {k}x + {b} = {d}.",
        f"Subtract {b} from both sides: {k}x = {d} - {b} = {kx}.",
        f"Divide both sides by {k}: x = {kx} ÷ {k} = {x}.",
        f"So x = {x}.",
    ]
    return {"a": str(a), "b": str(b), "c": str(c), "d": str(d)}, lines, 3, x


def _tally_sample(rng: random.Random) -> Params:
    n = rng.randint(10000, 99999)
    return n, int(rng.choice(str(n)))


def _tally_build(p: Params) -> Built:
    n, d = p
    if not 10000 <= n <= 99999 or not 0 <= d <= 9 or str(d) not in str(n):
        return None
    lines, count = [f"Go through the digits of {n} from left to right and keep a tally."], 0
    for c in str(n):
        if int(c) == d:
            lines.append(f"{c} is a {d}: {count} + 1 = {count + 1}.")
            count += 1
        else:
            lines.append(f"{c} is not a {d}.")
    lines.append(f"So the digit {d} is in {count} positions.")
    return {"n": str(n), "d": str(d)}, lines, count, count


# --- the registry --------------------------------------------------------------------------------

KINDS: Final[tuple[Kind, ...]] = (
    # tier 1
    Kind(
        "times_ten",
        "arithmetic",
        "Evaluate the expression {n} × 10.",
        _times_ten_sample,
        _times_ten_build,
        tier=1,
    ),
    Kind(
        "last_digit",
        "number_theory",
        "What is the remainder when {n} is divided by 10?",
        _last_digit_sample,
        _last_digit_build,
        tier=1,
        translations={
            "fr": "Quel est le reste de la division de {n} par 10 ?",
            "zh": "{n} 除以 10 的余数是多少？",
            "ru": "Какой остаток даёт {n} при делении на 10?",
        },
    ),
    Kind(
        "one_step_equation",
        "algebra",
        "Solve the equation x + {b} = {c}.",
        _one_step_sample,
        _one_step_build,
        tier=1,
        translations={
            "fr": "Résolvez l'équation x + {b} = {c}.",
            "zh": "解方程 x + {b} = {c}。",
            "ru": "Решите уравнение x + {b} = {c}.",
        },
    ),
    Kind(
        "marbles",
        "counting",
        "A bag holds {a} red marbles and {b} blue marbles. In how many ways can you pick one marble?",
        _marbles_sample,
        _marbles_build,
        tier=1,
    ),
    # tier 2
    Kind(
        "add_two_digit",
        "arithmetic",
        "Evaluate the expression {a} + {b} column by column.",
        _add_two_digit_sample,
        _add_two_digit_build,
        tier=2,
    ),
    Kind(
        "last_digit_remainder",
        "number_theory",
        "Find the remainder when {n} is divided by {m} from its last digit.",
        _last_digit_mod_sample,
        _last_digit_mod_build,
        tier=2,
    ),
    Kind(
        "two_step_equation",
        "algebra",
        "Solve the equation {a}x + {b} = {c}.",
        _two_step_sample,
        _two_step_build,
        tier=2,
        translations={
            "fr": "Résolvez l'équation {a}x + {b} = {c}.",
            "zh": "解方程 {a}x + {b} = {c}。",
            "ru": "Решите уравнение {a}x + {b} = {c}.",
        },
    ),
    Kind(
        "range_count",
        "counting",
        "How many different whole numbers are there from {a} to {b}, both ends included?",
        _range_count_sample,
        _range_count_build,
        tier=2,
    ),
    # tier 3
    Kind(
        "add_three_digit",
        "arithmetic",
        "Evaluate the expression {a} + {b} column by column.",
        _add_three_digit_sample,
        _add_three_digit_build,
        tier=3,
    ),
    Kind(
        "digit_sum_remainder",
        "number_theory",
        "Use the digit sum of {n} to find the remainder when it is divided by {m}.",
        _digit_sum_mod_sample,
        _digit_sum_mod_build,
        tier=3,
    ),
    Kind(
        "equation_both_sides",
        "algebra",
        "Solve the equation {a}x + {b} = {c}x + {d}.",
        _both_sides_sample,
        _both_sides_build,
        tier=3,
        translations={
            "fr": "Résolvez l'équation {a}x + {b} = {c}x + {d}.",
            "zh": "解方程 {a}x + {b} = {c}x + {d}。",
            "ru": "Решите уравнение {a}x + {b} = {c}x + {d}.",
        },
    ),
    Kind(
        "digit_tally",
        "counting",
        "How many different positions of {n} hold the digit {d}?",
        _tally_sample,
        _tally_build,
        tier=3,
    ),
)
