"""The verification step over record-schema tables (used by ``select``; any stage may run it).

Writes ``verification`` and, in ``provenance``, ``verifier``, ``verify_reason`` and ``reference_source``
for every row whose verdict is ``unknown`` (not checked yet) and that has a response. Rows without a
response stay ``unknown``: there is nothing to check, and ``distill`` is where they get one.
Global scope: it runs its own worker processes, so executors call it once on the whole table.
"""

from __future__ import annotations

import pyarrow as pa

from infialign.pipeline import records
from infialign.pipeline.api import VerificationSettings
from infialign.pipeline.curation import _arrow, stats, steps
from infialign.pipeline.verifiers import dispatch

__all__ = ["verify_records"]


@steps.step(
    "verify_records",
    kind="transform",
    scope="global",
    reads=("messages", "response", "answer", "verification", "provenance"),
    writes=("verification", "provenance"),
)
def verify_records(table: pa.Table, settings: VerificationSettings) -> tuple[pa.Table, stats.StepStats]:
    """Verdicts for unchecked rows; counters ``verification_<status>`` (all rows) and ``verified_by_<verifier>``."""
    n = table.num_rows
    current = _arrow.strings(table, "verification")
    rows = records.to_records(table)
    todo = [i for i in range(n) if current[i] in (None, "unknown") and (rows[i].get("response") or "").strip()]
    verdicts = dispatch.verify_all([dispatch.task_from_record(rows[i]) for i in todo], settings)
    provenance = [dict(r.get("provenance") or {}) for r in rows]
    counters: dict[str, float] = {f"verification_{v}": 0 for v in records.VERIFICATION_VALUES}
    for i, v in zip(todo, verdicts):
        current[i] = v.status
        provenance[i].update({"verifier": v.verifier, "verify_reason": v.reason, "reference_source": v.reference_source})
        counters[f"verified_by_{v.verifier}"] = counters.get(f"verified_by_{v.verifier}", 0) + 1
    for v in current:
        counters[f"verification_{v}"] = counters.get(f"verification_{v}", 0) + 1
    prov_type = table.schema.field("provenance").type
    out = _arrow.replace_column(table, "verification", pa.array(current, pa.string()))
    out = _arrow.replace_column(out, "provenance", pa.array([list(p.items()) for p in provenance], prov_type))
    return out, stats.StepStats.passthrough("verify_records", n, counters)
