"""Dataset cards: what a dataset a stage wrote looks like, as a PNG and a short markdown summary in MLflow.

Three parts, each with one job:

- ``card_numbers(name, table)`` — pure: rows, domain mix, response-length quantiles and histogram,
  difficulty quantiles, cluster sizes and verification outcomes from a pyarrow table. A column the
  dataset does not have (pairs have no ``cluster``) is skipped and named in ``skipped``, never an error.
- ``card_markdown(numbers)`` and ``render_png(numbers, path)`` — the two views of those numbers.
- ``log_cards(ctx, tables)`` — the edge: draws the cards into the attempt's scratch folder and logs them to
  the stage's MLflow run under ``cards/<dataset>.png|md``. Returns the names, which the funnel report links.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from infialign.pipeline.records import VERIFICATION_VALUES
from infialign.pipeline.runtime.context import StageContext

__all__ = ["CardNumbers", "card_numbers", "card_markdown", "render_png", "log_cards", "CARDS_DIR", "HISTOGRAM_SAMPLE"]

log = logging.getLogger(__name__)

CARDS_DIR: Final = "cards"  # artifact folder of the stage's MLflow run
# The histogram is drawn from at most this many rows (a fixed-seed sample): its shape is the same, and a
# card of a 10M-row pool stays cheap. Quantiles and counts use every row (Arrow computes them in C).
HISTOGRAM_SAMPLE: Final = 100_000
HISTOGRAM_BINS: Final = 30
TOP_DOMAINS: Final = 12  # the markdown table and the bar chart show this many; the rest are summed as "other"
DIFFICULTY_QUANTILES: Final = (0.1, 0.25, 0.5, 0.75, 0.9)
LENGTH_QUANTILES: Final = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class CardNumbers:
    """Everything a card shows. ``None`` for a part means the dataset has no such column (see ``skipped``)."""

    dataset: str
    rows: int
    domains: tuple[tuple[str, int], ...] | None = None  # most rows first; null domains count as "(none)"
    length_quantiles: dict[float, float] | None = None  # response_tokens at LENGTH_QUANTILES
    length_histogram: tuple[tuple[float, ...], tuple[int, ...]] | None = None  # (bin edges, counts) of the sample
    length_sampled: int = 0  # rows the histogram was drawn from
    difficulty_quantiles: dict[float, float] | None = None  # difficulty at DIFFICULTY_QUANTILES
    cluster_sizes: tuple[int, ...] | None = None  # rows per cluster, largest first
    verification: tuple[tuple[str, int], ...] | None = None  # outcomes in VERIFICATION_VALUES order, then others
    skipped: tuple[str, ...] = field(default_factory=tuple)  # "cluster: no column" — why a panel is empty


# ---------------------------------------------------------------- numbers (pure)


def _counts(column: pa.ChunkedArray, null_label: str) -> list[tuple[str, int]]:
    counts = pc.value_counts(column.fill_null(null_label) if column.null_count else column).to_pylist()
    return [(str(c["values"]), int(c["counts"])) for c in counts]


def _quantiles(values: pa.ChunkedArray, qs: tuple[float, ...]) -> dict[float, float] | None:
    present = pc.drop_null(values)
    if len(present) == 0:
        return None
    # "linear" interpolation: numpy's default, so a test can check against np.quantile
    out = pc.quantile(present.cast(pa.float64()), q=list(qs), interpolation="linear").to_pylist()
    return dict(zip(qs, (float(v) for v in out), strict=True))


def _sample(values: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    if len(values) <= limit:
        return values
    return np.random.default_rng(seed).choice(values, size=limit, replace=False)


def _difficulty(table: pa.Table) -> pa.ChunkedArray | None:
    """Pairs carry a ``difficulty`` column (SFT pass rate); records carry ``scores["difficulty"]`` after select."""
    if "difficulty" in table.column_names:
        return table.column("difficulty")
    if "scores" in table.column_names and pa.types.is_map(table.schema.field("scores").type):
        return pc.map_lookup(table.column("scores"), pa.scalar("difficulty"), "first")
    return None


def card_numbers(dataset: str, table: pa.Table, *, histogram_sample: int = HISTOGRAM_SAMPLE) -> CardNumbers:
    """The card of ``table``. Missing columns become ``None`` parts listed in ``skipped``."""
    names = set(table.column_names)
    skipped: list[str] = []
    domains = None
    if "domain" in names:
        domains = tuple(sorted(_counts(table.column("domain"), "(none)"), key=lambda kv: (-kv[1], kv[0])))
    else:
        skipped.append("domain: no column")

    length_q = histogram = None
    sampled = 0
    if "response_tokens" in names:
        lengths = table.column("response_tokens")
        length_q = _quantiles(lengths, LENGTH_QUANTILES)
        present = pc.drop_null(lengths).to_numpy()
        if len(present):
            sample = _sample(np.asarray(present, dtype=np.float64), histogram_sample)
            counts, edges = np.histogram(sample, bins=HISTOGRAM_BINS)
            histogram = (tuple(float(e) for e in edges), tuple(int(c) for c in counts))
            sampled = len(sample)
        else:
            skipped.append("response_tokens: every value is null (not measured)")
    else:
        skipped.append("response_tokens: no column")

    difficulty_q = None
    difficulty = _difficulty(table)
    if difficulty is None:
        skipped.append("difficulty: no column")
    else:
        difficulty_q = _quantiles(difficulty, DIFFICULTY_QUANTILES)
        if difficulty_q is None:
            skipped.append("difficulty: not scored (select scores it)")

    clusters = None
    if "cluster" in names:
        present_clusters = pc.drop_null(table.column("cluster"))
        if len(present_clusters):
            clusters = tuple(sorted((int(c["counts"]) for c in pc.value_counts(present_clusters).to_pylist()), reverse=True))
        else:
            skipped.append("cluster: every value is null (not clustered)")
    else:
        skipped.append("cluster: no column")

    verification = None
    if "verification" in names:
        found = dict(_counts(table.column("verification"), "(none)"))
        ordered = [(v, found.pop(v)) for v in VERIFICATION_VALUES if v in found]
        verification = tuple(ordered + sorted(found.items()))
    else:
        skipped.append("verification: no column")

    return CardNumbers(
        dataset=dataset,
        rows=table.num_rows,
        domains=domains,
        length_quantiles=length_q,
        length_histogram=histogram,
        length_sampled=sampled,
        difficulty_quantiles=difficulty_q,
        cluster_sizes=clusters,
        verification=verification,
        skipped=tuple(skipped),
    )


def _top(domains: tuple[tuple[str, int], ...], limit: int = TOP_DOMAINS) -> list[tuple[str, int]]:
    head = list(domains[:limit])
    rest = sum(n for _, n in domains[limit:])
    return head + ([("other", rest)] if rest else [])


def _pct(q: float) -> str:
    return f"p{round(q * 100)}"


# ---------------------------------------------------------------- views


def card_markdown(numbers: CardNumbers, step: str | None = None) -> str:
    """A short summary: rows, domain mix table, length quantiles, difficulty, clusters, verification counts."""
    n = numbers
    lines = [f"# Dataset card: {n.dataset}", ""]
    lines.append(f"**{n.rows:,} rows**" + (f" written by step `{step}`." if step else "."))
    lines.append("")
    if n.domains is not None:
        lines += ["## Domain mix", "", "| domain | rows | share |", "|---|---:|---:|"]
        lines += [f"| {d} | {c:,} | {c / max(n.rows, 1):.1%} |" for d, c in _top(n.domains)]
        lines.append("")
    if n.length_quantiles is not None:
        qs = " / ".join(_pct(q) for q in n.length_quantiles)
        vs = " / ".join(f"{v:,.0f}" for v in n.length_quantiles.values())
        lines += ["## Response length (response_tokens)", "", f"{qs}: {vs} tokens", ""]
    if n.difficulty_quantiles is not None:
        qs = " / ".join(_pct(q) for q in n.difficulty_quantiles)
        vs = " / ".join(f"{v:.2f}" for v in n.difficulty_quantiles.values())
        lines += ["## Difficulty", "", f"{qs}: {vs}", ""]
    if n.cluster_sizes is not None:
        sizes = n.cluster_sizes
        lines += ["## Clusters", "", f"{len(sizes)} clusters; rows per cluster: largest {sizes[0]:,}, median {int(np.median(sizes)):,}, smallest {sizes[-1]:,}", ""]
    if n.verification is not None:
        lines += ["## Verification", "", "| outcome | rows |", "|---|---:|"]
        lines += [f"| {v} | {c:,} |" for v, c in n.verification]
        lines.append("")
    if n.skipped:
        lines += ["Not shown: " + "; ".join(n.skipped) + ".", ""]
    return "\n".join(lines)


def _empty(ax: object, title: str, why: str) -> None:
    ax.set_title(title)  # type: ignore[attr-defined]
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=9, color="#777777", transform=ax.transAxes, wrap=True)  # type: ignore[attr-defined]
    ax.set_axis_off()  # type: ignore[attr-defined]


def _why(numbers: CardNumbers, column: str) -> str:
    return next((s.split(": ", 1)[1] for s in numbers.skipped if s.startswith(column + ":")), "nothing to show")


def render_png(numbers: CardNumbers, path: Path, step: str | None = None) -> Path:
    """Draw the card's five panels on the Agg canvas (never switching the caller's matplotlib backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = numbers
    fig = Figure(figsize=(13, 7.5))
    FigureCanvasAgg(fig)
    title = f"{n.dataset}: {n.rows:,} rows" + (f"  (step {step})" if step else "")
    fig.suptitle(title, fontsize=13)
    axes = fig.subplots(2, 3)
    blue, orange = "#4C72B0", "#DD8452"

    ax = axes[0][0]
    if n.domains:
        top = _top(n.domains)[::-1]
        ax.barh([d for d, _ in top], [c for _, c in top], color=blue)
        for i, (_, c) in enumerate(top):
            ax.text(c, i, f" {c / max(n.rows, 1):.0%}", va="center", fontsize=8)
        ax.set_xlim(0, max(c for _, c in top) * 1.25)
        ax.set_title("domain mix")
        ax.set_xlabel("rows")
        ax.tick_params(axis="y", labelsize=8)
    else:
        _empty(ax, "domain mix", _why(n, "domain"))

    ax = axes[0][1]
    if n.length_histogram is not None:
        edges, counts = n.length_histogram
        ax.stairs(counts, edges, fill=True, color=blue)
        quantiles = n.length_quantiles or {}
        for v in quantiles.values():
            ax.axvline(v, color=orange, linestyle="--", linewidth=1)
        sampled = "" if n.length_sampled >= n.rows else f" (sample of {n.length_sampled:,})"
        ax.set_title("response length" + sampled)
        # the quantile values go under the axis: labels on the lines collide with the bars
        ax.set_xlabel("response_tokens   " + "  ".join(f"{_pct(q)} {v:,.0f}" for q, v in quantiles.items()) + " (dashed)")
        ax.set_ylabel("rows")
    else:
        _empty(ax, "response length", _why(n, "response_tokens"))

    ax = axes[0][2]
    if n.difficulty_quantiles is not None:
        qs = list(n.difficulty_quantiles)
        vs = list(n.difficulty_quantiles.values())
        ax.bar([_pct(q) for q in qs], vs, color=blue)
        for i, v in enumerate(vs):
            ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(1.0, max(vs) * 1.1))
        ax.set_title("difficulty quantiles")
        ax.set_ylabel("difficulty")
    else:
        _empty(ax, "difficulty quantiles", _why(n, "difficulty"))

    ax = axes[1][0]
    if n.cluster_sizes:
        sizes = n.cluster_sizes
        ax.bar(range(len(sizes)), sizes, width=1.0, color=blue)
        ax.axhline(float(np.median(sizes)), color=orange, linestyle="--", linewidth=1, label=f"median {int(np.median(sizes))}")
        ax.legend(fontsize=8)
        ax.set_title(f"cluster sizes ({len(sizes)} clusters, largest first)")
        ax.set_xlabel("cluster rank")
        ax.set_ylabel("rows")
    else:
        _empty(ax, "cluster sizes", _why(n, "cluster"))

    ax = axes[1][1]
    if n.verification:
        colors = {"pass": "#55A868", "fail": "#C44E52", "error": "#8172B2", "timeout": "#937860", "unverified": "#CCB974", "unknown": "#8C8C8C"}
        labels = [v for v, _ in n.verification]
        counts_v = [c for _, c in n.verification]
        ax.bar(labels, counts_v, color=[colors.get(v, blue) for v in labels])
        for i, c in enumerate(counts_v):
            ax.text(i, c, f"{c:,}", ha="center", va="bottom", fontsize=8)
        ax.set_title("verification outcomes")
        ax.set_ylabel("rows")
    else:
        _empty(ax, "verification outcomes", _why(n, "verification"))

    ax = axes[1][2]
    ax.set_axis_off()
    summary = [f"rows: {n.rows:,}"]
    if n.domains is not None:
        summary.append(f"domains: {len(n.domains)}")
    if n.length_quantiles is not None:
        summary.append("length " + " / ".join(f"{_pct(q)} {v:,.0f}" for q, v in n.length_quantiles.items()))
    if n.cluster_sizes is not None:
        summary.append(f"clusters: {len(n.cluster_sizes)}")
    if n.verification is not None:
        verified = dict(n.verification).get("pass", 0)
        summary.append(f"verified (pass): {verified:,} ({verified / max(n.rows, 1):.0%})")
    summary += [textwrap.fill(f"not shown: {s}", width=44, subsequent_indent="  ") for s in n.skipped]
    ax.text(0.0, 1.0, "\n".join(summary), va="top", ha="left", fontsize=9, family="monospace", transform=ax.transAxes, wrap=True)

    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=90)
    return path


# ---------------------------------------------------------------- the edge


def log_cards(ctx: StageContext, tables: Mapping[str, pa.Table]) -> list[str]:
    """Draw and log one card per dataset; returns the names that got a card.

    A card is a report about data already written: a failure to draw it is logged, never a failed stage.
    """
    done: list[str] = []
    folder = ctx.scratch / CARDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        try:
            numbers = card_numbers(name, table)
            md = folder / f"{name}.md"
            md.write_text(card_markdown(numbers, step=ctx.config.step), encoding="utf-8")
            png = render_png(numbers, folder / f"{name}.png", step=ctx.config.step)
        except Exception:  # noqa: BLE001  a report must not fail the step whose data is already written
            log.exception("%s: could not draw the card of %s", ctx.config.step, name)
            continue
        ctx.tracker.log_artifact(png, CARDS_DIR)
        ctx.tracker.log_artifact(md, CARDS_DIR)
        done.append(name)
    return done
