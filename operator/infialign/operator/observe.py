"""Pure observation: a step attempt's Job and Pods (as the watch delivered them) → what happened.

`observe(job, pods, fatal_exit_codes)` answers one of: the Job is missing, it succeeded, it failed
(with a classified failure), its pods are waiting (and why, in the kubelet's words), or it runs.
No clock, no I/O: the reconciler turns the answer into planner observations (`attempt_ended`,
`attempt_succeeded`, `heartbeat`). Classification rules (DESIGN.md §5, research §4.1):

- pod condition `DisruptionTarget=True`, pod reason Evicted/Preempted/NodeLost/Shutdown/…, or a Job
  failed by the `DisruptionTarget` pod-failure-policy rule → Infrastructure (`Disruption`; `DiskPressure`
  when the kubelet evicted for disk, which the planner lets retry for free only once)
- terminated exit code in `fatalExitCodes` → Permanent (`FatalExitCode`)
- any other non-zero exit, or a failed Job without pod details → Application (`NonZeroExit`), with the
  tail of the termination message
- container waiting reasons, unschedulable pods, a Job without pods → `Waiting`, marked `permanent` only
  when waiting cannot heal it (an image that does not exist, an invalid image name, a missing Secret or
  ConfigMap key); the planner decides when that is fatal
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from infialign.pipeline import planner
from infialign.pipeline.api import FailureClass, Reason, Waiting, truncate

__all__ = [
    "Missing",
    "Succeeded",
    "Failed",
    "Pending",
    "Running",
    "Observation",
    "observe",
    "classify_failure",
    "waiting_reason",
    "cannot_heal",
    "termination_text",
    "INFRA_POD_REASONS",
    "NO_PODS_YET",
]

# Pod `status.reason` values that mean the node or the cluster took the pod away, not the program.
INFRA_POD_REASONS: Final = frozenset(
    {"Evicted", "Preempted", "NodeLost", "Shutdown", "NodeShutdown", "Terminated", "UnexpectedAdmissionError"}
)
_KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
NO_PODS_YET: Final = "PodsPending"  # fewer pods than the Job's parallelism exist or run, and none says why
_EXIT_CODE_IN_MESSAGE = re.compile(r"exit code (\d+)")
# The kubelet's eviction messages for disk: node pressure, a pod over its ephemeral-storage, an emptyDir over sizeLimit.
_DISK_EVICTION = re.compile(r"ephemeral-storage|ephemeral local storage|EmptyDir volume|DiskPressure|nodefs|imagefs", re.IGNORECASE)
# What the kubelet (containerd, CRI-O) says when an image or its tag does not exist, or the registry refuses
# the pull: a person must act. Rate limits (429), timeouts and TLS hiccups are absent on purpose: they heal.
_IMAGE_GONE = re.compile(
    r"not found|no such image|manifest unknown|name unknown|does not exist|NotFound|pull access denied|unauthorized|authentication required",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Missing:
    """No Job of this attempt in the watch cache (not created yet, not seen yet, or deleted)."""


@dataclass(frozen=True)
class Succeeded:
    """The Job has condition Complete."""


@dataclass(frozen=True)
class Failed:
    """The Job failed; why, classified."""

    failure_class: FailureClass
    reason: str
    message: str | None = None
    exit_code: int | None = None
    nodes: tuple[str, ...] = ()  # the node of the pod that failed first (a bad node shows up across runs)


@dataclass(frozen=True)
class Pending:
    """Not every pod runs yet: queued by Kueue, unschedulable, pulling the image, …"""

    waiting: Waiting
    pods: int = 0  # pods of the attempt that exist


@dataclass(frozen=True)
class Running:
    """Every pod of the attempt runs (or has already finished)."""

    pods: int
    nodes: tuple[str, ...] = ()  # where they run: a hang's failure names them


Observation = Missing | Succeeded | Failed | Pending | Running


# ---------------------------------------------------------------- small accessors


def _conditions(obj: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return list(((obj or {}).get("status") or {}).get("conditions") or [])


def _true(obj: Mapping[str, Any] | None, ctype: str) -> Mapping[str, Any] | None:
    return next((c for c in _conditions(obj) if c.get("type") == ctype and c.get("status") == "True"), None)


def _container_statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def termination_text(message: str | None) -> str | None:
    """The stage writes `{"step","attempt","exitCode","error"}`; a log tail (FallbackToLogsOnError) is kept as is."""
    if not message:
        return None
    text = message.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return truncate(text)
        if isinstance(data, dict) and data.get("error"):
            return truncate(str(data["error"]))
    return truncate(text)


# ---------------------------------------------------------------- failure classification


@dataclass(frozen=True)
class _Terminated:
    exit_code: int
    reason: str | None
    message: str | None
    finished_at: str
    node: str | None


def _node(pod: Mapping[str, Any]) -> str | None:
    node = (pod.get("spec") or {}).get("nodeName")
    return str(node)[:63] if node else None


def _nodes(*nodes: str | None) -> tuple[str, ...]:
    return tuple(n for n in nodes if n)


def _terminations(pods: Iterable[Mapping[str, Any]]) -> list[_Terminated]:
    found: list[_Terminated] = []
    for pod in pods:
        for cs in _container_statuses(pod):
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if term and int(term.get("exitCode", 0)) != 0:
                finished = str(term.get("finishedAt") or "")
                found.append(_Terminated(int(term["exitCode"]), term.get("reason"), term.get("message"), finished, _node(pod)))
    return sorted(found, key=lambda t: t.finished_at)  # the first to die is the likely cause


def _disrupted(pod: Mapping[str, Any]) -> str | None:
    condition = _true(pod, "DisruptionTarget")
    if condition is not None:
        return f"{condition.get('reason') or 'DisruptionTarget'}: {condition.get('message') or 'pod disrupted'}"
    status = pod.get("status") or {}
    reason = status.get("reason")
    if reason in INFRA_POD_REASONS or (isinstance(reason, str) and reason.startswith("OutOf")):
        return f"{reason}: {status.get('message') or 'pod lost'}"
    return None


def classify_failure(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]], fatal_exit_codes: Iterable[int]) -> Failed:
    """Why a failed attempt failed. Infrastructure wins: a disrupted pod takes its peers down with it."""
    fatal = list(fatal_exit_codes)

    def name(pod: Mapping[str, Any]) -> str:
        return str((pod.get("metadata") or {}).get("name", "?"))

    for pod in pods:
        why = _disrupted(pod)
        if why is not None:
            reason = Reason.DISK_PRESSURE if _DISK_EVICTION.search(why) else Reason.DISRUPTION
            return Failed(FailureClass.INFRA, reason, truncate(f"pod {name(pod)}: {why}"), nodes=_nodes(_node(pod)))
    failed = _true(job, "Failed") or _true(job, "FailureTarget")
    job_message = str(failed.get("message") or "") if failed else ""
    if "DisruptionTarget" in job_message:
        return Failed(FailureClass.INFRA, Reason.DISRUPTION, truncate(job_message))
    terminations = _terminations(pods)
    if terminations:
        first = terminations[0]
        cls, reason = planner.classify_exit_code(first.exit_code, fatal)
        detail = termination_text(first.message) or first.reason or ""
        message = truncate(f"exit code {first.exit_code}: {detail}".strip().rstrip(":"))
        return Failed(cls, reason, message, first.exit_code, nodes=_nodes(first.node))
    match = _EXIT_CODE_IN_MESSAGE.search(job_message)
    if match:  # the pods are gone (pod GC); the pod-failure-policy message still names the exit code
        code = int(match.group(1))
        cls, reason = planner.classify_exit_code(code, fatal)
        return Failed(cls, reason, truncate(job_message), code)
    reason_text = f"{failed.get('reason')}: " if failed and failed.get("reason") else ""
    return Failed(FailureClass.APP, Reason.EXIT_CODE, truncate(f"{reason_text}{job_message}".strip() or "the Job failed"))


# ---------------------------------------------------------------- waiting


def waiting_reason(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], expected: int) -> Waiting | None:
    """Why the attempt is not running yet, or None when every expected pod runs."""
    spec = job.get("spec") or {}
    if spec.get("suspend"):
        queue = ((job.get("metadata") or {}).get("labels") or {}).get(_KUEUE_QUEUE_LABEL)
        if queue:
            return Waiting(reason="Queued", message=f"waiting for Kueue admission in queue {queue}", queued=True)
        return Waiting(reason="JobSuspended", message="the Job is suspended", queued=True)

    reasons: list[tuple[str, str | None]] = []  # (reason, message) per waiting pod or container
    running = 0
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Running", "Succeeded"):
            running += 1
            continue
        for cs in _container_statuses(pod):
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason"):
                reasons.append((str(waiting["reason"]), waiting.get("message")))
        scheduled = next((c for c in _conditions(pod) if c.get("type") == "PodScheduled"), None)
        if scheduled is not None and scheduled.get("status") == "False":
            reasons.append((str(scheduled.get("reason") or "Unschedulable"), scheduled.get("message")))
        if phase == "Pending" and not reasons:
            reasons.append(("Pending", None))
    if running >= expected:
        return None
    # Order of interest when pods wait for different reasons: what will never heal first, then no node.
    permanent = next((r for r in reasons if cannot_heal(*r)), None)
    if permanent is not None:
        return Waiting(reason=permanent[0], message=truncate(permanent[1]), permanent=True)
    hit = next((r for r in reasons if r[0] == "Unschedulable"), None) or (reasons[0] if reasons else None)
    if hit is not None:
        return Waiting(reason=hit[0], message=truncate(hit[1]))
    return Waiting(reason=NO_PODS_YET, message=f"{len(pods)} of {expected} pods created, {running} running")


def cannot_heal(reason: str, message: str | None) -> bool:
    """A start error that waiting does not fix: a missing image, an invalid name, a missing Secret or ConfigMap."""
    if reason in planner.PERMANENT_WAITING_REASONS:
        return True
    return reason in planner.IMAGE_PULL_REASONS and bool(message) and _IMAGE_GONE.search(message or "") is not None


# ---------------------------------------------------------------- the whole answer


def observe(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]], fatal_exit_codes: Iterable[int]) -> Observation:
    """What the attempt's objects say. The Job's conditions decide success and failure; pods explain."""
    if job is None:
        return Missing()
    if _true(job, "Complete") is not None:
        return Succeeded()
    if _true(job, "Failed") is not None or _true(job, "FailureTarget") is not None:
        return classify_failure(job, pods, fatal_exit_codes)
    expected = int((job.get("spec") or {}).get("parallelism") or 1)
    waiting = waiting_reason(job, pods, expected)
    if waiting is not None:
        return Pending(waiting, pods=len(pods))
    return Running(pods=len(pods), nodes=tuple(sorted(set(_nodes(*(_node(p) for p in pods))))))
