"""Failures, as the cluster shows them, classified and handed to the planner: infra, app, fatal, hang, startup.

Timeouts are driven by the operator's injected clock (`clock.advance`), never by sleeping through them.
"""

from __future__ import annotations

from typing import Any


async def _running(cluster: Any, artifacts: Any, job: str, step: str = "curate") -> None:
    """The attempt's pods run and the stage wrote its first heartbeat (the entrypoint does so at start)."""
    await cluster.eventually(lambda: cluster.job(job), what=f"the Job {job}")
    await cluster.run_pods(job)
    await cluster.eventually(lambda: cluster.step(step).get("attempt") == int(job.rsplit("-a", 1)[1]), what=f"{job} in the status")
    artifacts.beat(step, done=0, total=10)
    await cluster.eventually(lambda: cluster.step(step).get("progress") and not cluster.step(step).get("waiting"), what=f"{job} running")


async def test_disruption_restarts_without_using_the_budget(operator: Any, cluster: Any, artifacts: Any, make_run: Any) -> None:
    await cluster.create_run(make_run().policy(maxRestartsPerStage=0).dict())  # no budget at all: only infra may retry
    await _running(cluster, artifacts, "r1-curate-a1")
    await cluster.disrupt("r1-curate-a1")

    await cluster.eventually(lambda: cluster.job("r1-curate-a2"), what="a new attempt after the disruption")
    await cluster.eventually(
        lambda: cluster.step("curate").get("attempt") == 2, what="attempt 2 in the status"
    )  # status lands after the Job
    step = cluster.step("curate")
    assert step["restarts"] == {"infra": 1, "app": 0, "hang": 0, "disk": 0}
    failure = step["lastFailure"]
    assert (failure["class"], failure["reason"], failure["attempt"]) == ("Infrastructure", "Disruption", 1)
    assert "PreemptionByScheduler" in failure["message"] and failure["nodes"] == ["node-0"]
    assert cluster.status()["phase"] == "Running" and cluster.status()["restarts"] == 1


async def test_app_failures_retry_up_to_the_limit_then_fail(operator: Any, cluster: Any, artifacts: Any, make_run: Any) -> None:
    await cluster.create_run(make_run().policy(maxRestartsPerStage=2, backoffSeconds=0).dict())
    for attempt in (1, 2, 3):
        job = f"r1-curate-a{attempt}"
        await _running(cluster, artifacts, job)
        await cluster.fail(job, exit_code=1, error=f"ValueError: bad shard {attempt}")
        if attempt < 3:
            await cluster.eventually(lambda attempt=attempt: cluster.job(f"r1-curate-a{attempt + 1}"), what=f"attempt {attempt + 1}")

    await cluster.eventually(lambda: cluster.status().get("phase") == "Failed", what="run Failed")
    status = cluster.status()
    step = cluster.step("curate")
    assert step["phase"] == "Failed" and step["reason"] == "RetriesExhausted"
    assert step["restarts"] == {"infra": 0, "app": 2, "hang": 0, "disk": 0}
    assert step["lastFailure"]["exitCode"] == 1 and step["lastFailure"]["class"] == "Application"
    assert "ValueError: bad shard 3" in step["lastFailure"]["message"]  # the tail of the termination message
    assert "failed 3 times" in status["message"]
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Failed"] == "RetriesExhausted"
    assert cluster.posts("jobs") == ["r1-curate-a1", "r1-curate-a2", "r1-curate-a3"]
    assert operator.current.metrics.registry.get_sample_value("infialign_restarts_total", {"failure_class": "Application"}) == 2.0


async def test_backoff_waits_for_retry_after(operator: Any, cluster: Any, artifacts: Any, clock: Any, make_run: Any) -> None:
    await cluster.create_run(make_run().policy(backoffSeconds=600, maxBackoffSeconds=900).dict())
    await _running(cluster, artifacts, "r1-curate-a1")
    await cluster.fail("r1-curate-a1")
    await cluster.eventually(lambda: cluster.step("curate").get("phase") == "Backoff", what="Backoff")
    ticks = operator.reconciler.reconciles
    await cluster.eventually(lambda: operator.reconciler.reconciles > ticks + 3, what="a few ticks")
    assert cluster.job("r1-curate-a2") is None  # still backing off
    conditions = {c["type"]: c for c in cluster.status()["conditions"]}
    assert conditions["Restarting"]["status"] == "True"

    clock.advance(601)
    await cluster.eventually(lambda: cluster.job("r1-curate-a2"), what="the retry after the backoff")
    assert cluster.step("curate")["restarts"]["app"] == 1


async def test_fatal_exit_code_fails_at_once(operator: Any, cluster: Any, artifacts: Any, make_run: Any) -> None:
    await cluster.create_run(make_run().policy(maxRestartsPerStage=5).dict())
    await _running(cluster, artifacts, "r1-curate-a1")
    await cluster.fail("r1-curate-a1", exit_code=2, error="StageConfigError: spec.sources[0].uri: unknown preset")
    await cluster.eventually(lambda: cluster.status().get("phase") == "Failed", what="run Failed")
    step = cluster.step("curate")
    assert (step["lastFailure"]["class"], step["lastFailure"]["reason"]) == ("Permanent", "FatalExitCode")
    assert step["restarts"]["app"] == 0 and cluster.posts("jobs") == ["r1-curate-a1"]
    assert "unknown preset" in cluster.status()["message"]


async def test_stalled_heartbeat_kills_and_restarts_the_attempt(
    operator: Any, cluster: Any, clock: Any, artifacts: Any, make_run: Any
) -> None:
    await cluster.create_run(make_run().policy(stallTimeoutSeconds=60, backoffSeconds=0).dict())
    await _running(cluster, artifacts, "r1-curate-a1")
    artifacts.beat("curate", done=3, total=10)
    await cluster.eventually(lambda: (cluster.step("curate").get("progress") or {}).get("step") == 3, what="a heartbeat")

    clock.advance(61)  # no heartbeat for longer than stallTimeoutSeconds: a hang
    await cluster.eventually(lambda: cluster.job("r1-curate-a2"), what="a new attempt after the hang")
    await cluster.eventually(lambda: cluster.step("curate").get("attempt") == 2, what="attempt 2 in the status")
    assert cluster.job("r1-curate-a1") is None  # killed
    step = cluster.step("curate")
    assert step["restarts"] == {"infra": 0, "app": 0, "hang": 1, "disk": 0}
    assert (step["lastFailure"]["class"], step["lastFailure"]["reason"]) == ("Hang", "HeartbeatTimeout")
    assert step["lastFailure"]["nodes"] == ["node-0"]  # where the hung pod ran
    # the new attempt must not inherit the old heartbeat: it is judged from its own start
    assert (cluster.step("curate").get("progress") or {}).get("step") is None


async def test_image_pull_backoff_fails_after_the_startup_timeout_with_the_kubelet_message(
    operator: Any, cluster: Any, artifacts: Any, clock: Any, make_run: Any
) -> None:
    await cluster.create_run(make_run().policy(startupTimeoutSeconds=10).dict())
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="curate Job")
    kubelet = 'Back-off pulling image "ghcr.io/infialign/pipeline:nope": not found'
    await cluster.pull_failing("r1-curate-a1", kubelet)
    await cluster.eventually(lambda: (cluster.step("curate").get("waiting") or {}).get("reason") == "ImagePullBackOff", what="waiting")
    waiting = {c["type"]: c for c in cluster.status()["conditions"]}["Waiting"]
    assert (waiting["status"], waiting["reason"], waiting["message"]) == ("True", "ImagePullBackOff", kubelet)
    assert cluster.step("curate")["waiting"]["permanent"] is True  # the image does not exist: waiting cannot fix it

    clock.advance(11)
    await cluster.eventually(lambda: cluster.status().get("phase") == "Failed", what="run Failed")
    step = cluster.step("curate")
    assert (step["lastFailure"]["class"], step["lastFailure"]["reason"]) == ("Permanent", "ImagePullFailed")
    assert kubelet in step["lastFailure"]["message"] and kubelet in cluster.status()["message"]
    assert cluster.job("r1-curate-a1") is None  # the stuck attempt was stopped


async def test_a_run_past_its_deadline_is_stopped_and_fails(operator: Any, cluster: Any, artifacts: Any, clock: Any, make_run: Any) -> None:
    await cluster.create_run(make_run().set("spec.activeDeadlineSeconds", 3600).dict())
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="curate Job")
    await cluster.run_pods("r1-curate-a1")
    artifacts.beat("curate", done=1, total=10)
    await cluster.eventually(lambda: cluster.step("curate").get("progress"), what="curate running")
    clock.advance(3601)
    await cluster.eventually(lambda: cluster.status().get("phase") == "Failed", what="the run failed at its deadline")
    assert cluster.job("r1-curate-a1") is None  # the running step was stopped
    step = cluster.step("curate")
    assert (step["phase"], step["reason"], step["lastFailure"]["class"]) == ("Failed", "DeadlineExceeded", "Permanent")
    failed = next(c for c in cluster.status()["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DeadlineExceeded" and "activeDeadlineSeconds=3600" in failed["message"]
    assert cluster.posts("jobs") == ["r1-curate-a1"]  # no retry
