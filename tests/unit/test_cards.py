"""Dataset cards: numbers from crafted tables, the markdown summary, the PNG, and the funnel page that links them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from infialign.pipeline import curation, pairs, records
from infialign.pipeline.stages import _cards, _report


def _records(specs: list[tuple[str, int | None, int | None, str, float | None]]) -> pa.Table:
    """(domain, response_tokens, cluster, verification, difficulty) per row."""
    rows = []
    for i, (domain, tokens, cluster, verdict, difficulty) in enumerate(specs):
        rows.append(
            {
                "id": f"r{i}", "source": "s", "domain": domain, "messages": [{"role": "user", "content": "q"}],
                "response": "a", "answer": "1", "verification": verdict, "response_tokens": tokens, "cluster": cluster,
                "scores": {"difficulty": difficulty} if difficulty is not None else {},
            }
        )
    return records.to_table(rows)


def test_numbers_of_a_crafted_selection() -> None:
    table = _records(
        [("algebra", 10, 0, "pass", 0.0), ("algebra", 20, 0, "pass", 0.25), ("algebra", 30, 1, "fail", 0.5),
         ("geometry", 40, 2, "unverified", 0.75), (None, 50, 2, "pass", 1.0)]
    )
    n = _cards.card_numbers("sft-phase1", table)
    assert n.rows == 5
    assert n.domains == (("algebra", 3), ("(none)", 1), ("geometry", 1))
    assert n.length_quantiles == pytest.approx({0.1: 14.0, 0.5: 30.0, 0.9: 46.0})  # numpy's linear rule on 10..50
    edges, counts = n.length_histogram
    assert sum(counts) == 5 and edges[0] == 10.0 and edges[-1] == 50.0
    assert n.difficulty_quantiles == pytest.approx({0.1: 0.1, 0.25: 0.25, 0.5: 0.5, 0.75: 0.75, 0.9: 0.9})
    assert n.cluster_sizes == (2, 2, 1)
    assert n.verification == (("pass", 3), ("fail", 1), ("unverified", 1))  # the schema's order, not by count
    assert n.skipped == ()


def test_a_pool_before_select_has_no_difficulty_and_unmeasured_lengths_are_skipped() -> None:
    table = _records([("algebra", None, None, "unknown", None), ("algebra", None, None, "unknown", None)])
    n = _cards.card_numbers("pool", table)
    assert n.length_quantiles is None and n.length_histogram is None
    assert n.difficulty_quantiles is None and n.cluster_sizes is None
    assert n.verification == (("unknown", 2),)
    assert [s.split(":")[0] for s in n.skipped] == ["response_tokens", "difficulty", "cluster"]


def test_pairs_have_no_cluster_or_length_and_their_difficulty_is_a_column() -> None:
    table = pairs.to_pairs_table(
        [
            {"id": f"p{i}", "source": "s", "domain": "algebra", "prompt": [{"role": "user", "content": "q"}], "chosen": "c", "rejected": "r",
             "difficulty": d}
            for i, d in enumerate([0.0, 0.5, 1.0])
        ]
    )
    n = _cards.card_numbers("pairs", table)
    assert n.domains == (("algebra", 3),)
    assert n.difficulty_quantiles is not None and n.difficulty_quantiles[0.5] == pytest.approx(0.5)
    assert n.cluster_sizes is None and n.verification is None and n.length_histogram is None
    assert {s.split(":")[0] for s in n.skipped} == {"response_tokens", "cluster", "verification"}


def test_the_histogram_samples_large_tables_but_quantiles_use_every_row() -> None:
    lengths = np.arange(1, 1001)
    table = pa.table({"response_tokens": pa.array(lengths, pa.int32())})
    n = _cards.card_numbers("big", table, histogram_sample=100)
    assert n.length_sampled == 100 and sum(n.length_histogram[1]) == 100
    assert n.length_quantiles[0.5] == pytest.approx(np.quantile(lengths, 0.5))
    again = _cards.card_numbers("big", table, histogram_sample=100)
    assert again.length_histogram == n.length_histogram  # fixed seed: the same card every time


def test_markdown_lists_rows_domain_mix_length_quantiles_and_verification() -> None:
    table = _records([("algebra", 10, 0, "pass", 0.2), ("algebra", 30, 0, "fail", 0.4), ("geometry", 50, 1, "pass", 0.6), ("geometry", 70, 1, "timeout", 0.8)])
    md = _cards.card_markdown(_cards.card_numbers("sft-phase2", table), step="select")
    assert md.startswith("# Dataset card: sft-phase2")
    assert "**4 rows** written by step `select`." in md
    assert "| algebra | 2 | 50.0% |" in md and "| geometry | 2 | 50.0% |" in md
    assert "p10 / p50 / p90: 16 / 40 / 64 tokens" in md
    assert "| pass | 2 |" in md and "| fail | 1 |" in md and "| timeout | 1 |" in md
    assert "2 clusters" in md
    assert "Not shown" not in md


def test_markdown_names_what_a_dataset_lacks() -> None:
    table = pa.table({"domain": ["a", "b"]})
    md = _cards.card_markdown(_cards.card_numbers("bare", table))
    assert "Not shown: response_tokens: no column; difficulty: no column; cluster: no column; verification: no column." in md


def test_render_png_with_and_without_panels(tmp_path: Path) -> None:
    full = _records([("algebra", 10 * i, i % 3, "pass", i / 10) for i in range(1, 10)])
    bare = pa.table({"domain": ["a"]})
    for name, table in (("full", full), ("bare", bare)):
        path = _cards.render_png(_cards.card_numbers(name, table), tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_funnel_markdown_links_the_cards() -> None:
    funnel = curation.Funnel([curation.StepStats.passthrough("score", 5)])
    md = _report.funnel_markdown(funnel, "select", ["sft-phase1", "dpo-prompts"])
    assert "| score | 5 | 5 | 0 |  |" in md
    assert "- sft-phase1: [cards/sft-phase1.png](cards/sft-phase1.png), [cards/sft-phase1.md](cards/sft-phase1.md)" in md
    assert "- dpo-prompts: [cards/dpo-prompts.png]" in md
