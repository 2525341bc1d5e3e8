"""The stage runtime: outputs, digests and `_SUCCESS.json` on local disk and on S3, skipping, exit codes, tracking."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import boto3
import pyarrow as pa
import pytest

from infialign.pipeline import records
from infialign.pipeline.runtime import entrypoint, markers, storage
from infialign.pipeline.runtime.config import RunIdentity, StageConfig, StorageConfig, TrackingConfig, config_digest
from infialign.pipeline.runtime.context import StageContext, StageInputError


def _records(n: int) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "source": "test",
            "domain": "arithmetic",
            "messages": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "response": f"<think>\n{i} + {i} = {2 * i}\n</think>\n\nThe answer is \\boxed{{{2 * i}}}.",
            "answer": str(2 * i),
        }
        for i in range(n)
    ]


def _config(root: str, tmp_path: Path, *, endpoint: str | None = None, settings: dict | None = None, tracking: TrackingConfig | None = None) -> StageConfig:
    source = tmp_path / "source.parquet"
    if not source.exists():
        records.to_table(_records(20)).to_pandas()  # schema check of the fixture itself
        import pyarrow.parquet as pq

        pq.write_table(records.to_table(_records(20)), source)
    run = RunIdentity(namespace="ns1", name="r1")
    return StageConfig(
        run=run,
        step="curate",
        stage="curate",
        attempt=1,
        settings=settings or {"keepEvery": 2},
        model={"uri": "builtin://tiny"},
        inputs={"pool": source.as_uri()},
        output=f"{root.rstrip('/')}/ns1/r1/curate/",
        storage=StorageConfig(root=root, endpoint=endpoint),
        tracking=tracking or TrackingConfig(enabled=False),
    )


CALLS: list[str] = []


def halve(ctx: StageContext) -> None:
    """A real (small) stage: reads an input, keeps every n-th record, writes it, beats, reports a metric."""
    CALLS.append(ctx.config.step)
    table = ctx.read_records("pool")
    keep = table.filter(pa.array([i % ctx.config.settings["keepEvery"] == 0 for i in range(table.num_rows)]))
    ctx.beat(step=1, total=2, metrics={"kept": keep.num_rows})
    ctx.write_records("pool", keep)
    ctx.add_metrics({"kept": keep.num_rows, "dropped": table.num_rows - keep.num_rows})


def test_outputs_digests_and_success_marker_on_local_disk(tmp_path: Path) -> None:
    config = _config((tmp_path / "artifacts").as_uri(), tmp_path)
    assert entrypoint.run_stage(config, halve) == entrypoint.EXIT_SUCCESS
    marker = markers.read_success(config.output)
    assert marker is not None and marker.attempt == 1 and marker.metrics == {"kept": 10.0, "dropped": 10.0}
    (out,) = marker.outputs
    table = storage.read_parquet(out.uri)
    assert out.rows == table.num_rows == 10 and out.digest == storage.bytes_digest(storage.read_bytes(out.uri))
    assert marker.config_digest == config_digest(config, {})
    progress = markers.read_progress(config.output)
    assert progress is not None and progress.percent == 100.0


def test_a_matching_marker_skips_the_stage_and_a_changed_setting_reruns_it(tmp_path: Path) -> None:
    root = (tmp_path / "artifacts").as_uri()
    CALLS.clear()
    assert entrypoint.run_stage(_config(root, tmp_path), halve) == 0
    assert entrypoint.run_stage(_config(root, tmp_path).model_copy(update={"attempt": 2}), halve) == 0
    assert CALLS == ["curate"]  # the second attempt found its marker
    assert entrypoint.run_stage(_config(root, tmp_path, settings={"keepEvery": 4}), halve) == 0
    assert CALLS == ["curate", "curate"]
    assert markers.read_success(_config(root, tmp_path).output).outputs[0].rows == 5


def test_outputs_and_marker_on_a_real_s3_endpoint(tmp_path: Path, s3_endpoint: str) -> None:
    config = _config("s3://infialign/runs", tmp_path, endpoint=s3_endpoint)
    assert entrypoint.run_stage(config, halve) == 0
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="infialign", Prefix="runs/ns1/r1/curate/")["Contents"])
    assert keys == ["runs/ns1/r1/curate/_SUCCESS.json", "runs/ns1/r1/curate/pool.parquet", "runs/ns1/r1/curate/progress.json"]
    marker = json.loads(s3.get_object(Bucket="infialign", Key="runs/ns1/r1/curate/_SUCCESS.json")["Body"].read())
    data = s3.get_object(Bucket="infialign", Key="runs/ns1/r1/curate/pool.parquet")["Body"].read()
    assert marker["outputs"][0]["digest"] == storage.bytes_digest(data) and marker["outputs"][0]["rows"] == 10
    CALLS.clear()
    assert entrypoint.run_stage(config.model_copy(update={"attempt": 2}), halve) == 0 and CALLS == []


def _bad_input(ctx: StageContext) -> None:
    raise StageInputError("pool.parquet has no rows")


def _crash(ctx: StageContext) -> None:
    raise RuntimeError("CUDA error: an illegal memory access")


@pytest.mark.parametrize(("stage", "code", "text"), [(_bad_input, 2, "no rows"), (_crash, 1, "illegal memory access")])
def test_exit_codes_and_termination_message(tmp_path: Path, monkeypatch, stage, code: int, text: str) -> None:
    termination = tmp_path / "termination.json"
    monkeypatch.setenv("INFIALIGN_TERMINATION_LOG", str(termination))
    config = _config((tmp_path / "a").as_uri(), tmp_path)
    assert entrypoint.run_stage(config, stage) == code
    summary = json.loads(termination.read_text())
    assert summary["exitCode"] == code and text in summary["error"]
    assert markers.read_success(config.output) is None


def test_cli_bad_config_is_permanent(tmp_path: Path) -> None:
    path = tmp_path / "stage.json"
    path.write_text("{not json")
    assert entrypoint.main("curate", path) == entrypoint.EXIT_PERMANENT
    config = _config((tmp_path / "a").as_uri(), tmp_path)
    path.write_text(config.model_dump_json())
    assert entrypoint.main("select", path) == entrypoint.EXIT_PERMANENT  # config is for another step


def test_unavailable_stage_is_permanent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stage of the API that this build does not ship: take a real one out of the registry, since every
    # stage of the API is (or is about to be) implemented.
    from infialign.pipeline import stages

    monkeypatch.setattr(stages, "REGISTRY", {k: v for k, v in stages.REGISTRY.items() if k != "prefs"})
    config = _config((tmp_path / "a").as_uri(), tmp_path).model_copy(update={"stage": "prefs", "step": "prefs"})
    path = tmp_path / "stage.json"
    path.write_text(config.model_dump_json())
    assert entrypoint.main("prefs", path) == entrypoint.EXIT_PERMANENT


def test_mlflow_at_a_dead_port_never_fails_the_stage(tmp_path: Path, dead_port: int, caplog) -> None:
    tracking = TrackingConfig(uri=f"http://127.0.0.1:{dead_port}", experiment="x")
    config = _config((tmp_path / "a").as_uri(), tmp_path, tracking=tracking)
    with caplog.at_level(logging.WARNING):
        assert entrypoint.run_stage(config, halve, scratch=tmp_path / "scratch") == 0
    assert any("unreachable" in r.message for r in caplog.records)
    pending = (tmp_path / "scratch" / "tracking-pending.jsonl").read_text().splitlines()
    assert {json.loads(line)["call"] for line in pending} >= {"log_dataset", "log_metrics"}
    assert markers.read_success(config.output) is not None


def test_child_run_with_parent_params_and_datasets(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = _config((tmp_path / "a").as_uri(), tmp_path, tracking=TrackingConfig(uri=uri, experiment="exp"))
    assert entrypoint.run_stage(config, halve) == 0
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("exp")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    (child,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert child.info.status == "FINISHED" and child.data.tags["infialign.step"] == "curate"
    assert child.data.params["settings.keepEvery"] == "2" and child.data.metrics["kept"] == 10.0
    inputs = {(d.dataset.name, d.dataset.digest) for d in child.inputs.dataset_inputs}
    written = markers.read_success(config.output).outputs[0].digest
    assert ("pool", written.removeprefix("sha256:")[:36]) in inputs
    assert len(inputs) == 2  # the input and the output, each with our own digest


def test_only_node_zero_writes_markers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PET_NODE_RANK", "1")
    config = _config((tmp_path / "a").as_uri(), tmp_path)
    CALLS.clear()
    assert entrypoint.run_stage(config, halve) == 0 and CALLS == ["curate"]
    assert markers.read_success(config.output) is None and markers.read_progress(config.output) is None
    monkeypatch.setenv("PET_NODE_RANK", "0")
    assert entrypoint.run_stage(config, halve) == 0
    assert markers.read_success(config.output) is not None


def test_warnings_reach_the_marker_and_the_last_heartbeat(tmp_path: Path) -> None:
    def short(ctx: StageContext) -> None:
        halve(ctx)
        ctx.warn("made 3 of the 10 pairs asked for (spec.stages.prefs.pairs)")

    config = _config((tmp_path / "a").as_uri(), tmp_path)
    assert entrypoint.run_stage(config, short) == 0
    marker = markers.read_success(config.output)
    assert marker is not None and marker.warnings == ["made 3 of the 10 pairs asked for (spec.stages.prefs.pairs)"]
    progress = markers.read_progress(config.output)
    assert progress is not None and progress.message == "finished with warnings: made 3 of the 10 pairs asked for (spec.stages.prefs.pairs)"


def test_the_local_executor_shows_a_succeeded_steps_warnings_as_its_message() -> None:
    import datetime as dt

    from infialign.pipeline import executor

    marker = markers.SuccessMarker(config_digest="d", step="prefs", attempt=1, finished_at=dt.datetime.now(dt.UTC), warnings=["a", "b"])
    assert executor._warnings(marker) == "a; b"
    assert executor._warnings(marker.model_copy(update={"warnings": []})) is None


def test_the_experiment_says_it_holds_training_runs_so_the_mlflow_ui_opens_on_them(tmp_path: Path) -> None:
    """MLflow 3's UI guesses an untagged experiment is GenAI and opens an empty traces overview."""
    import mlflow

    from infialign.pipeline.runtime import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    older = client.create_experiment("older")  # made before the tag existed: tagged when first used
    for name in ("infialign", "older"):
        config = tracking.ensure_parent_run(TrackingConfig(uri=uri, experiment=name), RunIdentity(namespace="ns1", name="r1"))
        assert config.parent_run_id is not None
        experiment = client.get_experiment(config.experiment_id)
        assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert client.get_experiment(older).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_the_parent_run_link_opens_the_model_training_view() -> None:
    from infialign.pipeline.runtime import tracking

    config = TrackingConfig(uri="http://mlflow.example:5000/", experiment_id="3", parent_run_id="abc")
    assert tracking.parent_run_url(config) == "http://mlflow.example:5000/#/experiments/3/runs/abc?workflowType=machine_learning"


def test_a_download_beats_while_bytes_arrive_and_falls_silent_when_it_sticks(tmp_path: Path) -> None:
    import threading
    import time

    from infialign.pipeline.runtime import sources

    target = tmp_path / "model"
    heard: list[int] = []
    arrived = threading.Event()

    def download() -> None:
        target.mkdir()
        for i in range(3):
            (target / f"part-{i}").write_bytes(b"x" * 1000)
            time.sleep(0.2)
        arrived.set()

    with sources.reporting_growth(target, heard.append, every=0.02):
        writer = threading.Thread(target=download)
        writer.start()
        writer.join()
        time.sleep(0.1)
        after_last_byte = len(heard)
        time.sleep(0.3)  # stuck: nothing arrives, so nothing may be reported
        assert len(heard) == after_last_byte
    assert arrived.is_set() and heard == sorted(heard) and heard[-1] == 3000 and len(heard) >= 2


def report_on_parent(ctx: StageContext) -> None:
    """A stage that, as eval does, puts its headline results on the parent run too."""
    ctx.write_records("pool", ctx.read_records("pool"))
    ctx.tracker.log_on_parent({"eval.sft.bench.avg_at_1": 0.25}, {"model": ["sft"], "bench": [0.25]}, "eval-results.json")


def test_the_parent_run_carries_the_headline_results_where_users_land(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = _config((tmp_path / "a").as_uri(), tmp_path, tracking=TrackingConfig(uri=uri, experiment="exp"))
    assert entrypoint.run_stage(config, report_on_parent) == 0
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.metrics == {"eval.sft.bench.avg_at_1": 0.25}
    assert "eval-results.json" in [a.path for a in client.list_artifacts(parent.info.run_id)]
