"""`AlignmentRun.status`: what the executor or the operator observed and decided.

`None` means unknown, never zero. Conditions are keyed by `type`; their reasons are the constants below.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Final

from pydantic import Field, StringConstraints

from infialign.pipeline.api._base import ApiModel, xk8s

__all__ = [
    "RunPhase",
    "StepPhase",
    "FailureClass",
    "ConditionType",
    "Reason",
    "Condition",
    "Failure",
    "Restarts",
    "StepProgress",
    "StepOutput",
    "Waiting",
    "StepStatus",
    "MlflowStatus",
    "EvalResult",
    "StepEstimateStatus",
    "RunEstimateStatus",
    "RESULTS_LIMIT",
    "AlignmentRunStatus",
    "MESSAGE_LIMIT",
    "truncate",
]

RESULTS_LIMIT: Final = 512  # models × benchmarks × metrics × (1 + tiers); an etcd object stays far below its 1.5 MB cap
MESSAGE_LIMIT: Final = 1024  # status, events and termination messages are cut to this many characters


def truncate(text: str | None, limit: int = MESSAGE_LIMIT) -> str | None:
    """Keep the tail: the end of a log or termination message is where the error is."""
    if text is None or len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :]


class RunPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class StepPhase(StrEnum):
    PENDING = "Pending"  # not started, or stopped by a suspend
    RUNNING = "Running"  # an attempt exists (its pods may still be starting)
    ATTEMPT_FAILED = "AttemptFailed"  # the attempt ended badly; the planner has not decided yet
    BACKOFF = "Backoff"  # waiting until `retryAfter` to start the next attempt
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"  # terminal
    SKIPPED = "Skipped"  # disabled in the spec


class FailureClass(StrEnum):
    INFRA = "Infrastructure"  # node lost, pod disrupted or preempted: retried without using the budget
    APP = "Application"  # the process failed: retried with exponential backoff up to maxRestartsPerStage
    PERMANENT = "Permanent"  # bad config, fatal exit code, image that can't be pulled, startup timeout
    HANG = "Hang"  # no progress heartbeat within stallTimeoutSeconds: killed and restarted from the checkpoint


class ConditionType(StrEnum):
    ACCEPTED = "Accepted"  # the spec passed validation
    RUNNING = "Running"  # a stage attempt is running
    SUSPENDED = "Suspended"  # spec.suspend is true and nothing runs
    STALLED = "Stalled"  # the hang detector killed the current step's latest attempt and no heartbeat came since
    RESTARTING = "Restarting"  # a stage failed and waits for its next attempt
    COMPLETE = "Complete"  # every enabled stage succeeded
    FAILED = "Failed"  # a stage failed for good
    WAITING = "Waiting"  # the current step's pods are not running yet (queued, unschedulable, pulling); not a failure
    HEARTBEAT_UNAVAILABLE = "HeartbeatUnavailable"  # the hang detector cannot judge the running step (no heartbeat read)
    CHILD_CREATE_FAILED = "ChildCreateFailed"  # the operator keeps failing to create a child object (RBAC, quota, webhook)
    STATUS_UNREADABLE = "StatusUnreadable"  # the stored status does not parse; the operator leaves the run alone
    SPEC_REJECTED = "SpecRejected"  # the latest spec edit is invalid; the run goes on with the last accepted spec


class Reason:
    """Condition reasons, one per situation that sets them."""

    INVALID_SPEC: Final = "InvalidSpec"  # Accepted=False / SpecRejected=True: semantic validation failed
    EDIT_ACCEPTED: Final = "EditAccepted"  # SpecRejected=False: a later edit fixed the rejected one
    INVALID_STATUS: Final = "InvalidStatus"  # StatusUnreadable=True: a field of the stored status does not parse
    STATUS_READABLE: Final = "StatusReadable"  # StatusUnreadable=False: the stored status parses again
    VALID: Final = "Valid"  # Accepted=True
    STAGE_RUNNING: Final = "StageRunning"  # Running=True
    WAITING: Final = "Waiting"  # Running=False while backing off or queued; HeartbeatUnavailable=False while pods wait
    SUSPENDED: Final = "SuspendedBySpec"  # Suspended=True
    RESUMED: Final = "Resumed"  # Suspended=False after a resume
    BACKOFF: Final = "BackoffAfterFailure"  # Restarting=True
    ALL_STAGES_SUCCEEDED: Final = "AllStagesSucceeded"  # Complete=True
    RETRIES_EXHAUSTED: Final = "RetriesExhausted"  # Failed=True: app failures or hangs over the budget
    INFRA_RETRIES_EXHAUSTED: Final = "InfraRetriesExhausted"  # Failed=True: disruptions over maxInfraRestarts
    PERMANENT_FAILURE: Final = "PermanentFailure"  # Failed=True: retrying cannot help
    STARTUP_TIMEOUT: Final = "StartupTimeout"  # a pod was not running within startupTimeoutSeconds
    IMAGE_PULL: Final = "ImagePullFailed"  # the kubelet cannot pull the image
    FATAL_EXIT_CODE: Final = "FatalExitCode"  # the process exited with one of fatalExitCodes
    DISRUPTION: Final = "Disruption"  # pod DisruptionTarget / node lost / preempted
    DISK_PRESSURE: Final = "DiskPressure"  # the kubelet evicted a pod for disk (node disk, scratch sizeLimit)
    EXIT_CODE: Final = "NonZeroExit"  # the process exited non-zero
    HEARTBEAT_TIMEOUT: Final = "HeartbeatTimeout"  # the hang detector killed the attempt
    DEADLINE_EXCEEDED: Final = "DeadlineExceeded"  # Failed=True: the run outlived spec.activeDeadlineSeconds
    WAITING_TIMEOUT: Final = "WaitingTimeout"  # Failed=True: pods waited longer than failurePolicy.waitingTimeoutSeconds
    PODS_RUNNING: Final = "PodsRunning"  # Waiting=False: every pod of the current step runs
    NOT_RUNNING: Final = "NoStepRunning"  # Waiting/HeartbeatUnavailable=False: no step attempt is running
    STORE_UNREADABLE: Final = "StoreUnreadable"  # HeartbeatUnavailable=True: the operator cannot read progress.json
    NO_HEARTBEAT_YET: Final = "NoHeartbeatYet"  # HeartbeatUnavailable=True: no heartbeat of this attempt read yet
    HEARTBEAT_READ: Final = "HeartbeatRead"  # HeartbeatUnavailable=False: the hang detector is armed
    FAILED_CREATE: Final = "FailedCreate"  # ChildCreateFailed=True: creating a ConfigMap, Service or Job keeps failing
    RUN_FINISHED: Final = "RunFinished"  # any in-flight condition (Running, Waiting, Restarting, …) of a finished run
    CREATED: Final = "Created"  # ChildCreateFailed=False: the children of the latest attempt were created


Name = Annotated[str, StringConstraints(max_length=63)]
Text = Annotated[str, StringConstraints(max_length=MESSAGE_LIMIT)]


class Condition(ApiModel):
    """A Kubernetes-style condition."""

    type: ConditionType = Field(description="The condition's type.")
    status: Annotated[str, StringConstraints(pattern=r"^(True|False|Unknown)$")] = Field(description="True, False or Unknown.")
    reason: Annotated[str, StringConstraints(max_length=128)] = Field(description="A CamelCase reason.")
    message: Text | None = Field(default=None, description="Human-readable details.")
    last_transition_time: dt.datetime = Field(description="When `status` last changed.")
    observed_generation: int | None = Field(default=None, ge=0, description="The spec generation this was computed for.")


class Failure(ApiModel):
    """Why an attempt ended badly."""

    failure_class: FailureClass = Field(alias="class", description="Infrastructure, Application, Permanent or Hang.")
    reason: Annotated[str, StringConstraints(max_length=128)] = Field(description="A CamelCase reason.")
    message: Text | None = Field(default=None, description="The tail of the termination message or log.")
    exit_code: int | None = Field(default=None, description="The process exit code, when known.")
    nodes: list[Name] | None = Field(
        default=None, max_length=64, description="The node of the pod that failed first, or the nodes of every pod of a hung attempt."
    )
    attempt: int = Field(ge=1, description="The attempt that failed.")
    time: dt.datetime = Field(description="When the failure was observed.")


class Restarts(ApiModel):
    """Restarts of a stage by failure class."""

    infra: int = Field(default=0, ge=0, description="Restarts after disruptions (do not use the budget).")
    app: int = Field(default=0, ge=0, description="Restarts after application failures.")
    hang: int = Field(default=0, ge=0, description="Restarts after hangs.")
    disk: int = Field(
        default=0, ge=0, description="Restarts after disk-pressure evictions; the first is free, a repeat uses the budget."
    )

    @property
    def budgeted(self) -> int:
        return self.app + self.hang

    @property
    def total(self) -> int:
        return self.infra + self.app + self.hang


class StepProgress(ApiModel):
    """The latest heartbeat of the running attempt."""

    step: int | None = Field(default=None, ge=0, description="Work units done (training steps, rows, prompts).")
    total: int | None = Field(default=None, ge=0, description="Work units in all; empty if unknown.")
    percent: float | None = Field(default=None, ge=0, le=100, description="step/total in percent.")
    eta_seconds: float | None = Field(default=None, ge=0, description="Estimated seconds left.")
    metrics: dict[str, float] | None = Field(default=None, max_length=32, description="Headline metrics (loss, tokens/s, …).")
    time: dt.datetime | None = Field(default=None, description="When the heartbeat was written.")


class StepOutput(ApiModel):
    """A dataset or model a stage wrote."""

    name: Name = Field(description="The output's name, e.g. `pool` or `model`.")
    uri: Annotated[str, StringConstraints(max_length=2048)] = Field(description="Where it is.")
    digest: Annotated[str, StringConstraints(max_length=128)] | None = Field(default=None, description="Content digest.")
    rows: int | None = Field(default=None, ge=0, description="Row count for datasets.")


class Waiting(ApiModel):
    """Pods of the attempt that are not running yet, and why (from the kubelet). Waiting is not a failure:
    only `permanent` start errors past `startupTimeoutSeconds`, or any wait past `waitingTimeoutSeconds`,
    fail the run."""

    reason: Annotated[str, StringConstraints(max_length=128)] = Field(
        description="e.g. Queued, Unschedulable, PodsPending (no pods: quota), ContainerCreating, ImagePullBackOff."
    )
    message: Text | None = Field(default=None, description="The kubelet's, scheduler's or Kueue's message.")
    queued: bool = Field(default=False, description="True while Kueue holds the Job suspended (before admission or after a preemption).")
    permanent: bool = Field(
        default=False,
        description="True when the error cannot heal by waiting: an image that does not exist, an invalid image name, "
        "a missing Secret or ConfigMap key. The run fails once this lasts `startupTimeoutSeconds`.",
    )
    since: dt.datetime | None = Field(
        default=None,
        description="When this wait began: queueing and starting are separate waits (an admission starts a new one); "
        "a change of reason within one wait keeps it.",
    )


class StepStatus(ApiModel):
    """One step of the run: a stage, or one curriculum phase of `sft` (`sft-<phase>`)."""

    name: Name = Field(description="The step's name, e.g. `curate` or `sft-phase1`.")
    stage: Name = Field(description="The stage kind, e.g. `sft`.")
    phase: StepPhase = Field(default=StepPhase.PENDING, description="Pending, Running, AttemptFailed, Backoff, Succeeded, Failed or Skipped.")
    attempt: int = Field(default=0, ge=0, description="The current or last attempt; 0 before the first.")
    restarts: Restarts = Field(default_factory=Restarts, description="Restarts by failure class.")
    job_name: Name | None = Field(default=None, description="The Job (or local process) of the current attempt.")
    start_time: dt.datetime | None = Field(default=None, description="When the first attempt started.")
    attempt_start_time: dt.datetime | None = Field(
        default=None, description="When the current attempt started, or Kueue last admitted it (a preempted Job is admitted again)."
    )
    completion_time: dt.datetime | None = Field(default=None, description="When the step succeeded or failed for good.")
    duration_seconds: float | None = Field(
        default=None, ge=0, description="How long the attempt that produced the step's outputs ran, from its `_SUCCESS.json`; empty if unknown."
    )
    cached: bool | None = Field(
        default=None,
        description="True when this run found the step already done (its `_SUCCESS.json` matched the config digest) and started "
        "nothing; `startTime`, `completionTime` and `durationSeconds` are then those of the attempt that did the work.",
    )
    retry_after: dt.datetime | None = Field(default=None, description="In Backoff: when the next attempt may start.")
    waiting: Waiting | None = Field(default=None, description="Pods not running yet, and why.")
    nodes: list[Name] | None = Field(
        default=None, max_length=64, description="The nodes the current attempt's pods run on (copied into a hang's failure)."
    )
    progress: StepProgress | None = Field(
        default=None, description="The latest heartbeat of the current attempt (and admission); empty until one was read."
    )
    heartbeat_error: Text | None = Field(
        default=None,
        description="Why the operator's latest read of the running attempt's `progress.json` failed (an unreadable store, "
        "a PVC it does not mount). While set, silence is not taken for a hang.",
    )
    last_checkpoint: Annotated[str, StringConstraints(max_length=2048)] | None = Field(default=None, description="Newest complete checkpoint.")
    last_failure: Failure | None = Field(default=None, description="The most recent failure.")
    reason: Annotated[str, StringConstraints(max_length=128)] | None = Field(default=None, description="Why the step is in its phase.")
    message: Text | None = Field(default=None, description="Details, e.g. the tail of the termination message.")
    outputs: list[StepOutput] | None = Field(default=None, max_length=32, description="What the step wrote.")
    metrics: dict[str, float] | None = Field(
        default=None,
        max_length=32,
        description="The succeeded step's headline metrics from its `_SUCCESS.json`, the measured throughput first. Keys are the "
        "stage's metric names, unchanged: `tokens_per_second`, `mfu`, `train_flops`, `generated_tokens_per_second`, …",
    )
    mlflow_run_id: Annotated[str, StringConstraints(max_length=64)] | None = Field(default=None, description="The MLflow child run.")


class MlflowStatus(ApiModel):
    """Where the run is tracked."""

    experiment_id: Annotated[str, StringConstraints(max_length=64)] | None = Field(default=None, description="The experiment id.")
    parent_run_id: Annotated[str, StringConstraints(max_length=64)] | None = Field(default=None, description="The parent run id.")
    url: Annotated[str, StringConstraints(max_length=2048)] | None = Field(default=None, description="The parent run in the MLflow UI.")


class EvalResult(ApiModel):
    """One cell of the eval stage's model × benchmark table (also in the stage's `results.json` and MLflow)."""

    model: Name = Field(description="The evaluated model: `base`, an SFT step (`sft-phase1`) or `dpo`.")
    benchmark: Name = Field(description="The benchmark's name from `spec.benchmarks`.")
    metric: Annotated[str, StringConstraints(max_length=32)] = Field(description="`avg@k` (mean accuracy over k samples) or `pass@k`.")
    value: float = Field(ge=0, le=1, description="The metric, a fraction in [0, 1].")
    samples: int = Field(ge=1, description="k: samples per question.")
    subset: Name | None = Field(default=None, description="A slice of the benchmark, e.g. `tier1`; empty for the whole benchmark.")
    questions: int | None = Field(default=None, ge=0, description="Questions the value is over.")


class StepEstimateStatus(ApiModel):
    """One step's share of `status.estimate`; an empty figure is unknown (the spec alone does not give it), never 0."""

    step: Name = Field(description="The step's name, as in `status.steps`.")
    gpu_hours: float | None = Field(default=None, ge=0, description="GPU-hours of the step; empty if unknown (e.g. source rows not read).")
    wall_hours: float | None = Field(default=None, ge=0, description="Wall-clock hours on the requested GPUs; empty if unknown.")
    fits: bool | None = Field(default=None, description="Whether the step fits in GPU memory; empty for CPU steps or an unknown model shape.")


class RunEstimateStatus(ApiModel):
    """What `infialign plan` says about the run, computed from the spec when the operator accepted a generation.

    The operator reads no sources and no artifacts: figures that need them are empty, and `complete` is false.
    Run `infialign plan FILE` where the sources are readable for every figure and the per-step fixes."""

    observed_generation: int | None = Field(default=None, ge=0, description="The spec generation the estimate was computed for.")
    gpu: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        default=None, description="The GPU type priced (`--gpu` of `infialign plan`; the operator's `estimateGpu` setting)."
    )
    mfu: float | None = Field(default=None, gt=0, le=1, description="The model-FLOPs utilisation assumed where nothing was measured.")
    gpu_hours: float | None = Field(
        default=None, ge=0, description="GPU-hours of the steps whose time is known; a lower bound when `complete` is false."
    )
    complete: bool | None = Field(default=None, description="True when every GPU step's time is known, so `gpuHours` is the total.")
    cost: float | None = Field(default=None, ge=0, description="`gpuHours` × the price per GPU-hour; empty when no price was given.")
    steps: list[StepEstimateStatus] | None = Field(
        default=None, max_length=16, description="Per step, in pipeline order.", json_schema_extra=xk8s(list_type="map", list_map_keys=["step"])
    )
    message: Text | None = Field(default=None, description="Why the estimate is missing or incomplete, and how to get the missing figures.")


class AlignmentRunStatus(ApiModel):
    """The observed state of an AlignmentRun."""

    phase: RunPhase = Field(default=RunPhase.PENDING, description="Pending, Running, Suspended, Succeeded or Failed.")
    current_stage: Name | None = Field(default=None, description="The step running now, or the one that failed.")
    progress: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Steps done of all, and the running step's percent, e.g. `2/6 sft-phase1 37%`."
    )
    restarts: int = Field(default=0, ge=0, description="Restarts of all steps, every class.")
    start_time: dt.datetime | None = Field(default=None, description="When the first step started.")
    completion_time: dt.datetime | None = Field(default=None, description="When the run succeeded or failed.")
    steps: list[StepStatus] = Field(
        default_factory=list, max_length=16, description="One entry per step, in pipeline order.", json_schema_extra=xk8s(list_type="map", list_map_keys=["name"])
    )
    mlflow: MlflowStatus | None = Field(default=None, description="MLflow experiment and parent run.")
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, description="Conditions keyed by type.", json_schema_extra=xk8s(list_type="map", list_map_keys=["type"])
    )
    observed_generation: int | None = Field(default=None, ge=0, description="The spec generation last acted on.")
    message: Text | None = Field(default=None, description="A summary of the latest transition.")
    results: list[EvalResult] | None = Field(
        default=None, max_length=RESULTS_LIMIT, description="The eval stage's model × benchmark table, once it has run."
    )
    estimate: RunEstimateStatus | None = Field(
        default=None, description="GPU-hours, wall time and fit per step, as `infialign plan` computes them from the accepted spec."
    )

    def step(self, name: str) -> StepStatus | None:
        return next((s for s in self.steps if s.name == name), None)
