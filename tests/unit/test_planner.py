"""The planner, one table row per situation, with a fake clock. Then the reducer and a whole run."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from infialign.pipeline import planner
from infialign.pipeline.api import (
    AlignmentRunStatus,
    ConditionType,
    Failure,
    FailureClass,
    Reason,
    Restarts,
    RunPhase,
    StepPhase,
    StepProgress,
    Waiting,
)

T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def failure(cls: FailureClass, attempt: int = 1, reason: str = "X") -> Failure:
    return Failure(failure_class=cls, reason=reason, message="boom", attempt=attempt, time=T0)


def status_with(spec, step: str = "curate", **fields: Any) -> AlignmentRunStatus:
    """A status where every step before `step` succeeded and `step` has `fields`."""
    status = planner.initial_status(spec)
    steps = []
    reached = False
    for s in status.steps:
        if s.name == step:
            reached = True
            s = s.model_copy(update={"attempt": 1, "attempt_start_time": T0, "start_time": T0, **fields})
        elif not reached and s.phase != StepPhase.SKIPPED:
            s = s.model_copy(update={"phase": StepPhase.SUCCEEDED, "attempt": 1})
        steps.append(s)
    return status.model_copy(update={"steps": steps, "phase": RunPhase.RUNNING})


POLICY = {"maxRestartsPerStage": 2, "maxInfraRestarts": 3, "backoffSeconds": 30, "maxBackoffSeconds": 100, "startupTimeoutSeconds": 60,
          "stallTimeoutSeconds": 120, "waitingTimeoutSeconds": 3600}

CASES: list[tuple[str, dict[str, Any], float, list[planner.Action]]] = [
    ("running-with-fresh-heartbeat-waits",
     {"phase": StepPhase.RUNNING, "progress": StepProgress(step=5, time=at(100))}, 150, [planner.Wait()]),
    ("stale-heartbeat-is-a-hang",
     {"phase": StepPhase.RUNNING, "progress": StepProgress(step=5, time=at(10))}, 200,
     [planner.StopAttempt("curate", attempt=1, reason=Reason.HEARTBEAT_TIMEOUT)]),
    ("no-heartbeat-read-yet-is-never-a-hang",
     {"phase": StepPhase.RUNNING}, 10_000, [planner.Wait()]),
    ("an-unreadable-store-is-never-a-hang",
     {"phase": StepPhase.RUNNING, "progress": StepProgress(step=5, time=at(10)), "heartbeat_error": "cannot read: Forbidden"}, 10_000,
     [planner.Wait()]),
    ("missing-image-within-startup-timeout-waits",
     {"phase": StepPhase.RUNNING, "waiting": Waiting(reason="ImagePullBackOff", message="manifest unknown", permanent=True, since=T0)}, 30,
     [planner.Wait()]),
    ("missing-image-past-startup-timeout-is-permanent",
     {"phase": StepPhase.RUNNING, "waiting": Waiting(reason="ImagePullBackOff", message="manifest unknown", permanent=True, since=T0)}, 61,
     [planner.StopAttempt("curate", attempt=1, reason=Reason.IMAGE_PULL)]),
    ("missing-secret-past-startup-timeout-is-permanent",
     {"phase": StepPhase.RUNNING, "waiting": Waiting(reason="CreateContainerConfigError", message='secret "hf" not found', permanent=True,
                                                     since=T0)}, 61,
     [planner.StopAttempt("curate", attempt=1, reason=Reason.STARTUP_TIMEOUT)]),
    ("a-rate-limited-pull-waits-past-the-startup-timeout",
     {"phase": StepPhase.RUNNING, "waiting": Waiting(reason="ImagePullBackOff", message="429 Too Many Requests", since=T0)}, 3000,
     [planner.Wait()]),
    ("unschedulable-waits-past-the-startup-timeout",
     {"phase": StepPhase.RUNNING, "waiting": Waiting(reason="Unschedulable", since=T0)}, 3000, [planner.Wait()]),
    ("unschedulable-past-the-waiting-deadline-fails",
     {"phase": StepPhase.RUNNING, "waiting": Waiting(reason="Unschedulable", since=T0)}, 3601,
     [planner.StopAttempt("curate", attempt=1, reason=Reason.WAITING_TIMEOUT)]),
    ("kueue-queued-waits-past-the-startup-timeout",
     {"phase": StepPhase.RUNNING, "waiting": Waiting(reason="Queued", queued=True, since=T0)}, 3000, [planner.Wait()]),
    ("kueue-queued-past-the-waiting-deadline-fails",
     {"phase": StepPhase.RUNNING, "waiting": Waiting(reason="Queued", queued=True, since=T0)}, 3601,
     [planner.StopAttempt("curate", attempt=1, reason=Reason.WAITING_TIMEOUT)]),
    ("a-wait-not-yet-timed-never-fails",
     {"phase": StepPhase.RUNNING, "waiting": Waiting(reason="CreateContainerConfigError", permanent=True)}, 10_000, [planner.Wait()]),
    ("first-app-failure-backs-off",
     {"phase": StepPhase.ATTEMPT_FAILED, "last_failure": failure(FailureClass.APP)}, 0,
     [planner.ScheduleRetry("curate", failure_class=FailureClass.APP, not_before=at(30))]),
    ("second-app-failure-doubles-the-backoff",
     {"phase": StepPhase.ATTEMPT_FAILED, "attempt": 2, "restarts": Restarts(app=1), "last_failure": failure(FailureClass.APP, 2)}, 0,
     [planner.ScheduleRetry("curate", failure_class=FailureClass.APP, not_before=at(60))]),
    ("backoff-is-capped",
     {"phase": StepPhase.ATTEMPT_FAILED, "attempt": 2, "restarts": Restarts(app=1, hang=0, infra=0), "last_failure": failure(FailureClass.APP, 2)}, 0,
     [planner.ScheduleRetry("curate", failure_class=FailureClass.APP, not_before=at(60))]),
    ("app-failures-over-the-budget-fail-the-run",
     {"phase": StepPhase.ATTEMPT_FAILED, "attempt": 3, "restarts": Restarts(app=2), "last_failure": failure(FailureClass.APP, 3)}, 0,
     [planner.FailRun("curate", reason=Reason.RETRIES_EXHAUSTED, message="curate: failed 3 times; last: X: boom")]),
    ("hangs-use-the-same-budget",
     {"phase": StepPhase.ATTEMPT_FAILED, "attempt": 3, "restarts": Restarts(app=1, hang=1), "last_failure": failure(FailureClass.HANG, 3)}, 0,
     [planner.FailRun("curate", reason=Reason.RETRIES_EXHAUSTED, message="curate: failed 3 times; last: X: boom")]),
    ("a-hang-restarts",
     {"phase": StepPhase.ATTEMPT_FAILED, "last_failure": failure(FailureClass.HANG)}, 0,
     [planner.ScheduleRetry("curate", failure_class=FailureClass.HANG, not_before=at(30))]),
    ("infra-failure-retries-at-once-without-the-budget",
     {"phase": StepPhase.ATTEMPT_FAILED, "attempt": 3, "restarts": Restarts(app=2), "last_failure": failure(FailureClass.INFRA, 3)}, 0,
     [planner.ScheduleRetry("curate", failure_class=FailureClass.INFRA, not_before=at(0))]),
    ("infra-failures-over-their-cap-fail-the-run",
     {"phase": StepPhase.ATTEMPT_FAILED, "attempt": 4, "restarts": Restarts(infra=3), "last_failure": failure(FailureClass.INFRA, 4)}, 0,
     [planner.FailRun("curate", reason=Reason.INFRA_RETRIES_EXHAUSTED, message="curate: 3 disruptions")]),
    ("a-first-disk-pressure-eviction-is-a-free-retry",
     {"phase": StepPhase.ATTEMPT_FAILED, "attempt": 3, "restarts": Restarts(app=2),
      "last_failure": failure(FailureClass.INFRA, 3, reason=Reason.DISK_PRESSURE)}, 0,
     [planner.ScheduleRetry("curate", failure_class=FailureClass.INFRA, not_before=at(0))]),
    ("a-second-disk-pressure-eviction-spends-the-budget",
     {"phase": StepPhase.ATTEMPT_FAILED, "attempt": 2, "restarts": Restarts(infra=1, disk=1),
      "last_failure": failure(FailureClass.INFRA, 2, reason=Reason.DISK_PRESSURE)}, 0,
     [planner.ScheduleRetry("curate", failure_class=FailureClass.APP, not_before=at(30))]),
    ("repeated-disk-pressure-over-the-budget-names-the-field",
     {"phase": StepPhase.ATTEMPT_FAILED, "attempt": 4, "restarts": Restarts(infra=1, disk=2, app=2),
      "last_failure": failure(FailureClass.INFRA, 4, reason=Reason.DISK_PRESSURE)}, 0,
     [planner.FailRun("curate", reason=Reason.RETRIES_EXHAUSTED,
                      message="curate: failed 3 times; last: DiskPressure: boom (raise spec.stages.<stage>.resources.scratchSize)")]),
    ("permanent-failure-fails-the-run-at-once",
     {"phase": StepPhase.ATTEMPT_FAILED, "last_failure": failure(FailureClass.PERMANENT, reason=Reason.FATAL_EXIT_CODE)}, 0,
     [planner.FailRun("curate", reason=Reason.PERMANENT_FAILURE, message="curate: FatalExitCode: boom")]),
    ("backoff-not-over-waits-until-then",
     {"phase": StepPhase.BACKOFF, "retry_after": at(30)}, 10, [planner.Wait(until=at(30))]),
    ("backoff-over-starts-the-next-attempt",
     {"phase": StepPhase.BACKOFF, "retry_after": at(30)}, 30, [planner.StartAttempt("curate", attempt=2)]),
]


@pytest.mark.parametrize(("fields", "now", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_situation(make_run, fields: dict[str, Any], now: float, expected: list[planner.Action]) -> None:
    spec = make_run().policy(**POLICY).spec()
    actions = planner.plan(spec, status_with(spec, **fields), at(now))
    # failures carry timestamps and messages; compare the decision, then the failure class where there is one
    assert [(type(a), a.step, getattr(a, "reason", None), getattr(a, "attempt", None), getattr(a, "not_before", None), getattr(a, "until", None),
             getattr(a, "failure_class", None), getattr(a, "message", None)) for a in actions] == \
           [(type(a), a.step, getattr(a, "reason", None), getattr(a, "attempt", None), getattr(a, "not_before", None), getattr(a, "until", None),
             getattr(a, "failure_class", None), getattr(a, "message", None)) for a in expected]


@pytest.mark.parametrize(("fields", "cls"), [
    ({"phase": StepPhase.RUNNING, "progress": StepProgress(step=5, time=at(10))}, FailureClass.HANG),
    ({"phase": StepPhase.RUNNING, "waiting": Waiting(reason="ImagePullBackOff", message="pull access denied", permanent=True, since=T0)},
     FailureClass.PERMANENT),
])
def test_stop_actions_carry_their_failure(make_run, fields, cls) -> None:
    spec = make_run().policy(**POLICY).spec()
    (action,) = planner.plan(spec, status_with(spec, **fields), at(500))
    assert isinstance(action, planner.StopAttempt) and action.failure is not None
    assert action.failure.failure_class == cls and action.failure.attempt == 1
    if cls == FailureClass.PERMANENT:
        assert "pull access denied" in (action.failure.message or "")


def test_fresh_run_starts_the_first_enabled_step(make_run) -> None:
    spec = make_run().disable("curate").stage("select", poolUri="s3://b/pool.parquet").spec()
    status = planner.initial_status(spec)
    assert [s.phase for s in status.steps if s.name in ("curate", "distill")] == [StepPhase.SKIPPED, StepPhase.SKIPPED]
    assert planner.plan(spec, status, T0) == [planner.StartAttempt("select", attempt=1)]


def test_disabled_steps_are_skipped_between_enabled_ones(make_run) -> None:
    spec = make_run().spec()
    status = status_with(spec, "curate", phase=StepPhase.SUCCEEDED)
    assert planner.plan(spec, status, T0) == [planner.StartAttempt("select", attempt=1)]


def test_everything_succeeded_completes_the_run(make_run) -> None:
    spec = make_run().spec()
    status = status_with(spec, "sft-phase2", phase=StepPhase.SUCCEEDED)
    assert planner.plan(spec, status, T0) == [planner.CompleteRun()]


def test_terminal_runs_plan_nothing(make_run) -> None:
    spec = make_run().spec()
    for phase in (RunPhase.SUCCEEDED, RunPhase.FAILED):
        assert planner.plan(spec, planner.initial_status(spec).model_copy(update={"phase": phase}), T0) == []


def test_suspend_stops_the_running_attempt_without_a_failure(make_run) -> None:
    spec = make_run().set("spec.suspend", True).spec()
    status = status_with(spec, "select", phase=StepPhase.RUNNING)
    actions = planner.plan(spec, status, at(5))
    assert actions == [planner.StopAttempt("select", attempt=1, reason=Reason.SUSPENDED), planner.SuspendRun()]
    for action in actions:
        status = planner.apply(status, action, at(5), run_name="r1")
    step = status.step("select")
    assert status.phase == RunPhase.SUSPENDED and step.phase == StepPhase.PENDING and step.restarts.total == 0
    assert next(c for c in status.conditions if c.type == ConditionType.SUSPENDED).status == "True"
    assert planner.plan(spec, status, at(6)) == [planner.Wait()]

    resumed = make_run().set("spec.suspend", False).spec()
    (start,) = planner.plan(resumed, status, at(7))
    assert start == planner.StartAttempt("select", attempt=2)  # a new Job name; the old one may still be terminating
    status = planner.apply(status, start, at(7), run_name="r1")
    assert status.phase == RunPhase.RUNNING and status.step("select").job_name == "r1-select-a2"
    assert next(c for c in status.conditions if c.type == ConditionType.SUSPENDED).status == "False"


def test_stale_observations_of_an_old_attempt_are_ignored(make_run) -> None:
    spec = make_run().spec()
    status = status_with(spec, "curate", phase=StepPhase.RUNNING, attempt=2)
    assert planner.attempt_ended(status, "curate", failure(FailureClass.APP, attempt=1)) == status
    assert planner.attempt_succeeded(status, "curate", 1, T0) == status


def test_retry_counts_the_right_class(make_run) -> None:
    spec = make_run().spec()
    status = status_with(spec, "curate", phase=StepPhase.ATTEMPT_FAILED, last_failure=failure(FailureClass.INFRA))
    (action,) = planner.plan(spec, status, T0)
    status = planner.apply(status, action, T0)
    step = status.step("curate")
    assert step.phase == StepPhase.BACKOFF and step.restarts == Restarts(infra=1)
    assert status.restarts == 1
    assert next(c for c in status.conditions if c.type == ConditionType.RESTARTING).status == "True"


def _drive(spec, outcomes: dict[str, list[str]]) -> tuple[AlignmentRunStatus, list[str]]:
    """Play executor: each step's attempts end as listed ('ok', 'app', 'infra', 'fatal'); the clock jumps over backoffs."""
    status = planner.initial_status(spec)
    now = T0
    log: list[str] = []
    for _ in range(200):
        actions = planner.plan(spec, status, now)
        if not actions:
            return status, log
        for action in actions:
            if isinstance(action, planner.Wait):
                now = action.until or now + dt.timedelta(seconds=1)
                continue
            status = planner.apply(status, action, now, run_name="r1")
            if isinstance(action, planner.StartAttempt):
                log.append(f"{action.step}-a{action.attempt}")
                outcome = outcomes.get(action.step, ["ok"]).pop(0) if outcomes.get(action.step) else "ok"
                if outcome == "ok":
                    status = planner.attempt_succeeded(status, action.step, action.attempt, now)
                else:
                    cls = {"app": FailureClass.APP, "infra": FailureClass.INFRA, "fatal": FailureClass.PERMANENT}[outcome]
                    status = planner.attempt_ended(status, action.step, failure(cls, action.attempt))
    raise AssertionError("the run did not finish")


def test_whole_run_with_failures_of_every_kind(make_run) -> None:
    spec = make_run().policy(maxRestartsPerStage=2).spec()
    status, log = _drive(spec, {"select": ["infra", "app", "infra", "app", "ok"], "sft-phase2": ["app", "ok"]})
    assert status.phase == RunPhase.SUCCEEDED
    assert log == ["curate-a1", "select-a1", "select-a2", "select-a3", "select-a4", "select-a5", "sft-phase1-a1", "sft-phase2-a1", "sft-phase2-a2"]
    assert status.step("select").restarts == Restarts(infra=2, app=2)
    assert status.restarts == 5 and status.progress == "4/4"
    assert next(c for c in status.conditions if c.type == ConditionType.COMPLETE).status == "True"


def test_whole_run_that_exhausts_its_budget(make_run) -> None:
    spec = make_run().policy(maxRestartsPerStage=1).spec()
    status, log = _drive(spec, {"curate": ["app", "app"]})
    assert status.phase == RunPhase.FAILED and log == ["curate-a1", "curate-a2"]
    assert status.current_stage == "curate" and status.step("curate").phase == StepPhase.FAILED
    failed = next(c for c in status.conditions if c.type == ConditionType.FAILED)
    assert failed.status == "True" and failed.reason == Reason.RETRIES_EXHAUSTED


def test_fatal_exit_code_is_permanent() -> None:
    assert planner.classify_exit_code(2, [2]) == (FailureClass.PERMANENT, Reason.FATAL_EXIT_CODE)
    assert planner.classify_exit_code(1, [2]) == (FailureClass.APP, Reason.EXIT_CODE)


def test_plan_is_pure(make_run) -> None:
    spec = make_run().spec()
    status = status_with(spec, "curate", phase=StepPhase.ATTEMPT_FAILED, last_failure=failure(FailureClass.APP))
    before = status.model_dump()
    assert planner.plan(spec, status, T0) == planner.plan(spec, status, T0)
    assert status.model_dump() == before


# ---------------------------------------------------------------- observations: waiting, admission, heartbeats (fake clock)


def _running(make_run, **fields: Any) -> tuple[Any, AlignmentRunStatus]:
    spec = make_run().policy(**POLICY).spec()
    return spec, status_with(spec, phase=StepPhase.RUNNING, **fields)


def test_one_wait_keeps_its_start_across_reasons_and_an_admission_starts_a_new_one(make_run) -> None:
    _, status = _running(make_run)
    status = planner.pods_observed(status, "curate", 1, Waiting(reason="Queued", queued=True), at(5))
    status = planner.pods_observed(status, "curate", 1, Waiting(reason="Queued", queued=True, message="still"), at(500))
    assert status.step("curate").waiting.since == at(5)
    status = planner.pods_observed(status, "curate", 1, Waiting(reason="ContainerCreating"), at(900))  # admitted
    step = status.step("curate")
    assert (step.waiting.since, step.attempt_start_time) == (at(900), at(900))  # the queue time is no startup time
    status = planner.pods_observed(status, "curate", 1, Waiting(reason="Unschedulable"), at(950))
    assert status.step("curate").waiting.since == at(900)
    status = planner.pods_observed(status, "curate", 1, None, at(960))
    assert status.step("curate").waiting is None and status.step("curate").attempt_start_time == at(900)


def test_a_re_admission_after_a_preemption_forgets_the_old_heartbeat(make_run) -> None:
    spec, status = _running(make_run, progress=StepProgress(step=3, time=at(100)), last_checkpoint="s3://b/ckpt-3")
    status = planner.pods_observed(status, "curate", 1, Waiting(reason="Queued", queued=True), at(200))  # preempted
    assert status.step("curate").progress.step == 3  # kept while queued (nothing is judged meanwhile)
    status = planner.pods_observed(status, "curate", 1, None, at(7200))  # admitted again, pods run at once
    step = status.step("curate")
    assert (step.progress, step.attempt_start_time, step.last_checkpoint) == (None, at(7200), "s3://b/ckpt-3")
    assert planner.plan(spec, status, at(7200 + 10_000)) == [planner.Wait()]  # not armed until a new heartbeat
    # progress.json still holds the heartbeat from before the preemption: it does not count
    status = planner.heartbeat_read(status, "curate", 1, at(7300), progress=StepProgress(step=3, time=at(100)))
    assert status.step("curate").progress is None
    status = planner.heartbeat_read(status, "curate", 1, at(7300), progress=StepProgress(step=4, time=at(7250)))
    assert status.step("curate").progress.step == 4
    assert planner.plan(spec, status, at(7250 + 121))[0].reason == Reason.HEARTBEAT_TIMEOUT


def test_evidence_of_a_missing_image_survives_the_pull_back_off(make_run) -> None:
    _, status = _running(make_run)
    status = planner.pods_observed(status, "curate", 1, Waiting(reason="ErrImagePull", message="manifest unknown", permanent=True), at(1))
    status = planner.pods_observed(status, "curate", 1, Waiting(reason="ImagePullBackOff", message='Back-off pulling image "x"'), at(20))
    assert status.step("curate").waiting.permanent is True and status.step("curate").waiting.since == at(1)
    status = planner.pods_observed(status, "curate", 1, Waiting(reason="ContainerCreating"), at(30))  # the image was pushed
    assert status.step("curate").waiting.permanent is False


def test_an_unreadable_store_keeps_the_last_heartbeat_and_says_why(make_run) -> None:
    spec, status = _running(make_run, progress=StepProgress(step=5, time=at(100)))
    status = planner.heartbeat_read(status, "curate", 1, at(150), error="cannot read s3://b/p/progress.json: PermissionError: Forbidden")
    step = status.step("curate")
    assert step.progress.step == 5 and "Forbidden" in step.heartbeat_error
    conditions = {c.type: c for c in status.conditions}
    unavailable = conditions[ConditionType.HEARTBEAT_UNAVAILABLE]
    assert (unavailable.status, unavailable.reason) == ("True", Reason.STORE_UNREADABLE) and "Forbidden" in unavailable.message
    assert planner.plan(spec, status, at(10_000)) == [planner.Wait()]
    status = planner.heartbeat_read(status, "curate", 1, at(10_001))  # readable again, but nothing newer: now it is a hang
    assert status.step("curate").heartbeat_error is None
    assert planner.plan(spec, status, at(10_001))[0].reason == Reason.HEARTBEAT_TIMEOUT


def _conds(status: AlignmentRunStatus) -> dict[str, tuple[str, str]]:
    return {c.type.value: (c.status, c.reason) for c in status.conditions}


def test_conditions_say_waiting_and_heartbeat_and_read_as_finished_when_done(make_run) -> None:
    spec, status = _running(make_run)
    status = planner.pods_observed(status, "curate", 1, Waiting(reason="Unschedulable", message="0/3 nodes"), at(1))
    assert _conds(status)["Waiting"] == ("True", "Unschedulable") and "Stalled" not in _conds(status)
    status = planner.pods_observed(status, "curate", 1, None, at(2))
    assert _conds(status)["Waiting"] == ("False", Reason.PODS_RUNNING)
    assert _conds(status)["HeartbeatUnavailable"] == ("True", Reason.NO_HEARTBEAT_YET)
    status = planner.heartbeat_read(status, "curate", 1, at(3), progress=StepProgress(step=1, time=at(3)))
    assert _conds(status)["HeartbeatUnavailable"] == ("False", Reason.HEARTBEAT_READ)
    status = planner.attempt_succeeded(status, "curate", 1, at(4))
    while (actions := planner.plan(spec, status, at(5))) and not isinstance(actions[0], planner.CompleteRun):
        for action in actions:
            status = planner.apply(status, action, at(5))
        for step in status.steps:
            if step.phase == StepPhase.RUNNING:
                status = planner.attempt_succeeded(status, step.name, step.attempt, at(5))
    status = planner.apply(status, actions[0], at(6))
    conds = _conds(status)
    assert status.phase == RunPhase.SUCCEEDED and conds["Complete"] == ("True", Reason.ALL_STAGES_SUCCEEDED)
    for ctype in ("Running", "Waiting", "HeartbeatUnavailable"):
        assert conds[ctype] == ("False", Reason.RUN_FINISHED), ctype


def test_stalled_means_the_hang_detector_struck(make_run) -> None:
    spec, status = _running(make_run, progress=StepProgress(step=5, time=at(10)))
    (stop,) = planner.plan(spec, status, at(200))
    status = planner.apply(status, stop, at(200))
    assert _conds(status)["Stalled"] == ("True", Reason.HEARTBEAT_TIMEOUT)
    for action in planner.plan(spec, status, at(200)):
        status = planner.apply(status, action, at(200))
    (start,) = planner.plan(spec, status, at(230))
    status = planner.apply(status, start, at(230))
    assert _conds(status)["Stalled"][0] == "True"  # the new attempt has not sent a heartbeat yet
    status = planner.heartbeat_read(status, "curate", 2, at(240), progress=StepProgress(step=5, time=at(235)))
    assert _conds(status)["Stalled"] == ("False", Reason.STAGE_RUNNING)


def test_the_run_message_says_what_the_current_step_waits_for(make_run) -> None:
    _, status = _running(make_run)
    status = planner.pods_observed(status, "curate", 1, Waiting(reason="Unschedulable", message="0/3 nodes: Insufficient cpu"), at(1))
    assert status.message == "curate waiting: Unschedulable: 0/3 nodes: Insufficient cpu"
    status = planner.pods_observed(status, "curate", 1, None, at(2))
    status = planner.heartbeat_read(status, "curate", 1, at(3), error="cannot read s3://b/progress.json: Forbidden")
    assert status.message == "curate: heartbeat unavailable: cannot read s3://b/progress.json: Forbidden"
    status = planner.heartbeat_read(status, "curate", 1, at(4), progress=StepProgress(step=1, time=at(4)))
    assert status.message == "curate running"


def test_a_hang_names_the_nodes_of_the_hung_pods(make_run) -> None:
    spec, status = _running(make_run, progress=StepProgress(step=5, time=at(10)))
    status = planner.pods_observed(status, "curate", 1, None, at(20), nodes=["gpu-2", "gpu-5"])
    assert status.step("curate").nodes == ["gpu-2", "gpu-5"]
    (stop,) = planner.plan(spec, status, at(200))
    assert stop.failure is not None and stop.failure.nodes == ["gpu-2", "gpu-5"]


def test_a_preempted_step_waits_and_is_not_reported_as_missing_its_heartbeat(make_run) -> None:
    _, status = _running(make_run)
    status = planner.summarize(planner.pods_observed(status, "curate", 1, None, at(5)), at(5))  # no heartbeat yet: the condition appears
    status = planner.heartbeat_read(status, "curate", 1, at(11), progress=StepProgress(step=6, time=at(11)))
    status = planner.pods_observed(status, "curate", 1, Waiting(reason="Queued", queued=True), at(20))
    assert _conds(status)["HeartbeatUnavailable"] == ("False", Reason.WAITING)
    assert _conds(status)["Waiting"] == ("True", "Queued")


def test_a_run_past_its_deadline_stops_its_step_and_fails_with_deadline_exceeded(make_run) -> None:
    spec = make_run().set("spec.activeDeadlineSeconds", 3600).policy(**POLICY).spec()
    status = planner.apply(planner.initial_status(spec), planner.StartAttempt("curate", attempt=1), at(0))
    assert planner.deadline(spec, status) == at(3600)
    # running well within the deadline: nothing to do until the next observation
    assert planner.plan(spec, status, at(1800)) == [planner.Wait()]
    (stop,) = planner.plan(spec, status, at(3600))
    assert isinstance(stop, planner.StopAttempt) and (stop.step, stop.attempt, stop.reason) == ("curate", 1, Reason.DEADLINE_EXCEEDED)
    assert stop.failure is not None and stop.failure.failure_class == FailureClass.PERMANENT  # no retry follows
    status = planner.apply(status, stop, at(3600))
    (fail,) = planner.plan(spec, status, at(3600))
    assert fail == planner.FailRun("curate", Reason.DEADLINE_EXCEEDED, "the run did not finish within spec.activeDeadlineSeconds=3600s of its start")
    status = planner.apply(status, fail, at(3600))
    assert status.phase == RunPhase.FAILED and status.step("curate").phase == StepPhase.FAILED
    failed = next(c for c in status.conditions if c.type == ConditionType.FAILED)
    assert (failed.status, failed.reason) == ("True", Reason.DEADLINE_EXCEEDED) and "activeDeadlineSeconds=3600" in (failed.message or "")


def test_the_deadline_cuts_a_backoff_short_and_without_one_nothing_changes(make_run) -> None:
    spec = make_run().set("spec.activeDeadlineSeconds", 600).policy(**POLICY).spec()
    status = status_with(spec, phase=StepPhase.BACKOFF, retry_after=at(900))
    status = status.model_copy(update={"start_time": at(0)})
    assert planner.plan(spec, status, at(100)) == [planner.Wait(until=at(600))]  # the deadline comes before the retry
    assert planner.plan(spec, status, at(601)) == [planner.FailRun("curate", Reason.DEADLINE_EXCEEDED, "the run did not finish within spec.activeDeadlineSeconds=600s of its start")]
    unbounded = make_run().policy(**POLICY).spec()
    assert planner.plan(unbounded, status, at(10**6)) == [planner.StartAttempt("curate", attempt=2)]


def test_disk_pressure_retries_are_counted(make_run) -> None:
    spec = make_run().policy(**POLICY).spec()
    status = status_with(spec, phase=StepPhase.ATTEMPT_FAILED, last_failure=failure(FailureClass.INFRA, reason=Reason.DISK_PRESSURE))
    (retry,) = planner.plan(spec, status, at(0))
    after = planner.apply(status, retry, at(0))
    assert after.step("curate").restarts == Restarts(infra=1, disk=1)
