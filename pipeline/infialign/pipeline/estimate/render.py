"""`infialign plan` output: a table for people, JSON for scripts. Pure: text in, text out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from infialign.pipeline.estimate.lengths import Figure
from infialign.pipeline.estimate.plan import RunEstimate, StepEstimate

__all__ = ["to_json", "to_table", "human"]


def human(value: float | None, unit: str = "") -> str:
    """1.23e15 → '1.23 P'; None → '?'."""
    if value is None:
        return "?"
    for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}".rstrip()
    return f"{value:.3g} {unit}".rstrip()


def _hours(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value * 60:.1f} min" if value < 1 else f"{value:,.1f} h"


def _figure(fig: Figure) -> str:
    return f"{human(fig.value)} ({fig.source})"


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.0f}"


def _grid(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _objects(objects: Sequence[str]) -> str:
    return ", ".join(objects)


def _step_block(s: StepEstimate, objects: Sequence[str]) -> list[str]:
    lines = [f"{s.step}{'  [done: skipped while its config is unchanged]' if s.done else ''}"]
    if objects:
        lines.append(f"  creates: {_objects(objects)}")
    lines.append(f"  pods {s.pods} × {s.gpus_per_pod} GPU, image {s.image}, queue {s.queue or '-'}")
    lines.append(f"  rows {_figure(s.rows)}{' - ' + s.rows.note if s.rows.note else ''}")
    if s.tokens.value is not None or s.kind != "cpu":
        lines.append(f"  tokens {_figure(s.tokens)}{' - ' + s.tokens.note if s.tokens.note else ''}")
    if s.basis:
        lines.append(f"  time: {s.basis}")
    if s.memory is not None:
        parts = ", ".join(f"{name} {v / 1e9:.1f}" for name, v in s.memory.parts)
        verdict = "fits" if s.memory.fits else ("WILL NOT FIT" if s.memory.sure_oom else "TIGHT (over 90 %)")
        lines.append(f"  memory/GPU: {s.memory.total / 1e9:.1f} of {s.memory.capacity / 1e9:.0f} GB, {verdict} ({parts} GB)")
    for f in s.fixes:
        lines.append(f"    fix: {f.what}: {f.memory_bytes / 1e9:.1f} GB/GPU{' fits' if f.fits else ' still too much'} - set {f.change}"
                     + (f" ({f.note})" if f.note else ""))
    lines += [f"  note: {n}" for n in s.notes]
    return lines


def to_table(estimate: RunEstimate, objects: Mapping[str, Sequence[str]] | None = None) -> str:
    """A summary grid, then one block per step with sources, time basis, memory and fixes."""
    objects = objects or {}
    g = estimate.gpu
    head = [
        f"GPU {g.product}: {g.peak_bf16_flops / 1e12:,.0f} TFLOP/s bf16 dense, {g.memory_gb:.0f} GB, "
        f"{g.bandwidth_bytes_per_s / 1e12:.2f} TB/s ({g.source})",
        f"student {estimate.model.name}: {estimate.model.params / 1e9:.2f} B parameters ({estimate.model.source})"
        + (f"; teacher {estimate.teacher.name}: {estimate.teacher.params / 1e9:.2f} B ({estimate.teacher.source})" if estimate.teacher else ""),
        "",
    ]
    grid = [["step", "pods×GPU", "rows", "tokens", "FLOPs", "GPU-h", "wall", "cost", "fits"]]
    for s in estimate.steps:
        fits = "-" if s.fits is None else ("yes" if s.fits else "NO")
        grid.append([s.step, f"{s.pods}×{s.gpus_per_pod}", human(s.rows.value), human(s.tokens.value), human(s.flops),
                     "-" if s.kind == "cpu" else (f"{s.gpu_hours:,.1f}" if s.gpu_hours is not None else "?"),
                     _hours(s.wall_hours) if s.wall_hours is not None or s.kind != "cpu" else "-", _money(s.cost), fits])
    at_least = "" if estimate.complete else "≥ "
    cost = _money(estimate.cost)
    grid.append(["total", "", "", "", "", f"{at_least}{estimate.gpu_hours:,.1f}", "", f"{at_least}{cost}" if cost != "-" else cost, ""])
    body: list[str] = []
    for s in estimate.steps:
        body += [""] + _step_block(s, objects.get(s.step, ()))
    tail = [""]
    if not estimate.complete:
        tail.append("total: ≥ — steps marked ? are not counted; give the missing figure (--rows, --teacher-params) to count them")
    if estimate.price_per_gpu_hour is None:
        tail.append("cost: pass --price-per-gpu-hour to price the GPU-hours")
    tail += [f"note: {n}" for n in estimate.notes]
    return "\n".join(head + _grid(grid) + body + tail).rstrip() + "\n"


def to_json(estimate: RunEstimate, objects: Mapping[str, Sequence[str]] | None = None) -> str:
    doc = estimate.to_dict()
    for step in doc["steps"]:
        step["objects"] = list((objects or {}).get(step["step"], ()))
    return json.dumps(doc, indent=2) + "\n"
