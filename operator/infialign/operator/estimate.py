"""`status.estimate` and the MLflow parent run's `estimate.*` params, as the operator keeps them.

The operator estimates from the spec alone: it reads no sources and no artifacts, so figures that need
them stay empty and the estimate's `message` says which (`infialign plan FILE` gives them where the
sources are readable). Pure decisions; the reconciler does the one MLflow call these return.
"""

from __future__ import annotations

from collections.abc import Mapping

from infialign.pipeline.api import AlignmentRunSpec, AlignmentRunStatus, RunEstimateStatus
from infialign.pipeline.estimate import Options, publish

__all__ = ["refresh", "pending_params"]

LoggedKey = tuple[str, int | None]  # (parent run id, generation) whose estimate MLflow already has


def refresh(status: AlignmentRunStatus, spec: AlignmentRunSpec, generation: int | None, gpu: str) -> AlignmentRunStatus:
    """Estimate once per accepted generation; a status that already holds this generation's estimate is kept as is."""
    current = status.estimate
    if current is not None and current.observed_generation == generation and generation is not None:
        return status
    return status.model_copy(update={"estimate": publish.for_spec(spec, generation, options=Options(gpu=gpu))})


def pending_params(
    parent_run_id: str | None, estimate: RunEstimateStatus | None, logged: LoggedKey | None
) -> tuple[LoggedKey, Mapping[str, str]] | None:
    """The params to log and the key to remember, when a parent run exists and has not seen this generation's estimate."""
    if not parent_run_id or estimate is None:
        return None
    key = (parent_run_id, estimate.observed_generation)
    return None if key == logged else (key, publish.mlflow_params(estimate))
