"""The operator end to end against kmock: the happy path, multi-node, suspend/resume, Kueue, deletion."""

from __future__ import annotations

from typing import Any

STEPS = ["curate", "select", "sft-phase1", "sft-phase2"]


def _doc(make_run: Any, **policy: Any) -> dict[str, Any]:
    builder = make_run().set("spec.tracking", {"uri": "http://mlflow.test"})
    if policy:
        builder = builder.policy(**policy)
    return builder.dict()


async def test_happy_path_through_every_stage(operator: Any, cluster: Any, artifacts: Any, tracker: Any, make_run: Any) -> None:
    await cluster.create_run(_doc(make_run))
    for step in STEPS:
        job = f"r1-{step}-a1"
        await cluster.eventually(lambda job=job: cluster.job(job), what=f"the Job {job}")
        await cluster.eventually(
            lambda step=step: cluster.step(step).get("phase") == "Running", what=f"{step} Running"
        )  # status lands after the Job
        await cluster.run_pods(job)
        artifacts.beat(step, done=5, total=10, loss=0.5, checkpoint=f"file:///ckpt/{step}/5")
        await cluster.eventually(
            lambda step=step: (cluster.step(step).get("progress") or {}).get("percent") == 50.0, what=f"{step} heartbeat"
        )
        assert cluster.status()["progress"].endswith(f"{step} 50%")
        assert cluster.step(step)["lastCheckpoint"] == f"file:///ckpt/{step}/5"
        artifacts.succeed(step, uri=f"file:///artifacts/ns1/r1/{step}/out.parquet")
        await cluster.complete(job)
        await cluster.eventually(lambda step=step: cluster.step(step).get("phase") == "Succeeded", what=f"{step} succeeded")

    await cluster.eventually(lambda: cluster.status().get("phase") == "Succeeded", what="run Succeeded")
    status = cluster.status()
    assert status["progress"] == "4/4"
    assert status["mlflow"] == {"experimentId": "7", "parentRunId": "parent-r1", "url": "http://mlflow.test/#/experiments/7/runs/parent-r1"}
    assert {c["type"]: c["status"] for c in status["conditions"]}["Complete"] == "True"
    assert cluster.step("curate")["outputs"] == [
        {"name": "out", "uri": "file:///artifacts/ns1/r1/curate/out.parquet", "digest": "sha256:0", "rows": 10}
    ]
    assert [s["phase"] for s in status["steps"]] == [
        "Succeeded",
        "Skipped",
        "Succeeded",
        "Succeeded",
        "Succeeded",
        "Skipped",
        "Skipped",
        "Skipped",
    ]
    # one Job and one ConfigMap per step, each created once; no Service for single-node steps
    assert cluster.posts("jobs") == [f"r1-{s}-a1" for s in STEPS]
    assert cluster.posts("configmaps") == [f"r1-{s}-a1-config" for s in STEPS]
    assert cluster.posts("services") == []
    assert tracker.finished == ["FINISHED"]
    # Events: one per reconcile that changed something, on the run
    def events() -> list[Any]:
        return [o for (r, ns, n), o in cluster.kmock.objects.items() if r.plural == "events" and not o.deleted]

    # Events are posted in the background after the status patch: wait for the last one
    await cluster.eventually(lambda: {e["reason"] for e in events()} >= {"StepStarted", "RunSucceeded"}, what="the Events")
    assert all(e["involvedObject"]["name"] == "r1" for e in events())
    # metrics
    registry = operator.current.metrics.registry
    assert registry.get_sample_value("infialign_stage_transitions_total", {"stage": "sft", "phase": "Succeeded"}) == 2.0
    assert registry.get_sample_value("infialign_reconcile_duration_seconds_count") > 0
    operator.reconciler.tick()
    assert registry.get_sample_value("infialign_runs", {"phase": "Succeeded"}) == 1.0


def test_operator_entrypoint_refuses_ambiguous_namespaces() -> None:
    from infialign.operator import main

    assert main.run(namespaces=[], all_namespaces=False, liveness="", metrics_port=0, verbose=False) == 2
    assert main.run(namespaces=["a"], all_namespaces=True, liveness="", metrics_port=0, verbose=False) == 2


def _skip_to_sft(artifacts: Any) -> None:
    """curate and select already succeeded in an earlier run: the operator skips them without pods."""
    from infialign.operator.artifacts import Success

    for step in ("curate", "select"):
        artifacts.done[step] = Success()


async def test_a_skipped_step_keeps_the_times_and_throughput_of_the_attempt_that_did_the_work(
    operator: Any, cluster: Any, artifacts: Any, make_run: Any
) -> None:
    import datetime as dt

    from infialign.operator.artifacts import Success

    started = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
    finished = started + dt.timedelta(minutes=7)
    for step in ("curate", "select"):
        artifacts.done[step] = Success(
            started_at=started, finished_at=finished, duration_seconds=420.0, step_metrics={"tokens_per_second": 1234.0, "rows": 5.0}
        )
    await cluster.create_run(make_run().dict())
    await cluster.eventually(lambda: cluster.step("select").get("reason") == "AlreadySucceeded", what="select skipped")
    curate = cluster.step("curate")
    assert curate["cached"] is True and curate["durationSeconds"] == 420.0
    assert curate["startTime"].startswith("2026-11-20T08:00:00") and curate["completionTime"].startswith("2026-11-20T08:07:00")
    assert curate["metrics"] == {"tokens_per_second": 1234.0, "rows": 5.0}


async def test_multi_node_sft_gets_a_service_an_indexed_job_and_pet_env(operator: Any, cluster: Any, artifacts: Any, make_run: Any) -> None:
    _skip_to_sft(artifacts)
    doc = make_run().stage("sft", resources={"numNodes": 3, "gpusPerNode": 2, "shmSize": "8Gi"}).dict()
    await cluster.create_run(doc)
    job_name = "r1-sft-phase1-a1"
    job = await cluster.eventually(lambda: cluster.job(job_name), what="the sft Job")
    assert cluster.posts("jobs") == [job_name]  # curate and select were skipped: no pods for them
    await cluster.eventually(lambda: cluster.step("curate").get("reason") == "AlreadySucceeded", what="curate skipped in the status")

    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == ("Indexed", 3, 3, 0)
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == job_name
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}
    assert env["PET_NNODES"] == "3" and env["PET_NPROC_PER_NODE"] == "2" and env["PET_MASTER_PORT"] == "29500"
    assert env["PET_MASTER_ADDR"] == f"{job_name}-0.{job_name}"
    assert env["PET_NODE_RANK"] == {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]

    service = cluster.kmock.objects["v1/services", "ns1", job_name]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"infialign.dev/run": "r1", "infialign.dev/stage": "sft-phase1", "infialign.dev/attempt": "1"}
    assert service["metadata"]["ownerReferences"][0]["uid"] == cluster.run()["metadata"]["uid"]

    # two of three pods running is not running: the group waits for its last member
    await cluster.run_pods(job_name)
    await cluster.eventually(lambda: not cluster.step("sft-phase1").get("waiting"), what="all 3 pods running")
    await cluster.complete(job_name)
    await cluster.eventually(lambda: cluster.job("r1-sft-phase2-a1"), what="phase 2 Job")
    assert cluster.posts("services") == [job_name, "r1-sft-phase2-a1"]


async def test_suspend_stops_the_step_and_resume_starts_a_new_attempt(operator: Any, cluster: Any, artifacts: Any, make_run: Any) -> None:
    await cluster.create_run(make_run().dict())
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="curate Job")
    await cluster.run_pods("r1-curate-a1")
    artifacts.beat("curate", done=1, total=10)
    await cluster.eventually(lambda: cluster.step("curate").get("progress"), what="curate running")

    await cluster.patch_run("r1", {"spec": {"suspend": True}})
    await cluster.eventually(lambda: cluster.status().get("phase") == "Suspended", what="Suspended")
    assert cluster.job("r1-curate-a1") is None  # stopped: the Job was deleted
    assert [r.params.get("propagationPolicy") for r in cluster.operator_requests("DELETE")] == ["Background"]
    step = cluster.step("curate")
    assert (step["phase"], step["reason"], step["restarts"]) == ("Pending", "SuspendedBySpec", {"infra": 0, "app": 0, "hang": 0, "disk": 0})
    conditions = {c["type"]: (c["status"], c["reason"]) for c in cluster.status()["conditions"]}
    assert conditions["Suspended"] == ("True", "SuspendedBySpec")
    assert cluster.status()["observedGeneration"] == 2

    await cluster.patch_run("r1", {"spec": {"suspend": False}})
    await cluster.eventually(lambda: cluster.job("r1-curate-a2"), what="a new attempt after resume")
    await cluster.eventually(lambda: cluster.step("curate").get("attempt") == 2, what="attempt 2 in the status")
    status = cluster.status()
    assert status["phase"] == "Running" and status["restarts"] == 0  # a suspend is not a failure
    assert {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}["Suspended"] == ("False", "Resumed")


async def test_kueue_job_is_created_suspended_and_never_unsuspended_by_the_operator(
    operator: Any, cluster: Any, clock: Any, make_run: Any
) -> None:
    doc = make_run().stage("curate", resources={"queueName": "team-a"}).policy(startupTimeoutSeconds=10).dict()
    await cluster.create_run(doc)
    job = await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="curate Job")
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    await cluster.eventually(lambda: (cluster.step("curate").get("waiting") or {}).get("queued"), what="queued")
    assert cluster.step("curate")["waiting"]["reason"] == "Queued"

    clock.advance(60)  # long in the queue: not a startup failure
    ticks = operator.reconciler.reconciles
    await cluster.eventually(lambda: operator.reconciler.reconciles > ticks + 3, what="a few more reconciles")
    assert cluster.step("curate")["phase"] == "Running" and cluster.status()["phase"] == "Running"
    assert not [r for r in cluster.operator_requests("PATCH") if "/jobs/" in str(r.url)]  # never touched the Job

    await cluster.admit("r1-curate-a1")  # Kueue admits the workload
    await cluster.run_pods("r1-curate-a1")
    await cluster.eventually(lambda: not cluster.step("curate").get("waiting"), what="running after admission")
    assert cluster.posts("jobs") == ["r1-curate-a1"]


async def test_invalid_spec_fails_with_accepted_false_and_a_fixed_spec_starts(operator: Any, cluster: Any, make_run: Any) -> None:
    doc = make_run().disable("select").dict()  # sft needs select's output or an explicit dataUri
    await cluster.create_run(doc)
    await cluster.eventually(lambda: cluster.status().get("phase") == "Failed", what="Failed")
    status = cluster.status()
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Accepted"]["status"] == "False" and conditions["Accepted"]["reason"] == "InvalidSpec"
    assert "spec.stages.sft.phases[0].dataUri" in conditions["Accepted"]["message"]
    assert conditions["Failed"]["status"] == "True"
    assert cluster.jobs() == []

    await cluster.patch_run("r1", {"spec": {"stages": {"select": {"enabled": True}}}})
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="curate Job after the fix")
    await cluster.eventually(lambda: cluster.status().get("phase") == "Running", what="Running after the fix")
    status = cluster.status()
    assert status["phase"] == "Running" and status["observedGeneration"] == 2
    assert {c["type"]: c["status"] for c in status["conditions"]}["Accepted"] == "True"


async def test_a_finished_run_ignores_later_spec_edits(operator: Any, cluster: Any, artifacts: Any, make_run: Any) -> None:
    from infialign.operator.artifacts import Success

    for step in ("curate", "select", "sft-phase1", "sft-phase2"):
        artifacts.done[step] = Success()
    await cluster.create_run(make_run().dict())
    await cluster.eventually(lambda: cluster.status().get("phase") == "Succeeded", what="Succeeded without a pod")
    assert cluster.jobs() == []
    patches = len(cluster.operator_requests("PATCH"))
    ticks = operator.reconciler.reconciles
    await cluster.patch_run("r1", {"spec": {"stages": {"select": {"enabled": False}}}})  # now invalid: sft lacks data
    await cluster.eventually(lambda: operator.reconciler.reconciles > ticks, what="the update handled")
    assert cluster.status()["phase"] == "Succeeded" and len(cluster.operator_requests("PATCH")) == patches


async def test_sharded_eval_runs_an_indexed_job_and_its_results_reach_the_status(operator: Any, cluster: Any, artifacts: Any, make_run: Any) -> None:
    from infialign.operator.artifacts import Success
    from infialign.pipeline.api import EvalResult

    for step in STEPS:
        artifacts.done[step] = Success()
    doc = make_run().enable("eval").stage("eval", shards=2, models=["base", "sft"]).set("spec.benchmarks", [{"name": "bench", "uri": "builtin://reasoning-bench"}]).dict()
    await cluster.create_run(doc)
    job_name = "r1-eval-a1"
    job = await cluster.eventually(lambda: cluster.job(job_name), what="the eval Job")
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["INFIALIGN_SHARD_COUNT"] == "2"
    assert env["INFIALIGN_SHARD_INDEX"] == {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}

    await cluster.run_pods(job_name)
    results = [
        EvalResult(model="base", benchmark="bench", metric="avg@8", value=0.125, samples=8, questions=200),
        EvalResult(model="sft-phase2", benchmark="bench", metric="avg@8", value=0.5, samples=8, questions=200, subset="tier1"),
    ]
    artifacts.successes["eval"] = Success(results=results)
    await cluster.complete(job_name)
    await cluster.eventually(lambda: cluster.status().get("phase") == "Succeeded", what="run Succeeded")
    assert cluster.status()["results"] == [
        {"model": "base", "benchmark": "bench", "metric": "avg@8", "value": 0.125, "samples": 8, "questions": 200},
        {"model": "sft-phase2", "benchmark": "bench", "metric": "avg@8", "value": 0.5, "samples": 8, "questions": 200, "subset": "tier1"},
    ]


async def test_storage_on_the_pods_own_disk_is_rejected_naming_the_field(operator: Any, cluster: Any, make_run: Any) -> None:
    # the local executor's default: on a cluster each pod would write to its own container filesystem
    await cluster.create_run(make_run().set("spec.storage", {"local": {"path": "artifacts"}}).dict())
    await cluster.eventually(lambda: cluster.status().get("phase") == "Failed", what="the run rejected")
    status = cluster.status()
    accepted = next(c for c in status["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
    assert "spec.storage.local.pvcName" in status["message"] and "s3" in status["message"]
    assert cluster.posts("jobs") == []


async def test_deleting_an_unfinished_run_marks_its_mlflow_parent_run_killed(
    operator: Any, cluster: Any, artifacts: Any, tracker: Any, make_run: Any
) -> None:
    await cluster.create_run(_doc(make_run))
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="curate Job")
    await cluster.eventually(lambda: (cluster.status().get("mlflow") or {}).get("parentRunId") == "parent-r1", what="the parent run")
    await cluster.delete_run("r1")
    await cluster.eventually(lambda: tracker.finished == ["KILLED"], what="the parent run marked KILLED")
    await cluster.eventually(lambda: operator.reconciler.snapshot()["runs"] == 0, what="the operator forgot the run")
    assert tracker.finished == ["KILLED"]  # once, though both the event and the delete handler saw the deletion


async def test_deleting_a_finished_run_leaves_its_mlflow_parent_run_as_it_ended(
    operator: Any, cluster: Any, artifacts: Any, tracker: Any, make_run: Any
) -> None:
    from infialign.operator.artifacts import Success

    for step in STEPS:
        artifacts.done[step] = Success()
    await cluster.create_run(_doc(make_run))
    await cluster.eventually(lambda: cluster.status().get("phase") == "Succeeded", what="Succeeded")
    await cluster.eventually(lambda: tracker.finished == ["FINISHED"], what="the parent run finished")
    await cluster.delete_run("r1")
    await cluster.eventually(lambda: operator.reconciler.snapshot()["runs"] == 0, what="the operator forgot the run")
    assert tracker.finished == ["FINISHED"]
