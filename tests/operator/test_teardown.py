"""A deleted run's MLflow parent run: the pure decision, and the real MLflow call at the edge (sqlite store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from infialign.operator import teardown
from infialign.operator.artifacts import MlflowTracker
from infialign.pipeline.api import AlignmentRunStatus, MlflowStatus, RunPhase
from infialign.pipeline.runtime.config import RunIdentity, TrackingConfig

_TRACKED = MlflowStatus(experiment_id="3", parent_run_id="abc")


@pytest.mark.parametrize(
    ("spec", "status", "default", "killed"),
    [
        ({"tracking": {"uri": "http://mlflow"}}, AlignmentRunStatus(phase=RunPhase.RUNNING, mlflow=_TRACKED), None, True),
        ({}, AlignmentRunStatus(phase=RunPhase.PENDING, mlflow=_TRACKED), "http://chart-mlflow", True),  # the operator's default MLflow
        ({"tracking": {"uri": "http://mlflow"}}, AlignmentRunStatus(phase=RunPhase.SUCCEEDED, mlflow=_TRACKED), None, False),  # closed already
        ({"tracking": {"uri": "http://mlflow"}}, AlignmentRunStatus(phase=RunPhase.FAILED, mlflow=_TRACKED), None, False),
        ({"tracking": {"uri": "http://mlflow"}}, AlignmentRunStatus(phase=RunPhase.RUNNING), None, False),  # no parent run yet
        ({"tracking": {"uri": "http://mlflow", "enabled": False}}, AlignmentRunStatus(phase=RunPhase.RUNNING, mlflow=_TRACKED), None, False),
        ({}, AlignmentRunStatus(phase=RunPhase.RUNNING, mlflow=_TRACKED), None, False),  # no MLflow at all
        ({"tracking": {"uri": "http://mlflow"}}, None, None, False),  # never reconciled
    ],
)
def test_which_parent_runs_are_killed(spec: dict[str, Any], status: AlignmentRunStatus | None, default: str | None, killed: bool) -> None:
    tracking = teardown.parent_run_to_kill(spec, status, default)
    assert (tracking is not None) == killed
    if tracking is not None:
        assert (tracking.parent_run_id, tracking.experiment_id) == ("abc", "3") and tracking.uri in ("http://mlflow", "http://chart-mlflow")


def test_the_parent_run_is_marked_killed_in_a_real_mlflow_store(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker()
    tracking = tracker.ensure_parent_run(TrackingConfig(uri=uri, experiment="t"), RunIdentity(namespace="ns1", name="r1", uid="u"))
    assert tracking.parent_run_id
    assert MlflowClient(tracking_uri=uri).get_run(tracking.parent_run_id).info.status == "RUNNING"
    status = AlignmentRunStatus(
        phase=RunPhase.RUNNING, mlflow=MlflowStatus(experiment_id=tracking.experiment_id, parent_run_id=tracking.parent_run_id)
    )
    closing = teardown.parent_run_to_kill({"tracking": {"uri": uri, "experiment": "t"}}, status, None)
    assert closing is not None
    tracker.finish_parent_run(closing, "KILLED")
    assert MlflowClient(tracking_uri=uri).get_run(tracking.parent_run_id).info.status == "KILLED"
