"""The preference-pair schema: what `prefs` writes (`pairs.parquet`) and `dpo` reads.

One row is one DPO pair: the prompt as chat messages, a verified-correct expert/teacher response
(`chosen`) and a verified-wrong response of the SFT model (`rejected`). `difficulty` is the SFT
policy's pass rate on the prompt over its samples; SAGE uses it for its tiers (when it is null, the
tiers come from the length of `chosen`, research/seeds-algorithms.md §2.4).

The reference log-probabilities are *not* part of this schema: `dpo` computes them once with the frozen
SFT model and stores them beside the pairs (`pairs-ref.parquet`, training/reflogps.py), so a pairs file
can never smuggle in stale ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

import pyarrow as pa

from infialign.pipeline import records as _records

__all__ = ["PAIR_SCHEMA", "PairSchemaError", "validate_pairs", "to_pairs_table"]

PAIR_SCHEMA: Final = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # unique within the file
        pa.field("source", pa.string(), nullable=False),  # the source's name in the spec
        pa.field("domain", pa.string()),
        pa.field("prompt", pa.list_(_records.MESSAGE_TYPE), nullable=False),  # the chat messages before the answer
        pa.field("chosen", pa.string(), nullable=False),  # verified-correct expert/teacher response
        pa.field("rejected", pa.string(), nullable=False),  # verified-wrong SFT-model response
        pa.field("answer", pa.string()),  # the reference final answer
        pa.field("difficulty", pa.float64()),  # SFT pass rate on the prompt in [0, 1]; null: unknown
        pa.field("scores", pa.map_(pa.string(), pa.float64()), nullable=False),
        pa.field("provenance", pa.map_(pa.string(), pa.string()), nullable=False),
    ]
)

_REQUIRED: Final = tuple(f.name for f in PAIR_SCHEMA if not f.nullable)


class PairSchemaError(ValueError):
    """A pairs table does not match PAIR_SCHEMA. The message names the column (and a row id) and the fix."""


def to_pairs_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Build a validated pairs table from dicts; missing optional keys become null, maps default to empty."""
    normalised = []
    for row in rows:
        out = {name: row.get(name) for name in PAIR_SCHEMA.names}
        out["scores"] = dict(out["scores"] or {})
        out["provenance"] = {k: str(v) for k, v in dict(out["provenance"] or {}).items()}
        normalised.append(out)
    try:
        table = pa.Table.from_pylist(normalised, schema=PAIR_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise PairSchemaError(f"pairs do not match the pair schema (pairs.py): {e}") from e
    return validate_pairs(table)


def validate_pairs(table: pa.Table) -> pa.Table:
    """Check columns, types and values; return the table cast to PAIR_SCHEMA (column order fixed).

    Extra columns are an error rather than dropped: a `ref_chosen_logps` column in a pairs file would
    otherwise look trusted, and it must not be (the reference log-probs are recomputed by `dpo`).
    """
    missing = [n for n in PAIR_SCHEMA.names if n not in table.column_names]
    if missing:
        raise PairSchemaError(f"missing columns {missing}; a pairs file has the columns of pairs.PAIR_SCHEMA: {PAIR_SCHEMA.names}")
    extra = [n for n in table.column_names if n not in PAIR_SCHEMA.names]
    if extra:
        raise PairSchemaError(
            f"unknown columns {extra}; put extra values into `scores` or `provenance` (reference log-probs are computed "
            "by the dpo stage, never read from the pairs file)"
        )
    table = table.select(PAIR_SCHEMA.names)
    for field in PAIR_SCHEMA:
        try:
            table = table.set_column(table.schema.get_field_index(field.name), field.name, table.column(field.name).cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            raise PairSchemaError(
                f"column {field.name!r} has type {table.schema.field(field.name).type}, expected {field.type}: {e}"
            ) from e
    ids = table.column("id").to_pylist()
    for name in _REQUIRED:
        nulls = table.column(name).null_count
        if nulls:
            first = next(i for i, v in zip(ids, table.column(name).to_pylist(), strict=True) if v is None)
            raise PairSchemaError(f"column {name!r} must not be null; {nulls} rows are null (first: id {first!r})")
    table = table.cast(PAIR_SCHEMA)
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise PairSchemaError(f"column 'id' must be unique; {dup!r} appears more than once")
    for name in ("chosen", "rejected"):
        empty = [i for i, v in zip(ids, table.column(name).to_pylist(), strict=True) if not v.strip()]
        if empty:
            raise PairSchemaError(f"column {name!r} is empty for {len(empty)} rows (first: id {empty[0]!r}); drop those pairs")
    same = [i for i, c, r in zip(ids, table.column("chosen").to_pylist(), table.column("rejected").to_pylist(), strict=True) if c == r]
    if same:
        raise PairSchemaError(f"columns 'chosen' and 'rejected' are identical for {len(same)} rows (first: id {same[0]!r}); drop them")
    for i, prompt in zip(ids, table.column("prompt").to_pylist(), strict=True):
        if not prompt:
            raise PairSchemaError(f"column 'prompt' is empty for id {i!r}; it must hold the chat messages before the answer")
        if prompt[-1]["role"] == "assistant":
            raise PairSchemaError(
                f"column 'prompt' of id {i!r} ends with an assistant message; the answers belong in 'chosen'/'rejected'"
            )
    for i, d in zip(ids, table.column("difficulty").to_pylist(), strict=True):
        if d is not None and (math.isnan(d) or not 0.0 <= d <= 1.0):
            raise PairSchemaError(f"column 'difficulty' is {d} for id {i!r}; it is a pass rate in [0, 1] or null")
    return table
