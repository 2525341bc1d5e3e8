"""The funnel report the data stages write: a JSON artifact, an MLflow table, a PNG chart, a markdown page
that links the stage's dataset cards, and metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pyarrow as pa

from infialign.pipeline.curation import Funnel
from infialign.pipeline.runtime import storage
from infialign.pipeline.runtime.context import StageContext
from infialign.pipeline.stages import _cards

__all__ = ["write_funnel", "digest_of", "funnel_markdown"]

log = logging.getLogger(__name__)


def digest_of(table: pa.Table) -> str:
    return storage.table_digest(table)


def funnel_markdown(funnel: Funnel, stage: str, cards: Sequence[str] = (), warnings: Sequence[str] = ()) -> str:
    """The funnel as a markdown table (after the stage's warnings, so a shortfall is read first), then links to
    the dataset cards beside it in the same MLflow run."""
    lines = [f"# {stage} funnel", ""]
    if warnings:
        lines += ["## Warnings", "", *[f"- {w}" for w in warnings], ""]
    lines += ["| step | rows in | rows out | dropped | reasons |", "|---|---:|---:|---:|---|"]
    for row in funnel.to_rows():
        lines.append(f"| {row['step']} | {row['rows_in']:,} | {row['rows_out']:,} | {row['dropped']:,} | {row['reasons'] or ''} |")
    if cards:
        lines += ["", "## Dataset cards", ""]
        lines += [f"- {name}: [{_cards.CARDS_DIR}/{name}.png]({_cards.CARDS_DIR}/{name}.png), [{_cards.CARDS_DIR}/{name}.md]({_cards.CARDS_DIR}/{name}.md)" for name in cards]
    return "\n".join(lines) + "\n"


def write_funnel(
    ctx: StageContext, funnel: Funnel, stage: str, rows_in: int, rows_out: int, cards: Sequence[str] = (), warnings: Sequence[str] = ()
) -> None:
    """Write the report. ``warnings`` head the markdown page; the caller also raises them with ``ctx.warn`` (the
    step's status message, ``_SUCCESS.json`` and the MLflow tag ``infialign.warnings``)."""
    ctx.write_json("funnel", funnel.to_json())
    ctx.tracker.log_table(funnel.to_columns(), f"{stage}-funnel.json")
    png = funnel.plot_png(ctx.scratch / f"{stage}-funnel.png")
    if png is not None:
        ctx.tracker.log_artifact(png)
    md = ctx.scratch / f"{stage}-funnel.md"
    md.write_text(funnel_markdown(funnel, stage, cards, warnings), encoding="utf-8")
    ctx.tracker.log_artifact(md)
    metrics = {f"funnel.{k}": v for k, v in funnel.metrics().items()}
    ctx.add_metrics(metrics, headline=False)
    ctx.add_metrics({"rows_in": rows_in, "rows_out": rows_out})
    for row in funnel.to_rows():
        log.info("funnel %s", row)
