"""Helpers for the curation tests: a record builder."""

from __future__ import annotations

import itertools
from typing import Any

import pyarrow as pa
from infialign.pipeline import records

_ids = itertools.count()


def make_record(prompt: str | None = "What is the value of x if 2x + 3 = 7 for a real number x?", **fields: Any) -> dict[str, Any]:
    """A valid record dict; ``prompt`` becomes one user message, other keys override record fields."""
    rec: dict[str, Any] = {
        "id": fields.pop("id", f"r{next(_ids):05d}"),
        "source": "test",
        "domain": "algebra",
        "messages": [] if prompt is None else [{"role": "user", "content": prompt}],
        "response": "<think>2x = 4, so x = 2.</think>\nThe answer is \\boxed{2}.",
        "answer": "2",
        "verification": "unknown",
    }
    rec.update(fields)
    return rec


def make_table(*recs: dict[str, Any]) -> pa.Table:
    return records.to_table(recs)
