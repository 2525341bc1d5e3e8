"""The two files a stage writes next to its outputs, read by the executor and the operator.

- `_SUCCESS.json`, written last: the config digest, every output's URI, digest and row count, and the
  headline metrics. A step whose marker matches its config digest is done (this is how runs resume).
- `progress.json`, the heartbeat: step, total, percent, ETA, metrics and the last checkpoint,
  rewritten at most every `interval` seconds.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from infialign.pipeline.api import RESULTS_LIMIT, EvalResult, StepOutput, StepProgress
from infialign.pipeline.runtime import storage
from infialign.pipeline.runtime.config import StorageConfig

__all__ = [
    "SUCCESS_FILE",
    "PROGRESS_FILE",
    "OutputRecord",
    "SuccessMarker",
    "Progress",
    "read_success",
    "write_success",
    "read_progress",
    "load_progress",
    "ProgressUnreadable",
    "Heartbeat",
    "status_metrics",
    "status_outputs",
    "status_step_metrics",
    "CALIBRATION_METRICS",
    "status_progress",
    "status_results",
]

STATUS_ITEMS = 32  # the status bounds outputs and metrics to 32 entries each

SUCCESS_FILE = "_SUCCESS.json"
PROGRESS_FILE = "progress.json"

log = logging.getLogger(__name__)


class _Marker(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OutputRecord(_Marker):
    name: str
    uri: str
    digest: str | None = None
    rows: int | None = None


class SuccessMarker(_Marker):
    config_digest: str
    step: str
    attempt: int
    outputs: list[OutputRecord] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    started_at: dt.datetime | None = Field(default=None, description="When the attempt that did the work started (empty in older markers).")
    finished_at: dt.datetime
    duration_seconds: float | None = None

    @property
    def started(self) -> dt.datetime | None:
        """When the work started; older markers without `started_at` imply it from the duration."""
        if self.started_at is not None:
            return self.started_at
        if self.duration_seconds is not None:
            return self.finished_at - dt.timedelta(seconds=self.duration_seconds)
        return None
    results: list[dict[str, Any]] = Field(
        default_factory=list, description="The eval stage's model × benchmark entries (api.EvalResult fields); copied into status.results."
    )
    warnings: list[str] = Field(
        default_factory=list, description="What the stage finished with but the user should know (a shortfall); the step's status message."
    )

    def output(self, name: str) -> OutputRecord | None:
        return next((o for o in self.outputs if o.name == name), None)


class Progress(_Marker):
    step: int | None = None
    total: int | None = None
    percent: float | None = None
    eta_seconds: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    last_checkpoint: str | None = None
    message: str | None = None
    time: dt.datetime


def _join(prefix: str, name: str) -> str:
    return prefix.rstrip("/") + "/" + name


def read_success(prefix_uri: str, storage_config: StorageConfig | None = None) -> SuccessMarker | None:
    """The marker under a step prefix, or None when missing or unreadable (unreadable is logged)."""
    uri = _join(prefix_uri, SUCCESS_FILE)
    try:
        if not storage.exists(uri, storage_config):
            return None
        return SuccessMarker.model_validate(storage.read_json(uri, storage_config))
    except Exception as e:  # noqa: BLE001  a broken marker means "not done", never a crash of the reader
        log.warning("cannot read %s: %s", uri, e)
        return None


def write_success(prefix_uri: str, marker: SuccessMarker, storage_config: StorageConfig | None = None) -> None:
    storage.write_json(_join(prefix_uri, SUCCESS_FILE), marker.model_dump(mode="json"), storage_config)


def read_progress(prefix_uri: str, storage_config: StorageConfig | None = None) -> Progress | None:
    try:
        return load_progress(prefix_uri, storage_config)
    except ProgressUnreadable as e:
        log.warning("%s", e)
        return None


class ProgressUnreadable(Exception):
    """`progress.json` could not be read (permissions, network, a broken file): not the same as "none yet"."""


def load_progress(prefix_uri: str, storage_config: StorageConfig | None = None) -> Progress | None:
    """The heartbeat under a step prefix; None when there is none yet. Raises `ProgressUnreadable` when the
    store cannot say: a reader that must tell silence from blindness (the operator's hang detector) needs both."""
    uri = _join(prefix_uri, PROGRESS_FILE)
    try:
        if not storage.exists(uri, storage_config):
            return None
        return Progress.model_validate(storage.read_json(uri, storage_config))
    except FileNotFoundError:
        return None  # removed between the check and the read
    except Exception as e:  # noqa: BLE001  any store or parse error: unreadable, with its cause
        raise ProgressUnreadable(f"cannot read {uri}: {type(e).__name__}: {e}"[:512]) from e


class Heartbeat:
    """Throttled writer of `progress.json`. Calls are cheap; the file is rewritten at most every `interval` s.

    A failed write is logged and retried on the next beat: a storage hiccup must not kill training.
    """

    def __init__(
        self,
        prefix_uri: str,
        storage_config: StorageConfig | None = None,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_beat: Callable[[Progress], None] | None = None,
        enabled: bool = True,
    ) -> None:
        self._enabled = enabled  # off on non-leader nodes: one writer per progress.json
        self._uri = _join(prefix_uri, PROGRESS_FILE)
        self._storage = storage_config
        self._interval = interval
        self._clock = clock
        self._last_write: float | None = None
        self._started = clock()
        self._state: dict[str, Any] = {"metrics": {}}
        self._on_beat = on_beat

    def beat(
        self,
        step: int | None = None,
        total: int | None = None,
        metrics: dict[str, float] | None = None,
        last_checkpoint: str | None = None,
        message: str | None = None,
        force: bool = False,
    ) -> None:
        if step is not None:
            self._state["step"] = step
        if total is not None:
            self._state["total"] = total
        if metrics:
            self._state["metrics"] = {**self._state["metrics"], **{k: float(v) for k, v in metrics.items()}}
        if last_checkpoint is not None:
            self._state["last_checkpoint"] = last_checkpoint
        if message is not None:
            self._state["message"] = message
        if not self._enabled:
            return
        now = self._clock()
        if not force and self._last_write is not None and now - self._last_write < self._interval:
            return
        self._write(now)

    def _write(self, now: float) -> None:
        step, total = self._state.get("step"), self._state.get("total")
        percent = eta = None
        if step is not None and total:
            percent = min(100.0, 100.0 * step / total)
            elapsed = now - self._started
            if step > 0:
                eta = max(0.0, elapsed * (total - step) / step)
        progress = Progress(
            step=step,
            total=total,
            percent=percent,
            eta_seconds=eta,
            metrics=self._state["metrics"],
            last_checkpoint=self._state.get("last_checkpoint"),
            message=self._state.get("message"),
            time=dt.datetime.now(dt.UTC),
        )
        try:
            storage.write_json(self._uri, progress.model_dump(mode="json"), self._storage)
            self._last_write = now
        except Exception as e:  # noqa: BLE001
            log.warning("heartbeat write to %s failed (will retry): %s", self._uri, e)
        if self._on_beat is not None:
            self._on_beat(progress)


# ---------------------------------------------------------------- markers → AlignmentRun status
# Markers are written by stage processes and read back by the executor and the operator; what goes
# into the status is cut to the status schema's bounds, so a stage cannot make a status patch invalid.


def status_metrics(raw: dict[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (raw or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
        if len(out) >= STATUS_ITEMS:
            break
    return out


# Measured throughput, read by `infialign plan` to calibrate its estimates; kept first when the status bound cuts.
CALIBRATION_METRICS: Final = ("tokens_per_second", "mfu", "train_flops", "generated_tokens_per_second")


def status_step_metrics(raw: dict[str, Any] | None) -> dict[str, float] | None:
    """A succeeded step's headline metrics for its status: calibration metrics first, then the rest, in order."""
    raw = raw or {}
    ordered = {k: raw[k] for k in CALIBRATION_METRICS if k in raw} | {k: v for k, v in raw.items() if k not in CALIBRATION_METRICS}
    return status_metrics(ordered) or None


def status_outputs(records: list[OutputRecord]) -> list[StepOutput]:
    return [
        StepOutput(
            name=str(o.name)[:63],
            uri=str(o.uri)[:2048],
            digest=(o.digest[:128] if o.digest else None),
            rows=o.rows if (o.rows or 0) >= 0 else None,
        )
        for o in records[:STATUS_ITEMS]
    ]


def status_progress(progress: Progress) -> StepProgress | None:
    """A heartbeat as status progress; None (logged) when it is out of the status bounds."""
    try:
        percent = None if progress.percent is None else min(100.0, max(0.0, float(progress.percent)))
        return StepProgress(
            step=progress.step if progress.step is None or progress.step >= 0 else None,
            total=progress.total if progress.total is None or progress.total >= 0 else None,
            percent=percent,
            eta_seconds=progress.eta_seconds if progress.eta_seconds is None or progress.eta_seconds >= 0 else None,
            metrics=status_metrics(progress.metrics) or None,
            time=progress.time,
        )
    except ValueError as e:
        log.warning("ignoring an invalid heartbeat: %s", e)
        return None


def status_results(raw: list[dict[str, Any]] | None) -> list[EvalResult]:
    """A marker's results as status entries; an entry out of the status bounds is dropped and logged."""
    out: list[EvalResult] = []
    for entry in raw or []:
        try:
            out.append(EvalResult.model_validate(entry))
        except ValueError as e:
            log.warning("ignoring a result outside the status bounds: %s (%s)", entry, e)
        if len(out) >= RESULTS_LIMIT:
            break
    return out
