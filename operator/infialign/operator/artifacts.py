"""What the operator reads outside Kubernetes: the stage markers in the artifact store, and MLflow.

Both sit behind small protocols so the operator tests can hand in fakes. The real implementations
delegate to the shared runtime (`runtime.markers`, `runtime.tracking`), are synchronous (call them in
a thread) and never raise: an unreadable store means "no news", and the reconciler keeps the last
heartbeat it had.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from infialign.pipeline.api import StepOutput, StepProgress
from infialign.pipeline.runtime.config import RunIdentity, StageConfig, TrackingConfig

__all__ = ["Success", "Heartbeat", "ArtifactReader", "Tracker", "StoreReader", "MlflowTracker"]

log = logging.getLogger(__name__)

_MAX_ITEMS = 32  # the status bounds outputs and metrics to 32 entries each


@dataclass(frozen=True)
class Success:
    """What `_SUCCESS.json` says about a finished attempt."""

    outputs: list[StepOutput] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Heartbeat:
    """What `progress.json` says about a running attempt."""

    progress: StepProgress
    last_checkpoint: str | None = None


class ArtifactReader(Protocol):
    def success(self, config: StageConfig) -> Success | None: ...
    def heartbeat(self, config: StageConfig) -> Heartbeat | None: ...
    def already_done(self, config: StageConfig) -> Success | None: ...


class Tracker(Protocol):
    def ensure_parent_run(self, tracking: TrackingConfig, run: RunIdentity) -> TrackingConfig: ...
    def parent_run_url(self, tracking: TrackingConfig) -> str | None: ...
    def finish_parent_run(self, tracking: TrackingConfig, status: Literal["FINISHED", "FAILED", "KILLED"]) -> None: ...


def _metrics(raw: dict[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (raw or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
        if len(out) >= _MAX_ITEMS:
            break
    return out


def _outputs(records: list[Any]) -> list[StepOutput]:
    return [
        StepOutput(
            name=str(o.name)[:63],
            uri=str(o.uri)[:2048],
            digest=(o.digest[:128] if o.digest else None),
            rows=o.rows if (o.rows or 0) >= 0 else None,
        )
        for o in records[:_MAX_ITEMS]
    ]


class StoreReader:
    """`_SUCCESS.json` and `progress.json` through `runtime.markers` (file:// and s3://)."""

    def success(self, config: StageConfig) -> Success | None:
        from infialign.pipeline.runtime import markers

        marker = markers.read_success(config.output, config.storage)
        if marker is None:
            return None
        return Success(outputs=_outputs(marker.outputs), metrics=_metrics(marker.metrics))

    def heartbeat(self, config: StageConfig) -> Heartbeat | None:
        from infialign.pipeline.runtime import markers

        progress = markers.read_progress(config.output, config.storage)
        if progress is None:
            return None
        try:
            percent = None if progress.percent is None else min(100.0, max(0.0, float(progress.percent)))
            step_progress = StepProgress(
                step=progress.step if progress.step is None or progress.step >= 0 else None,
                total=progress.total if progress.total is None or progress.total >= 0 else None,
                percent=percent,
                eta_seconds=progress.eta_seconds if progress.eta_seconds is None or progress.eta_seconds >= 0 else None,
                metrics=_metrics(progress.metrics) or None,
                time=progress.time,
            )
        except ValueError as e:  # a heartbeat out of the status bounds is ignored, not fatal
            log.warning("ignoring an invalid heartbeat of %s: %s", config.step, e)
            return None
        checkpoint = progress.last_checkpoint[:2048] if progress.last_checkpoint else None
        return Heartbeat(progress=step_progress, last_checkpoint=checkpoint)

    def already_done(self, config: StageConfig) -> Success | None:
        """The stage's own skip rule (`_SUCCESS.json` matches the config digest), checked before any pod
        is scheduled: a resumed run does not queue for an 8-GPU node just to learn it has nothing to do."""
        from infialign.pipeline.runtime import entrypoint, markers
        from infialign.pipeline.runtime.config import config_digest

        marker = markers.read_success(config.output, config.storage)
        if marker is None:
            return None
        try:
            digest = config_digest(config, entrypoint.input_digests(config))
        except Exception as e:  # noqa: BLE001  an input without a marker, an unreadable store: run the stage
            log.debug("%s: not skipping: %s", config.step, e)
            return None
        if marker.config_digest != digest:
            return None
        return Success(outputs=_outputs(marker.outputs), metrics=_metrics(marker.metrics))


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
