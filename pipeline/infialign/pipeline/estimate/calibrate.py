"""Wall time calibrated on a finished run: `infialign plan FILE --calibrate-from WORKDIR`.

A run on other hardware than the GPU table's (the quickstart on CPU) has no peak FLOP/s to divide by, but
it measured how long each step took. The estimate of another, similar manifest scales those durations by
the ratio of work, the work of both runs computed by the same formulas from the same kind of evidence, so
the formulas' own biases (characters per token, the distill upper bound) cancel:

    predicted = fixed + busy × work(new) / work(reference)

`busy` is the part of the measured duration that scales with the work (the trainer's `train_runtime`;
generated tokens ÷ `generated_tokens_per_second` for generation steps); `fixed` = duration − busy is the
start-up (imports, model load, vLLM warm-up) and stays as measured. Without a `busy` figure the whole
duration scales. Work is the step's tokens (trained, or prompt + generated) and, for CPU steps, its rows.

Pure: the reference run's records and both estimates arrive as arguments (`infialign.pipeline.evidence`
reads them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from infialign.pipeline.estimate.plan import RunEstimate, StepEstimate, StepRecord

__all__ = ["Reference", "busy_seconds", "work", "references", "scale", "apply"]


@dataclass(frozen=True)
class Reference:
    """One step of the finished run the estimate is calibrated on."""

    duration_seconds: float  # the attempt that did the work, from its `_SUCCESS.json`
    busy_seconds: float | None  # the part that scales with the work; None: all of it
    work: float | None  # that run's work for the step, by the estimate's formulas


def busy_seconds(record: StepRecord) -> float | None:
    """Seconds of the step's main loop, from the metrics the stages record; None when they record none."""
    m = record.metrics
    if m.get("train_runtime", 0) > 0:
        return float(m["train_runtime"])
    if m.get("generated_tokens_per_second", 0) > 0 and m.get("generated_tokens", 0) > 0:
        # the rate of one engine over all its generate calls: their summed seconds (one shard on CPU)
        return float(m["generated_tokens"] / m["generated_tokens_per_second"])
    return None


def work(step: StepEstimate) -> float | None:
    """What a step's time scales with: its tokens for training and generation, its rows for a CPU step."""
    return step.rows.value if step.kind == "cpu" else step.tokens.value


def references(reference: RunEstimate, records: Mapping[str, StepRecord]) -> dict[str, Reference]:
    """Each finished step of the reference run with a measured duration, beside its estimated work."""
    by_step = {s.step: s for s in reference.steps}
    out: dict[str, Reference] = {}
    for name, record in records.items():
        if record.duration_seconds is None or record.duration_seconds <= 0:
            continue
        step = by_step.get(name)
        out[name] = Reference(record.duration_seconds, busy_seconds(record), work(step) if step is not None else None)
    return out


def scale(ref: Reference, new_work: float | None) -> tuple[float, str]:
    """(predicted seconds, what it rests on)."""
    busy = ref.busy_seconds if ref.busy_seconds is not None and 0 < ref.busy_seconds <= ref.duration_seconds else ref.duration_seconds
    fixed = ref.duration_seconds - busy
    if new_work is None or not ref.work:
        return ref.duration_seconds, f"the reference run's {ref.duration_seconds:,.0f} s as measured (work unknown, not scaled)"
    ratio = new_work / ref.work
    split = f"{fixed:,.0f} s start-up + " if fixed > 0 else ""
    return fixed + busy * ratio, f"calibrated: {split}{busy:,.0f} s × work ratio {ratio:.2f} (measured {ref.duration_seconds:,.0f} s)"


def apply(estimate: RunEstimate, refs: Mapping[str, Reference], source: str) -> RunEstimate:
    """`estimate` with each step's wall time (and GPU-hours, cost: wall × the GPUs the spec requests) from the reference."""
    steps: list[StepEstimate] = []
    for s in estimate.steps:
        ref = refs.get(s.step)
        if ref is None:
            steps.append(dataclasses.replace(s, notes=(*s.notes, f"not calibrated: {s.step} did not finish in {source}")))
            continue
        seconds, basis = scale(ref, work(s))
        wall = seconds / 3600.0
        gpu_hours = None if s.kind == "cpu" else wall * max(s.gpus, 1)
        price = estimate.price_per_gpu_hour
        steps.append(dataclasses.replace(s, wall_hours=wall, gpu_hours=gpu_hours, cost=None if gpu_hours is None or price is None else gpu_hours * price, basis=basis))
    note = f"wall times calibrated on the finished run in {source}: they hold on the hardware that run used, not the --gpu table"
    return dataclasses.replace(estimate, steps=tuple(steps), notes=(*estimate.notes, note))
