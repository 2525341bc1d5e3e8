"""Problem kinds of the built-in reasoning world: templated math problems with exact, checkable CoTs.

Each kind is a pair of pure functions. ``sample(rng)`` draws integer parameters; ``build(params)`` turns
them into a :class:`Problem` (prompt fields, reasoning lines, answer) or returns ``None`` when the
parameters are invalid (a negative count, a non-integer solution, too many steps). Keeping the two
apart is what lets the generator make *numbers-only variants* (perturb one parameter, rebuild) that
are different problems with the same wording, the hard negatives for near-duplicate detection.

Rules every kind follows, because later stages and tests rely on them:

* The English prompt is ``template.format(**fields)`` and the wording never depends on the numbers
  (no "1 apple"/"2 apples"), so two problems of one kind differ only in their numbers.
* Every computation in a reasoning line is a binary ``A op B = C`` with ``op`` in ``+ - × ÷`` and a
  negative second operand in parentheses, or one of two fixed forms (Euclid's ``a = q × b + r`` and
  "a leaves remainder r when divided by m"), so regular expressions can re-check all arithmetic.
* The number of computation lines is the difficulty (``Problem.n_steps``); harder problems get
  longer chains of thought, because the select stage uses response length as its difficulty proxy.
* Every kind has a difficulty tier (``Kind.tier``, 1 = easiest). The kinds here are tier 4, the
  multi-digit work; tiers 1-3 are in ``_short_chains`` and the registry of all kinds in ``_kinds``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Problem", "Kind", "Params", "KINDS", "DOMAINS", "MAX_STEPS", "TIERS"]

DOMAINS: Final = ("arithmetic", "algebra", "number_theory", "counting")
MAX_STEPS: Final = 9
"""Upper bound on computation lines; ``build`` rejects parameters that would need more."""
TIERS: Final = (1, 2, 3, 4)
"""Difficulty tiers, easiest first: 1 one computation, 2 two or three, 3 longer chains of small steps,
4 the multi-digit work of this module."""

Params = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One generated problem, before it becomes a record."""

    kind: str
    domain: str
    params: Params
    fields: Mapping[str, str]
    """Values for the prompt template's ``{slots}``; translations use the same slots."""
    lines: tuple[str, ...]
    """The reasoning, one sentence per line, as it appears inside ``<think>``."""
    n_steps: int
    """Number of computation lines: the difficulty."""
    answer: int
    tier: int = 4
    """The kind's difficulty tier (``TIERS``)."""


@dataclass(frozen=True, slots=True)
class Kind:
    """A problem family: an English template, its translations and the two pure functions."""

    name: str
    domain: str
    template: str
    sample: Callable[[random.Random], Params]
    build: Callable[[Params], tuple[dict[str, str], list[str], int, int] | None]
    """Returns ``(fields, lines, n_steps, answer)`` or ``None`` for invalid parameters."""
    weight: float = 1.0
    """Relative draw weight among the kinds of the same tier."""
    translations: Mapping[str, str] = field(default_factory=dict)
    """Language code → template with the same slots as ``template``."""
    tier: int = 4
    """Difficulty tier (``TIERS``); the world's tier mix chooses a tier first, then a kind within it."""

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"Kind {self.name!r}: tier={self.tier} is not one of {TIERS}")

    def make(self, params: Params) -> Problem | None:
        built = self.build(params)
        if built is None:
            return None
        fields, lines, n_steps, answer = built
        if not 1 <= n_steps <= MAX_STEPS:
            return None
        return Problem(self.name, self.domain, params, fields, tuple(lines), n_steps, answer, self.tier)

    def prompt(self, problem: Problem, language: str = "en") -> str:
        template = self.template if language == "en" else self.translations[language]
        return template.format(**problem.fields)


# --- formatting helpers ------------------------------------------------------------------------


def _op(v: int) -> str:
    """A number in operand position after an operator: negatives get parentheses."""
    return f"({v})" if v < 0 else str(v)


def _coef(a: int, var: str = "x") -> str:
    if a == 1:
        return var
    if a == -1:
        return f"-{var}"
    return f"{a}{var}"


def _linear(a: int, b: int, var: str = "x") -> str:
    """``a·x + b`` written the way a person would: ``3x - 7``, ``x + 2``, ``5x``."""
    head = _coef(a, var)
    if b > 0:
        return f"{head} + {b}"
    if b < 0:
        return f"{head} - {-b}"
    return head


def _join_and(items: Sequence[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _product_lines(factors: Sequence[int]) -> tuple[list[str], int]:
    """Multiply left to right, one binary step per line."""
    acc, lines = factors[0], []
    for f in factors[1:]:
        lines.append(f"{acc} × {_op(f)} = {acc * f}.")
        acc *= f
    return lines, acc


def _sum_lines(terms: Sequence[int]) -> tuple[list[str], int]:
    acc, lines = terms[0], []
    for t in terms[1:]:
        lines.append(f"{acc} + {_op(t)} = {acc + t}.")
        acc += t
    return lines, acc


def _choose_lines(n: int, k: int) -> tuple[list[str], int]:
    """C(n, k) as a falling product divided by k!, every multiplication on its own line."""
    num_lines, num = _product_lines(list(range(n, n - k, -1)))
    den_lines, den = _product_lines(list(range(2, k + 1))) if k >= 3 else ([], math.factorial(k))
    value = num // den
    lines = [f"The numerator is the product of the {k} numbers from {n} down to {n - k + 1}."]
    lines += num_lines
    if k >= 2:
        lines.append(f"The denominator is {k}! = {den}." if k < 3 else f"The denominator is {k}!.")
        lines += den_lines
        lines.append(f"{num} ÷ {den} = {value}.")
    return lines, value


def _euclid_lines(a: int, b: int) -> tuple[list[str], int]:
    lines = []
    while b:
        q, r = divmod(a, b)
        lines.append(f"Divide {a} by {b}: {a} = {q} × {b} + {r}.")
        a, b = b, r
    return lines, a


# --- arithmetic --------------------------------------------------------------------------------


def _chain_sample(rng: random.Random) -> Params:
    k = rng.randint(1, 7)
    acc = rng.randint(10, 500)
    params = [acc]
    for _ in range(k):
        v = rng.randint(2, 99)
        op = 1 if (rng.random() < 0.4 and acc - v >= 0) else 0
        acc = acc - v if op else acc + v
        params += [op, v]
    return tuple(params)


def _chain_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    acc, rest = p[0], p[1:]
    if acc < 0 or len(rest) % 2 or not rest:
        return None
    expr, lines = [str(acc)], [f"We evaluate from left to right, starting with {acc}."]
    for op, v in zip(rest[0::2], rest[1::2], strict=True):
        if op not in (0, 1) or v < 1:
            return None
        new = acc - v if op else acc + v
        if new < 0:
            return None
        sign = "-" if op else "+"
        expr.append(f"{sign} {v}")
        lines.append(f"{acc} {sign} {v} = {new}.")
        acc = new
    lines.append(f"So the value of the expression is {acc}.")
    return {"expr": " ".join(expr)}, lines, len(rest) // 2, acc


def _warehouse_sample(rng: random.Random) -> Params:
    return rng.randint(12, 99), rng.randint(12, 999)


def _warehouse_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    a, b = p
    if not (2 <= a and 2 <= b):
        return None
    digits = str(b)
    parts = [int(d) * 10 ** (len(digits) - i - 1) for i, d in enumerate(digits) if d != "0"]
    lines = [f"We need {a} × {b}."]
    if len(parts) > 1:
        lines.append(f"Split {b} into {' + '.join(map(str, parts))}.")
    products = []
    for part in parts:
        lines.append(f"{a} × {part} = {a * part}.")
        products.append(a * part)
    sum_lines, total = _sum_lines(products)
    lines += sum_lines
    lines.append(f"So the warehouse holds {total} boxes.")
    return {"a": str(a), "b": str(b)}, lines, 2 * len(parts) - 1, total


def _bakery_sample(rng: random.Random) -> Params:
    a = rng.randint(20, 300)
    b = rng.randint(1, a)
    c, d = rng.randint(2, 9), rng.randint(6, 24)
    e = rng.randint(1, a - b + c * d)
    return a, b, c, d, e


def _bakery_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    a, b, c, d, e = p
    left, baked = a - b, c * d
    after = left + baked
    final = after - e
    if min(a, b, c, d, e) < 1 or left < 0 or final < 0:
        return None
    lines = [
        f"After the morning sales: {a} - {b} = {left} loaves.",
        f"The new trays hold {c} × {d} = {baked} loaves.",
        f"After baking: {left} + {baked} = {after} loaves.",
        f"After the afternoon sales: {after} - {e} = {final} loaves.",
        f"So {final} loaves are left.",
    ]
    fields = {"a": str(a), "b": str(b), "c": str(c), "d": str(d), "e": str(e)}
    return fields, lines, 4, final


def _order_sample(rng: random.Random) -> Params:
    return rng.randint(2, 60), rng.randint(2, 60), rng.randint(2, 12), rng.randint(2, 12), rng.randint(2, 30)


def _order_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    a, b, c, e, q = p
    if min(a, b, c, e, q) < 1:
        return None
    d = e * q
    s = a + b
    m = s * c
    r = m - q
    lines = [
        f"First the parentheses: {a} + {b} = {s}.",
        f"Then the multiplication: {s} × {c} = {m}.",
        f"Then the division: {d} ÷ {e} = {q}.",
        f"Finally the subtraction: {m} - {q} = {r}.",
        f"So the expression equals {r}.",
    ]
    return {"a": str(a), "b": str(b), "c": str(c), "d": str(d), "e": str(e)}, lines, 4, r


def _average_sample(rng: random.Random) -> Params:
    n = rng.randint(2, 7)
    t = rng.randint(5, 35)
    values = [rng.randint(max(0, t - 10), t + 10) for _ in range(n - 1)]
    values.append(n * t - sum(values))
    return tuple(values)


def _average_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    n = len(p)
    if n < 2 or min(p) < 0 or max(p) > 45 or sum(p) % n:
        return None
    sum_lines, total = _sum_lines(list(p))
    mean = total // n
    lines = [f"The average is the sum of the {n} temperatures divided by {n}."]
    lines += sum_lines
    lines.append(f"{total} ÷ {n} = {mean}.")
    lines.append(f"So the average temperature is {mean} degrees.")
    fields = {"n": str(n), "values": _join_and([str(v) for v in p])}
    return fields, lines, n, mean


# --- algebra -----------------------------------------------------------------------------------


def _isolate_lines(a: int, b: int, c: int) -> list[str]:
    """Solve ``a·x + b = c`` (a ≠ 0, solution integer) in two lines."""
    rhs = c - b
    if b > 0:
        lines = [f"Subtract {b} from both sides: {_coef(a)} = {c} - {b} = {rhs}."]
    elif b < 0:
        lines = [f"Add {-b} to both sides: {_coef(a)} = {c} + {-b} = {rhs}."]
    else:
        lines = []
    if a != 1:
        lines.append(f"Divide both sides by {a}: x = {rhs} ÷ {_op(a)} = {rhs // a}.")
    return lines


def _lin_basic_sample(rng: random.Random) -> Params:
    return rng.randint(2, 15), rng.randint(-25, 40), rng.choice([-1, 1]) * rng.randint(1, 60)


def _lin_basic_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    a, x, b = p
    if a < 2 or b == 0:
        return None
    ax = a * x
    c = ax + b
    lines = _isolate_lines(a, b, c)
    sign = "+" if b > 0 else "-"
    lines.append(f"Check: {a} × {_op(x)} = {ax}, and {ax} {sign} {abs(b)} = {c}.")
    lines.append(f"So x = {x}.")
    return {"eq": f"{_linear(a, b)} = {c}"}, lines, 3, x


def _lin_sides_sample(rng: random.Random) -> Params:
    a = rng.randint(3, 15)
    return a, rng.randint(1, a - 1), rng.randint(-20, 30), rng.randint(-50, 50)


def _lin_sides_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    a, c, x, b = p
    if not (1 <= c < a) or b == 0:
        return None
    k = a - c
    d = k * x + b
    if d == 0:
        return None
    lines = [f"Subtract {_coef(c)} from both sides: {a} - {c} = {k}, so {_linear(k, b)} = {d}."]
    lines += _isolate_lines(k, b, d)
    lines.append(f"So x = {x}.")
    n_steps = 1 + (b != 0) + (k != 1)
    return {"eq": f"{_linear(a, b)} = {_linear(c, d)}"}, lines, n_steps, x


def _lin_brackets_sample(rng: random.Random) -> Params:
    return (rng.randint(2, 9), rng.randint(1, 12), rng.randint(1, 9), rng.randint(1, 12), rng.randint(-15, 25))


def _lin_brackets_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    a, b, d, e, x = p
    if a < 2 or d < 1 or a == d or b < 1 or e < 1:
        return None
    f = a * (x + b) - d * (x - e)
    if f == 0:
        return None
    ab, de = a * b, d * e
    const_right = f - de
    k = a - d
    rhs = const_right - ab
    sign_f = "+" if f > 0 else "-"
    lines = [
        f"Expand the left side: {a} × {b} = {ab}, so it is {_linear(a, ab)}.",
        f"Expand the right side: {d} × {e} = {de}, so it is {_coef(d)} - {de} {sign_f} {abs(f)}.",
        f"Combine the constants on the right: {-de} + {_op(f)} = {const_right}.",
        f"Bring the x terms to the left: {a} - {d} = {k}, so {_linear(k, ab)} = {const_right}.",
        f"Bring the constants to the right: {const_right} - {ab} = {rhs}, so {_coef(k)} = {rhs}.",
    ]
    if k != 1:
        lines.append(f"Divide both sides by {k}: x = {rhs} ÷ {_op(k)} = {x}.")
    lines.append(f"So x = {x}.")
    eq = f"{a}(x + {b}) = {d}(x - {e}) {sign_f} {abs(f)}"
    return {"eq": eq}, lines, 5 + (k != 1), x


def _age_sample(rng: random.Random) -> Params:
    return rng.randint(2, 6), rng.randint(1, 20), rng.randint(3, 25)


def _age_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    k, y, d = p
    if k < 2 or y < 1 or d < 1:
        return None
    k1, y2 = k + 1, 2 * y
    s = k1 * d + y2
    lines = [
        f"Let the daughter's age now be d, so the mother's age is {k}d.",
        f"In {y} years they will be d + {y} and {k}d + {y} years old.",
        f"The d terms add up: {k} + 1 = {k1}, so {k1}d.",
        f"The constants add up: {y} + {y} = {y2}.",
        f"So {k1}d + {y2} = {s}, which gives {k1}d = {s} - {y2} = {s - y2}.",
        f"Therefore d = {s - y2} ÷ {k1} = {d}.",
        f"The daughter is {d} years old now.",
    ]
    return {"k": str(k), "y": str(y), "s": str(s)}, lines, 5, d


def _system_sample(rng: random.Random) -> Params:
    return rng.randint(-20, 60), rng.randint(-20, 60), rng.randint(1, 9), rng.randint(1, 9)


def _system_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    x, y, a, b = p
    if a < 1 or b < 1:
        return None
    s, dd = x + y, x - y
    ax, by = a * x, b * y
    lines = [
        f"Add the two equations: 2x = {s} + {_op(dd)} = {2 * x}.",
        f"So x = {2 * x} ÷ 2 = {x}.",
        f"From x + y = {s}: y = {s} - {_op(x)} = {y}.",
        f"{a} × {_op(x)} = {ax}.",
        f"{b} × {_op(y)} = {by}.",
        f"{ax} + {_op(by)} = {ax + by}.",
        f"So {_coef(a)} + {_coef(b, 'y')} = {ax + by}.",
    ]
    fields = {"s": str(s), "d": str(dd), "target": f"{_coef(a)} + {_coef(b, 'y')}"}
    return fields, lines, 6, ax + by


def _consecutive_sample(rng: random.Random) -> Params:
    return rng.randint(2, 9), rng.randint(-10, 150)


def _consecutive_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    n, m = p
    if n < 2:
        return None
    prod = n * (n - 1)
    tri = prod // 2
    s = n * m + tri
    largest = m + n - 1
    lines = [
        f"Call the smallest integer m; the integers are m, m + 1, and so on up to m + {n - 1}.",
        f"The offsets 0 to {n - 1} add up to half of {n} times {n - 1}: {n} × {n - 1} = {prod}, "
        f"and {prod} ÷ 2 = {tri}.",
        f"So {n}m + {tri} = {s}, which gives {n}m = {s} - {tri} = {s - tri}.",
        f"Then m = {s - tri} ÷ {n} = {m}.",
        f"The largest integer is m + {n - 1}: {m} + {n - 1} = {largest}.",
    ]
    return {"n": str(n), "s": str(s)}, lines, 5, largest


# --- number theory -----------------------------------------------------------------------------


def _gcd_sample(rng: random.Random) -> Params:
    steps = rng.randint(1, 7)
    return (rng.randint(1, 25), rng.randint(2, 4)) + tuple(rng.randint(1, 3) for _ in range(steps - 1))


def _gcd_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    g, last, *quotients = p
    if g < 1 or last < 2 or any(q < 1 for q in quotients):
        return None
    # Run Euclid backwards: r_{i-1} = q_i · r_i + r_{i+1}, starting from (last · g, g).
    small, big = g, last * g
    for q in quotients:
        small, big = big, q * big + small
    a, b = big, small
    if a > 20000 or a == b:
        return None
    lines, gcd = _euclid_lines(a, b)
    lines.append(f"The last non-zero remainder is {gcd}, so the greatest common divisor is {gcd}.")
    return {"a": str(a), "b": str(b)}, lines, len(lines) - 1, gcd


def _bus_sample(rng: random.Random) -> Params:
    return rng.randint(4, 60), rng.randint(4, 60)


def _bus_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    a, b = p
    if a < 2 or b < 2 or a == b:
        return None
    lines = ["They leave together again after the least common multiple, lcm = product ÷ gcd."]
    euclid, g = _euclid_lines(max(a, b), min(a, b))
    lines += euclid
    ab = a * b
    lcm = ab // g
    lines += [
        f"The greatest common divisor is {g}.",
        f"{a} × {b} = {ab}.",
        f"{ab} ÷ {g} = {lcm}.",
        f"So they next leave together after {lcm} minutes.",
    ]
    return {"a": str(a), "b": str(b)}, lines, len(euclid) + 2, lcm


def _mod_power_sample(rng: random.Random) -> Params:
    return rng.randint(2, 40), rng.randint(2, 8), rng.randint(3, 50)


def _mod_power_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    b, k, m = p
    if b < 2 or k < 2 or m < 3:
        return None
    base = b % m
    lines = [f"{b} leaves remainder {base} when divided by {m}, so we multiply remainders."]
    r = base
    for i in range(2, k + 1):
        prod = r * base
        lines.append(f"{b}^{i}: {r} × {base} = {prod}, which leaves remainder {prod % m} when divided by {m}.")
        r = prod % m
    lines.append(f"So the remainder is {r}.")
    return {"b": str(b), "k": str(k), "m": str(m)}, lines, k, r


def _share_sample(rng: random.Random) -> Params:
    return rng.randint(20, 500), rng.randint(3, 15)


def _share_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    n, k = p
    if k < 2 or n < k:
        return None
    q = n // k
    kq = k * q
    r = n - kq
    lines = [
        f"Each child gets {q} sweets, because {k} × {q} = {kq} is the largest multiple of {k} not above {n}.",
        f"The rest is {n} - {kq} = {r}.",
        f"So {r} sweets are left over.",
    ]
    return {"n": str(n), "k": str(k)}, lines, 2, r


def _divisors_sample(rng: random.Random) -> Params:
    return (rng.randint(12, 3000),)


def _divisors_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    (n,) = p
    if n < 4:
        return None
    lines = ["Factor the number into primes by trial division."]
    m, prime, exps = n, 2, {}
    while prime * prime <= m:
        while m % prime == 0:
            lines.append(f"{m} ÷ {prime} = {m // prime}.")
            m //= prime
            exps[prime] = exps.get(prime, 0) + 1
        prime += 1
    if m > 1:
        lines.append(f"{m} is prime.")
        exps[m] = exps.get(m, 0) + 1
    if len(exps) == 1 and next(iter(exps.values())) == 1:
        return None  # n itself is prime: a one-line problem with a trivial answer
    fact = " × ".join(f"{q}^{e}" if e > 1 else str(q) for q, e in exps.items())
    lines.append(f"So {n} = {fact}.")
    counts = [e + 1 for e in exps.values()]
    lines += [f"{e} + 1 = {e + 1}." for e in exps.values()]
    prod_lines, total = _product_lines(counts)
    lines += prod_lines
    lines.append(f"So {n} has {total} positive divisors.")
    n_steps = sum(exps.values()) + len(prod_lines)
    return {"n": str(n)}, lines, n_steps, total


def _mod_expr_sample(rng: random.Random) -> Params:
    return rng.randint(20, 999), rng.randint(20, 999), rng.randint(1, 999), rng.randint(3, 30)


def _mod_expr_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    a, b, c, m = p
    if min(a, b, c) < 1 or m < 2:
        return None
    ra, rb, rc = a % m, b % m, c % m
    prod = ra * rb
    rp = prod % m
    t = rp + rc
    ans = t % m
    lines = [
        "Work with remainders only.",
        f"{a} leaves remainder {ra} when divided by {m}.",
        f"{b} leaves remainder {rb} when divided by {m}.",
        f"{ra} × {rb} = {prod}, which leaves remainder {rp}.",
        f"{c} leaves remainder {rc} when divided by {m}.",
        f"{rp} + {rc} = {t}, which leaves remainder {ans}.",
        f"So the remainder is {ans}.",
    ]
    return {"a": str(a), "b": str(b), "c": str(c), "m": str(m)}, lines, 5, ans


# --- counting ----------------------------------------------------------------------------------


def _committee_sample(rng: random.Random) -> Params:
    n = rng.randint(5, 25)
    return n, rng.randint(2, min(5, n - 1))


def _committee_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    n, k = p
    if not (2 <= k < n):
        return None
    lines = [f"The order does not matter, so we count C({n}, {k})."]
    choose, value = _choose_lines(n, k)
    lines += choose
    lines.append(f"So the committee can be chosen in {value} ways.")
    return {"n": str(n), "k": str(k)}, lines, sum("=" in x for x in choose), value


def _podium_sample(rng: random.Random) -> Params:
    n = rng.randint(4, 30)
    return n, rng.randint(2, min(6, n))


def _podium_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    n, k = p
    if not (2 <= k <= n):
        return None
    factors = list(range(n, n - k, -1))
    lines = [f"There are {n} choices for first place, one fewer for each next place, for {k} places."]
    prod_lines, value = _product_lines(factors)
    lines += prod_lines
    lines.append(f"So the places can be awarded in {value} ways.")
    return {"n": str(n), "k": str(k)}, lines, len(prod_lines), value


_OUTFIT_ITEMS: Final = ("shirts", "pairs of trousers", "jackets", "hats", "scarves")


def _outfit_sample(rng: random.Random) -> Params:
    return tuple(rng.randint(2, 12) for _ in range(rng.randint(2, 5)))


def _outfit_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    if not (2 <= len(p) <= len(_OUTFIT_ITEMS)) or min(p) < 1:
        return None
    items = [f"{c} {name}" for c, name in zip(p, _OUTFIT_ITEMS, strict=False)]
    lines = ["By the multiplication principle, multiply the numbers of choices."]
    prod_lines, value = _product_lines(list(p))
    lines += prod_lines
    lines.append(f"So {value} different outfits are possible.")
    return {"items": _join_and(items)}, lines, len(prod_lines), value


def _handshake_sample(rng: random.Random) -> Params:
    return (rng.randint(3, 200),)


def _handshake_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    (n,) = p
    if n < 2:
        return None
    prod = n * (n - 1)
    value = prod // 2
    lines = [
        f"Each handshake is a pair of guests, so we count C({n}, 2).",
        f"{n} - 1 = {n - 1}.",
        f"{n} × {n - 1} = {prod}.",
        f"{prod} ÷ 2 = {value}.",
        f"So {value} handshakes take place.",
    ]
    return {"n": str(n)}, lines, 3, value


def _team_sample(rng: random.Random) -> Params:
    return rng.randint(3, 15), rng.randint(3, 15), rng.randint(1, 3), rng.randint(1, 3)


def _team_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    boys, girls, kb, kg = p
    if not (1 <= kb < boys and 1 <= kg < girls):
        return None
    lines = [f"Choose the boys and the girls separately: C({boys}, {kb}) × C({girls}, {kg})."]
    steps = 0
    values = []
    for n, k, who in ((boys, kb, "boys"), (girls, kg, "girls")):
        if k == 1:
            lines.append(f"There are {n} ways to choose 1 of the {who}.")
            values.append(n)
            continue
        choose, value = _choose_lines(n, k)
        lines += choose
        lines.append(f"So there are {value} ways to choose the {who}.")
        steps += sum("=" in x for x in choose)
        values.append(value)
    total = values[0] * values[1]
    lines.append(f"{values[0]} × {values[1]} = {total}.")
    lines.append(f"So {total} different teams are possible.")
    fields = {"boys": str(boys), "girls": str(girls), "kb": str(kb), "kg": str(kg)}
    return fields, lines, steps + 1, total


def _menu_sample(rng: random.Random) -> Params:
    return rng.randint(2, 15), rng.randint(2, 15), rng.randint(2, 15)


def _menu_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    a, b, c = p
    if min(a, b, c) < 1:
        return None
    ab, bc = a * b, b * c
    lines = [
        "The two kinds of meal do not overlap, so we add their counts (sum rule).",
        f"A starter and a main course: {a} × {b} = {ab}.",
        f"A main course and a dessert: {b} × {c} = {bc}.",
        f"{ab} + {bc} = {ab + bc}.",
        f"So {ab + bc} different meals are possible.",
    ]
    return {"a": str(a), "b": str(b), "c": str(c)}, lines, 3, ab + bc


def _grid_sample(rng: random.Random) -> Params:
    return rng.randint(1, 8), rng.randint(1, 8)


def _grid_build(p: Params) -> tuple[dict[str, str], list[str], int, int] | None:
    a, b = p
    if a < 1 or b < 1:
        return None
    n, k = a + b, min(a, b)
    lines = [
        f"Every path has {a} + {b} = {n} unit steps, and we choose which {k} of them go "
        f"{'right' if k == a else 'up'}, so we count C({n}, {k})."
    ]
    if k == 1:
        lines.append(f"C({n}, 1) = {n}.")
        value = n
    else:
        choose, value = _choose_lines(n, k)
        lines += choose
    lines.append(f"So the robot can take {value} different paths.")
    return {"a": str(a), "b": str(b)}, lines, sum("=" in x for x in lines[:-1]), value


# --- tier 4: the registry of this module -----------------------------------------------------------

KINDS: Final[tuple[Kind, ...]] = (
    Kind(
        "expression_chain",
        "arithmetic",
        "A student writes the expression {expr} on the board and asks the class to evaluate it "
        "from left to right. What is its value?",
        _chain_sample,
        _chain_build,
        weight=1.5,
        translations={
            "fr": "Un élève écrit l'expression {expr} au tableau et demande à la classe de la calculer "
            "de gauche à droite. Quelle est sa valeur ?",
            "zh": "一名学生在黑板上写下算式 {expr}，并请全班从左到右计算。它的值是多少？",
            "ru": "Ученик записывает на доске выражение {expr} и просит класс вычислить его слева "
            "направо. Чему оно равно?",
        },
    ),
    Kind(
        "warehouse",
        "arithmetic",
        "A warehouse has {a} shelves and each shelf holds {b} boxes. How many boxes does the "
        "warehouse hold when every shelf is full?",
        _warehouse_sample,
        _warehouse_build,
    ),
    Kind(
        "bakery",
        "arithmetic",
        "A bakery starts the morning with {a} loaves of bread. It sells {b} loaves before noon, then "
        "bakes {c} trays of {d} loaves each, and sells another {e} loaves in the afternoon. How many "
        "loaves are left at closing time?",
        _bakery_sample,
        _bakery_build,
    ),
    Kind(
        "order_of_operations",
        "arithmetic",
        "Evaluate the expression ({a} + {b}) × {c} - {d} ÷ {e}, following the usual order of operations.",
        _order_sample,
        _order_build,
    ),
    Kind(
        "average",
        "arithmetic",
        "Over {n} days a weather station recorded the temperatures {values} degrees. What was the "
        "average temperature over these days?",
        _average_sample,
        _average_build,
    ),
    Kind(
        "linear_basic",
        "algebra",
        "Find the value of x that satisfies the equation {eq}.",
        _lin_basic_sample,
        _lin_basic_build,
        weight=1.5,
        translations={
            "fr": "Trouvez la valeur de x qui vérifie l'équation {eq}.",
            "zh": "求满足方程 {eq} 的 x 的值。",
            "ru": "Найдите значение x, удовлетворяющее уравнению {eq}.",
        },
    ),
    Kind(
        "linear_both_sides",
        "algebra",
        "Solve the equation {eq} for x, showing how you collect the terms.",
        _lin_sides_sample,
        _lin_sides_build,
    ),
    Kind(
        "linear_brackets",
        "algebra",
        "Solve for x by expanding the brackets first: {eq}.",
        _lin_brackets_sample,
        _lin_brackets_build,
    ),
    Kind(
        "age",
        "algebra",
        "A mother is {k} times as old as her daughter. In {y} years, the sum of their ages will be "
        "{s}. How old is the daughter now?",
        _age_sample,
        _age_build,
        weight=0.5,
    ),
    Kind(
        "linear_system",
        "algebra",
        "Two numbers x and y satisfy x + y = {s} and x - y = {d}. What is the value of {target}?",
        _system_sample,
        _system_build,
    ),
    Kind(
        "consecutive",
        "algebra",
        "The sum of {n} consecutive integers is {s}. What is the largest of these integers?",
        _consecutive_sample,
        _consecutive_build,
        weight=0.5,
    ),
    Kind(
        "gcd",
        "number_theory",
        "Use the Euclidean algorithm to find the greatest common divisor of {a} and {b}.",
        _gcd_sample,
        _gcd_build,
        weight=1.5,
        translations={
            "fr": "Utilisez l'algorithme d'Euclide pour trouver le plus grand commun diviseur de {a} et {b}.",
            "zh": "用辗转相除法求 {a} 和 {b} 的最大公约数。",
            "ru": "С помощью алгоритма Евклида найдите наибольший общий делитель чисел {a} и {b}.",
        },
    ),
    Kind(
        "bus_lcm",
        "number_theory",
        "Two buses leave the station together. One returns every {a} minutes and the other every "
        "{b} minutes. After how many minutes will they next leave the station together?",
        _bus_sample,
        _bus_build,
        weight=0.5,
    ),
    Kind(
        "mod_power",
        "number_theory",
        "Without using a calculator, what is the remainder when {b}^{k} is divided by {m}?",
        _mod_power_sample,
        _mod_power_build,
    ),
    Kind(
        "share_remainder",
        "number_theory",
        "A box of {n} sweets is shared equally among {k} children, each child getting as many sweets "
        "as possible. How many sweets are left over?",
        _share_sample,
        _share_build,
        translations={
            "fr": "Une boîte de {n} bonbons est partagée équitablement entre {k} enfants, chacun en "
            "recevant le plus possible. Combien de bonbons reste-t-il ?",
            "zh": "把一盒 {n} 颗糖平均分给 {k} 个孩子，每个孩子尽可能多分。还剩下多少颗糖？",
            "ru": "Коробку из {n} конфет делят поровну между {k} детьми, и каждый получает как можно "
            "больше. Сколько конфет останется?",
        },
    ),
    Kind(
        "divisor_count",
        "number_theory",
        "How many positive divisors does the number {n} have?",
        _divisors_sample,
        _divisors_build,
    ),
    Kind(
        "mod_expression",
        "number_theory",
        "What is the remainder when {a} × {b} + {c} is divided by {m}?",
        _mod_expr_sample,
        _mod_expr_build,
    ),
    Kind(
        "committee",
        "counting",
        "A club with {n} members wants to choose a committee of {k} people. In how many different "
        "ways can the committee be chosen?",
        _committee_sample,
        _committee_build,
        translations={
            "fr": "Un club de {n} membres veut former un comité de {k} personnes. De combien de façons "
            "différentes peut-on choisir le comité ?",
            "zh": "一个有 {n} 名成员的俱乐部要选出一个 {k} 人委员会。共有多少种不同的选法？",
            "ru": "Клуб из {n} человек хочет выбрать комитет из {k} человек. Сколькими способами можно "
            "выбрать комитет?",
        },
    ),
    Kind(
        "podium",
        "counting",
        "{n} runners take part in a race. In how many different ways can the first {k} places be "
        "awarded, if there are no ties?",
        _podium_sample,
        _podium_build,
    ),
    Kind(
        "outfits",
        "counting",
        "A traveller packs {items}. An outfit uses one item of each kind. How many different outfits "
        "are possible?",
        _outfit_sample,
        _outfit_build,
        weight=1.5,
    ),
    Kind(
        "handshakes",
        "counting",
        "At a meeting, each of the {n} guests shakes hands exactly once with every other guest. How "
        "many handshakes take place?",
        _handshake_sample,
        _handshake_build,
    ),
    Kind(
        "teams",
        "counting",
        "A class has {boys} boys and {girls} girls. A team is formed with {kb} of the boys and {kg} "
        "of the girls. How many different teams are possible?",
        _team_sample,
        _team_build,
    ),
    Kind(
        "menu",
        "counting",
        "A restaurant offers {a} starters, {b} main courses and {c} desserts. A meal is either a starter "
        "with a main course, or a main course with a dessert. How many different meals are possible?",
        _menu_sample,
        _menu_build,
    ),
    Kind(
        "grid_paths",
        "counting",
        "A robot walks on a grid from the corner (0, 0) to the point ({a}, {b}), taking unit steps "
        "either right or up. How many different paths can it take?",
        _grid_sample,
        _grid_build,
        weight=0.5,
    ),
)
