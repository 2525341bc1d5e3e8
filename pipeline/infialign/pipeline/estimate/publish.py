"""The estimate where a user looks: `status.estimate` and the MLflow parent run's `estimate.*` params.

Pure: a `RunEstimate` (or the reason there is none) in, the API model and flat params out. The operator
and the local executor both publish through here, so the two show the same fields.
"""

from __future__ import annotations

from typing import Final

from infialign.pipeline.api import AlignmentRunSpec, RunEstimateStatus, truncate
from infialign.pipeline.estimate import models
from infialign.pipeline.estimate.plan import Evidence, Options, RunEstimate, estimate_run

__all__ = ["for_spec", "to_status", "unavailable", "mlflow_params", "UNKNOWN"]

UNKNOWN: Final = "unknown"  # an MLflow param has no null: the word says the figure was not estimated


def _incomplete(estimate: RunEstimate) -> str | None:
    """Which GPU steps have no time, and the first figure that is missing for them (it names the flag that gives it)."""
    missing = [s for s in estimate.steps if s.kind != "cpu" and s.gpu_hours is None]
    if not missing:
        return None
    notes = [f.note for s in estimate.steps for f in (s.rows, s.tokens) if f.value is None and f.note]  # upstream steps first
    why = next((n for n in notes if "pass --" in n), notes[0] if notes else "")  # the note naming a flag says how to fix it
    names = ", ".join(s.step for s in missing)
    hint = "run `infialign plan FILE` where the sources are readable (or with --rows) for the missing figures"
    return truncate(f"GPU-hours unknown for {names}" + (f": {why}" if why else "") + f"; {hint}")


def to_status(estimate: RunEstimate, generation: int | None) -> RunEstimateStatus:
    """`RunEstimate.to_status()` as the API model, stamped with the spec generation it was computed for."""
    return RunEstimateStatus.model_validate(
        {**estimate.to_status(), "observedGeneration": generation, "message": _incomplete(estimate)}
    )


def unavailable(message: str, generation: int | None, gpu: str | None = None) -> RunEstimateStatus:
    """No estimate at all (the student's size is unknown, an unknown GPU name): say why, never fail the run for it."""
    return RunEstimateStatus(observed_generation=generation, gpu=gpu, message=truncate(message))


def for_spec(spec: AlignmentRunSpec, generation: int | None, evidence: Evidence | None = None, options: Options | None = None) -> RunEstimateStatus:
    """Estimate `spec` and publish it; an estimate that cannot be made becomes a `message`, never an exception."""
    options = options or Options()
    try:
        return to_status(estimate_run(spec, evidence, options), generation)
    except (models.UnknownModelError, ValueError) as e:  # UnknownModelError names spec.model.uri and --params
        return unavailable(f"no estimate: {e}", generation, options.gpu)


def _param(value: float | bool | str | None) -> str:
    if value is None:
        return UNKNOWN
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def mlflow_params(estimate: RunEstimateStatus) -> dict[str, str]:
    """`estimate.gpu_hours`, `estimate.<step>.gpu_hours`, … as MLflow params (flat strings; `unknown` for an empty figure)."""
    out = {
        "estimate.generation": _param(estimate.observed_generation),
        "estimate.gpu": _param(estimate.gpu),
        "estimate.mfu": _param(estimate.mfu),
        "estimate.gpu_hours": _param(estimate.gpu_hours),
        "estimate.complete": _param(estimate.complete),
    }
    if estimate.cost is not None:
        out["estimate.cost"] = _param(estimate.cost)
    for s in estimate.steps or []:
        out[f"estimate.{s.step}.gpu_hours"] = _param(s.gpu_hours)
        out[f"estimate.{s.step}.wall_hours"] = _param(s.wall_hours)
        out[f"estimate.{s.step}.fits"] = _param(s.fits)
    if estimate.message:
        out["estimate.message"] = estimate.message[:500]
    return out
