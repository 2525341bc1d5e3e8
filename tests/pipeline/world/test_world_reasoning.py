"""builtin://reasoning and builtin://reasoning-bench: determinism, schema, and the planted answer key."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from infialign.pipeline import records
from infialign.pipeline.world import reasoning

N = 3000
SEED = 11
BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


@pytest.fixture(scope="module")
def world() -> reasoning.GeneratedWorld:
    return reasoning.generate(N, seed=SEED)


@pytest.fixture(scope="module")
def by_id(world: reasoning.GeneratedWorld) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in records.to_records(world.table)}


@pytest.fixture(scope="module")
def bench_by_id() -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in records.to_records(reasoning.benchmark())}


def prompt(record: dict[str, Any]) -> str:
    return record["messages"][0]["content"]


def ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


# --- determinism and schema ---------------------------------------------------------------------


def test_same_arguments_give_identical_bytes() -> None:
    a = reasoning.generate(800, seed=3)
    b = reasoning.generate(800, seed=3)
    assert ipc_bytes(a.table) == ipc_bytes(b.table)
    assert a.planted == b.planted and a.origin == b.origin and a.jaccard == b.jaccard
    assert ipc_bytes(reasoning.benchmark(50, seed=9)) == ipc_bytes(reasoning.benchmark(50, seed=9))


def test_different_seeds_give_different_worlds() -> None:
    a = reasoning.generate(300, seed=1).table.column("messages").to_pylist()
    b = reasoning.generate(300, seed=2).table.column("messages").to_pylist()
    assert a != b


def test_table_matches_the_record_schema(world: reasoning.GeneratedWorld) -> None:
    assert world.table.schema.equals(records.RECORD_SCHEMA)
    records.validate_table(world.table)
    assert world.table.num_rows == N


def test_clean_records_have_the_documented_shape(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    for rid in world.clean_ids:
        r = by_id[rid]
        assert r["source"] == reasoning.REASONING_URI
        assert r["domain"] in ("arithmetic", "algebra", "number_theory", "counting")
        assert [m["role"] for m in r["messages"]] == ["user"]
        assert prompt(r).endswith(reasoning.INSTRUCTION_SUFFIX)
        assert r["response"].startswith("<think>\n")
        assert r["response"].count("</think>") == 1
        assert r["response"].endswith("</think>\n\nThe answer is \\boxed{" + r["answer"] + "}.")
        assert r["verification"] == "unknown"
        prov = r["provenance"]
        assert prov["generator"] == reasoning.REASONING_URI and prov["planted"] == "clean"
        assert prov["seed"] == str(SEED) and 1 <= int(prov["steps"]) <= 9
        assert int(prov["tier"]) in reasoning.TIERS
    indexes = sorted(int(r["provenance"]["index"]) for r in by_id.values())
    assert indexes == list(range(N))


def test_all_four_domains_are_present(world: reasoning.GeneratedWorld) -> None:
    counts = Counter(world.table.column("domain").to_pylist())
    assert set(counts) == {"arithmetic", "algebra", "number_theory", "counting"}
    assert min(counts.values()) > N // 10


# --- correctness of the clean problems ----------------------------------------------------------

BINARY = re.compile(r"(?<![\w^(.])(-?\d+) ([-+×÷]) (\(-\d+\)|\d+) = (-?\d+)(?![\d^])")
EUCLID = re.compile(r"(\d+) = (\d+) × (\d+) \+ (\d+)\.")
REMAINDER = re.compile(r"(\d+) leaves remainder (\d+) when divided by (\d+)")
COLUMN = re.compile(r"(?:Ones|Tens|Hundreds|Thousands): .*?; write (\d+)(?: and carry ([01]))?\.")


def check_arithmetic(text: str) -> int:
    """Re-check every binary computation, Euclid step and remainder claim in a CoT; return how many."""
    checked = 0
    for m in BINARY.finditer(text):
        if text[max(0, m.start() - 2) : m.start()] in ("× ", "+ ", "- ", "÷ "):
            continue  # the tail of a longer expression, not a binary step
        a, op, b, c = int(m[1]), m[2], int(m[3].strip("()")), int(m[4])
        if op == "÷":
            assert b * c == a, m[0]
        else:
            assert {"+": a + b, "-": a - b, "×": a * b}[op] == c, m[0]
        checked += 1
    for m in EUCLID.finditer(text):
        a, q, b, r = map(int, m.groups())
        assert a == q * b + r and 0 <= r < b, m[0]
        checked += 1
    for m in REMAINDER.finditer(text):
        a, r, d = map(int, m.groups())
        assert a % d == r, m[0]
        checked += 1
    columns = COLUMN.findall(text)
    if columns:  # column addition: the written digits, read back from the last column, are the sum
        written = "".join(digit for digit, _ in reversed(columns))
        total = re.search(r"So (\d+) \+ (\d+) = (\d+)\.", text)
        assert total is not None and written == total[3] == str(int(total[1]) + int(total[2])), text
        checked += 1
    return checked


def test_every_clean_cot_computation_is_right(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    for rid in world.clean_ids:
        r = by_id[rid]
        assert check_arithmetic(r["response"]) >= 1, r["response"]
        assert BOXED.findall(r["response"]) == [r["answer"]]


def _ints(pattern: str, text: str) -> list[int]:
    match = re.search(pattern, text)
    assert match is not None, (pattern, text)
    return [int(g) for g in match.groups()]


def _solve_linear_basic(text: str) -> int:
    match = re.search(r"equation (\d+)x ([-+]) (\d+) = (-?\d+)\.", text)
    assert match is not None, text
    a, b, c = int(match[1]), int(match[3]) * (1 if match[2] == "+" else -1), int(match[4])
    assert (c - b) % a == 0
    return (c - b) // a


def _solve_system(text: str) -> int:
    s, d = _ints(r"x \+ y = (-?\d+) and x - y = (-?\d+)\.", text)
    target = re.search(r"value of (\d*)x \+ (\d*)y\?", text)
    assert target is not None, text
    return int(target[1] or 1) * (s + d) // 2 + int(target[2] or 1) * (s - d) // 2


def _solve_mod_expression(text: str) -> int:
    a, b, c, m = _ints(r"(\d+) × (\d+) \+ (\d+) is divided by (\d+)", text)
    return (a * b + c) % m


def _count_divisors(text: str) -> int:
    (n,) = _ints(r"number (\d+)", text)
    return sum(n % d == 0 for d in range(1, n + 1))


def _evaluate_chain(text: str) -> int:
    match = re.search(r"expression ([\d +-]+) on", text)
    assert match is not None, text
    tokens = match[1].split()
    value = int(tokens[0])
    for op, operand in zip(tokens[1::2], tokens[2::2], strict=True):
        value = value + int(operand) if op == "+" else value - int(operand)
    return value


def _tally(text: str) -> int:
    match = re.search(r"positions of (\d+) hold the digit (\d)\?", text)
    assert match is not None, text
    return match[1].count(match[2])


SOLVERS: dict[str, Callable[[str], int]] = {
    "times_ten": lambda t: 10 * _ints(r"expression (\d+) × 10", t)[0],
    "last_digit": lambda t: _ints(r"when (\d+) is divided by 10\?", t)[0] % 10,
    "one_step_equation": lambda t: (lambda b, c: c - b)(*_ints(r"x \+ (\d+) = (\d+)", t)),
    "marbles": lambda t: sum(_ints(r"holds (\d+) red marbles and (\d+) blue", t)),
    "add_two_digit": lambda t: sum(_ints(r"expression (\d+) \+ (\d+) column", t)),
    "last_digit_remainder": lambda t: (lambda n, m: n % m)(*_ints(r"when (\d+) is divided by (\d+)", t)),
    "two_step_equation": lambda t: (lambda a, b, c: (c - b) // a)(*_ints(r"equation (\d+)x \+ (\d+) = (\d+)\.", t)),
    "range_count": lambda t: (lambda a, b: b - a + 1)(*_ints(r"from (\d+) to (\d+),", t)),
    "add_three_digit": lambda t: sum(_ints(r"expression (\d+) \+ (\d+) column", t)),
    "digit_sum_remainder": lambda t: (lambda n, m: n % m)(*_ints(r"digit sum of (\d+) .* divided by (\d+)\.", t)),
    "equation_both_sides": lambda t: (lambda a, b, c, d: (d - b) // (a - c))(
        *_ints(r"equation (\d+)x \+ (\d+) = (\d+)x \+ (\d+)\.", t)
    ),
    "digit_tally": _tally,
    "gcd": lambda t: math.gcd(*_ints(r"divisor of (\d+) and (\d+)", t)),
    "mod_power": lambda t: pow(*_ints(r"(\d+)\^(\d+) is divided by (\d+)", t)),
    "committee": lambda t: math.comb(*_ints(r"with (\d+) members .* of (\d+) people", t)),
    "handshakes": lambda t: math.comb(_ints(r"of the (\d+) guests", t)[0], 2),
    "expression_chain": _evaluate_chain,
    "mod_expression": _solve_mod_expression,
    "divisor_count": _count_divisors,
    "linear_basic": _solve_linear_basic,
    "linear_system": _solve_system,
}


def test_answers_agree_with_an_independent_solver(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    seen: Counter[str] = Counter()
    for rid in world.clean_ids:
        r = by_id[rid]
        kind = r["provenance"]["kind"]
        if kind in SOLVERS:
            assert str(SOLVERS[kind](prompt(r))) == r["answer"], prompt(r)
            seen[kind] += 1
    assert set(seen) == set(SOLVERS)


def test_harder_problems_have_longer_cots(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    steps = [(int(by_id[i]["provenance"]["steps"]), len(by_id[i]["response"])) for i in world.clean_ids]
    assert {s for s, _ in steps} >= set(range(1, 9))
    easy = [n for s, n in steps if s <= 2]
    hard = [n for s, n in steps if s >= 6]
    assert sum(hard) / len(hard) > 1.5 * sum(easy) / len(easy)


def test_response_length_grows_with_the_tier(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    """Response length is the select stage's difficulty signal, so each tier's responses are longer on average."""
    lengths: dict[int, list[int]] = {t: [] for t in reasoning.TIERS}
    for i in world.clean_ids:
        lengths[int(by_id[i]["provenance"]["tier"])].append(len(by_id[i]["response"]))
    means = [sum(v) / len(v) for _, v in sorted(lengths.items())]
    assert means == sorted(means) and len(set(means)) == len(means), means
    assert means[-1] > 1.8 * means[0]


def test_tier_one_sums_copy_the_leading_digits(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    """Tier 1 is copying plus one small fact: its one-digit sums and differences never carry or borrow."""
    seen = Counter()
    for i in world.clean_ids:
        r = by_id[i]
        kind = r["provenance"]["kind"]
        if kind == "one_step_equation":
            b, c = _ints(r"x \+ (\d+) = (\d+)", prompt(r))
            assert c % 10 >= b and str(c)[:-1] == r["answer"][:-1], prompt(r)
        elif kind == "marbles":
            a, b = _ints(r"holds (\d+) red marbles and (\d+) blue", prompt(r))
            assert a % 10 + b <= 9 and str(a)[:-1] == r["answer"][:-1], prompt(r)
        else:
            continue
        seen[kind] += 1
    assert set(seen) == {"one_step_equation", "marbles"}


def test_every_tier_has_its_share_of_clean_and_planted_records(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    clean = Counter(by_id[i]["provenance"]["tier"] for i in world.clean_ids)
    assert set(clean) == {str(t) for t in reasoning.TIERS}
    assert all(abs(v / len(world.clean_ids) - 0.25) < 0.05 for v in clean.values()), clean
    for cls in ("truncated_cot", "missing_answer", "wrong_answer", "non_english", "repetition", "benchmark_leak"):
        tiers = {by_id[i]["provenance"]["tier"] for i in world.planted[cls]}
        assert len(tiers) >= 3, (cls, tiers)  # dozens of records per class: every tier (or nearly) shows up


def test_tier_mix_sets_the_share_of_each_tier() -> None:
    world = reasoning.generate(600, seed=2, mix=reasoning.PlantMix().scaled(0.0), tiers=reasoning.TierMix((3, 1, 0, 0)))
    tiers = Counter(p["tier"] for p in (dict(x) for x in world.table.column("provenance").to_pylist()))
    assert set(tiers) == {"1", "2"} and 0.68 < tiers["1"] / 600 < 0.82
    bench = reasoning.benchmark(80, tiers=reasoning.TierMix((0, 0, 0, 1)))
    assert {dict(p)["tier"] for p in bench.column("provenance").to_pylist()} == {"4"}


def test_benchmark_items_carry_their_tier_in_equal_shares() -> None:
    tiers = Counter(dict(p)["tier"] for p in reasoning.benchmark().column("provenance").to_pylist())
    assert set(tiers) == {"1", "2", "3", "4"} and min(tiers.values()) >= 35, tiers


def test_clean_prompts_are_distinct(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    normalised = [reasoning.normalise_prompt(prompt(by_id[i])) for i in world.clean_ids]
    assert len(normalised) == len(set(normalised))


# --- the planted answer key ---------------------------------------------------------------------


def test_planted_counts_follow_the_mix(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    expected = reasoning.PlantMix().counts(N)
    assert set(world.planted) == set(reasoning.DEFECT_CLASSES)
    for cls, ids in world.planted.items():
        assert len(ids) == expected[cls] > 0, cls
        assert all(by_id[i]["provenance"]["planted"] == cls for i in ids)
    all_planted = [i for ids in world.planted.values() for i in ids]
    assert len(all_planted) == len(set(all_planted))
    assert len(world.numbers_variants) == expected["numbers_variant"]


def test_exact_duplicates_equal_a_clean_origin_up_to_whitespace_and_case(
    world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]
) -> None:
    clean = set(world.clean_ids)
    for rid in world.planted["exact_duplicate"]:
        origin = world.origin[rid]
        assert origin in clean
        assert reasoning.normalise_prompt(prompt(by_id[rid])) == reasoning.normalise_prompt(prompt(by_id[origin]))
        assert by_id[rid]["answer"] == by_id[origin]["answer"]


def test_near_duplicates_are_wording_edits_within_the_jaccard_band(
    world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]
) -> None:
    clean = set(world.clean_ids)
    for rid, origin in world.near_duplicate_of.items():
        a, b = prompt(by_id[rid]), prompt(by_id[origin])
        j = reasoning.shingle_jaccard(a, b)
        assert origin in clean
        assert j == pytest.approx(world.jaccard[rid]) == pytest.approx(float(by_id[rid]["provenance"]["jaccard"]), abs=1e-4)
        assert reasoning.NEAR_DUP_MIN_JACCARD <= j < 1.0
        assert reasoning.normalise_prompt(a) != reasoning.normalise_prompt(b)
        assert reasoning.numbers_in(a) == reasoning.numbers_in(b), "a near duplicate must not change a number"


def test_numbers_only_variants_are_clean_and_not_planted_as_duplicates(
    world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]
) -> None:
    duplicates = set(world.planted["exact_duplicate"]) | set(world.planted["near_duplicate"])
    clean = set(world.clean_ids)
    for rid in world.numbers_variants:
        a, b = prompt(by_id[rid]), prompt(by_id[world.origin[rid]])
        assert rid in clean and rid not in duplicates and world.origin[rid] in clean
        assert re.sub(r"\d+", "#", a) == re.sub(r"\d+", "#", b)
        assert reasoning.numbers_in(a) != reasoning.numbers_in(b)
    # They are meant to be hard negatives: several look like near duplicates by Jaccard alone.
    assert any(world.jaccard[i] >= reasoning.NEAR_DUP_MIN_JACCARD for i in world.numbers_variants)


def test_truncated_cots_are_cut(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    for rid in world.planted["truncated_cot"]:
        r = by_id[rid]
        response = r["response"]
        assert "</think>" not in response or not BOXED.search(response.split("</think>", 1)[1])
        assert r["answer"] is not None


def test_missing_answers_have_no_box_and_no_reference(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    for rid in world.planted["missing_answer"]:
        assert "\\boxed{" not in by_id[rid]["response"] and by_id[rid]["answer"] is None


def test_wrong_answers_disagree_with_the_reference(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    for rid in world.planted["wrong_answer"]:
        r = by_id[rid]
        boxed = BOXED.findall(r["response"])
        assert len(boxed) == 1 and boxed[0] != r["answer"]


def test_non_english_prompts_are_in_another_language(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    languages = Counter()
    for rid in world.planted["non_english"]:
        r = by_id[rid]
        languages[r["provenance"]["language"]] += 1
        assert "Please reason" not in prompt(r)
        assert any(ord(ch) > 127 for ch in prompt(r))
    assert set(languages) == {"fr", "zh", "ru"}


def test_leaks_match_benchmark_items(
    world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]], bench_by_id: dict[str, dict[str, Any]]
) -> None:
    copies = 0
    for rid in world.planted["benchmark_leak"]:
        item = bench_by_id[world.origin[rid]]
        a, b = prompt(by_id[rid]), prompt(item)
        assert reasoning.numbers_in(a) == reasoning.numbers_in(b)
        assert reasoning.shingle_jaccard(a, b) >= reasoning.NEAR_DUP_MIN_JACCARD
        assert by_id[rid]["answer"] == item["answer"]
        copies += reasoning.normalise_prompt(a) == reasoning.normalise_prompt(b)
    assert 0 < copies < len(world.planted["benchmark_leak"])  # both verbatim copies and light edits


def test_repetition_records_loop(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    for rid in world.planted["repetition"]:
        r = by_id[rid]
        lines = r["response"].splitlines()
        assert max(Counter(lines).values()) >= 10
        assert BOXED.findall(r["response"]) == [r["answer"]]


# --- the benchmark split ------------------------------------------------------------------------


def test_benchmark_is_disjoint_from_training_worlds(world: reasoning.GeneratedWorld, by_id: dict[str, dict[str, Any]]) -> None:
    def prompts(table: pa.Table, planted: str | None = None) -> set[str]:
        rows = records.to_records(table)
        return {reasoning.normalise_prompt(prompt(r)) for r in rows if planted in (None, r["provenance"]["planted"])}

    bench = prompts(reasoning.benchmark(400, seed=5)) | prompts(reasoning.benchmark())
    for seed in (0, 1):
        other = reasoning.generate(1000, seed=seed).table
        assert bench & prompts(other) == bench & prompts(other, "benchmark_leak")  # only planted leaks overlap
    clean = {reasoning.normalise_prompt(prompt(by_id[i])) for i in world.clean_ids}
    assert not bench & clean


def test_benchmark_records_are_clean_and_labelled() -> None:
    table = reasoning.benchmark(60, seed=2)
    assert table.num_rows == 60
    for r in records.to_records(table):
        assert r["source"] == reasoning.BENCH_URI and r["provenance"]["planted"] == "clean"
        assert BOXED.findall(r["response"]) == [r["answer"]]
        check_arithmetic(r["response"])


# --- URIs and configuration ---------------------------------------------------------------------


def test_open_builtin_sets_each_planted_class_on_its_own() -> None:
    table = reasoning.open_builtin("builtin://reasoning?n=500&seed=1&wrong_answer=0.2&truncated_cot=0.1")
    mix = reasoning.PlantMix(wrong_answer=0.2, truncated_cot=0.1)
    assert ipc_bytes(table) == ipc_bytes(reasoning.generate(500, seed=1, mix=mix).table)
    planted = Counter(dict(p)["planted"] for p in table.column("provenance").to_pylist())
    assert planted["wrong_answer"] == 100 and planted["truncated_cot"] == 50 and planted["repetition"] == 15


def test_plant_scales_the_classes_not_set_on_their_own() -> None:
    table = reasoning.open_builtin("builtin://reasoning?n=1000&seed=1&plant=0.3&wrong_answer=0.1")
    planted = Counter(dict(p)["planted"] for p in table.column("provenance").to_pylist())
    assert planted["wrong_answer"] == 100
    assert sum(v for k, v in planted.items() if k != "clean") == pytest.approx(300, abs=4)
    # the other classes keep their default proportions among themselves
    assert planted["exact_duplicate"] == planted["near_duplicate"] and planted["truncated_cot"] == planted["repetition"]


def test_open_builtin_takes_a_tier_mix() -> None:
    table = reasoning.open_builtin("builtin://reasoning?n=300&seed=4&plant=0&tiers=1,0,0,1")
    assert {dict(p)["tier"] for p in table.column("provenance").to_pylist()} == {"1", "4"}
    bench = reasoning.open_builtin("builtin://reasoning-bench?n=40&tiers=0,1,0,0")
    assert {dict(p)["tier"] for p in bench.column("provenance").to_pylist()} == {"2"}


def test_open_builtin_resolves_worlds_and_the_bench() -> None:
    table = reasoning.open_builtin("builtin://reasoning?n=400&seed=4&plant=0.2")
    assert ipc_bytes(table) == ipc_bytes(reasoning.generate(400, seed=4, mix=reasoning.PlantMix().scaled(0.2)).table)
    planted = Counter(p["planted"] for p in records.to_records(table) for p in [p["provenance"]])
    assert sum(v for k, v in planted.items() if k != "clean") == pytest.approx(80, abs=4)
    clean = reasoning.open_builtin("builtin://reasoning?n=200&plant=0")
    assert {r["provenance"]["planted"] for r in records.to_records(clean)} == {"clean"}
    assert reasoning.open_builtin("builtin://reasoning-bench?n=20").num_rows == 20


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "builtin://reasoning?n=10&size=3",
            "unknown parameter 'size'; allowed: n, seed, tiers, plant, exact_duplicate, near_duplicate, truncated_cot, "
            "missing_answer, wrong_answer, non_english, benchmark_leak, repetition, numbers_variant",
        ),
        ("builtin://reasoning-bench?plant=0.1", "unknown parameter 'plant'; allowed: n, seed, tiers"),
        ("builtin://reasoning?wrong_answers=0.1", "unknown parameter 'wrong_answers'"),
        ("builtin://reasoning?wrong_answer=1.5", "parameter wrong_answer=1.5 must be in [0, 1]"),
        ("builtin://reasoning?truncated_cot=lots", "parameter truncated_cot='lots' is not a number"),
        ("builtin://reasoning?wrong_answer=0.5&repetition=0.5", "defect fractions sum to 1.200; keep the sum ≤ 0.9"),
        ("builtin://reasoning?plant=0.1&wrong_answer=0.2", "plant=0.1 is below the 0.2"),
        ("builtin://reasoning?tiers=1,1,1", "give one weight per tier (4, easiest first)"),
        ("builtin://reasoning?tiers=1,a,1,1", "tiers='1,a,1,1': give comma-separated numbers"),
        ("builtin://reasoning?tiers=0,0,0,0", "all weights are 0"),
        ("builtin://reasoning?tiers=1,-1,1,1", "the weight of tier 2 is -1.0"),
        ("builtin://reasoning?n=ten", "n='ten' is not an integer"),
        ("builtin://reasoning?n=-1", "n=-1"),
        ("builtin://reasoning?plant=0.95", "plant=0.95 must be in [0, 0.9]"),
        ("builtin://reasoning?n=1&n=2", "'n' is given 2 times"),
        ("builtin://poetry?n=1", "not a built-in dataset"),
        ("builtin://reasoning/extra", "no path"),
    ],
)
def test_open_builtin_rejects_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        reasoning.open_builtin(uri)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"wrong_answer": 1.5}, "PlantMix.wrong_answer=1.5"),
        ({"exact_duplicate": 0.5, "near_duplicate": 0.5}, "sum to"),
        ({"exact_duplicate": 0.3, "near_duplicate": 0.3, "truncated_cot": 0.0}, "exceeds the clean fraction"),
    ],
)
def test_plant_mix_validation_names_the_field(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        reasoning.PlantMix(**kwargs)


def test_plant_mix_scaling_keeps_proportions() -> None:
    mix = reasoning.PlantMix().scaled(0.54)
    assert mix.defect_total == pytest.approx(0.54)
    assert mix.exact_duplicate == pytest.approx(2 * reasoning.PlantMix().exact_duplicate)
    assert mix.numbers_variant == reasoning.PlantMix().numbers_variant


def test_importing_the_world_does_not_import_torch() -> None:
    code = "import sys, infialign.pipeline.world; print('torch' in sys.modules or 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_many_leaks_copy_distinct_items_of_a_longer_bench() -> None:
    mix = reasoning.PlantMix(benchmark_leak=0.3, exact_duplicate=0.0, near_duplicate=0.0)
    world = reasoning.generate(1000, seed=0, mix=mix)
    leaks = world.planted["benchmark_leak"]
    assert len(leaks) == 300 and len({world.origin[i] for i in leaks}) == 300
    bench_ids = set(reasoning.benchmark(300).column("id").to_pylist())
    assert {world.origin[i] for i in leaks} <= bench_ids
    assert reasoning.benchmark(300).column("id").to_pylist()[:200] == reasoning.benchmark().column("id").to_pylist()
