"""The failure classifier and the waiting detector: one table entry per rule (house rule 15)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infialign.operator import observe
from infialign.operator.config import OperatorConfig
from infialign.operator.reconciler import merge_patch
from infialign.pipeline.api import FailureClass, Reason

FATAL = [2]


def job(*conditions: dict[str, Any], parallelism: int = 1, suspend: bool = False, queue: str | None = None) -> dict[str, Any]:
    labels = {"kueue.x-k8s.io/queue-name": queue} if queue else {}
    return {
        "metadata": {"name": "r1-sft-a1", "labels": labels},
        "spec": {"parallelism": parallelism, "suspend": suspend},
        "status": {"conditions": list(conditions)},
    }


def cond(ctype: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": ctype, "status": "True", "reason": reason, "message": message}


def pod(
    phase: str,
    *,
    exit_code: int | None = None,
    message: str | None = None,
    finished: str = "2026-01-01T00:00:00Z",
    waiting: tuple[str, str] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    reason: str | None = None,
    name: str = "p0",
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code, "reason": "Error", "message": message, "finishedAt": finished}}
    if waiting is not None:
        state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    status: dict[str, Any] = {"phase": phase, "containerStatuses": [{"name": "stage", "state": state}], "conditions": conditions or []}
    if reason:
        status["reason"] = reason
    return {"metadata": {"name": name}, "status": status}


def summary(error: str, code: int = 1) -> str:
    return json.dumps({"step": "curate", "attempt": 1, "exitCode": code, "error": error})


DISRUPTED = [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler", "message": "preempted"}]
FAILED = cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")

# (id, job, pods, expected observation type, class, reason, text in message)
CLASSIFY = [
    (
        "pod-disruption-target",
        job(FAILED),
        [pod("Failed", exit_code=137, conditions=DISRUPTED)],
        observe.Failed,
        FailureClass.INFRA,
        Reason.DISRUPTION,
        "PreemptionByScheduler",
    ),
    ("pod-evicted", job(FAILED), [pod("Failed", reason="Evicted")], observe.Failed, FailureClass.INFRA, Reason.DISRUPTION, "Evicted"),
    (
        "pod-evicted-for-node-disk",
        job(FAILED),
        [pod("Failed", exit_code=137, conditions=[cond("DisruptionTarget", "TerminationByKubelet",
                                                       "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi")])],
        observe.Failed,
        FailureClass.INFRA,
        Reason.DISK_PRESSURE,
        "ephemeral-storage",
    ),
    (
        "pod-evicted-for-its-scratch-size-limit",
        job(FAILED),
        [{"metadata": {"name": "p0"}, "status": {"phase": "Failed", "reason": "Evicted",
                                                 "message": 'Usage of EmptyDir volume "scratch" exceeds the limit "20Gi".'}}],
        observe.Failed,
        FailureClass.INFRA,
        Reason.DISK_PRESSURE,
        "scratch",
    ),
    ("pod-node-lost", job(FAILED), [pod("Failed", reason="NodeLost")], observe.Failed, FailureClass.INFRA, Reason.DISRUPTION, "NodeLost"),
    (
        "pod-out-of-gpu",
        job(FAILED),
        [pod("Failed", reason="OutOfnvidia.com/gpu")],
        observe.Failed,
        FailureClass.INFRA,
        Reason.DISRUPTION,
        "OutOf",
    ),
    (
        "job-policy-disruption-pods-gone",
        job(cond("Failed", "PodFailurePolicy", "Pod ns/p has condition DisruptionTarget matching FailJob rule at index 0")),
        [],
        observe.Failed,
        FailureClass.INFRA,
        Reason.DISRUPTION,
        "DisruptionTarget",
    ),
    (
        "infra-wins-over-peer-exit",
        job(FAILED),
        [pod("Failed", exit_code=1, name="p1"), pod("Failed", exit_code=137, conditions=DISRUPTED)],
        observe.Failed,
        FailureClass.INFRA,
        Reason.DISRUPTION,
        "p0",
    ),
    (
        "fatal-exit-code",
        job(FAILED),
        [pod("Failed", exit_code=2, message=summary("bad config", 2))],
        observe.Failed,
        FailureClass.PERMANENT,
        Reason.FATAL_EXIT_CODE,
        "bad config",
    ),
    (
        "app-exit-with-summary",
        job(FAILED),
        [pod("Failed", exit_code=1, message=summary("ValueError: x"))],
        observe.Failed,
        FailureClass.APP,
        Reason.EXIT_CODE,
        "exit code 1: ValueError: x",
    ),
    (
        "app-exit-log-tail",
        job(FAILED),
        [pod("Failed", exit_code=137, message="Traceback...\nOOM")],
        observe.Failed,
        FailureClass.APP,
        Reason.EXIT_CODE,
        "OOM",
    ),
    (
        "first-to-die-is-the-cause",
        job(FAILED),
        [
            pod("Failed", exit_code=1, message=summary("later"), finished="2026-01-01T00:00:09Z", name="p1"),
            pod("Failed", exit_code=3, message=summary("first"), finished="2026-01-01T00:00:01Z"),
        ],
        observe.Failed,
        FailureClass.APP,
        Reason.EXIT_CODE,
        "first",
    ),
    (
        "failure-target-counts",
        job(
            cond(
                "FailureTarget", "PodFailurePolicy", "Container stage for pod ns/p failed with exit code 2 matching FailJob rule at index 1"
            )
        ),
        [],
        observe.Failed,
        FailureClass.PERMANENT,
        Reason.FATAL_EXIT_CODE,
        "exit code 2",
    ),
    ("job-failed-no-details", job(FAILED), [], observe.Failed, FailureClass.APP, Reason.EXIT_CODE, "backoff limit"),
]


@pytest.mark.parametrize(("case", "j", "pods", "kind", "cls", "reason", "text"), CLASSIFY, ids=[c[0] for c in CLASSIFY])
def test_classification(
    case: str, j: dict[str, Any], pods: list[dict[str, Any]], kind: type, cls: FailureClass, reason: str, text: str
) -> None:
    seen = observe.observe(j, pods, FATAL)
    assert isinstance(seen, kind)
    assert (seen.failure_class, seen.reason) == (cls, reason)
    assert text in (seen.message or "")


# (id, job, pods, waiting reason or None for Running, queued, permanent: waiting cannot heal it)
WAITING = [
    ("kueue-suspended", job(suspend=True, queue="gpu"), [], "Queued", True, False),
    ("suspended-no-queue", job(suspend=True), [], "JobSuspended", True, False),
    ("no-pods-yet-or-a-quota", job(), [], "PodsPending", False, False),
    ("image-pull-back-off-heals", job(), [pod("Pending", waiting=("ImagePullBackOff", "Back-off pulling image"))], "ImagePullBackOff", False, False),
    (
        "registry-rate-limit-heals",
        job(),
        [pod("Pending", waiting=("ErrImagePull", "failed to pull: 429 Too Many Requests"))],
        "ErrImagePull",
        False,
        False,
    ),
    (
        "image-not-found",
        job(),
        [pod("Pending", waiting=("ErrImagePull", 'rpc error: code = NotFound desc = failed to pull and unpack image "x:nope": not found'))],
        "ErrImagePull",
        False,
        True,
    ),
    ("invalid-image-name", job(), [pod("Pending", waiting=("InvalidImageName", "couldn't parse image name"))], "InvalidImageName", False, True),
    ("container-create-error-heals", job(), [pod("Pending", waiting=("CreateContainerError", "name already in use"))], "CreateContainerError", False, False),
    (
        "config-error",
        job(),
        [pod("Pending", waiting=("CreateContainerConfigError", 'secret "x" not found'))],
        "CreateContainerConfigError",
        False,
        True,
    ),
    (
        "unschedulable",
        job(parallelism=2),
        [
            pod("Running"),
            {
                "metadata": {"name": "p1"},
                "status": {
                    "phase": "Pending",
                    "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/4 nodes have 8 free GPUs"}
                    ],
                },
            },
        ],
        "Unschedulable",
        False,
        False,
    ),
    (
        "permanent-beats-creating",
        job(parallelism=2),
        [pod("Pending", waiting=("ContainerCreating", "")), pod("Pending", waiting=("ErrImagePull", "no such image"), name="p1")],
        "ErrImagePull",
        False,
        True,
    ),
    ("one-of-two-running", job(parallelism=2), [pod("Running")], "PodsPending", False, False),
    ("all-running", job(parallelism=2), [pod("Running"), pod("Running", name="p1")], None, False, False),
]


@pytest.mark.parametrize(("case", "j", "pods", "reason", "queued", "permanent"), WAITING, ids=[c[0] for c in WAITING])
def test_waiting(case: str, j: dict[str, Any], pods: list[dict[str, Any]], reason: str | None, queued: bool, permanent: bool) -> None:
    seen = observe.observe(j, pods, FATAL)
    if reason is None:
        assert isinstance(seen, observe.Running)
        return
    assert isinstance(seen, observe.Pending)
    assert (seen.waiting.reason, seen.waiting.queued, seen.waiting.permanent) == (reason, queued, permanent)


def test_missing_and_complete() -> None:
    assert isinstance(observe.observe(None, [], FATAL), observe.Missing)
    assert isinstance(observe.observe(job(cond("Complete")), [pod("Succeeded")], FATAL), observe.Succeeded)


def test_termination_text_keeps_the_tail() -> None:
    long = "x" * 5000 + "THE END"
    text = observe.termination_text(summary(long))
    assert text is not None and text.endswith("THE END") and len(text) <= 1024


# ---------------------------------------------------------------- small pure helpers of the operator


def test_merge_patch_deletes_with_null_and_replaces_lists() -> None:
    old = {"phase": "Running", "message": "x", "steps": [{"name": "a"}], "mlflow": {"url": "u", "parentRunId": "p"}}
    new = {"phase": "Failed", "steps": [{"name": "a"}, {"name": "b"}], "mlflow": {"url": "u"}}
    assert merge_patch(old, new) == {
        "phase": "Failed",
        "message": None,
        "steps": [{"name": "a"}, {"name": "b"}],
        "mlflow": {"parentRunId": None},
    }
    assert merge_patch(new, new) == {}


def test_config_from_env() -> None:
    config = OperatorConfig.from_env(
        {"INFIALIGN_OPERATOR_TICK_SECONDS": "0.5", "INFIALIGN_OPERATOR_EVENTS": "false", "INFIALIGN_OPERATOR_POSTING_LEVEL": "info"}
    )
    assert (config.tick_seconds, config.events, config.posting_level) == (0.5, False, 20)
    with pytest.raises(ValueError, match="INFIALIGN_OPERATOR_API_WORKERS"):
        OperatorConfig.from_env({"INFIALIGN_OPERATOR_API_WORKERS": "many"})


def _on(node: str, p: dict[str, Any]) -> dict[str, Any]:
    return {**p, "spec": {"nodeName": node}}


def test_a_failure_names_the_node_of_the_pod_that_failed_first() -> None:
    pods = [
        _on("gpu-7", pod("Failed", exit_code=137, finished="2026-01-01T00:00:05Z", name="p1")),
        _on("gpu-3", pod("Failed", exit_code=1, message=summary("NCCL error"), finished="2026-01-01T00:00:01Z")),
    ]
    seen = observe.observe(job(FAILED, parallelism=2), pods, FATAL)
    assert isinstance(seen, observe.Failed) and seen.nodes == ("gpu-3",)
    disrupted = observe.observe(job(FAILED), [_on("gpu-9", pod("Failed", exit_code=137, conditions=DISRUPTED))], FATAL)
    assert isinstance(disrupted, observe.Failed) and disrupted.nodes == ("gpu-9",)


def test_running_pods_report_their_nodes() -> None:
    seen = observe.observe(job(parallelism=2), [_on("gpu-1", pod("Running")), _on("gpu-2", pod("Running", name="p1"))], FATAL)
    assert isinstance(seen, observe.Running) and seen.nodes == ("gpu-1", "gpu-2")
