"""Spec edits (issue 13 item 9): every `infialign validate` rule at admission; an invalid edit is rejected,
the run goes on with the last accepted spec, and nothing running is deleted, also across an operator restart."""

from __future__ import annotations

from typing import Any

from infialign.operator import admission
from infialign.pipeline import validation


def test_judge_keeps_the_accepted_spec_for_a_rejected_edit_and_holds_model_and_storage(make_run: Any) -> None:
    accepted = make_run().set("spec.storage", {"s3": {"bucket": "runs"}}).spec()
    edited = make_run().set("spec.storage", {"s3": {"bucket": "other"}}).spec()
    problem = validation.Problem("spec.stages.sft.phases[0].dataUri", "no data")
    # first spec: valid is accepted, invalid has nothing to fall back on
    assert admission.judge(accepted, [], None) == admission.Verdict(spec=accepted)
    assert admission.judge(accepted, [problem], None) == admission.Verdict(spec=None, problems=[problem])
    # a later edit: invalid keeps the accepted spec; a warning is no reason to reject
    assert admission.judge(edited, [problem], accepted) == admission.Verdict(
        spec=accepted, problems=[problem, *admission.immutability_problems(accepted, edited)], rejected_edit=True
    )
    assert admission.judge(accepted, [validation.Problem("x", "w", "warning")], accepted) == admission.Verdict(spec=accepted)
    (immutable,) = admission.judge(edited, [], accepted).problems
    assert immutable.path == "spec.storage" and "create a new AlignmentRun" in immutable.message
    # a spec that does not parse at all still names a path
    assert admission.judge(None, [], accepted).problems[0].path == "spec"


def _conditions(cluster: Any) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in cluster.status().get("conditions", [])}


def _events(cluster: Any) -> list[Any]:
    return [o for (r, ns, n), o in cluster.kmock.objects.items() if r.plural == "events" and not o.deleted]


async def _curate_running(cluster: Any, artifacts: Any, make_run: Any) -> None:
    await cluster.create_run(make_run().dict())
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="the curate Job")
    await cluster.run_pods("r1-curate-a1")
    artifacts.beat("curate", done=1, total=10)
    await cluster.eventually(lambda: cluster.step("curate").get("progress"), what="curate running")
    # the accepted spec is kept on the run for a restarted operator
    await cluster.eventually(lambda: "infialign.dev/accepted-spec" in (cluster.run()["metadata"].get("annotations") or {}), what="the annotation")


async def test_an_invalid_edit_is_rejected_and_the_run_goes_on_with_the_accepted_spec(
    operator: Any, cluster: Any, artifacts: Any, make_run: Any
) -> None:
    await _curate_running(cluster, artifacts, make_run)
    # semantically invalid: sft would have no data (select disabled, no dataUri)
    await cluster.patch_run("r1", {"spec": {"stages": {"select": {"enabled": False}}}})
    await cluster.eventually(lambda: _conditions(cluster).get("SpecRejected", {}).get("status") == "True", what="SpecRejected")
    rejected = _conditions(cluster)["SpecRejected"]
    assert rejected["reason"] == "InvalidSpec" and rejected["observedGeneration"] == 2
    assert "spec.stages.sft.phases[0].dataUri" in rejected["message"] and "enable select or set dataUri" in rejected["message"]
    status = cluster.status()
    assert status["phase"] == "Running" and status["observedGeneration"] == 1  # generation 2 was not acted on
    assert cluster.job("r1-curate-a1") is not None and not cluster.operator_requests("DELETE")  # nothing running was stopped
    await cluster.eventually(
        lambda: any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" and "dataUri" in e["message"] for e in _events(cluster)),
        what="a Warning Event naming the field",
    )

    # the run goes on as accepted: select (disabled by the rejected edit) still comes next
    artifacts.succeed("curate", uri="file:///a/curate")
    await cluster.complete("r1-curate-a1")
    await cluster.eventually(lambda: cluster.job("r1-select-a1"), what="select started from the accepted spec")

    # fixing the edit accepts it: the condition clears
    await cluster.patch_run("r1", {"spec": {"stages": {"select": {"enabled": True}}}})
    await cluster.eventually(lambda: _conditions(cluster)["SpecRejected"]["status"] == "False", what="SpecRejected cleared")
    assert _conditions(cluster)["SpecRejected"]["reason"] == "EditAccepted" and cluster.status()["observedGeneration"] == 3


async def test_storage_and_model_are_immutable(
    operator: Any, cluster: Any, artifacts: Any, make_run: Any
) -> None:
    await _curate_running(cluster, artifacts, make_run)
    await cluster.patch_run("r1", {"spec": {"storage": {"s3": {"bucket": "elsewhere"}}}})
    await cluster.eventually(lambda: _conditions(cluster).get("SpecRejected", {}).get("status") == "True", what="SpecRejected")
    assert "spec.storage: is immutable" in _conditions(cluster)["SpecRejected"]["message"]
    await cluster.patch_run("r1", {"spec": {"storage": {"s3": {"bucket": "infialign"}}, "model": {"uri": "builtin://tiny-teacher"}}})
    await cluster.eventually(lambda: "spec.model: is immutable" in _conditions(cluster)["SpecRejected"]["message"], what="model immutable")
    assert "spec.storage" not in _conditions(cluster)["SpecRejected"]["message"]  # the storage was restored
    assert cluster.status()["phase"] == "Running" and cluster.job("r1-curate-a1") is not None
    assert cluster.posts("jobs") == ["r1-curate-a1"]


async def test_a_rejected_edit_made_while_the_operator_was_down_stops_nothing(
    operator: Any, cluster: Any, artifacts: Any, make_run: Any
) -> None:
    await _curate_running(cluster, artifacts, make_run)
    await operator.stop()
    await cluster.patch_run("r1", {"spec": {"stages": {"select": {"enabled": False}}}})
    operator.start()  # a fresh process: it knows the accepted spec only from the run's annotation
    await cluster.eventually(lambda: _conditions(cluster).get("SpecRejected", {}).get("status") == "True", what="SpecRejected")
    assert cluster.status()["phase"] == "Running" and cluster.job("r1-curate-a1") is not None
    assert not cluster.operator_requests("DELETE")
    artifacts.succeed("curate", uri="file:///a/curate")
    await cluster.complete("r1-curate-a1")
    await cluster.eventually(lambda: cluster.job("r1-select-a1"), what="select started from the accepted spec")


async def test_a_new_run_whose_job_names_would_overflow_fails_before_any_job(operator: Any, cluster: Any, make_run: Any) -> None:
    # formerly skipped by the operator: the name only failed when the sft Job was created, hours into the run
    name = "r" * 38
    await cluster.create_run(make_run().name(name).stage("sft", phases=[{"name": "p" * 20}]).dict())
    await cluster.eventually(lambda: cluster.status(name).get("phase") == "Failed", what="the run rejected")
    accepted = next(c for c in cluster.status(name)["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
    assert "spec.stages.sft.phases[0].name: the Job name" in accepted["message"] and "would exceed 59 characters" in accepted["message"]
    assert cluster.posts("jobs") == []


async def test_an_edit_that_overflows_a_job_name_is_rejected(operator: Any, cluster: Any, artifacts: Any, make_run: Any) -> None:
    name = "r" * 38
    await cluster.create_run(make_run().name(name).dict())
    job = f"{name}-curate-a1"
    await cluster.eventually(lambda: cluster.job(job), what="the curate Job")
    await cluster.patch_run(name, {"spec": {"stages": {"sft": {"phases": [{"name": "p" * 20}]}}}})
    await cluster.eventually(
        lambda: any(c["type"] == "SpecRejected" and c["status"] == "True" for c in cluster.status(name).get("conditions", [])),
        what="SpecRejected",
    )
    rejected = next(c for c in cluster.status(name)["conditions"] if c["type"] == "SpecRejected")
    assert "spec.stages.sft.phases[0].name" in rejected["message"] and "shorten the run or phase name" in rejected["message"]
    assert cluster.status(name)["phase"] == "Running" and cluster.job(job) is not None
