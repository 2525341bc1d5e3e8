"""Pods that only wait are not failures: queueing, autoscaling and quota waits are reported, not fatal.

Only a start error that cannot heal (an image that does not exist, a missing Secret) fails the run, once
it has lasted `startupTimeoutSeconds`; plain waiting fails it only past an explicit
`waitingTimeoutSeconds`. Timeouts are driven by the operator's injected clock.
"""

from __future__ import annotations

from typing import Any


async def _ticks(operator: Any, cluster: Any, n: int = 6) -> None:
    start = operator.reconciler.reconciles
    await cluster.eventually(lambda: operator.reconciler.reconciles >= start + n, what=f"{n} more reconciles")


def _condition(cluster: Any, ctype: str) -> dict[str, Any]:
    return next((c for c in cluster.status().get("conditions", []) if c["type"] == ctype), {})


async def test_unschedulable_pods_wait_past_the_startup_timeout(operator: Any, cluster: Any, clock: Any, make_run: Any) -> None:
    await cluster.create_run(make_run().policy(startupTimeoutSeconds=10).dict())
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="the curate Job")
    await cluster.unschedulable("r1-curate-a1")
    await cluster.eventually(lambda: (cluster.step("curate").get("waiting") or {}).get("reason") == "Unschedulable", what="waiting")

    clock.advance(7200)  # the cluster autoscaler takes its time
    await _ticks(operator, cluster)
    assert cluster.status()["phase"] == "Running" and cluster.step("curate").get("lastFailure") is None
    waiting = _condition(cluster, "Waiting")
    assert (waiting.get("status"), waiting.get("reason")) == ("True", "Unschedulable"), cluster.status()
    assert "Insufficient nvidia.com/gpu" in waiting["message"]
    assert _condition(cluster, "Stalled").get("status") != "True"  # waiting is not a stall

    await cluster.run_pods("r1-curate-a1")  # a node joined
    await cluster.eventually(lambda: _condition(cluster, "Waiting").get("status") == "False", what="Waiting=False once pods run")
    assert cluster.posts("jobs") == ["r1-curate-a1"]


async def test_a_job_without_pods_under_a_quota_waits(operator: Any, cluster: Any, clock: Any, make_run: Any) -> None:
    await cluster.create_run(make_run().policy(startupTimeoutSeconds=10).dict())
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="the curate Job")
    clock.advance(3600)  # no pods at all (a ResourceQuota refuses them): past the startup timeout and the create grace
    await _ticks(operator, cluster)
    assert cluster.status()["phase"] == "Running" and cluster.step("curate").get("lastFailure") is None
    assert (cluster.step("curate").get("waiting") or {}).get("reason") == "PodsPending"


async def test_waiting_fails_the_run_only_past_the_explicit_deadline(operator: Any, cluster: Any, clock: Any, make_run: Any) -> None:
    await cluster.create_run(make_run().policy(startupTimeoutSeconds=10, waitingTimeoutSeconds=3600).dict())
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="the curate Job")
    await cluster.unschedulable("r1-curate-a1")
    await cluster.eventually(lambda: cluster.step("curate").get("waiting"), what="waiting")
    clock.advance(1800)
    await _ticks(operator, cluster)
    assert cluster.status()["phase"] == "Running"

    clock.advance(1801)
    await cluster.eventually(lambda: cluster.status().get("phase") == "Failed", what="run Failed past waitingTimeoutSeconds")
    failure = cluster.step("curate")["lastFailure"]
    assert (failure["class"], failure["reason"]) == ("Permanent", "WaitingTimeout")
    assert "Unschedulable" in failure["message"] and "waitingTimeoutSeconds=3600" in failure["message"]
    assert cluster.job("r1-curate-a1") is None


async def test_an_image_pull_that_can_heal_waits(operator: Any, cluster: Any, clock: Any, make_run: Any) -> None:
    await cluster.create_run(make_run().policy(startupTimeoutSeconds=10).dict())
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="the curate Job")
    await cluster.pull_failing("r1-curate-a1", 'Back-off pulling image "ghcr.io/infialign/pipeline:0.1.0": 429 Too Many Requests')
    await cluster.eventually(lambda: cluster.step("curate").get("waiting"), what="waiting")
    clock.advance(600)
    await _ticks(operator, cluster)
    assert cluster.status()["phase"] == "Running", "a rate-limited registry failed the run"
    assert (cluster.step("curate")["waiting"]["reason"], cluster.step("curate")["waiting"].get("permanent", False)) == (
        "ImagePullBackOff",
        False,
    )
