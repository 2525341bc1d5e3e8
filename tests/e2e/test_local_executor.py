"""`infialign run` end to end on the built-in world: outputs, MLflow lineage, skip on re-run,
Ctrl-C and resume, and a dead MLflow server. Real stages, real subprocesses, tiny model on CPU."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

STEPS = ("curate", "select", "sft-phase1", "sft-phase2")


def _manifest(tmp_path: Path, name: str = "small", tracking: dict[str, Any] | None = None, save_steps: int = 50, epochs: int = 1) -> Path:
    phase = {"epochs": epochs, "learningRate": 0.003, "minLearningRate": 0.0003, "globalBatchSize": 4, "microBatchSize": 4, "maxLength": 512}
    doc = {
        "apiVersion": "infialign.dev/v1alpha1",
        "kind": "AlignmentRun",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "builtin://tiny"},
            "sources": [{"name": "reasoning", "uri": "builtin://reasoning?n=500&seed=3", "preset": "records"}],
            "benchmarks": [{"name": "bench", "uri": "builtin://reasoning-bench?n=50", "preset": "records", "samples": 1}],
            "stages": {
                "curate": {"embeddings": {"model": "hashed"}},
                "distill": {"enabled": False},
                "select": {"targetFraction": 0.8, "challengeSize": 20, "verification": {"workers": 1}},
                "sft": {"phases": [{"name": "phase1", "fraction": 0.5, **phase}, {"name": "phase2", "fraction": 1.0, **phase}], "saveSteps": save_steps},
                "prefs": {"enabled": False},
                "dpo": {"enabled": False},
                "eval": {"enabled": False},
            },
            "tracking": tracking or {},
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(manifest: Path, workdir: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INFIALIGN_HEARTBEAT_SECONDS": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "infialign.pipeline.cli", "run", str(manifest), "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def _marker(workdir: Path, name: str, step: str) -> dict[str, Any]:
    return json.loads((workdir / "artifacts" / "default" / name / step / "_SUCCESS.json").read_text())


def _status(workdir: Path, name: str) -> dict[str, Any]:
    return json.loads((workdir / "runs" / "default" / name / "status.json").read_text())


def test_run_tracks_everything_and_a_rerun_skips_every_stage(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    manifest, workdir = _manifest(tmp_path), tmp_path / "work"
    started = time.monotonic()
    first = _run(manifest, workdir)
    first_seconds = time.monotonic() - started
    assert first.returncode == 0, first.stderr[-3000:]
    for step in STEPS:
        marker = _marker(workdir, "small", step)
        assert marker["step"] == step and marker["config_digest"].startswith("sha256:")
        assert all(o["digest"] for o in marker["outputs"])
    assert _status(workdir, "small")["phase"] == "Succeeded"

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("infialign")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["infialign.step"] for r in children) == sorted(STEPS)
    for child in children:
        marker = _marker(workdir, "small", child.data.tags["infialign.step"])
        logged = {d.dataset.digest for d in child.inputs.dataset_inputs}
        for output in marker["outputs"]:
            if output["uri"].endswith(".parquet"):
                assert output["digest"].removeprefix("sha256:")[:36] in logged
    version = client.get_model_version_by_alias("small-sft", "sft")
    assert version.tags["checkpoint_uri"].endswith("/sft-phase2/model/")

    started = time.monotonic()
    second = _run(manifest, workdir)
    second_seconds = time.monotonic() - started
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Succeeded (cached)" in second.stderr
    assert second_seconds < first_seconds / 2, (first_seconds, second_seconds)
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)  # no new child runs


def test_ctrl_c_mid_training_then_resume(tmp_path: Path) -> None:
    manifest, workdir = _manifest(tmp_path, name="resume", save_steps=5, epochs=3), tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INFIALIGN_HEARTBEAT_SECONDS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "infialign.pipeline.cli", "run", str(manifest), "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    checkpoints = workdir / "artifacts" / "default" / "resume" / "sft-phase1" / "checkpoints"  # /<config digest>/latest.json
    deadline = time.monotonic() + 400
    while not (found := sorted(checkpoints.glob("*/latest.json"))):
        assert process.poll() is None, process.stdout.read()[-3000:] if process.stdout else ""
        assert time.monotonic() < deadline, "no checkpoint was published"
        time.sleep(0.5)
    latest = found[0]
    process.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
    out, _ = process.communicate(timeout=120)
    assert process.returncode != 0 and "run the same command again to resume" in out
    checkpoint_step = json.loads(latest.read_text())["step"]
    before = {step: _marker(workdir, "resume", step)["finished_at"] for step in ("curate", "select")}

    second = _run(manifest, workdir)
    assert second.returncode == 0, second.stderr[-3000:]
    assert {step: _marker(workdir, "resume", step)["finished_at"] for step in ("curate", "select")} == before
    training = json.loads((workdir / "artifacts" / "default" / "resume" / "sft-phase1" / "model" / "infialign_training.json").read_text())
    assert training["resumed_from"] and training["resumed_from"].endswith(f"checkpoint-{checkpoint_step}")
    assert _status(workdir, "resume")["phase"] == "Succeeded"


def test_dead_mlflow_server_never_fails_the_run(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manifest = _manifest(tmp_path, name="offline", tracking={"uri": f"http://127.0.0.1:{port}"})
    doc = yaml.safe_load(manifest.read_text())
    doc["spec"]["stages"]["sft"]["enabled"] = False  # the tracking path is the same for every stage
    manifest.write_text(yaml.safe_dump(doc))
    result = _run(manifest, tmp_path / "work")
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "work" / "runs" / "default" / "offline" / "attempts" / "curate-a1" / "stage.log").read_text()
    assert "unreachable" in log
    pending = tmp_path / "work" / "runs" / "default" / "offline" / "scratch" / "curate" / "tracking-pending.jsonl"
    assert pending.exists() and "log_dataset" in pending.read_text()


@pytest.mark.parametrize("bad", ["spec:\n  model: {uri: builtin://tiny}\n  stages: {sft: {pakcing: on}}\n"])
def test_invalid_manifest_exits_2_without_running(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: infialign.dev/v1alpha1\nkind: AlignmentRun\nmetadata: {name: bad}\n" + bad)
    result = _run(path, tmp_path / "work", timeout=60)
    assert result.returncode == 2 and "spec.stages.sft.pakcing: unknown field; did you mean 'packing'?" in result.stderr
    assert not (tmp_path / "work" / "runs").exists()
