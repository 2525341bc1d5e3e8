"""The operator under trouble: its own restart, API errors, a name taken by an earlier run, a lost Job, deletion."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import kmock as km

_PHASE_RANK = {"Skipped": 0, "Pending": 0, "Running": 1, "AttemptFailed": 1, "Backoff": 1, "Succeeded": 2, "Failed": 2}


def _assert_no_regression(cluster: Any) -> None:
    """Across every stored version of the run: no step goes back from Succeeded, no attempt number drops."""
    seen: dict[str, tuple[int, int]] = {}
    for version in cluster.kmock.objects["infialign.dev/v1alpha1/alignmentruns", "ns1", "r1"].history:
        for step in (version or {}).get("status", {}).get("steps", []) if version else []:
            rank, attempt = _PHASE_RANK[step["phase"]], step["attempt"]
            before = seen.get(step["name"], (0, 0))
            assert attempt >= before[1], f"{step['name']}: attempt went back from {before[1]} to {attempt}"
            assert not (before[0] == 2 and rank < 2), f"{step['name']}: left a final phase"
            seen[step["name"]] = (rank, attempt)


async def _run_step(cluster: Any, artifacts: Any, step: str) -> None:
    job = f"r1-{step}-a1"
    await cluster.eventually(lambda: cluster.job(job), what=f"the Job {job}")
    await cluster.run_pods(job)
    await cluster.eventually(lambda: cluster.step(step).get("phase") == "Running", what=f"{step} in the status")
    artifacts.beat(step, done=1, total=10)
    await cluster.eventually(lambda: cluster.step(step).get("progress"), what=f"{step} running")


async def test_operator_restart_mid_run_creates_no_duplicates_and_keeps_status(
    operator: Any, cluster: Any, artifacts: Any, make_run: Any
) -> None:
    await cluster.create_run(make_run().dict())
    await _run_step(cluster, artifacts, "curate")
    await cluster.complete("r1-curate-a1")
    await _run_step(cluster, artifacts, "select")

    await operator.stop()
    await cluster.complete("r1-select-a1")  # the Job finishes while no operator is watching
    operator.start()

    await cluster.eventually(lambda: cluster.job("r1-sft-phase1-a1"), what="the next step, started by the new operator")
    await cluster.eventually(lambda: cluster.step("select").get("phase") == "Succeeded", what="select Succeeded")
    assert operator.starts == 2
    # each child was POSTed exactly once across both operator processes: the index told the new one what exists
    assert cluster.posts("jobs") == ["r1-curate-a1", "r1-select-a1", "r1-sft-phase1-a1"]
    assert cluster.posts("configmaps") == ["r1-curate-a1-config", "r1-select-a1-config", "r1-sft-phase1-a1-config"]
    assert cluster.step("curate")["phase"] == "Succeeded" and cluster.step("curate")["attempt"] == 1
    _assert_no_regression(cluster)


async def test_api_500s_are_retried_and_409_on_create_means_done(operator: Any, cluster: Any, kmock: Any, make_run: Any) -> None:
    # kmock stores the object even when it answers 500: the retry then meets a 409 for a Job that is ours
    kmock["post", km.resource("batch/v1/jobs")][:1] << km.KubernetesError(
        status=500, reason="InternalError", message="etcdserver: request timed out"
    )
    kmock["patch", re.compile(r".*/alignmentruns/r1/status")][:1] << km.KubernetesError(
        status=503, reason="ServiceUnavailable", message="try again"
    )
    await cluster.create_run(make_run().dict())

    await cluster.eventually(lambda: cluster.step("curate").get("phase") == "Running", what="curate Running despite the errors")
    assert cluster.posts("jobs").count("r1-curate-a1") >= 2  # 500, then 409 taken as success
    assert cluster.jobs() == ["r1-curate-a1"]
    await cluster.run_pods("r1-curate-a1")
    await cluster.complete("r1-curate-a1")
    await cluster.eventually(lambda: cluster.job("r1-select-a1"), what="the run goes on")
    # Kopf kept its bookkeeping in annotations under our prefix (the status stays ours)
    # (the failed create handler was retried by Kopf, its progress stored as infialign.dev/reconcile-create)
    await cluster.eventually(
        lambda: "infialign.dev/last-handled-configuration" in (cluster.run()["metadata"].get("annotations") or {}), what="Kopf's diff-base"
    )
    history = cluster.kmock.objects["infialign.dev/v1alpha1/alignmentruns", "ns1", "r1"].history
    assert any(
        "infialign.dev/reconcile-create" in ((v or {}).get("metadata", {}).get("annotations") or {}) for v in history if v is not None
    )
    assert "kopf" not in cluster.status()


async def test_a_job_left_by_an_earlier_run_of_the_same_name_is_not_adopted(operator: Any, cluster: Any, kmock: Any, make_run: Any) -> None:
    foreign = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "r1-curate-a1",
            "namespace": "ns1",
            "labels": {"infialign.dev/run": "r1", "infialign.dev/stage": "curate", "infialign.dev/attempt": "1"},
            "ownerReferences": [
                {"apiVersion": "infialign.dev/v1alpha1", "kind": "AlignmentRun", "name": "r1", "uid": "an-earlier-run", "controller": True}
            ],
        },
        "spec": {"parallelism": 1, "template": {"spec": {"containers": []}}},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
    }
    async with kmock.post("/apis/batch/v1/namespaces/ns1/jobs", json=foreign) as resp:
        assert resp.status in (200, 201)
    await cluster.create_run(make_run().dict())
    await cluster.eventually(lambda: cluster.posts("jobs").count("r1-curate-a1") >= 2, what="retries against the taken name")
    assert cluster.step("curate").get("phase") == "Pending"  # not started, and the old failure not taken as ours
    assert cluster.status().get("phase") == "Pending"

    await cluster.delete_job("r1-curate-a1")  # the garbage collector removes the earlier run's Job
    await cluster.eventually(lambda: cluster.step("curate").get("phase") == "Running", what="our own attempt")
    job = cluster.job("r1-curate-a1")
    assert job["metadata"]["ownerReferences"][0]["uid"] == cluster.run()["metadata"]["uid"]
    assert cluster.step("curate")["restarts"] == {"infra": 0, "app": 0, "hang": 0, "disk": 0}


async def test_a_deleted_job_is_an_infrastructure_failure_after_a_grace_period(
    operator: Any, cluster: Any, clock: Any, make_run: Any
) -> None:
    await cluster.create_run(make_run().dict())
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="curate Job")
    await cluster.delete_job("r1-curate-a1")  # someone ran `kubectl delete job`
    ticks = operator.reconciler.reconciles
    await cluster.eventually(lambda: operator.reconciler.reconciles > ticks + 2, what="a few ticks")
    assert cluster.job("r1-curate-a2") is None  # within the grace period: maybe the watch is late

    clock.advance(31)
    await cluster.eventually(lambda: cluster.step("curate").get("attempt") == 2, what="a new attempt")
    step = cluster.step("curate")
    assert (step["lastFailure"]["class"], step["lastFailure"]["reason"]) == ("Infrastructure", "JobMissing")
    assert step["restarts"] == {"infra": 1, "app": 0, "hang": 0, "disk": 0}


async def test_deletion_while_running_leaves_no_finalizer_and_stops_reconciling(
    operator: Any, cluster: Any, artifacts: Any, make_run: Any
) -> None:
    await cluster.create_run(make_run().dict())
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="curate Job")
    await cluster.run_pods("r1-curate-a1")
    artifacts.beat("curate", done=1, total=10)
    await cluster.eventually(lambda: cluster.step("curate").get("progress"), what="curate running")
    history = cluster.kmock.objects["infialign.dev/v1alpha1/alignmentruns", "ns1", "r1"].history
    assert not any((v or {}).get("metadata", {}).get("finalizers") for v in history if v is not None)

    patches = len(cluster.operator_requests("PATCH"))
    await cluster.delete_run("r1")  # no finalizer: the API server removes it at once
    assert cluster.run() is None
    await cluster.eventually(lambda: operator.reconciler.snapshot()["runs"] == 0, what="the operator forgot the run")

    await cluster.complete("r1-curate-a1")  # an orphan's event: must not resurrect anything
    ticks = operator.reconciler.reconciles
    await cluster.eventually(lambda: operator.reconciler.snapshot()["secondsSinceTick"] < 0.1, what="a tick after the event")
    assert operator.reconciler.reconciles == ticks
    assert cluster.jobs() == ["r1-curate-a1"] and cluster.posts("jobs") == ["r1-curate-a1"]
    assert len(cluster.operator_requests("PATCH")) == patches  # nothing written for a run that is gone


async def test_a_job_absent_from_a_filling_index_is_fetched_before_it_is_declared_missing(
    operator: Any, cluster: Any, kmock: Any, clock: Any, make_run: Any
) -> None:
    await cluster.create_run(make_run().dict())
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="curate Job")
    await cluster.run_pods("r1-curate-a1")
    await cluster.eventually(lambda: cluster.step("curate").get("phase") == "Running", what="curate Running")
    await operator.stop()
    clock.advance(3600)  # the attempt is far older than the Job-missing grace period

    # The new operator's listing of Jobs hangs until released: its run index fills, its Job index does not.
    released = asyncio.Event()

    async def slow_job_listing() -> None:
        await released.wait()  # then fall through to the emulator's normal answer

    kmock["list", km.resource("batch/v1/jobs")] << slow_job_listing
    operator.start()
    try:
        await cluster.eventually(lambda: operator.reconciler.reconciles >= 5, what="ticks while the Job index is empty")
        assert cluster.posts("jobs") == ["r1-curate-a1"], "a duplicate attempt was launched for a Job that exists"
        fetched = [r for r in cluster.operator_requests("GET") if r.url.path.endswith("/jobs/r1-curate-a1")]
        assert fetched, "the operator decided without asking the API server"
    finally:
        released.set()
    await cluster.complete("r1-curate-a1")
    await cluster.eventually(lambda: cluster.step("curate").get("phase") == "Succeeded", what="curate Succeeded")
    step = cluster.step("curate")
    assert (step["attempt"], step.get("lastFailure"), step["restarts"]["infra"]) == (1, None, 0)
    _assert_no_regression(cluster)


async def test_a_create_that_keeps_failing_becomes_a_condition_and_an_event(operator: Any, cluster: Any, kmock: Any, make_run: Any) -> None:
    # OwnerReferencesPermissionEnforcement (OpenShift) without `update` on alignmentruns/finalizers:
    forbidden = (
        'configmaps "r1-curate-a1-config" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a '
        "resource you can't set finalizers on: , <nil>"
    )
    kmock.refusals["configmaps"] = [km.KubernetesError(status=403, reason="Forbidden", message=forbidden) for _ in range(6)]
    await cluster.create_run(make_run().dict())

    def blocked() -> list[dict[str, Any]]:
        versions = cluster.kmock.objects["infialign.dev/v1alpha1/alignmentruns", "ns1", "r1"].history
        return [
            c
            for v in versions
            if v is not None
            for c in (v.get("status") or {}).get("conditions", [])
            if c["type"] == "ChildCreateFailed" and c["status"] == "True"
        ]

    (condition, *_) = await cluster.eventually(blocked, what="a ChildCreateFailed condition on the run")
    assert condition["reason"] == "FailedCreate"
    assert "403" in condition["message"] and "finalizers" in condition["message"] and "r1-curate-a1-config" in condition["message"]

    def warnings() -> list[Any]:
        events = [o for (r, ns, n), o in cluster.kmock.objects.items() if r.plural == "events" and not o.deleted]
        return [e for e in events if e["reason"] == "FailedCreate" and e["type"] == "Warning" and "finalizers" in e["message"]]

    await cluster.eventually(warnings, what="a FailedCreate Warning Event on the run")

    # once the permission is granted, the attempt starts and the condition clears
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="the Job after the RBAC fix")
    await cluster.eventually(
        lambda: next(c for c in cluster.status()["conditions"] if c["type"] == "ChildCreateFailed")["status"] == "False",
        what="the condition cleared",
    )


async def test_a_configmap_of_another_owner_is_not_reused(operator: Any, cluster: Any, kmock: Any, make_run: Any) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "r1-curate-a1-config",
            "namespace": "ns1",
            "ownerReferences": [
                {"apiVersion": "infialign.dev/v1alpha1", "kind": "AlignmentRun", "name": "r1", "uid": "an-earlier-run", "controller": True}
            ],
        },
        "data": {"stage.json": "{\"step\": \"someone else's\"}"},
    }
    async with kmock.post("/api/v1/namespaces/ns1/configmaps", json=foreign) as resp:
        assert resp.status in (200, 201)
    await cluster.create_run(make_run().dict())

    def blocked() -> dict[str, Any] | None:
        return next((c for c in cluster.status().get("conditions", []) if c["type"] == "ChildCreateFailed" and c["status"] == "True"), None)

    condition = await cluster.eventually(blocked, what="ChildCreateFailed")
    assert "ConfigMap r1-curate-a1-config exists and belongs to another owner" in condition["message"]
    assert cluster.jobs() == [] and cluster.step("curate").get("phase") == "Pending"  # no Job reads someone else's stage.json

    async with kmock.delete("/api/v1/namespaces/ns1/configmaps/r1-curate-a1-config") as resp:
        assert resp.status == 200
    job = await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="our own attempt after the deletion")
    configmap = cluster.kmock.objects["v1/configmaps", "ns1", "r1-curate-a1-config"]
    uid = cluster.run()["metadata"]["uid"]
    assert configmap["metadata"]["ownerReferences"][0]["uid"] == uid and job["metadata"]["ownerReferences"][0]["uid"] == uid


async def test_an_unreadable_stored_status_becomes_a_condition_and_nothing_is_started(
    operator: Any, cluster: Any, kmock: Any, make_run: Any
) -> None:
    doc = make_run().dict()
    # e.g. edited by hand: the CRD schema lets any string through as a date-time, the operator cannot read it
    doc["status"] = {"phase": "Running", "startTime": "last tuesday", "conditions": [
        {"type": "Accepted", "status": "True", "reason": "Valid", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    ]}
    await cluster.create_run(doc)

    def unreadable() -> dict[str, Any] | None:
        return next((c for c in cluster.status().get("conditions", []) if c["type"] == "StatusUnreadable" and c["status"] == "True"), None)

    condition = await cluster.eventually(unreadable, what="StatusUnreadable")
    assert condition["reason"] == "InvalidStatus" and "status.startTime: Input should be a valid datetime" in condition["message"]
    assert "kubectl patch --subresource=status" in condition["message"]
    status = cluster.status()
    assert status["startTime"] == "last tuesday" and status["phase"] == "Running"  # nothing else touched
    assert [c["type"] for c in status["conditions"]] == ["Accepted", "StatusUnreadable"]  # readable conditions kept
    await cluster.eventually(
        lambda: any(
            o["reason"] == "InvalidStatus" and o["type"] == "Warning"
            for (r, ns, n), o in cluster.kmock.objects.items()
            if r.plural == "events" and not o.deleted
        ),
        what="a Warning Event",
    )
    patches = len(cluster.operator_requests("PATCH"))
    ticks = operator.reconciler.reconciles
    await cluster.eventually(lambda: operator.reconciler.reconciles > ticks + 3, what="a few more reconciles")
    assert len(cluster.operator_requests("PATCH")) == patches  # reported once, not on every tick
    assert cluster.jobs() == []

    # fixed by hand: the operator reads it again and the run proceeds
    async with kmock.patch("/apis/infialign.dev/v1alpha1/namespaces/ns1/alignmentruns/r1/status", json={"status": {"startTime": None, "phase": "Pending"}}) as resp:
        assert resp.status == 200
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="the curate Job after the fix")
    await cluster.eventually(lambda: not unreadable(), what="StatusUnreadable no longer True")
