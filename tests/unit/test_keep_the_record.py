"""A cached re-run of a finished step keeps the times and duration of the attempt that did the work (fake clock)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

from infialign.pipeline import executor, planner
from infialign.pipeline.api import StepPhase
from infialign.pipeline.runtime import entrypoint, markers, storage
from infialign.pipeline.runtime.config import config_digest

T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)  # the attempt that did the work started
DONE = T0 + dt.timedelta(seconds=90)  # … and finished
SKIP = T0 + dt.timedelta(days=2)  # the re-run that found it done


def test_the_reducer_keeps_the_working_attempts_times_and_marks_the_step_cached(make_run) -> None:
    spec = make_run().spec()
    status = planner.apply(planner.initial_status(spec), planner.StartAttempt("curate", attempt=1), SKIP)
    status = planner.attempt_cached(status, "curate", 1, SKIP, started_at=T0, finished_at=DONE, duration_seconds=90.0, metrics={"rows_out": 5.0})
    step = status.step("curate")
    assert step is not None and step.phase == StepPhase.SUCCEEDED
    assert (step.start_time, step.completion_time, step.duration_seconds) == (T0, DONE, 90.0)
    assert step.cached is True and step.reason == "AlreadySucceeded" and step.metrics == {"rows_out": 5.0}


def test_a_new_attempt_forgets_the_previous_record(make_run) -> None:
    spec = make_run().spec()
    status = planner.apply(planner.initial_status(spec), planner.StartAttempt("curate", attempt=1), SKIP)
    status = planner.attempt_cached(status, "curate", 1, SKIP, started_at=T0, finished_at=DONE, duration_seconds=90.0)
    steps = [s.model_copy(update={"phase": StepPhase.PENDING}) if s.name == "curate" else s for s in status.steps]
    status = planner.apply(status.model_copy(update={"steps": steps}), planner.StartAttempt("curate", attempt=2), SKIP)
    step = status.step("curate")
    assert step is not None and step.cached is None and step.duration_seconds is None and step.metrics is None


def test_the_local_executor_keeps_a_cached_steps_times(make_run, tmp_path: Path) -> None:
    run = make_run().set("spec.storage", {"local": {"path": str(tmp_path / "artifacts")}}).set("spec.tracking", {"enabled": False}).run()
    local = executor.LocalExecutor(run, tmp_path, clock=lambda: SKIP)
    config = local._config("curate", 1)
    marker = markers.SuccessMarker(
        config_digest=config_digest(config, entrypoint.input_digests(config)),
        step="curate",
        attempt=1,
        metrics={"rows_out": 120.0, "tokens_per_second": 7.5},
        started_at=T0,
        finished_at=DONE,
        duration_seconds=90.0,
    )
    markers.write_success(config.output, marker, config.storage)

    status = local._act(planner.initial_status(run.spec), planner.StartAttempt("curate", attempt=1))

    step = status.step("curate")
    assert step is not None and step.phase == StepPhase.SUCCEEDED and "curate" in local.skipped
    assert step.start_time == T0 and step.completion_time == DONE and step.duration_seconds == 90.0
    assert step.cached is True
    assert step.metrics == {"tokens_per_second": 7.5, "rows_out": 120.0}  # calibration first


def test_an_older_marker_without_started_at_implies_it_from_the_duration() -> None:
    marker = markers.SuccessMarker(config_digest="d", step="curate", attempt=1, finished_at=DONE, duration_seconds=90.0)
    assert marker.started == T0
    assert marker.model_copy(update={"duration_seconds": None}).started is None


def test_the_stage_entrypoint_records_when_the_work_started(tmp_path: Path) -> None:
    from infialign.pipeline.runtime.config import RunIdentity, StageConfig, StorageConfig, TrackingConfig

    root = (tmp_path / "a").as_uri()
    config = StageConfig(
        run=RunIdentity(namespace="ns1", name="r1"), step="curate", stage="curate", attempt=1, settings={}, model={"uri": "builtin://tiny"},
        output=f"{root}/ns1/r1/curate/", storage=StorageConfig(root=root), tracking=TrackingConfig(enabled=False),
    )
    before = dt.datetime.now(dt.UTC)
    assert entrypoint.run_stage(config, lambda ctx: None) == entrypoint.EXIT_SUCCESS
    marker = markers.read_success(config.output)
    assert marker is not None and marker.started_at is not None
    assert before <= marker.started_at <= marker.finished_at
    assert marker.duration_seconds is not None and marker.duration_seconds >= 0


def _beat_at(config, when: dt.datetime) -> None:
    progress = markers.Progress(step=1, total=1, time=when)
    storage.write_json(f"{config.output.rstrip('/')}/{markers.PROGRESS_FILE}", progress.model_dump(mode="json"), config.storage)


def _observed(make_run, tmp_path: Path, beat: dt.datetime, now: dt.datetime) -> list[planner.Action]:
    """A re-run's new curate attempt started at SKIP, observed at ``now`` with a progress.json written at ``beat``."""
    run = make_run().set("spec.storage", {"local": {"path": str(tmp_path / "artifacts")}}).set("spec.tracking", {"enabled": False}).run()
    local = executor.LocalExecutor(run, tmp_path, clock=lambda: now)
    config = local._config("curate", 1)
    _beat_at(config, beat)
    status = planner.apply(planner.initial_status(run.spec), planner.StartAttempt("curate", attempt=1), SKIP)
    local.launcher.attempts["curate"] = SimpleNamespace(attempt=1, process=SimpleNamespace(poll=lambda: None))  # still running
    return planner.plan(run.spec, local._observe(status), now)


def test_an_earlier_runs_heartbeat_does_not_kill_the_re_run_of_a_changed_step(make_run, tmp_path: Path) -> None:
    # The last run wrote progress.json at DONE, days ago; the new attempt has not beaten yet. Not a hang.
    actions = _observed(make_run, tmp_path, beat=DONE, now=SKIP + dt.timedelta(seconds=5))
    assert actions == [planner.Wait()]


def test_the_local_executor_still_stops_an_attempt_whose_own_heartbeat_went_stale(make_run, tmp_path: Path) -> None:
    stall = make_run().spec().failure_policy.stall_timeout_seconds
    actions = _observed(make_run, tmp_path, beat=SKIP + dt.timedelta(seconds=1), now=SKIP + dt.timedelta(seconds=stall + 60))
    assert len(actions) == 1 and isinstance(actions[0], planner.StopAttempt)
    assert actions[0].reason == "HeartbeatTimeout"
