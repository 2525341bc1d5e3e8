"""The quick exact-match check scores answers by value and counts the learned format separately."""

from __future__ import annotations

from pathlib import Path

from infialign.pipeline import quickeval
from infialign.pipeline.world import reasoning, tiny_model


def test_untrained_tiny_model_scores_zero_and_reports_no_format() -> None:
    bench = reasoning.benchmark(n=4).to_pylist()
    result = quickeval.exact_match(Path(tiny_model.ensure_tiny_model()), [(r["messages"], r["answer"]) for r in bench], max_new_tokens=24)
    assert (result.total, result.correct, result.accuracy, result.answered) == (4, 0, 0.0, 0)
    assert len(result.samples) == 4 and all(s["correct"] is False for s in result.samples)


def test_empty_item_list() -> None:
    assert quickeval.exact_match(Path("unused"), []).total == 0
