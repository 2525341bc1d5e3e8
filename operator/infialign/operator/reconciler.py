"""One idempotent reconcile per AlignmentRun: observe → plan → act → record, around the shared planner.

    body (Kopf index)  ─┐
    Jobs, Pods (index) ─┼─ observe ─→ status ─→ plan() ─→ actions ─→ side effects (kube) ─→ apply()
    markers (store)    ─┘                                                             └─→ PATCH …/status

The operator holds no stage logic and no retry logic of its own: `planner.plan` decides, this module
turns its actions into Kubernetes objects and records them with `planner.apply`. Every entry point —
Kopf's create/resume/update handlers, Job and Pod events, the periodic tick, a timed wake-up for a
backoff — ends in `reconcile(namespace, name)`, serialised per run by a lock, so concurrent events of
one run never race. While the process lives, the status it decided is authoritative (one replica
writes status); the last status known to be on the server is kept apart, so a failed status patch is
retried as a merge-patch diff without repeating side effects.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import kopf
import pydantic
from infialign.operator import admission, builders, estimate, kube, observe, stored, teardown
from infialign.operator.artifacts import ArtifactReader, Success, Tracker, Unreadable
from infialign.operator.config import OperatorConfig
from infialign.operator.metrics import Metrics
from infialign.pipeline import graph, planner, validation
from infialign.pipeline.api import (
    AlignmentRunSpec,
    AlignmentRunStatus,
    Condition,
    ConditionType,
    Failure,
    FailureClass,
    MlflowStatus,
    Reason,
    RunPhase,
    StepOutput,
    StepPhase,
    StepProgress,
    StepStatus,
    truncate,
)
from infialign.pipeline.runtime.config import RunIdentity, StageConfig, TrackingConfig, artifacts_root, build_stage_config, output_uri

__all__ = ["Reconciler", "merge_patch", "invalid_status", "KOPF_STATUS_KEY"]

log = logging.getLogger(__name__)

KOPF_STATUS_KEY: Final = "kopf"  # Kopf's room in the status; never ours to write or delete
_MAX_ROUNDS: Final = 16  # plan/act rounds per reconcile; a plan that never settles is a bug, not a loop
_TERMINAL: Final = (RunPhase.SUCCEEDED.value, RunPhase.FAILED.value)
_JOB_MISSING: Final = "JobMissing"
_REJECTED: Final = "ChildRejected"

Key = tuple[str, str]  # (namespace, name)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns `old` into `new`: `None` deletes a key, lists are replaced whole."""
    patch: dict[str, Any] = {key: None for key in old.keys() - new.keys()}
    for key, value in new.items():
        before = old.get(key, ...)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif before != value:
            patch[key] = value
    return patch


def invalid_status(
    problems: list[validation.Problem], generation: int | None, now: dt.datetime, previous: AlignmentRunStatus | None
) -> AlignmentRunStatus:
    """Failed before anything ran: Accepted=False with the problems, as `infialign validate` words them."""
    message = truncate("; ".join(f"{p.path}: {p.message}" for p in problems)) or "invalid spec"
    conditions = [
        Condition(
            type=ConditionType.ACCEPTED,
            status="False",
            reason=Reason.INVALID_SPEC,
            message=message,
            last_transition_time=now,
            observed_generation=generation,
        ),
        Condition(
            type=ConditionType.FAILED,
            status="True",
            reason=Reason.INVALID_SPEC,
            message=message,
            last_transition_time=now,
            observed_generation=generation,
        ),
    ]
    base = previous or AlignmentRunStatus()
    steps = [s.model_copy(update={"phase": StepPhase.PENDING}) if s.phase == StepPhase.RUNNING else s for s in base.steps]
    return base.model_copy(
        update={
            "phase": RunPhase.FAILED,
            "conditions": conditions,
            "message": message,
            "observed_generation": generation,
            "completion_time": now,
            "steps": steps,
        }
    )


def _was_rejected(status: AlignmentRunStatus) -> bool:
    return any(c.type == ConditionType.ACCEPTED and c.status == "False" for c in status.conditions)


def _reaccept(status: AlignmentRunStatus) -> AlignmentRunStatus:
    """A fixed spec after a rejected one: unfinished steps start over with the next attempt number."""
    steps = [
        s if s.phase in (StepPhase.SUCCEEDED, StepPhase.SKIPPED) else s.model_copy(update={"phase": StepPhase.PENDING})
        for s in status.steps
    ]
    conditions = [c for c in status.conditions if c.type not in (ConditionType.ACCEPTED, ConditionType.FAILED)]
    return status.model_copy(
        update={"phase": RunPhase.PENDING, "steps": steps, "conditions": conditions, "completion_time": None, "message": None}
    )


@dataclasses.dataclass
class _RunState:
    uid: str | None
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    status: AlignmentRunStatus | None = None  # what this process decided (authoritative while it lives)
    persisted: dict[str, Any] | None = None  # what is known to be on the server
    parsed_generation: object = ...  # the generation `spec`/`problems` were parsed for
    spec: AlignmentRunSpec | None = None  # what the run goes on with (the last accepted spec after a rejected edit)
    problems: list[validation.Problem] = dataclasses.field(default_factory=list)
    verdict: admission.Verdict = dataclasses.field(default_factory=lambda: admission.Verdict(spec=None))
    accepted: AlignmentRunSpec | None = None  # the last spec this run was accepted with
    rejection_noted: object = None  # the generation whose rejection an Event already told
    dirty: bool = False
    task: asyncio.Task[None] | None = None
    wake: asyncio.TimerHandle | None = None
    wake_at: float | None = None
    last_progress_read: dict[str, float] = dataclasses.field(default_factory=dict)
    mlflow_tried_at: float | None = None
    broken: str | None = None  # why the stored status cannot be read; None when it can
    broken_reported: str | None = None  # the problem the run's condition and Event already tell
    create_failures: int = 0  # consecutive failed attempts to create a step's children
    estimate_logged: estimate.LoggedKey | None = None  # the (parent run, generation) whose estimate MLflow has


@dataclasses.dataclass
class _Progress:
    """The status as far as one reconcile got (it survives an exception half-way)."""

    status: AlignmentRunStatus


@dataclasses.dataclass
class _Pass:
    """Everything one reconcile pass works with."""

    key: Key
    run: RunIdentity
    generation: int | None
    spec: AlignmentRunSpec
    now: dt.datetime
    tracking: TrackingConfig
    notes: list[tuple[str, str, bool]] = dataclasses.field(default_factory=list)  # (reason, message, warning) for one Event

    def note(self, reason: str, message: str, warning: bool = False) -> None:
        self.notes.append((reason, message, warning))


class Reconciler:
    def __init__(
        self,
        config: OperatorConfig,
        metrics: Metrics,
        artifacts: ArtifactReader,
        tracker: Tracker,
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.artifacts = artifacts
        self.tracker = tracker
        self.clock = clock
        self.kube: kube.KubeClient | None = None
        self._runs_index: Mapping[Any, Any] = {}
        self._jobs_index: Mapping[Any, Any] = {}
        self._pods_index: Mapping[Any, Any] = {}
        self._states: dict[Key, _RunState] = {}
        self._closed: set[str] = set()  # uids of deleted runs whose MLflow parent run was closed
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, config.api_workers // 2), thread_name_prefix="infialign-io")
        self.last_tick = time.monotonic()
        self.reconciles = 0

    # ---------------------------------------------------------------- wiring

    def bind(self, *, kube_client: kube.KubeClient, runs: Mapping[Any, Any], jobs: Mapping[Any, Any], pods: Mapping[Any, Any]) -> None:
        """Attach the API client and Kopf's live indexes (they are updated in place by Kopf)."""
        self.kube = kube_client
        self._runs_index, self._jobs_index, self._pods_index = runs, jobs, pods

    def close(self) -> None:
        for state in self._states.values():
            if state.wake is not None:
                state.wake.cancel()
        self._io.shutdown(wait=False, cancel_futures=True)
        if self.kube is not None:
            self.kube.close()

    # ---------------------------------------------------------------- entry points

    def poke(self, namespace: str, name: str) -> None:
        """Reconcile soon, in the background; bursts of events of one run coalesce into one pass."""
        key = (namespace, name)
        if self._body(key) is None:
            return
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _RunState(uid=None)
        state.dirty = True
        if state.task is None or state.task.done():
            state.task = asyncio.get_running_loop().create_task(self._drain(key, state), name=f"reconcile {namespace}/{name}")

    async def _drain(self, key: Key, state: _RunState) -> None:
        while state.dirty:
            state.dirty = False
            try:
                await self.reconcile(*key)
            except Exception as e:  # logged and retried by a wake-up; the tick is the safety net
                self.metrics.reconcile_errors.inc()
                level = logging.WARNING if isinstance(e, (kopf.TemporaryError, kube.ApiError)) else logging.ERROR
                log.log(
                    level,
                    "reconcile of %s/%s failed, retrying in %.1fs: %s",
                    *key,
                    self.config.retry_delay_seconds,
                    e,
                    exc_info=level == logging.ERROR,
                )
                self._wake_in(key, self.config.retry_delay_seconds)

    def deleted(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """The run was deleted: close its MLflow parent run as KILLED if it had not finished, then forget it."""
        uid = (body.get("metadata") or {}).get("uid")
        if uid and uid in self._closed:
            return  # the event and the delete handler both report one deletion
        state = self._states.get((namespace, name))
        status = state.status if state is not None and state.uid == uid else None
        if status is None:  # not reconciled by this process: the last status the API server had
            status = teardown.last_status(body)
        tracking = teardown.parent_run_to_kill(body.get("spec"), status, self.config.mlflow_uri)
        if tracking is not None:
            if uid:
                self._closed.add(uid)
            log.info("%s/%s deleted while %s: marking its MLflow parent run KILLED", namespace, name, status.phase.value if status else "?")
            asyncio.get_running_loop().run_in_executor(self._io, self.tracker.finish_parent_run, tracking, "KILLED")
        self.forget(namespace, name)

    def forget(self, namespace: str, name: str) -> None:
        """The run is gone: drop its state (its children go with it through their ownerReferences)."""
        state = self._states.pop((namespace, name), None)
        if state is not None and state.wake is not None:
            state.wake.cancel()
        self._update_phase_gauge()

    def tick(self) -> None:
        """Level-based safety net: poke every run that is not finished (and refresh the phase gauge)."""
        self.last_tick = time.monotonic()
        self._update_phase_gauge()
        for key in list(self._states.keys() | set(self._index_keys())):
            body = self._body(key)
            if body is None:
                self.forget(*key)
                continue
            state = self._states.get(key)
            phase = state.status.phase.value if state is not None and state.status is not None else (body.get("status") or {}).get("phase")
            if phase not in _TERMINAL:
                self.poke(*key)

    async def tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_seconds)
            try:
                self.tick()
            except Exception:  # the ticker must survive anything
                log.exception("tick failed")

    # ---------------------------------------------------------------- indexes

    def _index_keys(self) -> Iterator[Key]:
        for key in list(self._runs_index.keys()):
            if isinstance(key, tuple) and len(key) == 2:
                yield key

    def _body(self, key: Key) -> dict[str, Any] | None:
        store = self._runs_index.get(key)
        if not store:
            return None
        bodies = [b for b in store if not b["metadata"].get("deletionTimestamp")]
        return bodies[-1] if bodies else None

    def _job(self, run: RunIdentity, job_name: str) -> dict[str, Any] | None:
        for job in self._jobs_index.get((run.namespace, run.name)) or ():
            if job["metadata"]["name"] == job_name and self._owned(job, run):
                return job  # type: ignore[no-any-return]
        return None

    def _foreign_job(self, run: RunIdentity, job_name: str) -> bool:
        return any(
            j["metadata"]["name"] == job_name and not self._owned(j, run) for j in self._jobs_index.get((run.namespace, run.name)) or ()
        )

    @staticmethod
    def _owned(obj: Mapping[str, Any], run: RunIdentity) -> bool:
        owners = obj["metadata"].get("ownerReferences") or []
        return not owners or not run.uid or any(o.get("uid") == run.uid for o in owners)

    def _pods(self, run: RunIdentity, step: str, attempt: int) -> list[dict[str, Any]]:
        out = []
        for pod in self._pods_index.get((run.namespace, run.name)) or ():
            labels = pod["metadata"].get("labels") or {}
            if labels.get(builders.LABEL_STAGE) == step and labels.get(builders.LABEL_ATTEMPT) == str(attempt):
                out.append(pod)
        return out

    # ---------------------------------------------------------------- the reconcile

    async def reconcile(self, namespace: str, name: str) -> None:
        """Bring one run one step closer to done. Idempotent; raises `kopf.TemporaryError` on API trouble."""
        key = (namespace, name)
        body = self._body(key)
        if body is None:
            return
        state = self._state(key, body)
        async with state.lock:
            body = self._body(key)  # the freshest, after waiting for the lock
            if body is None or self._state(key, body) is not state:
                return
            started = time.monotonic()
            try:
                await self._reconcile(key, state, body)
            finally:
                self.reconciles += 1
                self.metrics.reconcile_seconds.observe(time.monotonic() - started)

    def _state(self, key: Key, body: Mapping[str, Any]) -> _RunState:
        uid = body["metadata"].get("uid")
        state = self._states.get(key)
        if state is None or (state.uid is not None and state.uid != uid):  # new, or deleted and re-created
            if state is not None and state.wake is not None:
                state.wake.cancel()
            state = self._states[key] = _RunState(uid=uid)
        state.uid = uid  # a state made by poke() learns its uid here
        return state

    async def _reconcile(self, key: Key, state: _RunState, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        run = RunIdentity(namespace=key[0], name=key[1], uid=meta.get("uid"))
        generation = meta.get("generation")
        now = self.clock()
        self._parse_spec(state, body, generation)
        status = self._current_status(state, body)
        if state.broken:
            await self._report_unreadable(key, state, body, run, now)
            return

        rejected = status is not None and status.phase == RunPhase.FAILED and _was_rejected(status)
        if status is not None and status.phase.value in _TERMINAL and not (rejected and status.observed_generation != generation):
            return  # a finished run is history: a later spec edit changes nothing (only a rejected spec may be fixed)
        if state.spec is None:  # never accepted, and this spec is invalid: nothing ran that an edit could keep
            await self._stop_running(run, status)
            status = invalid_status(state.problems, generation, now, status)
            log.warning("%s/%s: invalid spec: %s", *key, status.message)
            await self._persist(key, state, status, notes=[("InvalidSpec", status.message or "", True)], run=run)
            return

        spec, verdict = state.spec, state.verdict
        if status is None or not status.steps:
            status = planner.initial_status(spec, generation)
        elif rejected:
            status = _reaccept(status)
        status = planner.reconcile_steps(spec, status)
        before = {s.name: s.phase for s in status.steps}

        tracking = self._tracking_config(spec, status)
        ctx = _Pass(key=key, run=run, generation=generation, spec=spec, now=now, tracking=tracking)
        status = admission.record(status, verdict, generation, now)
        status = status if verdict.rejected_edit else estimate.refresh(status, spec, generation, self.config.estimate_gpu)
        if verdict.rejected_edit and state.rejection_noted != generation:
            state.rejection_noted = generation
            log.warning("%s/%s: %s", *key, admission.message(verdict, generation))
            ctx.note(Reason.INVALID_SPEC, admission.message(verdict, generation), True)
        if not verdict.rejected_edit:
            await self._remember_accepted(run, body)
        progress = _Progress(status)
        try:
            progress.status = await self._observe(ctx, state, progress.status)
            progress.status = await self._act(ctx, state, progress.status, progress)
        finally:
            # Record what was done even when a later action failed: its side effects happened, and a
            # user should see the run's state while the operator retries the rest.
            status = progress.status
            if generation is not None and not verdict.rejected_edit:  # a rejected generation was not acted on
                status = status.model_copy(update={"observed_generation": generation})
            self._count_transitions(spec, before, status)
            self._log_estimate(ctx, state, status)
            await self._persist(key, state, status, notes=ctx.notes, run=run)

    # ---------------------------------------------------------------- spec and status

    def _parse_spec(self, state: _RunState, body: Mapping[str, Any], generation: int | None) -> None:
        """Schema and semantic checks, exactly as `infialign validate` words them; cached per generation."""
        marker = (generation, json.dumps(body.get("spec"), sort_keys=True)) if generation is None else generation
        if state.parsed_generation == marker:
            return
        state.parsed_generation = marker
        spec, problems = admission.check(body)
        if state.accepted is None:  # after a restart: the spec this run was last accepted with, if any
            state.accepted = admission.accepted_from_annotation((body.get("metadata") or {}).get("annotations"))
        state.verdict = admission.judge(spec, problems, state.accepted)
        if state.verdict.spec is not None and not state.verdict.rejected_edit:
            state.accepted = state.verdict.spec
        state.spec, state.problems = state.verdict.spec, state.verdict.problems

    async def _remember_accepted(self, run: RunIdentity, body: Mapping[str, Any]) -> None:
        """Store the accepted spec on the run, so a restarted operator still knows it when a later edit is rejected."""
        text = admission.spec_text(body.get("spec"))
        if ((body.get("metadata") or {}).get("annotations") or {}).get(admission.ACCEPTED_SPEC_ANNOTATION) == text:
            return
        assert self.kube is not None
        try:
            await self.kube.patch_run(run.namespace, run.name, {"metadata": {"annotations": {admission.ACCEPTED_SPEC_ANNOTATION: text}}})
        except (kube.ApiError, kopf.TemporaryError) as e:  # retried on the next reconcile; the run need not wait for it
            log.warning("%s/%s: could not record the accepted spec: %s", run.namespace, run.name, e)

    def _current_status(self, state: _RunState, body: Mapping[str, Any]) -> AlignmentRunStatus | None:
        if state.status is not None:
            return state.status
        raw = dict(body.get("status") or {})
        raw.pop(KOPF_STATUS_KEY, None)
        state.persisted = raw
        if not raw:
            return None
        try:
            state.status = AlignmentRunStatus.model_validate(raw)
        except pydantic.ValidationError as e:
            # Rebuilding a status would restart attempt numbers and collide with existing Jobs; leave it alone.
            state.broken = stored.describe(e)
            return None
        if state.broken:  # fixed by hand: say so, and reconcile again
            state.broken = None
            state.status = planner.set_condition(
                state.status, ConditionType.STATUS_UNREADABLE, False, Reason.STATUS_READABLE, None, self.clock()
            )
        return state.status

    async def _report_unreadable(self, key: Key, state: _RunState, body: Mapping[str, Any], run: RunIdentity, now: dt.datetime) -> None:
        """Once per problem: a condition and a Warning Event, and nothing else of the status touched."""
        if state.broken_reported == state.broken:
            return
        log.error("%s/%s: the stored status cannot be read, not reconciling it: %s", *key, state.broken)
        raw = dict(body.get("status") or {})
        patch = stored.unreadable_patch(raw, state.broken or "", now)
        assert self.kube is not None
        try:
            await self.kube.patch_status(*key, patch)
        except kube.NotFound:
            return
        state.broken_reported = state.broken
        state.persisted = None  # unknown now: the next readable status is written whole
        if self.config.events:
            self._post_event(run, [(Reason.INVALID_STATUS, patch["status"]["message"], True)])

    def _tracking_config(self, spec: AlignmentRunSpec, status: AlignmentRunStatus) -> TrackingConfig:
        uri = spec.tracking.uri or self.config.mlflow_uri
        # a run's own MLflow says its own artifact endpoint; the operator's default belongs to the default MLflow
        artifacts = spec.tracking.artifacts_s3_endpoint if spec.tracking.uri else self.config.mlflow_s3_endpoint_url
        tracking = TrackingConfig(
            enabled=spec.tracking.enabled and bool(uri), uri=uri, experiment=spec.tracking.experiment, artifacts_s3_endpoint=artifacts
        )
        if status.mlflow is not None and status.mlflow.parent_run_id:
            tracking = tracking.model_copy(
                update={"experiment_id": status.mlflow.experiment_id, "parent_run_id": status.mlflow.parent_run_id}
            )
        return tracking

    def _stage_config(self, ctx: _Pass, step: str, attempt: int) -> StageConfig:
        return build_stage_config(ctx.spec, ctx.run, step, attempt, artifacts_root(ctx.spec), ctx.tracking)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, lambda: fn(*args))

    # ---------------------------------------------------------------- observe

    async def _observe(self, ctx: _Pass, state: _RunState, status: AlignmentRunStatus) -> AlignmentRunStatus:
        for step in list(status.steps):
            if step.phase == StepPhase.RUNNING:
                status = await self._observe_step(ctx, state, status, step)
        return planner.summarize(status, ctx.now)

    async def _observe_step(self, ctx: _Pass, state: _RunState, status: AlignmentRunStatus, step: StepStatus) -> AlignmentRunStatus:
        job_name = planner.job_name(ctx.run.name, step.name, step.attempt)
        job = self._job(ctx.run, job_name)
        seen = observe.observe(job, self._pods(ctx.run, step.name, step.attempt), ctx.spec.failure_policy.fatal_exit_codes)
        now = ctx.now

        if isinstance(seen, observe.Missing):
            started = step.attempt_start_time or now
            if (now - started).total_seconds() <= self.config.job_missing_grace_seconds:
                return status  # just created: the watch has not delivered it yet
            if await self._job_exists(ctx.run, job_name):
                # The index is behind the API server (it is still filling after a start, or the watch lags):
                # judge nothing from it, and look again soon.
                log.info("%s/%s: the Job %s exists but is not indexed yet", *ctx.key, job_name)
                self._wake_in(ctx.key, self.config.retry_delay_seconds)
                return status
            failure = Failure(
                failure_class=FailureClass.INFRA, reason=_JOB_MISSING, message=f"the Job {job_name} is gone", attempt=step.attempt, time=now
            )
            return planner.attempt_ended(status, step.name, failure)

        if isinstance(seen, observe.Succeeded):
            config = self._stage_config(ctx, step.name, step.attempt)
            success: Success | None = await self._in_thread(self.artifacts.success, config)
            return self._succeeded(ctx, status, step, config, success, reason="Succeeded")

        if isinstance(seen, observe.Failed):
            failure = Failure(
                failure_class=seen.failure_class,
                reason=seen.reason,
                message=seen.message,
                exit_code=seen.exit_code,
                nodes=list(seen.nodes) or None,
                attempt=step.attempt,
                time=now,
            )
            ctx.note(
                "StepFailed", f"{step.name} attempt {step.attempt}: {seen.failure_class.value}: {seen.reason}: {seen.message or ''}", True
            )
            return planner.attempt_ended(status, step.name, failure)

        if isinstance(seen, observe.Pending):
            just_created = (now - (step.attempt_start_time or now)).total_seconds() <= self.config.job_missing_grace_seconds
            if seen.waiting.reason == observe.NO_PODS_YET and just_created and not seen.pods and step.waiting is None:
                return status  # the Job controller has not made pods yet: nothing worth a status write
            # The planner keeps the waiting clock, and restarts the attempt's clocks on a Kueue admission.
            return planner.pods_observed(status, step.name, step.attempt, seen.waiting, now)

        # Running: every pod runs. The stall clock starts with the first heartbeat read, not here.
        status = planner.pods_observed(status, step.name, step.attempt, None, now, nodes=list(seen.nodes))
        return await self._read_heartbeat(ctx, state, status, step.name)

    async def _job_exists(self, run: RunIdentity, job_name: str) -> bool:
        """Ask the API server, not the index: is the Job of this run there?"""
        assert self.kube is not None
        job = await self.kube.get("batch/v1", "Job", run.namespace, job_name)
        return job is not None and not (job.get("metadata") or {}).get("deletionTimestamp") and self._owned(job, run)

    async def _read_heartbeat(self, ctx: _Pass, state: _RunState, status: AlignmentRunStatus, step_name: str) -> AlignmentRunStatus:
        last = state.last_progress_read.get(step_name)
        if last is not None and time.monotonic() - last < self.config.progress_poll_seconds:
            return status
        state.last_progress_read[step_name] = time.monotonic()
        step = status.step(step_name)
        assert step is not None
        config = self._stage_config(ctx, step.name, step.attempt)
        beat = await self._in_thread(self.artifacts.heartbeat, config)
        if isinstance(beat, Unreadable):
            return planner.heartbeat_read(status, step.name, step.attempt, ctx.now, error=beat.message)
        if beat is None:
            return planner.heartbeat_read(status, step.name, step.attempt, ctx.now)
        return planner.heartbeat_read(
            status, step.name, step.attempt, ctx.now, progress=beat.progress, last_checkpoint=beat.last_checkpoint
        )

    def _succeeded(
        self, ctx: _Pass, status: AlignmentRunStatus, step: StepStatus, config: StageConfig, success: Success | None, *, reason: str
    ) -> AlignmentRunStatus:
        update: dict[str, Any] = {}
        if success is not None:
            update["outputs"] = success.outputs or None
            update["metrics"] = success.step_metrics
            if success.metrics:
                update["progress"] = StepProgress(percent=100.0, metrics=success.metrics, time=ctx.now)
        else:
            # The Job's exit 0 is authoritative; the operator may lack access to the store (a PVC it does not mount).
            ref = next(s for s in graph.pipeline_steps(ctx.spec) if s.name == step.name)
            update["outputs"] = [StepOutput(name=n, uri=output_uri(config.output, n)) for n in graph.step_outputs(ctx.spec, ref)]
            update["message"] = "completed; its _SUCCESS.json is not readable by the operator"
        ctx.note("StepSucceeded", f"{step.name} attempt {step.attempt} succeeded" + (" (already done)" if reason != "Succeeded" else ""))
        if success is None:
            status = planner.attempt_succeeded(status, step.name, step.attempt, ctx.now, reason=reason, **update)
        elif success.finished_at is not None and reason != "Succeeded":
            # a skip keeps the times of the attempt that did the work, not the instant of the skip
            status = planner.attempt_cached(
                status, step.name, step.attempt, ctx.now,
                started_at=success.started_at, finished_at=success.finished_at, duration_seconds=success.duration_seconds, **update,
            )
        else:
            status = planner.attempt_succeeded(status, step.name, step.attempt, ctx.now, reason=reason, duration_seconds=success.duration_seconds, **update)
        return planner.record_results(status, step.name, success.results if success is not None else [])

    # ---------------------------------------------------------------- act

    async def _act(self, ctx: _Pass, state: _RunState, status: AlignmentRunStatus, progress: _Progress) -> AlignmentRunStatus:
        """Plan and act until only waiting is left; `progress` always holds the status of the actions done."""
        for _ in range(_MAX_ROUNDS):
            actions = planner.plan(ctx.spec, status, ctx.now)
            effective = [a for a in actions if not isinstance(a, planner.Wait)]
            for wait in actions:
                if isinstance(wait, planner.Wait) and wait.until is not None:
                    self._wake_in(ctx.key, (wait.until - ctx.now).total_seconds())
            if not effective:
                return status
            for action in effective:
                try:
                    status = progress.status = await self._perform(ctx, state, status, action)
                except kopf.TemporaryError as e:
                    if isinstance(action, planner.StartAttempt):
                        progress.status = self._create_failed(ctx, state, status, action, e)
                    raise
        log.error("%s/%s: the plan did not settle in %d rounds; last status phase %s", *ctx.key, _MAX_ROUNDS, status.phase)
        return status

    async def _perform(self, ctx: _Pass, state: _RunState, status: AlignmentRunStatus, action: planner.Action) -> AlignmentRunStatus:
        now, run = ctx.now, ctx.run
        if isinstance(action, planner.StartAttempt):
            return await self._start(ctx, state, status, action)
        if isinstance(action, planner.StopAttempt):
            assert action.step is not None
            assert self.kube is not None
            await self.kube.delete("batch/v1", "Job", run.namespace, planner.job_name(run.name, action.step, action.attempt))
            why = action.failure.message if action.failure is not None else "suspended"
            ctx.note("StepStopped", f"{action.step} attempt {action.attempt} stopped: {action.reason}: {why}", action.failure is not None)
        elif isinstance(action, planner.ScheduleRetry):
            self.metrics.restarts.labels(failure_class=action.failure_class.value).inc()
            if action.not_before is not None:
                self._wake_in(ctx.key, (action.not_before - now).total_seconds())
            delay = max(0.0, (action.not_before - now).total_seconds()) if action.not_before else 0.0
            ctx.note("StepRestarting", f"{action.step} restarts after a {action.failure_class.value} failure in {delay:.0f}s", True)
        elif isinstance(action, planner.CompleteRun):
            ctx.note("RunSucceeded", "every step succeeded")
            self._finish_tracking(ctx, "FINISHED")
        elif isinstance(action, planner.FailRun):
            ctx.note("RunFailed", f"{action.step or 'run'}: {action.reason}: {action.message or ''}", True)
            self._finish_tracking(ctx, "FAILED")
        elif isinstance(action, planner.SuspendRun):
            ctx.note("RunSuspended", "spec.suspend is true; nothing runs")
        return planner.apply(status, action, now, run_name=run.name)

    async def _start(self, ctx: _Pass, state: _RunState, status: AlignmentRunStatus, action: planner.StartAttempt) -> AlignmentRunStatus:
        assert action.step is not None
        assert self.kube is not None
        status = await self._ensure_tracking(ctx, state, status)
        config = self._stage_config(ctx, action.step, action.attempt)
        done: Success | None = await self._in_thread(self.artifacts.already_done, config)
        if done is not None:
            status = planner.apply(status, action, ctx.now, run_name=ctx.run.name)
            step = status.step(action.step)
            assert step is not None
            return self._succeeded(ctx, status, step, config, done, reason="AlreadySucceeded")
        try:
            children = builders.build_children(ctx.spec, ctx.run, action.step, action.attempt, config)
            for child in children:
                await self._create(ctx.run, child)
        except (builders.ChildSpecError, kube.Rejected) as e:
            failure = Failure(
                failure_class=FailureClass.PERMANENT, reason=_REJECTED, message=truncate(str(e)), attempt=action.attempt, time=ctx.now
            )
            status = planner.apply(status, action, ctx.now, run_name=ctx.run.name)
            return planner.attempt_ended(status, action.step, failure)
        job = planner.job_name(ctx.run.name, action.step, action.attempt)
        ctx.note("StepStarted", f"{action.step} attempt {action.attempt} started as Job {job}")
        state.create_failures = 0
        if any(c.type == ConditionType.CHILD_CREATE_FAILED and c.status == "True" for c in status.conditions):
            status = planner.set_condition(status, ConditionType.CHILD_CREATE_FAILED, False, Reason.CREATED, None, ctx.now)
        return planner.apply(status, action, ctx.now, run_name=ctx.run.name)

    def _create_failed(
        self, ctx: _Pass, state: _RunState, status: AlignmentRunStatus, action: planner.StartAttempt, error: kopf.TemporaryError
    ) -> AlignmentRunStatus:
        """A create that keeps failing (RBAC, a webhook, a quota) becomes a condition and a Warning Event on the
        run, so a run that cannot start says why instead of sitting in Pending. Kopf and the tick retry it."""
        state.create_failures += 1
        if state.create_failures < self.config.create_failure_threshold:
            return status
        text = str(error)
        hint = ""
        if " 403 " in f" {text} ":
            hint = (
                "; the operator's RBAC must allow create on ConfigMaps, Services and Jobs, and update on "
                "alignmentruns/finalizers where OwnerReferencesPermissionEnforcement is on (OpenShift)"
            )
        message = truncate(f"{action.step} attempt {action.attempt}: create failed {state.create_failures} times in a row: {text}{hint}")
        ctx.note(Reason.FAILED_CREATE, message or "", True)
        return planner.set_condition(status, ConditionType.CHILD_CREATE_FAILED, True, Reason.FAILED_CREATE, message, ctx.now)

    async def _create(self, run: RunIdentity, obj: dict[str, Any]) -> None:
        assert self.kube is not None
        try:
            await self.kube.create(obj)
        except kube.AlreadyExists:
            name = obj["metadata"]["name"]
            if obj["kind"] == "Job":
                foreign = self._foreign_job(run, name)
            else:
                # a ConfigMap or Service of this name that is not ours (an earlier run of the same name, or someone
                # else's object) must not be reused: the pods would read its stage.json or rendezvous through it
                existing = await self.kube.get(obj["apiVersion"], obj["kind"], run.namespace, name)
                owners = ((existing or {}).get("metadata") or {}).get("ownerReferences") or []
                foreign = existing is not None and bool(run.uid) and not any(o.get("uid") == run.uid for o in owners)
            if foreign:
                # a run of the same name was deleted and re-created; its children wait for garbage collection
                raise kopf.TemporaryError(
                    f"the {obj['kind']} {name} exists and belongs to another owner (an earlier run of the same name?); "
                    "it is not reused: waiting for its deletion",
                    delay=self.config.retry_delay_seconds,
                ) from None

    async def _stop_running(self, run: RunIdentity, status: AlignmentRunStatus | None) -> None:
        assert self.kube is not None
        for step in status.steps if status is not None else []:
            if step.phase == StepPhase.RUNNING:
                await self.kube.delete("batch/v1", "Job", run.namespace, planner.job_name(run.name, step.name, step.attempt))

    # ---------------------------------------------------------------- tracking

    async def _ensure_tracking(self, ctx: _Pass, state: _RunState, status: AlignmentRunStatus) -> AlignmentRunStatus:
        """The MLflow parent run, before the first attempt that would log under it. Bounded in time:
        an unreachable MLflow delays the run by `mlflowTimeoutSeconds` once, never fails it."""
        tracking = ctx.tracking
        if not tracking.enabled or tracking.parent_run_id:
            return status
        if state.mlflow_tried_at is not None and time.monotonic() - state.mlflow_tried_at < self.config.mlflow_retry_seconds:
            return status
        state.mlflow_tried_at = time.monotonic()
        try:
            tracked: TrackingConfig = await asyncio.wait_for(
                self._in_thread(self.tracker.ensure_parent_run, tracking, ctx.run), self.config.mlflow_timeout_seconds
            )
        except TimeoutError:
            log.warning(
                "%s/%s: MLflow at %s did not answer within %.0fs; starting without a parent run",
                *ctx.key,
                tracking.uri,
                self.config.mlflow_timeout_seconds,
            )
            return status
        if not tracked.parent_run_id:
            return status
        ctx.tracking = tracked
        external = self.config.mlflow_external_url
        url = self.tracker.parent_run_url(tracked.model_copy(update={"uri": external}) if external else tracked)
        mlflow = MlflowStatus(experiment_id=tracked.experiment_id, parent_run_id=tracked.parent_run_id, url=url)
        return status.model_copy(update={"mlflow": mlflow})

    def _finish_tracking(self, ctx: _Pass, outcome: str) -> None:
        if ctx.tracking.enabled and ctx.tracking.parent_run_id:
            asyncio.get_running_loop().run_in_executor(self._io, self.tracker.finish_parent_run, ctx.tracking, outcome)

    def _log_estimate(self, ctx: _Pass, state: _RunState, status: AlignmentRunStatus) -> None:
        pending = estimate.pending_params(ctx.tracking.parent_run_id, status.estimate, state.estimate_logged)
        if pending is not None:
            state.estimate_logged = pending[0]
            asyncio.get_running_loop().run_in_executor(self._io, self.tracker.log_parent_params, ctx.tracking, pending[1])

    # ---------------------------------------------------------------- record

    async def _persist(
        self, key: Key, state: _RunState, status: AlignmentRunStatus, *, notes: list[tuple[str, str, bool]], run: RunIdentity
    ) -> None:
        state.status = status
        new = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        patch = merge_patch(state.persisted or {}, new)
        if notes and self.config.events:
            self._post_event(run, notes)
        if not patch:
            return
        assert self.kube is not None
        try:
            await self.kube.patch_status(key[0], key[1], {"status": patch})
        except kube.NotFound:
            self.forget(*key)  # deleted meanwhile
            return
        state.persisted = new

    def _post_event(self, run: RunIdentity, notes: list[tuple[str, str, bool]]) -> None:
        """One Event per reconcile, however many transitions it made: Events cost API calls too."""
        assert self.kube is not None
        reason = notes[-1][0]
        warning = any(w for _, _, w in notes)
        message = "; ".join(m for _, m, _ in notes)
        ref = {"namespace": run.namespace, "name": run.name, "uid": run.uid or ""}
        asyncio.get_running_loop().create_task(self.kube.post_event(ref, reason=reason, message=message, warning=warning))

    def _count_transitions(self, spec: AlignmentRunSpec, before: Mapping[str, StepPhase], status: AlignmentRunStatus) -> None:
        for step in status.steps:
            if before.get(step.name) != step.phase:
                self.metrics.transitions.labels(stage=step.stage, phase=step.phase.value).inc()

    def _update_phase_gauge(self) -> None:
        self.metrics.set_run_phases(s.status.phase.value for s in self._states.values() if s.status is not None)

    # ---------------------------------------------------------------- timers

    def _wake_in(self, key: Key, seconds: float) -> None:
        """Reconcile again after `seconds` (a backoff's end); keeps the earliest pending wake-up."""
        state = self._states.get(key)
        if state is None:
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + max(0.0, seconds) + 0.01  # a hair late, so `now >= retryAfter` holds on waking
        if state.wake is not None and state.wake_at is not None and loop.time() < state.wake_at <= at:
            return  # an earlier wake-up is still pending
        if state.wake is not None:
            state.wake.cancel()
        state.wake_at = at
        state.wake = loop.call_at(at, self.poke, *key)

    # ---------------------------------------------------------------- introspection (probe, benchmark)

    def snapshot(self) -> dict[str, Any]:
        phases: dict[str, int] = {}
        for state in self._states.values():
            if state.status is not None:
                phases[state.status.phase.value] = phases.get(state.status.phase.value, 0) + 1
        return {
            "runs": len(self._states),
            "phases": phases,
            "reconciles": self.reconciles,
            "secondsSinceTick": round(time.monotonic() - self.last_tick, 1),
        }
