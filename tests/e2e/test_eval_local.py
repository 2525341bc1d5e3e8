"""`infialign run` with the eval stage on the local executor: one process generates both shards in turn,
and the model × benchmark table reaches `status.results`, the final summary, `results.json` and MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml


def test_local_eval_fills_status_summary_results_json_and_mlflow(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    doc = {
        "apiVersion": "infialign.dev/v1alpha1",
        "kind": "AlignmentRun",
        "metadata": {"name": "ev"},
        "spec": {
            "model": {"uri": "builtin://tiny"},
            "benchmarks": [{"name": "bench", "uri": "builtin://reasoning-bench?n=8", "preset": "records", "samples": 2, "maxTokens": 32}],
            "stages": {
                **{s: {"enabled": False} for s in ("curate", "distill", "select", "sft", "prefs", "dpo")},
                "eval": {"models": ["base"], "shards": 2, "maxModelLen": 512},
            },
        },
    }
    manifest, workdir = tmp_path / "ev.yaml", tmp_path / "work"
    manifest.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INFIALIGN_HEARTBEAT_SECONDS": "1", "COLUMNS": "200"}
    run = subprocess.run([sys.executable, "-m", "infialign.pipeline.cli", "run", str(manifest), "--workdir", str(workdir)],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]

    step = workdir / "artifacts" / "default" / "ev" / "eval"
    assert all((step / "generations" / "base" / "bench" / f"shard-0000{i}-of-00002" / "_DONE.json").exists() for i in range(2))
    results = json.loads((step / "results.json").read_text())["results"]
    status = json.loads((workdir / "runs" / "default" / "ev" / "status.json").read_text())
    assert status["results"] == [{k: v for k, v in r.items() if v is not None} for r in results]
    assert {(r["model"], r["benchmark"], r["metric"]) for r in results if "subset" not in r} == {("base", "bench", "avg@2"), ("base", "bench", "pass@2")}
    assert "Evaluation" in run.stderr and "avg@2" in run.stderr  # the summary table

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("infialign")
    (child,) = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("infialign.step") == "eval"]
    assert "eval.base.bench.avg_at_2" in child.data.metrics
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"eval-results.json", "eval-results.png", "eval-samples.parquet"} <= artifacts
