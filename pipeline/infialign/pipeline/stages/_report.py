"""The funnel report both data stages write: a JSON artifact, an MLflow table, a PNG chart and metrics."""

from __future__ import annotations

import logging

import pyarrow as pa

from infialign.pipeline.curation import Funnel
from infialign.pipeline.runtime import storage
from infialign.pipeline.runtime.context import StageContext

__all__ = ["write_funnel", "digest_of"]

log = logging.getLogger(__name__)


def digest_of(table: pa.Table) -> str:
    return storage.table_digest(table)


def write_funnel(ctx: StageContext, funnel: Funnel, stage: str, rows_in: int, rows_out: int) -> None:
    ctx.write_json("funnel", funnel.to_json())
    ctx.tracker.log_table(funnel.to_columns(), f"{stage}-funnel.json")
    png = funnel.plot_png(ctx.scratch / f"{stage}-funnel.png")
    if png is not None:
        ctx.tracker.log_artifact(png)
    metrics = {f"funnel.{k}": v for k, v in funnel.metrics().items()}
    ctx.add_metrics(metrics, headline=False)
    ctx.add_metrics({"rows_in": rows_in, "rows_out": rows_out})
    for row in funnel.to_rows():
        log.info("funnel %s", row)
