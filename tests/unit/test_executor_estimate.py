"""The local executor writes `status.estimate`, logs it on the MLflow parent run and keeps the spec for calibration."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

from rich.console import Console

from infialign.pipeline import executor
from infialign.pipeline.api import AlignmentRunSpec, RunPhase
from infialign.pipeline.runtime import entrypoint, markers, tracking
from infialign.pipeline.runtime.config import config_digest

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_a_local_run_carries_its_estimate_in_status_and_mlflow(make_run, tmp_path: Path) -> None:
    run = make_run().set("spec.storage", {"local": {"path": str(tmp_path / "artifacts")}}).stage("select", targetSize=100).run()
    local = executor.LocalExecutor(run, tmp_path, console=Console(file=io.StringIO()))
    # every step already done, so execute() starts no process: the run is the bookkeeping around the steps
    for step in ("curate", "select", "sft-phase1", "sft-phase2"):
        config = local._config(step, 1)
        digest = config_digest(config, entrypoint.input_digests(config))
        outputs = [markers.OutputRecord(name=n, uri=f"{config.output}{n}.parquet", digest=f"sha256:{step}", rows=10) for n in ("pool", "sft-main")]
        outputs.append(markers.OutputRecord(name="model", uri=f"{config.output}model/", digest=f"sha256:{step}-model"))
        marker = markers.SuccessMarker(config_digest=digest, step=step, attempt=1, outputs=outputs, started_at=T0, finished_at=T0, duration_seconds=1.0)
        markers.write_success(config.output, marker, config.storage)

    status = local.execute()

    assert status.phase == RunPhase.SUCCEEDED
    est = status.estimate
    assert est is not None and est.gpu == "h100" and [s.step for s in est.steps or []] == ["curate", "select", "sft-phase1", "sft-phase2"]
    saved = json.loads(local.status_file.read_text())
    assert saved["estimate"]["steps"][2]["step"] == "sft-phase1"
    # the spec is kept beside the status, for `infialign plan --calibrate-from`
    assert AlignmentRunSpec.model_validate_json(local.spec_file.read_text()) == run.spec
    # and the parent run holds the same figures as params
    client = tracking._client(local.tracking.uri)
    params = client.get_run(local.tracking.parent_run_id).data.params
    sft = next(s for s in est.steps or [] if s.step == "sft-phase1")
    assert params["estimate.gpu"] == "h100" and sft.gpu_hours is not None and float(params["estimate.sft-phase1.gpu_hours"]) == sft.gpu_hours
    assert params["estimate.complete"] == ("true" if est.complete else "false")


def test_parent_params_never_change_and_never_raise(tmp_path: Path) -> None:
    from infialign.pipeline.runtime.config import RunIdentity, TrackingConfig

    tracked = tracking.ensure_parent_run(TrackingConfig(uri=tracking.local_tracking_uri(tmp_path)), RunIdentity(name="r1"))
    assert tracked.parent_run_id
    tracking.log_parent_params(tracked, {"estimate.generation": "1", "estimate.gpu_hours": "2.5"})
    tracking.log_parent_params(tracked, {"estimate.generation": "2", "estimate.gpu_hours": "2.5", "estimate.dpo.fits": "true"})
    params = tracking._client(tracked.uri).get_run(tracked.parent_run_id).data.params
    # MLflow refuses to change a param: the first generation's value stays, the new key is added
    assert params == {"estimate.generation": "1", "estimate.gpu_hours": "2.5", "estimate.dpo.fits": "true"}
    tracking.log_parent_params(tracked.model_copy(update={"uri": "http://127.0.0.1:9"}), {"estimate.gpu": "h100"})  # unreachable: a warning
