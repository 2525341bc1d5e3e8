"""`status.estimate` and the parent run's `estimate.*` params, through a real Kopf operator against kmock."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from infialign.operator.config import OperatorConfig

from .conftest import TEST_CONFIG


@pytest.fixture
def operator_config() -> OperatorConfig:
    return dataclasses.replace(TEST_CONFIG, estimate_gpu="a100")


def _doc(make_run: Any) -> dict[str, Any]:
    # targetSize makes the SFT rows known from the spec alone: the operator reads no sources
    return make_run().set("spec.tracking", {"uri": "http://mlflow.test"}).stage("select", targetSize=1000).dict()


async def test_the_estimate_is_in_the_status_and_the_parent_run_for_each_accepted_generation(
    operator: Any, cluster: Any, tracker: Any, make_run: Any
) -> None:
    await cluster.create_run(_doc(make_run))
    await cluster.eventually(lambda: (cluster.status().get("estimate") or {}).get("observedGeneration") == 1, what="status.estimate")
    est = cluster.status()["estimate"]
    assert est["gpu"] == "a100" and est["mfu"] == 0.3
    assert [s["step"] for s in est["steps"]] == [s["name"] for s in cluster.status()["steps"] if s["phase"] != "Skipped"]
    by_step = {s["step"]: s for s in est["steps"]}
    assert by_step["sft-phase1"]["gpuHours"] > 0 and by_step["sft-phase1"]["fits"] is True
    assert "gpuHours" not in by_step["curate"]  # a CPU step: unknown, not 0
    assert est["complete"] is True and est["gpuHours"] == pytest.approx(by_step["sft-phase1"]["gpuHours"] + by_step["sft-phase2"]["gpuHours"], rel=0.02)

    # the parent run exists once the first step starts; the estimate is logged on it once
    await cluster.eventually(lambda: tracker.params, what="estimate params on the parent run")
    parent, params = tracker.params[0]
    assert parent == "parent-r1"
    assert params["estimate.gpu"] == "a100" and params["estimate.generation"] == "1" and params["estimate.complete"] == "true"
    assert float(params["estimate.sft-phase1.gpu_hours"]) == by_step["sft-phase1"]["gpuHours"]
    assert params["estimate.curate.gpu_hours"] == "unknown"

    # an accepted edit gets its own estimate; twice the epochs, twice the GPU-hours of that phase
    await cluster.patch_run("r1", {"spec": {"stages": {"sft": {"phases": [{"name": "main", "fraction": 1.0, "epochs": 6}]}}}})
    await cluster.eventually(lambda: cluster.status()["estimate"].get("observedGeneration") == 2, what="the estimate of generation 2")
    await cluster.eventually(lambda: any(p["estimate.generation"] == "2" for _, p in tracker.params), what="generation 2 logged")
    assert [p["estimate.generation"] for _, p in tracker.params] == ["1", "2"]  # once per generation, however many reconciles


async def test_a_model_of_unknown_size_leaves_a_message_and_the_run_goes_on(operator: Any, cluster: Any, make_run: Any) -> None:
    doc = make_run().set("spec.model", {"uri": "s3://models/mystery"}).dict()
    await cluster.create_run(doc)
    await cluster.eventually(lambda: cluster.job("r1-curate-a1"), what="curate starts")
    await cluster.eventually(lambda: "estimate" in cluster.status(), what="status.estimate")
    est = cluster.status()["estimate"]
    assert "gpuHours" not in est and "spec.model.uri" in est["message"] and "--params" in est["message"]
