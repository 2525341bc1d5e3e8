"""StepStats add up, merge with +, and the funnel renders rows, JSON and a PNG."""

from __future__ import annotations

import pytest
from infialign.pipeline.curation import stats


def test_from_reasons_counts_and_keeps_a_few_examples():
    st = stats.StepStats.from_reasons("f", [f"id{i}" for i in range(10)], [None, "a", "a", "a", "a", "b", None, None, "a", None])
    assert (st.total, st.kept, dict(st.dropped)) == (10, 4, {"a": 5, "b": 1})
    assert [e.id for e in st.examples if e.reason == "a"] == ["id1", "id2", "id3"]
    assert st.as_dict() == {"total": 10, "kept": 4, "dropped": 6, "dropped_a": 5, "dropped_b": 1}


def test_total_must_equal_kept_plus_dropped():
    with pytest.raises(stats.StatsError, match="total"):
        stats.StepStats("f", total=5, kept=3, dropped={"a": 1})


def test_add_merges_shards_of_one_step():
    a = stats.StepStats.from_reasons("f", ["1", "2"], ["x", None], counters={"pairs": 2})
    b = stats.StepStats.from_reasons("f", ["3", "4", "5"], ["x", "y", None], counters={"pairs": 1})
    s = a + b
    assert (s.total, s.kept, dict(s.dropped), dict(s.counters)) == (5, 2, {"x": 2, "y": 1}, {"pairs": 3})
    assert [e.id for e in s.examples] == ["1", "3", "4"]
    assert sum([a, b], stats.StepStats("f")) == s
    with pytest.raises(stats.StatsError, match="cannot add"):
        a + stats.StepStats("g")


def test_funnel_rows_json_roundtrip_and_png(tmp_path):
    f = stats.Funnel()
    f.add(stats.StepStats.passthrough("score", 3))
    f.add(stats.StepStats.from_reasons("filter", ["a", "b", "c"], [None, "empty_prompt", None]))
    f.add(stats.StepStats.from_reasons("filter", ["d"], ["non_english"]))
    rows = f.to_rows()
    assert [(r["step"], r["rows_in"], r["rows_out"]) for r in rows] == [("score", 3, 3), ("filter", 4, 2)]
    assert rows[1]["reasons"] == "empty_prompt=1; non_english=1"
    assert "b (empty_prompt)" in rows[1]["examples"]
    assert f.to_columns()["rows_out"] == [3, 2]
    assert f.metrics()["filter.dropped_non_english"] == 1.0
    assert stats.Funnel.from_json(f.to_json()).to_rows() == rows
    png = f.plot_png(tmp_path / "funnel.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
