"""What a deleted run leaves behind outside Kubernetes: its MLflow parent run (pure decision).

Children go with the run through their ownerReferences; the MLflow parent run does not, and would show
RUNNING forever. On deletion of a run that had not finished, the operator marks it KILLED (a finished
run's parent was closed as FINISHED or FAILED when it finished). Best effort by design: the operator
adds no finalizer (an uninstalled operator must not leave runs stuck in deletion), so a run deleted
while no operator runs keeps its MLflow parent run RUNNING.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infialign.pipeline.api import AlignmentRunStatus, RunPhase
from infialign.pipeline.runtime.config import TrackingConfig

__all__ = ["parent_run_to_kill", "last_status"]


def last_status(body: Mapping[str, Any]) -> AlignmentRunStatus | None:
    """The status a deleted run had on the API server (Kopf's own room dropped), or None if it does not parse."""
    raw = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
    try:
        return AlignmentRunStatus.model_validate(raw) if raw else None
    except ValueError:
        return None


def parent_run_to_kill(
    raw_spec: Mapping[str, Any] | None, status: AlignmentRunStatus | None, default_uri: str | None
) -> TrackingConfig | None:
    """The tracking settings whose parent run must be marked KILLED, or None (finished, untracked, no parent yet)."""
    if status is None or status.phase in (RunPhase.SUCCEEDED, RunPhase.FAILED):
        return None
    if status.mlflow is None or not status.mlflow.parent_run_id:
        return None
    tracking = dict((raw_spec or {}).get("tracking") or {})
    uri = tracking.get("uri") or default_uri
    if tracking.get("enabled") is False or not uri:
        return None
    return TrackingConfig(
        enabled=True,
        uri=uri,
        experiment=tracking.get("experiment") or "infialign",
        experiment_id=status.mlflow.experiment_id,
        parent_run_id=status.mlflow.parent_run_id,
    )
