"""The one record schema every dataset between stages uses (DESIGN.md section 4).

Records are plain dicts in Python and rows of ``RECORD_SCHEMA`` in Arrow/Parquet. ``scores`` and
``provenance`` are Arrow maps so that any stage can add a key without a schema change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

import pyarrow as pa

__all__ = [
    "RECORD_SCHEMA",
    "REQUIRED_COLUMNS",
    "VERIFICATION_VALUES",
    "Verification",
    "RecordSchemaError",
    "to_table",
    "to_records",
    "validate_table",
    "empty_table",
]

Verification = Literal["unknown", "pass", "fail", "error", "timeout", "unverified"]
VERIFICATION_VALUES: Final = ("unknown", "pass", "fail", "error", "timeout", "unverified")
"""``unknown``: not checked yet. ``pass`` / ``fail``: a verifier decided against a reference that did not
come from the response itself (only ``pass`` counts as verified). ``error``: the check crashed.
``timeout``: the check ran out of time (never recorded as ``fail``). ``unverified``: checked, but nothing
independent to check against (no reference, or a reference taken from the response itself)."""

MESSAGE_TYPE: Final = pa.struct([("role", pa.string()), ("content", pa.string())])

RECORD_SCHEMA: Final = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # stable id: sha1 of the normalised prompt + source row
        pa.field("source", pa.string(), nullable=False),  # the source's name in the spec
        pa.field("domain", pa.string()),  # e.g. "algebra", "number_theory"; None before labelling
        pa.field("messages", pa.list_(MESSAGE_TYPE), nullable=False),  # the prompt as chat messages
        pa.field("response", pa.string()),  # the full CoT, <think> block included; None if missing
        pa.field("answer", pa.string()),  # the reference final answer; None if unknown
        pa.field("verification", pa.string(), nullable=False),  # one of VERIFICATION_VALUES
        pa.field("response_tokens", pa.int32()),  # length of `response` in tokens; None if not measured
        pa.field("cluster", pa.int32()),  # k-means cluster of the prompt embedding; None before clustering
        pa.field("scores", pa.map_(pa.string(), pa.float64()), nullable=False),
        pa.field("provenance", pa.map_(pa.string(), pa.string()), nullable=False),
    ]
)

REQUIRED_COLUMNS: Final = tuple(f.name for f in RECORD_SCHEMA if not f.nullable)


class RecordSchemaError(ValueError):
    """A table or record does not match RECORD_SCHEMA. The message names the column and the row."""


def _normalise(record: Mapping[str, Any]) -> dict[str, Any]:
    row = {name: record.get(name) for name in RECORD_SCHEMA.names}
    row["verification"] = row["verification"] or "unknown"
    # Arrow map columns take a list of (key, value) pairs or a dict; None is not a valid map here.
    row["scores"] = dict(row["scores"] or {})
    row["provenance"] = {k: str(v) for k, v in dict(row["provenance"] or {}).items()}
    return row


def to_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Build a validated table from dicts. Missing optional keys become null."""
    rows = [_normalise(r) for r in records]
    try:
        table = pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise RecordSchemaError(f"records do not match the record schema: {e}") from e
    validate_table(table)
    return table


def to_records(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts, with map columns turned back into dicts."""
    rows = table.to_pylist()
    for row in rows:
        for name in ("scores", "provenance"):
            value = row.get(name)
            if isinstance(value, list):
                row[name] = dict(value)
    return rows


def empty_table() -> pa.Table:
    return RECORD_SCHEMA.empty_table()


def validate_table(table: pa.Table) -> pa.Table:
    """Check columns, types and values; return the table cast to RECORD_SCHEMA (column order fixed)."""
    missing = [n for n in RECORD_SCHEMA.names if n not in table.column_names]
    if missing:
        raise RecordSchemaError(f"missing columns {missing}; every dataset uses the record schema of DESIGN.md §4")
    extra = [n for n in table.column_names if n not in RECORD_SCHEMA.names]
    if extra:
        raise RecordSchemaError(f"unknown columns {extra}; put extra values into `scores` or `provenance`")
    table = table.select(RECORD_SCHEMA.names)
    try:
        table = table.cast(RECORD_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise RecordSchemaError(f"column types do not match the record schema: {e}") from e
    for name in REQUIRED_COLUMNS:
        nulls = table.column(name).null_count
        if nulls:
            raise RecordSchemaError(f"column {name!r} must not be null; {nulls} rows are null")
    bad = set(table.column("verification").to_pylist()) - set(VERIFICATION_VALUES)
    if bad:
        raise RecordSchemaError(f"column 'verification' has {sorted(bad)}; allowed: {list(VERIFICATION_VALUES)}")
    ids = table.column("id")
    if len(set(ids.to_pylist())) != table.num_rows:
        raise RecordSchemaError("column 'id' must be unique within a dataset")
    return table
