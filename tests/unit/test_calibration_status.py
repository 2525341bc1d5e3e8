"""Calibration metrics reach the step status first, and generation throughput is Σ tokens / Σ seconds of the shards."""

from __future__ import annotations

import pytest

from infialign.pipeline.runtime import markers
from infialign.pipeline.stages import _sharded


def test_status_metrics_put_the_calibration_first_and_keep_them_under_the_bound() -> None:
    raw = {f"m{i:02d}": float(i) for i in range(40)} | {"mfu": 0.3, "tokens_per_second": 1e4, "train_flops": 1e18, "generated_tokens_per_second": 9.0}
    out = markers.status_step_metrics(raw)
    assert out is not None and len(out) == markers.STATUS_ITEMS
    assert list(out)[:4] == ["tokens_per_second", "mfu", "train_flops", "generated_tokens_per_second"]
    assert markers.status_step_metrics({}) is None


def test_status_metrics_drop_values_that_are_not_finite_numbers() -> None:
    assert markers.status_step_metrics({"tokens_per_second": float("nan"), "rows_out": 3}) == {"rows_out": 3.0}


def test_generation_rate_is_one_engines_rate_over_the_timed_shards() -> None:
    # two shards on two engines: 1,000 tokens in 10 s and 3,000 in 20 s → 4,000 / 30 s
    assert _sharded.generation_rate([(1000, 10.0), (3000, 20.0)]) == pytest.approx({"generated_tokens_per_second": 4000 / 30})
    assert _sharded.generation_rate([]) == {}
    assert _sharded.generation_rate([(0, 5.0)]) == {}
