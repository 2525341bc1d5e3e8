"""Counts of what each curation step kept and dropped, and the funnel they add up to.

Every step returns a :class:`StepStats`: ``total`` rows in, ``kept`` rows out, and ``dropped[reason]``
for every row it removed, with ``total == kept + sum(dropped)`` checked on construction (house rule 10).
Stats are values that merge with ``+`` (like datatrove's ``Stats.__add__``), so shards, processes and
Ray workers each count their part and the driver sums them. A few dropped examples (id, reason, detail)
ride along so the funnel report can show *why*, not only how many.

:class:`Funnel` is the ordered list of step stats of one stage run: ``to_rows()`` gives one row per step
for ``mlflow.log_table``, ``plot_png()`` draws the funnel chart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["MAX_EXAMPLES_PER_REASON", "DropExample", "Funnel", "StatsError", "StepStats"]

MAX_EXAMPLES_PER_REASON: Final = 3
"""Dropped examples kept per reason. Enough to read in a report, small enough to merge for free."""


class StatsError(ValueError):
    """Stats do not add up (``total != kept + dropped``) or two different steps were merged."""


@dataclass(frozen=True)
class DropExample:
    """One dropped row: its record ``id``, the drop ``reason`` and a short human ``detail``."""

    id: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class StepStats:
    """What one step did to the rows it saw. Immutable; ``a + b`` merges two shards of the same step.

    ``counters`` holds extra numbers that also sum on merge (pairs checked, hits per benchmark, rows
    labelled per domain). They are not row counts and take no part in the ``total`` check.
    """

    step: str
    total: int = 0
    kept: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)
    examples: tuple[DropExample, ...] = ()
    counters: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.total < 0 or self.kept < 0 or any(v < 0 for v in self.dropped.values()):
            raise StatsError(f"step {self.step!r}: counts must be >= 0, got {self.as_dict()}")
        if self.total != self.kept + self.n_dropped:
            raise StatsError(
                f"step {self.step!r}: total ({self.total}) != kept ({self.kept}) + dropped ({self.n_dropped}); "
                "every removed row must be counted under a reason"
            )

    # -- constructors ---------------------------------------------------------------------------------

    @classmethod
    def passthrough(cls, step: str, n: int, counters: Mapping[str, float] | None = None) -> StepStats:
        """Stats of a transform step: every row in is a row out."""
        return cls(step=step, total=n, kept=n, counters=dict(counters or {}))

    @classmethod
    def from_reasons(
        cls,
        step: str,
        ids: Sequence[str],
        reasons: Sequence[str | None],
        details: Sequence[str] | None = None,
        counters: Mapping[str, float] | None = None,
        max_examples: int = MAX_EXAMPLES_PER_REASON,
    ) -> StepStats:
        """Stats of a filter step from one reason per row (``None`` = kept), in row order."""
        if len(ids) != len(reasons) or (details is not None and len(details) != len(reasons)):
            raise StatsError(f"step {step!r}: ids, reasons and details must have the same length")
        dropped: dict[str, int] = {}
        examples: list[DropExample] = []
        for i, reason in enumerate(reasons):
            if reason is None:
                continue
            n = dropped.get(reason, 0)
            if n < max_examples:
                examples.append(DropExample(str(ids[i]), reason, details[i] if details is not None else ""))
            dropped[reason] = n + 1
        n_dropped = sum(dropped.values())
        return cls(
            step=step,
            total=len(reasons),
            kept=len(reasons) - n_dropped,
            dropped=dropped,
            examples=tuple(examples),
            counters=dict(counters or {}),
        )

    # -- views ------------------------------------------------------------------------------------------

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict[str, float]:
        """Flat counts: ``total``, ``kept``, ``dropped``, ``dropped_<reason>`` and the counters."""
        out: dict[str, float] = {"total": self.total, "kept": self.kept, "dropped": self.n_dropped}
        for reason in sorted(self.dropped):
            out[f"dropped_{reason}"] = self.dropped[reason]
        for key in sorted(self.counters):
            out[key] = self.counters[key]
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (for ``_SUCCESS.json`` and for shipping stats back from Ray workers)."""
        return {
            "step": self.step,
            "total": self.total,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "examples": [[e.id, e.reason, e.detail] for e in self.examples],
            "counters": dict(sorted(self.counters.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepStats:
        return cls(
            step=data["step"],
            total=int(data["total"]),
            kept=int(data["kept"]),
            dropped={k: int(v) for k, v in data.get("dropped", {}).items()},
            examples=tuple(DropExample(*e) for e in data.get("examples", [])),
            counters=dict(data.get("counters", {})),
        )

    # -- merging ----------------------------------------------------------------------------------------

    def __add__(self, other: StepStats) -> StepStats:
        if not isinstance(other, StepStats):
            return NotImplemented
        if other.step != self.step:
            raise StatsError(f"cannot add stats of step {other.step!r} to stats of step {self.step!r}")
        dropped = dict(self.dropped)
        for k, v in other.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
        counters = dict(self.counters)
        for k, v in other.counters.items():
            counters[k] = counters.get(k, 0) + v
        per_reason: dict[str, int] = {}
        examples: list[DropExample] = []
        for e in (*self.examples, *other.examples):  # left operand first: merge in shard order
            if per_reason.get(e.reason, 0) < MAX_EXAMPLES_PER_REASON:
                per_reason[e.reason] = per_reason.get(e.reason, 0) + 1
                examples.append(e)
        return StepStats(
            step=self.step,
            total=self.total + other.total,
            kept=self.kept + other.kept,
            dropped=dropped,
            examples=tuple(examples),
            counters=counters,
        )


@dataclass
class Funnel:
    """Ordered stats of the steps of one run. ``add`` merges a step's stats into its row, or appends it."""

    steps: list[StepStats] = field(default_factory=list)

    def add(self, stats: StepStats) -> Funnel:
        for i, s in enumerate(self.steps):
            if s.step == stats.step:
                self.steps[i] = s + stats
                return self
        self.steps.append(stats)
        return self

    def extend(self, stats: Iterable[StepStats]) -> Funnel:
        for s in stats:
            self.add(s)
        return self

    def __add__(self, other: Funnel) -> Funnel:
        return Funnel(list(self.steps)).extend(other.steps)

    def __getitem__(self, step: str) -> StepStats:
        for s in self.steps:
            if s.step == step:
                return s
        raise KeyError(f"no step {step!r} in the funnel; steps: {[s.step for s in self.steps]}")

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per step: rows in/out, dropped, reasons ``a=1; b=2`` and examples ``id (reason: detail)``."""
        rows = []
        for s in self.steps:
            rows.append(
                {
                    "step": s.step,
                    "rows_in": s.total,
                    "rows_out": s.kept,
                    "dropped": s.n_dropped,
                    "kept_pct": round(100.0 * s.kept / s.total, 2) if s.total else None,
                    "reasons": "; ".join(f"{k}={v}" for k, v in sorted(s.dropped.items())),
                    "examples": "; ".join(f"{e.id} ({e.reason}{': ' + e.detail if e.detail else ''})" for e in s.examples),
                }
            )
        return rows

    def to_columns(self) -> dict[str, list[Any]]:
        """``to_rows()`` as a dict of columns, the shape ``mlflow.log_table(data=...)`` takes."""
        rows = self.to_rows()
        keys = list(rows[0]) if rows else ["step", "rows_in", "rows_out", "dropped", "kept_pct", "reasons", "examples"]
        return {k: [r[k] for r in rows] for k in keys}

    def metrics(self) -> dict[str, float]:
        """Flat ``<step>.<count>`` numbers for ``mlflow.log_metrics``."""
        return {f"{s.step}.{k}": float(v) for s in self.steps for k, v in s.as_dict().items()}

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.steps]

    @classmethod
    def from_json(cls, data: Iterable[Mapping[str, Any]]) -> Funnel:
        return cls([StepStats.from_json(d) for d in data])

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def plot_png(self, path: str | Path) -> Path | None:
        """Draw rows out per step (bars) with the drops annotated; ``None`` when matplotlib is missing.

        Uses the Agg canvas directly, so it never switches the caller's global matplotlib backend.
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            return None
        path = Path(path)
        names = [s.step for s in self.steps]
        kept = [s.kept for s in self.steps]
        dropped = [s.n_dropped for s in self.steps]
        fig = Figure(figsize=(8, 0.5 * len(names) + 1.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        y = list(range(len(names)))[::-1]
        ax.barh(y, kept, color="#4C72B0", label="kept")
        ax.barh(y, dropped, left=kept, color="#DD8452", label="dropped")
        for yi, s in zip(y, self.steps):
            top = ", ".join(f"{k} {v}" for k, v in sorted(s.dropped.items(), key=lambda kv: -kv[1])[:2])
            ax.text(s.total, yi, f"  {s.kept}/{s.total}" + (f" ({top})" if top else ""), va="center", fontsize=8)
        ax.set_yticks(y)
        ax.set_yticklabels(names)
        ax.set_xlabel("rows")
        ax.set_title("curation funnel")
        ax.legend(loc="lower right")
        ax.set_xlim(0, max([s.total for s in self.steps] + [1]) * 1.6)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
        return path
