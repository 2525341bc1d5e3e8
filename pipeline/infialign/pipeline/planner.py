"""The planner: `plan(spec, status, now) -> list[Action]`, and the reducer that records actions in the status.

Both are pure: frozen inputs, no I/O, no clock (``now`` is an argument). The local executor and the
operator share them, so they cannot disagree about what happens next. The loop around them is:

    observe the world → status  (launcher: process exit, Job conditions, heartbeat)
    actions = plan(spec, status, now)
    for each action: do its side effect (launcher), then status = apply(status, action, now)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from infialign.pipeline import graph
from infialign.pipeline.api import (
    AlignmentRunSpec,
    AlignmentRunStatus,
    Condition,
    ConditionType,
    EvalResult,
    Failure,
    FailureClass,
    Reason,
    Restarts,
    RunPhase,
    StepPhase,
    StepProgress,
    StepStatus,
    Waiting,
    truncate,
)

__all__ = [
    "Action",
    "StartAttempt",
    "StopAttempt",
    "ScheduleRetry",
    "CompleteRun",
    "FailRun",
    "SuspendRun",
    "Wait",
    "plan",
    "deadline",
    "apply",
    "initial_status",
    "attempt_ended",
    "attempt_succeeded",
    "attempt_cached",
    "record_results",
    "heartbeat_read",
    "pods_observed",
    "set_condition",
    "summarize",
    "reconcile_steps",
    "classify_exit_code",
    "job_name",
    "PERMANENT_WAITING_REASONS",
    "IMAGE_PULL_REASONS",
]

# Kubelet waiting reasons that no amount of waiting fixes (a person must act: fix the image name, create the
# Secret); past `startupTimeoutSeconds` they are permanent. Everything else a pod waits for may heal by itself.
PERMANENT_WAITING_REASONS: Final = frozenset({"InvalidImageName", "CreateContainerConfigError", "ErrImageNeverPull"})
# Image pulls: permanent or not depending on the kubelet's message (observe.py reads it). The kubelet
# alternates between the two; evidence that the image does not exist is kept across the alternation.
IMAGE_PULL_REASONS: Final = frozenset({"ImagePullBackOff", "ErrImagePull"})
_IMAGE_REASONS: Final = IMAGE_PULL_REASONS | {"InvalidImageName", "ErrImageNeverPull"}


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Action:
    step: str | None = None


@dataclass(frozen=True)
class StartAttempt(Action):
    """Create attempt `attempt` of `step` (a Job, or a local subprocess)."""

    attempt: int = 1


@dataclass(frozen=True)
class StopAttempt(Action):
    """Kill the running attempt. With a failure (hang, startup timeout) the planner then decides a retry;
    without one (suspend) the step goes back to Pending."""

    attempt: int = 0
    failure: Failure | None = None
    reason: str = ""


@dataclass(frozen=True)
class ScheduleRetry(Action):
    """Count the failure against its budget and wait until `not_before` for the next attempt."""

    failure_class: FailureClass = FailureClass.APP
    not_before: dt.datetime | None = None


@dataclass(frozen=True)
class CompleteRun(Action):
    pass


@dataclass(frozen=True)
class FailRun(Action):
    reason: str = ""
    message: str | None = None


@dataclass(frozen=True)
class SuspendRun(Action):
    pass


@dataclass(frozen=True)
class Wait(Action):
    """Nothing to do until `until` (a retry) or the next observation (None)."""

    until: dt.datetime | None = None


def job_name(run: str, step: str, attempt: int) -> str:
    """Deterministic child name: `<run>-<step>-a<attempt>` (a 409 on create then means 'already done')."""
    return f"{run}-{step}-a{attempt}"


def classify_exit_code(exit_code: int, fatal_exit_codes: list[int]) -> tuple[FailureClass, str]:
    if exit_code in fatal_exit_codes:
        return FailureClass.PERMANENT, Reason.FATAL_EXIT_CODE
    return FailureClass.APP, Reason.EXIT_CODE


# ---------------------------------------------------------------- plan


def _is_stale(step: StepStatus, spec: AlignmentRunSpec, now: dt.datetime) -> bool:
    """A hang needs evidence: a heartbeat of this attempt was read, the store is still readable, and no newer
    heartbeat came within the stall timeout. Silence that only means "cannot read" or "not started" is no hang."""
    if step.waiting is not None:  # pods not running yet: waiting rules apply, not the stall timeout
        return False
    if step.heartbeat_error is not None:  # the latest read failed: the operator cannot tell silence from health
        return False
    last = step.progress.time if step.progress is not None else None
    if last is None:  # no heartbeat of this attempt (or admission) read yet: the stall clock is not armed
        return False
    return (now - last).total_seconds() > spec.failure_policy.stall_timeout_seconds


def _waiting_failure(step: StepStatus, spec: AlignmentRunSpec, now: dt.datetime) -> Failure | None:
    """Waiting fails a run only for a start error that cannot heal (after `startupTimeoutSeconds`) or past the
    explicit `waitingTimeoutSeconds`. Queues, autoscaling, quotas and slow pulls are not failures."""
    waiting = step.waiting
    if waiting is None or waiting.since is None:
        return None
    policy = spec.failure_policy
    waited = (now - waiting.since).total_seconds()
    message = f"{waiting.reason}: {waiting.message}" if waiting.message else waiting.reason
    if waiting.permanent and not waiting.queued and waited > policy.startup_timeout_seconds:
        reason = Reason.IMAGE_PULL if waiting.reason in _IMAGE_REASONS else Reason.STARTUP_TIMEOUT
        return Failure(failure_class=FailureClass.PERMANENT, reason=reason, message=truncate(message), attempt=step.attempt, time=now)
    if policy.waiting_timeout_seconds is not None and waited > policy.waiting_timeout_seconds:
        detail = f"{message} (waited {waited:.0f}s; failurePolicy.waitingTimeoutSeconds={policy.waiting_timeout_seconds})"
        return Failure(
            failure_class=FailureClass.PERMANENT, reason=Reason.WAITING_TIMEOUT, message=truncate(detail), attempt=step.attempt, time=now
        )
    return None


def _backoff(spec: AlignmentRunSpec, restarts: Restarts, cls: FailureClass) -> float:
    policy = spec.failure_policy
    if cls == FailureClass.INFRA:
        return 0.0  # a disruption says nothing about the code: retry at once
    return float(min(policy.backoff_seconds * 2**restarts.budgeted, policy.max_backoff_seconds))


def _decide_failure(spec: AlignmentRunSpec, step: StepStatus, now: dt.datetime) -> Action:
    failure = step.last_failure
    assert failure is not None, "AttemptFailed without last_failure"
    policy = spec.failure_policy
    cls = failure.failure_class
    if cls == FailureClass.PERMANENT:
        return FailRun(step.name, Reason.PERMANENT_FAILURE, f"{step.name}: {failure.reason}: {failure.message or ''}".strip())
    if failure.reason == Reason.DISK_PRESSURE and step.restarts.disk >= 1:
        # Once may be a neighbour filling the node; twice, the stage's own downloads and checkpoints do, and
        # a free retry on the next node would loop forever. It now spends the retry budget.
        cls = FailureClass.APP
    if cls == FailureClass.INFRA:
        if step.restarts.infra >= policy.max_infra_restarts:
            return FailRun(step.name, Reason.INFRA_RETRIES_EXHAUSTED, f"{step.name}: {step.restarts.infra} disruptions")
    elif step.restarts.budgeted >= policy.max_restarts_per_stage:
        hint = " (raise spec.stages.<stage>.resources.scratchSize)" if failure.reason == Reason.DISK_PRESSURE else ""
        return FailRun(
            step.name,
            Reason.RETRIES_EXHAUSTED,
            f"{step.name}: failed {step.restarts.budgeted + 1} times; last: {failure.reason}: {failure.message or ''}".strip() + hint,
        )
    delay = _backoff(spec, step.restarts, cls)
    return ScheduleRetry(step.name, failure_class=cls, not_before=now + dt.timedelta(seconds=delay))


def deadline(spec: AlignmentRunSpec, status: AlignmentRunStatus) -> dt.datetime | None:
    """When the run must be done (`activeDeadlineSeconds` after its first step started), or None."""
    if spec.active_deadline_seconds is None or status.start_time is None:
        return None
    return status.start_time + dt.timedelta(seconds=spec.active_deadline_seconds)


def _deadline_actions(spec: AlignmentRunSpec, status: AlignmentRunStatus, now: dt.datetime) -> list[Action]:
    """Past the deadline: stop what runs (a permanent failure, so no retry follows), then fail the run."""
    message = f"the run did not finish within spec.activeDeadlineSeconds={spec.active_deadline_seconds}s of its start"
    running = [s for s in status.steps if s.phase == StepPhase.RUNNING]
    if running:
        return [
            StopAttempt(
                s.name,
                attempt=s.attempt,
                failure=Failure(
                    failure_class=FailureClass.PERMANENT,
                    reason=Reason.DEADLINE_EXCEEDED,
                    message=message,
                    attempt=s.attempt,
                    time=now,
                    nodes=s.nodes,
                ),
                reason=Reason.DEADLINE_EXCEEDED,
            )
            for s in running
        ]
    current = next((s for s in status.steps if s.phase not in (StepPhase.SUCCEEDED, StepPhase.SKIPPED)), None)
    return [FailRun(current.name if current is not None else None, Reason.DEADLINE_EXCEEDED, message)]


def plan(spec: AlignmentRunSpec, status: AlignmentRunStatus, now: dt.datetime) -> list[Action]:
    """Decide what happens next. Returns at most a few actions; an empty list means the run is over."""
    if status.phase in (RunPhase.SUCCEEDED, RunPhase.FAILED):
        return []
    due = deadline(spec, status)
    if due is not None and now >= due:
        return _deadline_actions(spec, status, now)
    actions = _plan(spec, status, now)
    if due is not None:
        # a timed wait (a backoff) ends at the deadline at the latest; an open one (a running step) already
        # ends with the next observation, and the operator's tick observes at least every `tick_seconds`
        actions = [Wait(until=min(a.until, due)) if isinstance(a, Wait) and a.until is not None else a for a in actions]
    return actions


def _plan(spec: AlignmentRunSpec, status: AlignmentRunStatus, now: dt.datetime) -> list[Action]:
    steps = {s.name: s for s in status.steps}
    order = graph.pipeline_steps(spec)

    if spec.suspend:
        actions: list[Action] = [
            StopAttempt(s.name, attempt=s.attempt, reason=Reason.SUSPENDED)
            for s in status.steps
            if s.phase == StepPhase.RUNNING
        ]
        if status.phase != RunPhase.SUSPENDED:
            actions.append(SuspendRun())
        return actions or [Wait()]

    for ref in order:
        step = steps.get(ref.name)
        if step is None or step.phase in (StepPhase.SUCCEEDED, StepPhase.SKIPPED):
            continue
        if step.phase == StepPhase.FAILED:
            return [FailRun(step.name, step.reason or Reason.PERMANENT_FAILURE, step.message)]
        if step.phase == StepPhase.PENDING:
            return [StartAttempt(step.name, attempt=step.attempt + 1)]
        if step.phase == StepPhase.RUNNING:
            failure = _waiting_failure(step, spec, now)
            if failure is not None:
                return [StopAttempt(step.name, attempt=step.attempt, failure=failure, reason=failure.reason)]
            if _is_stale(step, spec, now):
                last = step.progress.time if step.progress is not None else None
                hang = Failure(
                    failure_class=FailureClass.HANG,
                    reason=Reason.HEARTBEAT_TIMEOUT,
                    message=f"no heartbeat since {last.isoformat() if last else 'start'} "
                    f"(stallTimeoutSeconds={spec.failure_policy.stall_timeout_seconds})",
                    attempt=step.attempt,
                    time=now,
                    nodes=step.nodes,
                )
                return [StopAttempt(step.name, attempt=step.attempt, failure=hang, reason=Reason.HEARTBEAT_TIMEOUT)]
            return [Wait()]
        if step.phase == StepPhase.ATTEMPT_FAILED:
            return [_decide_failure(spec, step, now)]
        if step.phase == StepPhase.BACKOFF:
            if step.retry_after is None or now >= step.retry_after:
                return [StartAttempt(step.name, attempt=step.attempt + 1)]
            return [Wait(until=step.retry_after)]
    return [CompleteRun()]


# ---------------------------------------------------------------- status reducer


def initial_status(spec: AlignmentRunSpec, generation: int | None = None) -> AlignmentRunStatus:
    """A status with one entry per step; disabled steps are Skipped from the start."""
    steps = [
        StepStatus(name=s.name, stage=s.stage, phase=StepPhase.PENDING if s.enabled else StepPhase.SKIPPED, reason=None if s.enabled else "Disabled")
        for s in graph.pipeline_steps(spec)
    ]
    return summarize(AlignmentRunStatus(steps=steps, observed_generation=generation), None)


def reconcile_steps(spec: AlignmentRunSpec, status: AlignmentRunStatus) -> AlignmentRunStatus:
    """Bring the step list in line with the spec (a step enabled or disabled later), keeping history."""
    have = {s.name: s for s in status.steps}
    steps: list[StepStatus] = []
    for ref in graph.pipeline_steps(spec):
        existing = have.get(ref.name)
        if existing is None:
            existing = StepStatus(name=ref.name, stage=ref.stage)
        if not ref.enabled and existing.phase == StepPhase.PENDING:
            existing = existing.model_copy(update={"phase": StepPhase.SKIPPED, "reason": "Disabled"})
        elif ref.enabled and existing.phase == StepPhase.SKIPPED:
            existing = existing.model_copy(update={"phase": StepPhase.PENDING, "reason": None})
        steps.append(existing)
    return status.model_copy(update={"steps": steps})


def _replace_step(status: AlignmentRunStatus, name: str, **update: object) -> AlignmentRunStatus:
    steps = [s.model_copy(update=update) if s.name == name else s for s in status.steps]
    return status.model_copy(update={"steps": steps})


def apply(status: AlignmentRunStatus, action: Action, now: dt.datetime, *, run_name: str = "run") -> AlignmentRunStatus:
    """Record an action's effect in the status. The launcher has done (or will do) the side effect."""
    step = status.step(action.step) if action.step else None
    if isinstance(action, StartAttempt) and step is not None:
        status = _replace_step(
            status,
            step.name,
            phase=StepPhase.RUNNING,
            attempt=action.attempt,
            job_name=job_name(run_name, step.name, action.attempt),
            start_time=step.start_time or now,
            attempt_start_time=now,
            retry_after=None,
            waiting=None,
            progress=None,
            heartbeat_error=None,
            nodes=None,
            reason="Started",
            message=None,
            # a new attempt's record is its own: nothing measured yet, and it does the work
            duration_seconds=None,
            cached=None,
            metrics=None,
        )
        if status.phase in (RunPhase.PENDING, RunPhase.SUSPENDED):
            status = status.model_copy(update={"phase": RunPhase.RUNNING, "start_time": status.start_time or now})
    elif isinstance(action, StopAttempt) and step is not None:
        if action.failure is None:  # suspended: not a failure, the next attempt starts on resume
            status = _replace_step(status, step.name, phase=StepPhase.PENDING, reason=action.reason, waiting=None)
        else:
            status = attempt_ended(status, step.name, action.failure)
    elif isinstance(action, ScheduleRetry) and step is not None:
        field = {FailureClass.INFRA: "infra", FailureClass.HANG: "hang"}.get(action.failure_class, "app")
        update = {field: getattr(step.restarts, field) + 1}
        if step.last_failure is not None and step.last_failure.reason == Reason.DISK_PRESSURE:
            update["disk"] = step.restarts.disk + 1
        restarts = step.restarts.model_copy(update=update)
        status = _replace_step(
            status, step.name, phase=StepPhase.BACKOFF, restarts=restarts, retry_after=action.not_before, reason=Reason.BACKOFF
        )
    elif isinstance(action, CompleteRun):
        status = status.model_copy(update={"phase": RunPhase.SUCCEEDED, "completion_time": now, "message": "all stages succeeded"})
    elif isinstance(action, FailRun):
        if step is not None:
            status = _replace_step(status, step.name, phase=StepPhase.FAILED, completion_time=now, reason=action.reason, message=truncate(action.message))
        status = status.model_copy(update={"phase": RunPhase.FAILED, "completion_time": now, "message": truncate(action.message)})
    elif isinstance(action, SuspendRun):
        status = status.model_copy(update={"phase": RunPhase.SUSPENDED})
    return summarize(status, now)


def attempt_ended(status: AlignmentRunStatus, step_name: str, failure: Failure) -> AlignmentRunStatus:
    """An observation: the current attempt of `step_name` failed. The planner decides what follows."""
    step = status.step(step_name)
    if step is None or step.phase != StepPhase.RUNNING or failure.attempt != step.attempt:
        return status  # a stale observation of an older attempt
    return _replace_step(
        status,
        step_name,
        phase=StepPhase.ATTEMPT_FAILED,
        last_failure=failure,
        waiting=None,
        reason=failure.reason,
        message=truncate(failure.message),
    )


def attempt_succeeded(status: AlignmentRunStatus, step_name: str, attempt: int, now: dt.datetime, **update: object) -> AlignmentRunStatus:
    """An observation: attempt `attempt` of `step_name` wrote its `_SUCCESS.json`."""
    step = status.step(step_name)
    if step is None or step.phase != StepPhase.RUNNING or step.attempt != attempt:
        return status
    changes: dict[str, object] = {"phase": StepPhase.SUCCEEDED, "completion_time": now, "waiting": None, "reason": "Succeeded", "message": None}
    status = _replace_step(status, step_name, **{**changes, **update})
    return summarize(status, now)


def attempt_cached(
    status: AlignmentRunStatus,
    step_name: str,
    attempt: int,
    now: dt.datetime,
    *,
    started_at: dt.datetime | None,
    finished_at: dt.datetime,
    duration_seconds: float | None,
    **update: object,
) -> AlignmentRunStatus:
    """An observation: attempt `attempt` found the step already done (its `_SUCCESS.json` matches) and ran nothing.

    The step keeps the times of the attempt that did the work, not the instant of the skip: they are the
    measurements users and `infialign plan`'s calibration read. `cached` says no work happened in this run.
    """
    record: dict[str, object] = {
        "completion_time": finished_at,
        "duration_seconds": duration_seconds,
        "cached": True,
        "reason": "AlreadySucceeded",
    }
    if started_at is not None:
        record.update(start_time=started_at, attempt_start_time=started_at)
    return attempt_succeeded(status, step_name, attempt, now, **{**update, **record})


def record_results(status: AlignmentRunStatus, step_name: str, results: list[EvalResult]) -> AlignmentRunStatus:
    """An observation: a succeeded step's `_SUCCESS.json` carries eval results; they become `status.results`.

    Only a step that has succeeded may set them, so a failed or running attempt never shows half a table.
    """
    step = status.step(step_name)
    if step is None or step.phase != StepPhase.SUCCEEDED or not results:
        return status
    return status.model_copy(update={"results": list(results)})


def heartbeat_read(
    status: AlignmentRunStatus,
    step_name: str,
    attempt: int,
    now: dt.datetime,
    *,
    progress: StepProgress | None = None,
    last_checkpoint: str | None = None,
    error: str | None = None,
) -> AlignmentRunStatus:
    """An observation: one read of the running attempt's `progress.json`. `error` says the store could not be
    read; `progress` None says it was read and holds nothing. Only a heartbeat written since the attempt (or
    its latest admission) started counts; an older one belongs to an earlier attempt or admission."""
    step = status.step(step_name)
    if step is None or step.phase != StepPhase.RUNNING or step.attempt != attempt:
        return status
    update: dict[str, object] = {"heartbeat_error": truncate(error)}
    fresh = (
        error is None
        and progress is not None
        and progress.time is not None
        and (step.attempt_start_time is None or progress.time >= step.attempt_start_time)
        and (step.progress is None or step.progress.time is None or progress.time > step.progress.time)
    )
    if fresh:
        update["progress"] = progress
        update["last_checkpoint"] = last_checkpoint or step.last_checkpoint
    if all(getattr(step, k) == v for k, v in update.items()):
        return status
    return summarize(_replace_step(status, step_name, **update), now)


def pods_observed(
    status: AlignmentRunStatus, step_name: str, attempt: int, waiting: Waiting | None, now: dt.datetime, *, nodes: list[str] | None = None
) -> AlignmentRunStatus:
    """An observation: the attempt's pods wait (and why), or all of them run (`waiting` None).

    Owns the waiting clock: `waiting.since` is kept while one wait lasts and restarts when queueing turns into
    starting. A Kueue admission (queued → not queued, also after a preemption) restarts the attempt's clock and
    forgets its heartbeat: hours in a queue are no startup time, and the heartbeat from before a preemption
    says nothing about the re-admitted pods."""
    step = status.step(step_name)
    if step is None or step.phase != StepPhase.RUNNING or step.attempt != attempt:
        return status
    before = step.waiting
    update: dict[str, object] = {}
    if before is not None and before.queued and (waiting is None or not waiting.queued):
        update.update(attempt_start_time=now, progress=None, heartbeat_error=None)
    if waiting is not None:
        same_wait = before is not None and before.queued == waiting.queued and before.since is not None
        permanent = waiting.permanent or (
            same_wait and before is not None and before.permanent and {before.reason, waiting.reason} <= IMAGE_PULL_REASONS
        )
        waiting = waiting.model_copy(update={"since": before.since if same_wait and before is not None else now, "permanent": permanent})
    if waiting != before:
        update["waiting"] = waiting
    if nodes and nodes != step.nodes:
        update["nodes"] = nodes[:64]
    if not update:
        return status
    return summarize(_replace_step(status, step_name, **update), now)


# ---------------------------------------------------------------- derived fields


def set_condition(status: AlignmentRunStatus, ctype: ConditionType, on: bool, reason: str, message: str | None, now: dt.datetime) -> AlignmentRunStatus:
    """Set one condition that the steps do not determine (e.g. `ChildCreateFailed`); `summarize` keeps it."""
    conditions = _set_condition(list(status.conditions), ctype, on, reason, message, now)
    return status if conditions == status.conditions else status.model_copy(update={"conditions": conditions})


def _set_condition(conditions: list[Condition], ctype: ConditionType, on: bool, reason: str, message: str | None, now: dt.datetime) -> list[Condition]:
    value = "True" if on else "False"
    old = next((c for c in conditions if c.type == ctype), None)
    if old is not None and old.status == value and old.reason == reason and old.message == message:
        return conditions
    changed = old is None or old.status != value
    cond = Condition(
        type=ctype,
        status=value,
        reason=reason,
        message=truncate(message),
        last_transition_time=now if changed or old is None else old.last_transition_time,
    )
    return [c for c in conditions if c.type != ctype] + [cond]


def summarize(status: AlignmentRunStatus, now: dt.datetime | None) -> AlignmentRunStatus:
    """Recompute currentStage, progress, restarts and conditions from the steps."""
    active = [s for s in status.steps if s.phase not in (StepPhase.SKIPPED,)]
    done = sum(1 for s in active if s.phase == StepPhase.SUCCEEDED)
    current = next((s for s in active if s.phase not in (StepPhase.SUCCEEDED,)), None)
    progress = f"{done}/{len(active)}"
    if current is not None and current.progress and current.progress.percent is not None and current.phase == StepPhase.RUNNING:
        progress += f" {current.name} {current.progress.percent:.0f}%"
    update: dict[str, object] = {
        "current_stage": current.name if current else None,
        "progress": progress,
        "restarts": sum(s.restarts.total for s in status.steps),
    }
    if now is not None:
        update["conditions"] = _conditions(status, current, now)
    if status.phase in (RunPhase.RUNNING, RunPhase.PENDING) and current is not None:
        update["message"] = _current_message(current)
    return status.model_copy(update=update)


def _current_message(step: StepStatus) -> str | None:
    """One line on the step in flight, for `status.message` (the wide printer column) while the run is not finished."""
    if step.phase == StepPhase.RUNNING:
        if step.waiting is not None:
            return truncate(f"{step.name} waiting: {step.waiting.reason}" + (f": {step.waiting.message}" if step.waiting.message else ""))
        if step.heartbeat_error is not None:
            return truncate(f"{step.name}: heartbeat unavailable: {step.heartbeat_error}")
        return f"{step.name} running"
    if step.phase in (StepPhase.ATTEMPT_FAILED, StepPhase.BACKOFF):
        return truncate(f"{step.name} restarting after {step.reason}" + (f": {step.message}" if step.message else ""))
    return None


def _conditions(status: AlignmentRunStatus, current: StepStatus | None, now: dt.datetime) -> list[Condition]:
    """Conditions derived from the steps. A finished run reads as finished: every "in flight" condition that
    exists turns False with reason `RunFinished`. Optional conditions appear the first time they are True."""
    conds = list(status.conditions)
    finished = status.phase in (RunPhase.SUCCEEDED, RunPhase.FAILED)
    in_flight = current if current is not None and not finished else None
    running_step = in_flight if in_flight is not None and in_flight.phase == StepPhase.RUNNING else None

    def put(ctype: ConditionType, on: bool, reason: str, message: str | None = None, *, always: bool = False) -> None:
        nonlocal conds
        if finished:
            if any(c.type == ctype for c in conds):
                conds = _set_condition(conds, ctype, False, Reason.RUN_FINISHED, None, now)
            return
        if always or on or any(c.type == ctype for c in conds):
            conds = _set_condition(conds, ctype, on, reason, message, now)

    conds = _set_condition(conds, ConditionType.ACCEPTED, True, Reason.VALID, None, now)
    running = running_step is not None and status.phase == RunPhase.RUNNING
    put(ConditionType.RUNNING, running, Reason.STAGE_RUNNING if running else Reason.WAITING, running_step.name if running and running_step else None, always=True)
    suspended = status.phase == RunPhase.SUSPENDED
    put(ConditionType.SUSPENDED, suspended, Reason.SUSPENDED if suspended else Reason.RESUMED)

    waiting = running_step.waiting if running_step is not None else None
    if waiting is not None:
        put(ConditionType.WAITING, True, waiting.reason, waiting.message)
    else:
        put(ConditionType.WAITING, False, Reason.PODS_RUNNING if running_step is not None else Reason.NOT_RUNNING)

    if running_step is not None and waiting is None and running_step.heartbeat_error is not None:
        put(ConditionType.HEARTBEAT_UNAVAILABLE, True, Reason.STORE_UNREADABLE, running_step.heartbeat_error)
    elif running_step is not None and waiting is None and (running_step.progress is None or running_step.progress.time is None):
        message = f"no heartbeat of {running_step.name} attempt {running_step.attempt} read yet; the stall timeout starts with the first"
        put(ConditionType.HEARTBEAT_UNAVAILABLE, True, Reason.NO_HEARTBEAT_YET, message)
    elif running_step is not None and waiting is not None:
        put(ConditionType.HEARTBEAT_UNAVAILABLE, False, Reason.WAITING)  # no pods run: nothing to beat, nothing judged
    else:
        put(ConditionType.HEARTBEAT_UNAVAILABLE, False, Reason.HEARTBEAT_READ if running_step is not None else Reason.NOT_RUNNING)

    # A real stall: the current step's latest attempt was killed by the hang detector, and no attempt has sent a
    # heartbeat since. Waiting pods and unreadable stores are reported by their own conditions, not as stalls.
    hang = in_flight.last_failure if in_flight is not None and in_flight.last_failure is not None else None
    stalled = (
        hang is not None
        and hang.failure_class == FailureClass.HANG
        and in_flight is not None
        and not (in_flight.phase == StepPhase.RUNNING and in_flight.progress is not None and in_flight.progress.time is not None)
    )
    put(ConditionType.STALLED, stalled, Reason.HEARTBEAT_TIMEOUT if stalled else Reason.STAGE_RUNNING, hang.message if stalled and hang else None)

    backoff = in_flight is not None and in_flight.phase in (StepPhase.BACKOFF, StepPhase.ATTEMPT_FAILED)
    put(ConditionType.RESTARTING, backoff, Reason.BACKOFF if backoff else Reason.STAGE_RUNNING, in_flight.message if backoff and in_flight else None)
    if status.phase == RunPhase.SUCCEEDED:
        conds = _set_condition(conds, ConditionType.COMPLETE, True, Reason.ALL_STAGES_SUCCEEDED, status.message, now)
    if status.phase == RunPhase.FAILED:
        failed = next((s for s in status.steps if s.phase == StepPhase.FAILED), None)
        conds = _set_condition(conds, ConditionType.FAILED, True, failed.reason if failed and failed.reason else Reason.PERMANENT_FAILURE, status.message, now)
    return conds
