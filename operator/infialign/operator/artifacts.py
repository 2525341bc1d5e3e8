"""What the operator reads outside Kubernetes: the stage markers in the artifact store, and MLflow.

Both sit behind small protocols so the operator tests can hand in fakes. The real implementations
delegate to the shared runtime (`runtime.markers`, `runtime.tracking`), are synchronous (call them in
a thread) and never raise. A heartbeat read tells three answers apart: a heartbeat, none yet, and
`Unreadable` (with the cause): the hang detector must never take blindness for silence.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from infialign.pipeline.api import EvalResult, StepOutput, StepProgress
from infialign.pipeline.runtime.config import RunIdentity, StageConfig, TrackingConfig

__all__ = ["Success", "Heartbeat", "Unreadable", "ArtifactReader", "Tracker", "StoreReader", "MlflowTracker"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Success:
    """What `_SUCCESS.json` says about a finished attempt."""

    outputs: list[StepOutput] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    results: list[EvalResult] = field(default_factory=list)  # the eval stage's table, for status.results
    step_metrics: dict[str, float] | None = None  # the headline metrics for the step status, calibration ones first
    # when the attempt that did the work ran: a cached step keeps them (they are what `infialign plan` calibrates on)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    duration_seconds: float | None = None


def _success(marker: Any) -> Success:
    from infialign.pipeline.runtime import markers

    return Success(
        outputs=markers.status_outputs(marker.outputs),
        metrics=markers.status_metrics(marker.metrics),
        results=markers.status_results(marker.results),
        step_metrics=markers.status_step_metrics(marker.metrics),
        started_at=marker.started,
        finished_at=marker.finished_at,
        duration_seconds=marker.duration_seconds,
    )


@dataclass(frozen=True)
class Heartbeat:
    """What `progress.json` says about a running attempt."""

    progress: StepProgress
    last_checkpoint: str | None = None


@dataclass(frozen=True)
class Unreadable:
    """The operator could not read the heartbeat, and why (shown in the `HeartbeatUnavailable` condition)."""

    message: str


class ArtifactReader(Protocol):
    def success(self, config: StageConfig) -> Success | None: ...
    def heartbeat(self, config: StageConfig) -> Heartbeat | Unreadable | None: ...
    def already_done(self, config: StageConfig) -> Success | None: ...


class Tracker(Protocol):
    def ensure_parent_run(self, tracking: TrackingConfig, run: RunIdentity) -> TrackingConfig: ...
    def parent_run_url(self, tracking: TrackingConfig) -> str | None: ...
    def finish_parent_run(self, tracking: TrackingConfig, status: Literal["FINISHED", "FAILED", "KILLED"]) -> None: ...
    def log_parent_params(self, tracking: TrackingConfig, params: Mapping[str, str]) -> None: ...


class StoreReader:
    """`_SUCCESS.json` and `progress.json` through `runtime.markers` (file:// and s3://)."""

    def success(self, config: StageConfig) -> Success | None:
        from infialign.pipeline.runtime import markers

        marker = markers.read_success(config.output, config.storage)
        return _success(marker) if marker is not None else None

    def heartbeat(self, config: StageConfig) -> Heartbeat | Unreadable | None:
        from infialign.pipeline.runtime import markers, storage

        if storage.local_path(config.output) is not None:
            # The operator mounts no PVC: a local path here is the operator's own disk, not the pods' volume.
            where = f"{config.output}{markers.PROGRESS_FILE}"
            return Unreadable(f"cannot read {where}: the operator does not mount the run's PVC; use storage.s3 to have hangs detected")
        try:
            progress = markers.load_progress(config.output, config.storage)
        except markers.ProgressUnreadable as e:
            log.warning("%s", e)
            return Unreadable(str(e))
        if progress is None:
            return None
        step_progress = markers.status_progress(progress)
        if step_progress is None:  # out of the status bounds: ignored, not fatal
            return None
        checkpoint = progress.last_checkpoint[:2048] if progress.last_checkpoint else None
        return Heartbeat(progress=step_progress, last_checkpoint=checkpoint)

    def already_done(self, config: StageConfig) -> Success | None:
        """The stage's own skip rule (`_SUCCESS.json` matches the config digest), checked before any pod
        is scheduled: a resumed run does not queue for an 8-GPU node just to learn it has nothing to do."""
        from infialign.pipeline.runtime import entrypoint, markers

        marker = entrypoint.finished_marker(config)
        return _success(marker) if marker is not None else None


class MlflowTracker:
    """The MLflow parent run of an AlignmentRun, through `runtime.tracking` (which never raises)."""

    def ensure_parent_run(self, tracking: TrackingConfig, run: RunIdentity) -> TrackingConfig:
        from infialign.pipeline.runtime import tracking as runtime_tracking

        return runtime_tracking.ensure_parent_run(tracking, run)

    def parent_run_url(self, tracking: TrackingConfig) -> str | None:
        from infialign.pipeline.runtime import tracking as runtime_tracking

        return runtime_tracking.parent_run_url(tracking)

    def finish_parent_run(self, tracking: TrackingConfig, status: Literal["FINISHED", "FAILED", "KILLED"]) -> None:
        from infialign.pipeline.runtime import tracking as runtime_tracking

        runtime_tracking.finish_parent_run(tracking, status)

    def log_parent_params(self, tracking: TrackingConfig, params: Mapping[str, str]) -> None:
        from infialign.pipeline.runtime import tracking as runtime_tracking

        runtime_tracking.log_parent_params(tracking, params)
