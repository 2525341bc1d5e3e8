"""The quick exact-match check scores answers by value and counts the learned format separately."""

from __future__ import annotations

from pathlib import Path

import pytest

from infialign.pipeline import quickeval
from infialign.pipeline.world import reasoning, tiny_model


def test_untrained_tiny_model_scores_zero_and_reports_no_format() -> None:
    bench = reasoning.benchmark(n=4).to_pylist()
    result = quickeval.exact_match(Path(tiny_model.ensure_tiny_model()), [(r["messages"], r["answer"]) for r in bench], max_new_tokens=24)
    assert (result.total, result.correct, result.accuracy, result.answered) == (4, 0, 0.0, 0)
    assert len(result.samples) == 4 and all(s["correct"] is False for s in result.samples)


def test_empty_item_list() -> None:
    assert quickeval.exact_match(Path("unused"), []).total == 0


def test_scores_are_broken_down_by_the_bench_tier() -> None:
    bench = reasoning.benchmark(n=8).to_pylist()
    items = [(r["messages"], r["answer"]) for r in bench]
    tiers = [dict(r["provenance"])["tier"] for r in bench]
    result = quickeval.exact_match(Path(tiny_model.ensure_tiny_model()), items, max_new_tokens=8, groups=tiers, batch_size=3)
    assert {t: s.total for t, s in result.by_group.items()} == {t: tiers.count(t) for t in set(tiers)}
    assert sum(s.correct for s in result.by_group.values()) == result.correct == 0
    assert all(s.accuracy == 0.0 for s in result.by_group.values())


def test_group_score_accuracy_and_label_count_check() -> None:
    assert quickeval.GroupScore(correct=3, total=4).accuracy == 0.75
    assert quickeval.GroupScore(correct=0, total=0).accuracy == 0.0
    with pytest.raises(ValueError, match="groups has 1 labels for 2 items"):
        quickeval.exact_match(Path("unused"), [([], "1"), ([], "2")], groups=["1"])
