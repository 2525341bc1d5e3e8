"""The hang detector, with the operator reading heartbeats over S3 from a real endpoint on 127.0.0.1.

No fake reader and no shared folder: the operator's own `StoreReader` reads `progress.json` from moto's
S3 server, where the test (playing the stage) writes it with the stage's credentials. A stall is
judged only from a heartbeat of the current attempt (or admission) that the operator has read.
"""

from __future__ import annotations

from typing import Any

import pytest
from infialign.operator.artifacts import StoreReader


@pytest.fixture
def artifacts() -> StoreReader:
    return StoreReader()  # the real reader: file:// and s3:// through the shared runtime


def _doc(make_run: Any, s3_store: Any, **policy: Any) -> dict[str, Any]:
    return make_run().set("spec.storage", s3_store.storage()).policy(backoffSeconds=0, **policy).dict()


async def _ticks(operator: Any, cluster: Any, n: int = 6) -> None:
    """Let the operator reconcile the run a few more times (its tick is 0.2 s)."""
    start = operator.reconciler.reconciles
    await cluster.eventually(lambda: operator.reconciler.reconciles >= start + n, what=f"{n} more reconciles")


def _condition(cluster: Any, ctype: str) -> dict[str, Any]:
    return next((c for c in cluster.status().get("conditions", []) if c["type"] == ctype), {})


async def test_an_unreadable_store_is_reported_and_never_taken_for_a_hang(
    operator: Any, cluster: Any, clock: Any, s3_store: Any, make_run: Any
) -> None:
    s3_store.deny_operator()  # the operator's credential cannot read the run's bucket; the stage's can write
    await cluster.create_run(_doc(make_run, s3_store, stallTimeoutSeconds=60))
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="the curate Job")
    await cluster.run_pods("r1-curate-a1")
    s3_store.beat("curate", time=clock(), done=1, total=10)  # healthy: the stage writes its heartbeat
    await _ticks(operator, cluster)

    clock.advance(3600)  # far past stallTimeoutSeconds
    await _ticks(operator, cluster)
    assert cluster.job("r1-curate-a2") is None and cluster.posts("jobs") == ["r1-curate-a1"], "a healthy stage was killed"
    step = cluster.step("curate")
    assert (step["phase"], step["attempt"], step.get("lastFailure")) == ("Running", 1, None)
    unavailable = _condition(cluster, "HeartbeatUnavailable")
    assert (unavailable.get("status"), unavailable.get("reason")) == ("True", "StoreUnreadable"), cluster.status()
    assert "progress.json" in unavailable["message"] and "Forbidden" in unavailable["message"]
    assert "Forbidden" in step["heartbeatError"]


async def test_no_heartbeat_yet_is_not_a_hang_but_a_read_heartbeat_that_stops_is(
    operator: Any, cluster: Any, clock: Any, s3_store: Any, make_run: Any
) -> None:
    await cluster.create_run(_doc(make_run, s3_store, stallTimeoutSeconds=60))
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="the curate Job")
    await cluster.run_pods("r1-curate-a1")
    await _ticks(operator, cluster)
    clock.advance(600)  # the store is readable but holds no heartbeat of this attempt: nothing to judge
    await _ticks(operator, cluster)
    assert cluster.job("r1-curate-a2") is None
    assert (_condition(cluster, "HeartbeatUnavailable").get("reason"), cluster.step("curate").get("progress")) == ("NoHeartbeatYet", None)

    s3_store.beat("curate", time=clock(), done=4, total=10)
    await cluster.eventually(lambda: (cluster.step("curate").get("progress") or {}).get("step") == 4, what="the heartbeat read over S3")
    assert _condition(cluster, "HeartbeatUnavailable")["status"] == "False"

    clock.advance(61)  # now the stage is silent after a heartbeat it did write: a hang
    await cluster.eventually(lambda: cluster.job("r1-curate-a2"), what="a new attempt after the hang")
    failure = (await cluster.eventually(lambda: cluster.step("curate").get("lastFailure"), what="the hang recorded"))
    assert (failure["class"], failure["reason"], failure["attempt"]) == ("Hang", "HeartbeatTimeout", 1)


async def test_a_preempted_attempt_is_not_killed_as_a_hang_when_kueue_admits_it_again(
    operator: Any, cluster: Any, clock: Any, s3_store: Any, make_run: Any
) -> None:
    doc = _doc(make_run, s3_store, stallTimeoutSeconds=600)
    doc["spec"]["stages"]["curate"] = {"resources": {"queueName": "team-a"}}
    await cluster.create_run(doc)
    job = "r1-curate-a1"
    await cluster.eventually(lambda: cluster.job(job), what="the curate Job")
    assert cluster.job(job)["spec"]["suspend"] is True
    await cluster.eventually(lambda: (cluster.step("curate").get("waiting") or {}).get("queued"), what="queued")
    await cluster.admit(job)
    await cluster.run_pods(job)
    # the stage's first heartbeat comes after its pod started, which the operator sees first
    await cluster.eventually(lambda: not cluster.step("curate").get("waiting"), what="running after admission")
    s3_store.beat("curate", time=clock(), done=3, total=10)
    await cluster.eventually(lambda: (cluster.step("curate").get("progress") or {}).get("step") == 3, what="the first heartbeat")

    await cluster.preempt(job)  # Kueue evicts the workload for a higher-priority one
    await cluster.eventually(lambda: (cluster.step("curate").get("waiting") or {}).get("queued"), what="queued again")
    clock.advance(4 * 3600)  # hours in the queue; progress.json still holds the heartbeat from before
    await _ticks(operator, cluster)
    await cluster.admit(job)
    await cluster.run_pods(job)
    await cluster.eventually(lambda: not cluster.step("curate").get("waiting"), what="running after re-admission")
    await _ticks(operator, cluster)
    assert cluster.job("r1-curate-a2") is None and cluster.posts("jobs") == [job], "the re-admitted attempt was killed"
    assert cluster.step("curate").get("progress") is None  # the old admission's heartbeat is forgotten

    s3_store.beat("curate", time=clock(), done=4, total=10)  # resumed from its checkpoint
    await cluster.eventually(lambda: (cluster.step("curate").get("progress") or {}).get("step") == 4, what="the new heartbeat")
    await cluster.complete(job)
    await cluster.eventually(lambda: cluster.step("curate").get("phase") == "Succeeded", what="curate Succeeded")
    step = cluster.step("curate")
    assert (step["attempt"], step["restarts"]) == (1, {"infra": 0, "app": 0, "hang": 0, "disk": 0})
