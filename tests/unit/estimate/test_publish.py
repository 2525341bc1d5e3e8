"""`status.estimate` and the `estimate.*` MLflow params: the mapping from a `RunEstimate`, and when the operator recomputes and logs."""

from __future__ import annotations

import pytest

from infialign.operator import estimate as operator_estimate
from infialign.operator.config import OperatorConfig
from infialign.pipeline import planner
from infialign.pipeline.api import AlignmentRunStatus, RunEstimateStatus, crd
from infialign.pipeline.estimate import Options, estimate_run, publish

from .conftest import EXAMPLE_7B, example_spec



def _spec(edit=None):
    return example_spec(EXAMPLE_7B, edit)


def test_status_carries_to_status_and_the_generation() -> None:
    est = estimate_run(_spec(), options=Options(rows=1_000_000, price_per_gpu_hour=2.0))
    status = publish.to_status(est, 4)
    compact = est.to_status()
    assert status.observed_generation == 4 and status.gpu == "h100" and status.complete is True and status.message is None
    assert status.gpu_hours == compact["gpuHours"] and status.cost == compact["cost"]
    assert [(s.step, s.gpu_hours, s.fits) for s in status.steps or []] == [(s["step"], s["gpuHours"], s["fits"]) for s in compact["steps"]]


def test_unknown_figures_stay_empty_and_the_message_names_the_steps_and_the_flag() -> None:
    status = publish.for_spec(_spec(), 1)  # the sources are hf:// datasets: not read, no --rows
    assert status.complete is False
    distill = next(s for s in status.steps or [] if s.step == "distill")
    assert distill.gpu_hours is None and distill.wall_hours is None
    assert status.message is not None and "distill" in status.message and "--rows" in status.message


def test_small_figures_keep_three_significant_digits_rather_than_rounding_to_zero() -> None:
    est = estimate_run(_spec(lambda s: s.update(model={"uri": "builtin://tiny"})), options=Options(rows=1000))
    sft = next(s for s in publish.to_status(est, 1).steps or [] if s.step == "sft-phase1")
    assert sft.gpu_hours is not None and 0 < sft.gpu_hours < 0.01


def test_a_model_of_unknown_size_is_a_message_not_an_exception() -> None:
    status = publish.for_spec(_spec(lambda s: s["model"].update(uri="hf://someone/unknown-model")), 2, options=Options(gpu="a100"))
    assert status.gpu_hours is None and status.steps is None and status.gpu == "a100"
    assert status.message is not None and "spec.model.uri" in status.message and "--params" in status.message


def test_mlflow_params_are_flat_strings_with_unknown_for_empty_figures() -> None:
    status = RunEstimateStatus.model_validate({
        "observedGeneration": 3, "gpu": "h100", "mfu": 0.3, "gpuHours": 12.5, "complete": False,
        "steps": [{"step": "curate"}, {"step": "sft-phase1", "gpuHours": 12.5, "wallHours": 1.56, "fits": True}, {"step": "distill", "fits": False}],
        "message": "GPU-hours unknown for distill",
    })
    params = publish.mlflow_params(status)
    assert params["estimate.generation"] == "3" and params["estimate.gpu_hours"] == "12.5" and params["estimate.complete"] == "false"
    assert params["estimate.sft-phase1.gpu_hours"] == "12.5" and params["estimate.sft-phase1.fits"] == "true"
    assert params["estimate.distill.gpu_hours"] == publish.UNKNOWN and params["estimate.distill.fits"] == "false"
    assert "estimate.cost" not in params  # no price: not a zero cost
    assert all(isinstance(v, str) for v in params.values())


def test_the_status_field_is_in_the_crd_as_a_list_map_keyed_by_step() -> None:
    schema = crd.crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["estimate"]
    steps = schema["properties"]["steps"]
    assert steps["x-kubernetes-list-type"] == "map" and steps["x-kubernetes-list-map-keys"] == ["step"] and steps["maxItems"] == 16
    assert schema["properties"]["observedGeneration"]["minimum"] == 0


# ---------------------------------------------------------------- the operator's decisions


def test_the_operator_estimates_once_per_generation() -> None:
    spec = _spec()
    status = planner.initial_status(spec, 1)
    first = operator_estimate.refresh(status, spec, 1, "h100")
    assert first.estimate is not None and first.estimate.observed_generation == 1
    assert operator_estimate.refresh(first, spec, 1, "a100") is first  # same generation: kept
    second = operator_estimate.refresh(first, spec, 2, "a100")
    assert second.estimate is not None and second.estimate.observed_generation == 2 and second.estimate.gpu == "a100"


def test_params_are_logged_once_per_parent_run_and_generation() -> None:
    est = RunEstimateStatus(observed_generation=1, gpu="h100")
    assert operator_estimate.pending_params(None, est, None) is None  # no parent run yet
    assert operator_estimate.pending_params("p1", None, None) is None
    pending = operator_estimate.pending_params("p1", est, None)
    assert pending is not None and pending[0] == ("p1", 1) and pending[1]["estimate.gpu"] == "h100"
    assert operator_estimate.pending_params("p1", est, ("p1", 1)) is None
    assert operator_estimate.pending_params("p1", est.model_copy(update={"observed_generation": 2}), ("p1", 1)) is not None


def test_the_gpu_setting_comes_from_the_environment() -> None:
    assert OperatorConfig().estimate_gpu == "h100"
    assert OperatorConfig.from_env({"INFIALIGN_OPERATOR_ESTIMATE_GPU": "a100"}).estimate_gpu == "a100"


def test_a_status_without_an_estimate_still_parses() -> None:
    assert AlignmentRunStatus.model_validate({"phase": "Running"}).estimate is None


@pytest.mark.parametrize("field,value", [("mfu", 0.0), ("mfu", 1.5), ("gpuHours", -1.0), ("observedGeneration", -1)])
def test_bounds_reject_impossible_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        RunEstimateStatus.model_validate({field: value})
