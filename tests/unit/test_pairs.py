"""The pair schema: one crafted table per rule; every error names the column."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from infialign.pipeline import pairs


def row(**overrides: Any) -> dict[str, Any]:
    base = {
        "id": "p1",
        "source": "world",
        "domain": "arithmetic",
        "prompt": [{"role": "user", "content": "What is 2 + 3?"}],
        "chosen": "<think>\n2 + 3 = 5.\n</think>\n\nThe answer is \\boxed{5}.",
        "rejected": "<think>\n2 + 3 = 6.\n</think>\n\nThe answer is \\boxed{6}.",
        "answer": "5",
        "difficulty": 0.25,
        "scores": {"sft_pass_rate": 0.25},
        "provenance": {"rejected_from": "sft-sample-3"},
    }
    base.update(overrides)
    return base


def test_a_valid_table_round_trips() -> None:
    table = pairs.to_pairs_table([row(), row(id="p2", difficulty=None, domain=None, answer=None)])
    assert table.schema == pairs.PAIR_SCHEMA
    assert table.column("difficulty").to_pylist() == [0.25, None]


def test_columns_are_reordered_and_cast() -> None:
    table = pairs.to_pairs_table([row()])
    shuffled = table.select(list(reversed(table.column_names)))
    assert pairs.validate_pairs(shuffled).schema == pairs.PAIR_SCHEMA


CASES = [
    ("duplicate-id", [row(), row()], "column 'id' must be unique; 'p1' appears more than once"),
    ("empty-chosen", [row(chosen="  ")], "column 'chosen' is empty for 1 rows (first: id 'p1')"),
    ("empty-rejected", [row(rejected="")], "column 'rejected' is empty for 1 rows (first: id 'p1')"),
    ("same-answers", [row(rejected=row()["chosen"])], "columns 'chosen' and 'rejected' are identical"),
    ("empty-prompt", [row(prompt=[])], "column 'prompt' is empty for id 'p1'"),
    ("prompt-ends-with-answer", [row(prompt=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])],
     "column 'prompt' of id 'p1' ends with an assistant message"),
    ("difficulty-out-of-range", [row(difficulty=1.5)], "column 'difficulty' is 1.5 for id 'p1'"),
    ("null-chosen", [row(chosen=None)], "column 'chosen' must not be null; 1 rows are null (first: id 'p1')"),
]


@pytest.mark.parametrize(("rows", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(rows: list[dict[str, Any]], message: str) -> None:
    relaxed = pa.schema([f.with_nullable(True) for f in pairs.PAIR_SCHEMA])  # let the crafted nulls in
    table = pa.Table.from_pylist(rows, schema=relaxed)
    with pytest.raises(pairs.PairSchemaError) as err:
        pairs.validate_pairs(table)
    assert message in str(err.value)


def test_missing_column_is_named() -> None:
    table = pairs.to_pairs_table([row()]).drop_columns(["rejected"])
    with pytest.raises(pairs.PairSchemaError, match=r"missing columns \['rejected'\]"):
        pairs.validate_pairs(table)


def test_reference_log_probs_in_a_pairs_file_are_refused() -> None:
    table = pairs.to_pairs_table([row()]).append_column("ref_chosen_logps", pa.array([-1.0]))
    with pytest.raises(pairs.PairSchemaError, match="never read from the pairs file"):
        pairs.validate_pairs(table)


def test_wrong_type_names_the_column() -> None:
    table = pairs.to_pairs_table([row()])
    bad = table.set_column(table.schema.get_field_index("difficulty"), "difficulty", pa.array(["hard"]))
    with pytest.raises(pairs.PairSchemaError, match="column 'difficulty' has type string"):
        pairs.validate_pairs(bad)
