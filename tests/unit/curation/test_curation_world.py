"""The whole curate chain on the built-in world catches every planted defect and keeps every clean problem.

``builtin://reasoning`` plants defects of known classes (world/reasoning.py). Duplicates collapse to one
record per problem, but which one survives is the representative rule's choice (an independent
reference answer, longer CoT, shorter prompt, id), so for a duplicate pair the test asks that exactly one of the two survives.
"""

from __future__ import annotations

import pytest
from infialign.pipeline import verifiers
from infialign.pipeline.api import VerificationSettings
from infialign.pipeline.curation import (
    decontam,
    dedup,
    domains,
    executor,
    filters,
    steps,
    tokens,
)

reasoning = pytest.importorskip("infialign.pipeline.world.reasoning")


@pytest.fixture(scope="module")
def curated():
    world = reasoning.generate(n=800, seed=11)
    index = decontam.DecontamIndex.build({"bench": reasoning.benchmark()}, decontam.DecontamConfig())
    chain = [
        steps.Step(domains.label_domains_keyword, domains.KeywordLabellerConfig(ruleset="world")),
        steps.Step(tokens.count_response_tokens, tokens.TokenCountConfig()),
        *filters.rule_steps(),
        steps.Step(dedup.dedup_exact, dedup.ExactDedupConfig()),
        steps.Step(dedup.dedup_near, dedup.MinHashConfig()),
        steps.Step(decontam.score_contamination, index),
        steps.Step(decontam.filter_contamination, decontam.DecontamConfig()),
        steps.Step(verifiers.verify_records, VerificationSettings(workers=2)),
    ]
    out, funnel = executor.run_steps(world.table, chain)
    return world, out, funnel


@pytest.mark.parametrize(
    ("cls", "step"),
    [
        ("truncated_cot", "filter_rules"),
        ("missing_answer", "filter_rules"),
        ("non_english", "filter_rules"),
        ("repetition", "filter_rules"),
        ("benchmark_leak", "filter_contamination"),
    ],
)
def test_planted_defects_are_dropped(curated, cls, step):
    world, out, _funnel = curated
    survivors = set(out.column("id").to_pylist())
    assert world.planted[cls] and not survivors & set(world.planted[cls])


def test_duplicates_collapse_to_one_record(curated):
    world, out, funnel = curated
    survivors = set(out.column("id").to_pylist())
    for cls in ("exact_duplicate", "near_duplicate"):
        for dup in world.planted[cls]:
            assert not (dup in survivors and world.origin[dup] in survivors), (cls, dup)
    assert funnel["dedup_exact"].n_dropped == len(world.planted["exact_duplicate"])
    assert funnel["dedup_near"].n_dropped == len(world.planted["near_duplicate"])


def test_wrong_answers_fail_verification_and_clean_ones_pass(curated):
    world, out, _ = curated
    verdict = dict(zip(out.column("id").to_pylist(), out.column("verification").to_pylist()))
    assert all(verdict[i] == "fail" for i in world.planted["wrong_answer"])
    assert {verdict[i] for i in world.clean_ids if i in verdict} == {"pass"}


def test_clean_problems_and_numbers_variants_survive(curated):
    world, out, _ = curated
    survivors = set(out.column("id").to_pylist())
    assert set(world.numbers_variants) <= survivors
    twin = {}
    for cls in ("exact_duplicate", "near_duplicate"):
        for dup in world.planted[cls]:
            twin[world.origin[dup]] = dup
    lost = [i for i in world.clean_ids if i not in survivors and twin.get(i) not in survivors]
    assert lost == []
