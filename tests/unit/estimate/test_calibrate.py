"""`infialign plan --calibrate-from`: the arithmetic that scales a finished run's durations to another manifest."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from infialign.pipeline import evidence
from infialign.pipeline.estimate import Evidence, Options, StepRecord, calibrate, estimate_run

from .conftest import QUICKSTART, example_spec



def _spec(edit=None):
    return example_spec(QUICKSTART, edit)


def _epochs(n: int):
    def edit(spec):
        for phase in spec["stages"]["sft"]["phases"]:
            phase["epochs"] = n

    return edit


def test_the_busy_part_scales_with_the_work_and_the_start_up_stays() -> None:
    ref = calibrate.Reference(duration_seconds=100.0, busy_seconds=80.0, work=1000.0)
    seconds, basis = calibrate.scale(ref, 2500.0)
    assert seconds == pytest.approx(20.0 + 80.0 * 2.5)
    assert "20 s start-up" in basis and "2.50" in basis


def test_without_a_busy_figure_the_whole_duration_scales() -> None:
    assert calibrate.scale(calibrate.Reference(60.0, None, 10.0), 5.0)[0] == pytest.approx(30.0)
    # a busy figure longer than the step itself (a clock skew, a resumed attempt) is not believed
    assert calibrate.scale(calibrate.Reference(60.0, 90.0, 10.0), 5.0)[0] == pytest.approx(30.0)


def test_unknown_work_keeps_the_measured_duration_and_says_so() -> None:
    seconds, basis = calibrate.scale(calibrate.Reference(42.0, 30.0, None), 5.0)
    assert seconds == 42.0 and "not scaled" in basis
    assert calibrate.scale(calibrate.Reference(42.0, 30.0, 10.0), None)[0] == 42.0


def test_busy_seconds_come_from_the_trainer_or_the_generation_rate() -> None:
    assert calibrate.busy_seconds(StepRecord(metrics={"train_runtime": 83.8, "tokens_per_second": 2901.0})) == 83.8
    assert calibrate.busy_seconds(StepRecord(metrics={"generated_tokens": 96071.0, "generated_tokens_per_second": 2005.5})) == pytest.approx(47.9, abs=0.1)
    assert calibrate.busy_seconds(StepRecord(metrics={"rows_out": 2309.0})) is None


def test_more_epochs_scale_sft_by_the_epoch_ratio_and_leave_other_steps_alone() -> None:
    records = {
        "sft-phase1": StepRecord(metrics={"train_runtime": 80.0}, duration_seconds=100.0),
        "dpo": StepRecord(metrics={}, duration_seconds=50.0),
    }
    options = Options(rows=3000)
    refs = calibrate.references(estimate_run(_spec(), Evidence(), options), records)  # --rows: no source read
    variant = calibrate.apply(estimate_run(_spec(_epochs(5)), Evidence(), options), refs, "/tmp/a")
    by_step = {s.step: s for s in variant.steps}
    assert by_step["sft-phase1"].wall_hours == pytest.approx((20.0 + 80.0 * 5 / 3) / 3600.0)
    assert by_step["dpo"].wall_hours == pytest.approx(50.0 / 3600.0)  # the same pairs: the same time
    assert "not calibrated" in by_step["sft-phase2"].notes[-1]  # it did not finish in the reference run
    assert by_step["sft-phase1"].gpu_hours == pytest.approx(by_step["sft-phase1"].wall_hours * by_step["sft-phase1"].gpus)
    assert any("calibrated on the finished run in /tmp/a" in n for n in variant.notes)


def test_cpu_steps_scale_by_rows() -> None:
    refs = calibrate.references(estimate_run(_spec(), Evidence(), Options(rows=3000)), {"curate": StepRecord(duration_seconds=15.0)})
    variant = calibrate.apply(estimate_run(_spec(), Evidence(), Options(rows=4500)), refs, "a")
    curate = next(s for s in variant.steps if s.step == "curate")
    assert curate.wall_hours == pytest.approx(15.0 * 1.5 / 3600.0) and curate.gpu_hours is None


def test_the_reference_run_is_found_by_its_spec_json(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "default" / "quickstart"
    run_dir.mkdir(parents=True)
    (run_dir / evidence.SPEC_FILE).write_text(_spec().model_dump_json(by_alias=True, exclude_none=True))
    spec, identity = evidence.reference_run(tmp_path)
    assert spec == _spec() and (identity.namespace, identity.name) == ("default", "quickstart")


def test_a_work_dir_without_a_spec_names_the_flag_that_fixes_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--calibrate-from .*no run found.*--calibrate-manifest"):
        evidence.reference_run(tmp_path)
    spec, identity = evidence.reference_run(tmp_path, QUICKSTART)
    assert identity.name == "quickstart" and spec.stages.sft.phases[0].epochs == 3


def test_the_cli_plans_a_variant_calibrated_on_a_finished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from infialign.pipeline import cli
    from infialign.pipeline.runtime import markers
    from infialign.pipeline.runtime.config import RunIdentity, artifacts_root, step_prefix

    spec = _spec()
    run_dir = tmp_path / "a" / "runs" / "default" / "quickstart"
    run_dir.mkdir(parents=True)
    (run_dir / evidence.SPEC_FILE).write_text(spec.model_dump_json(by_alias=True, exclude_none=True))
    store = artifacts_root(spec, tmp_path / "a")
    marker = markers.SuccessMarker(config_digest="x", step="sft-phase1", attempt=1, metrics={"train_runtime": 80.0},
                                   finished_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), duration_seconds=100.0)
    markers.write_success(step_prefix(store.root, RunIdentity(name="quickstart"), "sft-phase1"), marker, store)
    variant = tmp_path / "b.yaml"
    doc = yaml.safe_load(QUICKSTART.read_text())
    _epochs(6)(doc["spec"])
    variant.write_text(yaml.safe_dump(doc))
    monkeypatch.chdir(tmp_path)  # the variant's relative artifacts path: nothing finished there

    assert cli.main(["plan", str(variant), "--calibrate-from", str(tmp_path / "a"), "--output", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sft = next(s for s in out["steps"] if s["step"] == "sft-phase1")
    assert sft["wallHours"] == pytest.approx((20.0 + 80.0 * 2) / 3600.0)
    assert sft["basis"].startswith("calibrated")
