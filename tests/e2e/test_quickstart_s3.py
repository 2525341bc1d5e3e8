"""The quickstart, every stage, against a real S3 protocol endpoint and a real MLflow server.

What a cluster has and a laptop folder hides: data and checkpoints live only in S3 (each stage downloads
its inputs and the previous model from there), and MLflow is a separate server that proxies artifacts
into its own bucket, so stage processes never hold its store's address. The results are then read back
the way other tools would: with the `minio` SDK and with `s3fs`. Sizes are cut down from
`manifests/examples/quickstart.yaml`; the stages, their order and their settings otherwise follow it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DATA_BUCKET = "infialign"
MLFLOW_BUCKET = "mlflow"
KEY, SECRET = "testing", "testing"
STEPS = ("curate", "distill", "select", "sft-phase1", "sft-phase2", "prefs", "dpo", "eval")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1; the buckets are made with the minio SDK, as the chart's Job would."""
    from minio import Minio
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
    for name, value in (("AWS_ACCESS_KEY_ID", KEY), ("AWS_SECRET_ACCESS_KEY", SECRET), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    client = Minio(f"127.0.0.1:{port}", access_key=KEY, secret_key=SECRET, secure=False, region="us-east-1")
    for bucket in (DATA_BUCKET, MLFLOW_BUCKET):
        client.make_bucket(bucket)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def mlflow_server(s3: str, tmp_path: Path) -> Iterator[str]:
    """`mlflow server --serve-artifacts` with its artifacts in the S3 bucket `mlflow`: the chart's layout."""
    port = _free_port()
    # as the chart runs it: no GenAI job runner (seven more processes), boto3 without CRC headers
    env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": s3, "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (tmp_path / "mlflow-server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--serve-artifacts", "--artifacts-destination", f"s3://{MLFLOW_BUCKET}/artifacts"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=5)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {(tmp_path / 'mlflow-server.log').read_text()[-3000:]}") from None
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _manifest(tmp_path: Path, s3: str, mlflow: str) -> Path:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "manifests" / "examples" / "quickstart.yaml").read_text())
    spec = doc["spec"]
    spec["sources"][0]["uri"] = "builtin://reasoning?n=600&seed=0"
    spec["benchmarks"][0].update({"uri": "builtin://reasoning-bench?n=40", "maxTokens": 64})
    stages = spec["stages"]
    stages["distill"].update({"samples": 2, "maxRetries": 0, "maxTokens": 128, "maxModelLen": 256})
    stages["select"]["challengeSize"] = 40
    for phase in stages["sft"]["phases"]:
        phase.update({"epochs": 1, "maxLength": 256})
    stages["prefs"].update({"samples": 2, "maxTokens": 64, "pairs": 20})
    stages["dpo"].update({"maxLength": 256, "globalBatchSize": 4, "epochs": 1})
    stages["eval"]["maxModelLen"] = 512
    spec["storage"] = {"s3": {"endpoint": s3, "bucket": DATA_BUCKET, "prefix": "runs"}}
    spec["tracking"] = {"uri": mlflow, "experiment": "quickstart-s3"}
    path = tmp_path / "quickstart-s3.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_quickstart_keeps_data_checkpoints_and_mlflow_artifacts_in_s3(tmp_path: Path, s3: str, mlflow_server: str) -> None:
    import s3fs
    from minio import Minio

    manifest = _manifest(tmp_path, s3, mlflow_server)
    workdir = tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INFIALIGN_HEARTBEAT_SECONDS": "1", "COLUMNS": "200",
           "INFIALIGN_CACHE": str(tmp_path / "cache")}  # models come from S3, not from a folder shared with a trainer
    env.pop("MLFLOW_S3_ENDPOINT_URL", None)  # stages upload MLflow artifacts through the server, as in the chart
    done = subprocess.run(
        [sys.executable, "-m", "infialign.pipeline.cli", "run", str(manifest), "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=3600, env=env,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    # Data and checkpoints: in the data bucket, read with the minio SDK.
    port = int(s3.rsplit(":", 1)[1])
    client = Minio(f"127.0.0.1:{port}", access_key=KEY, secret_key=SECRET, secure=False, region="us-east-1")
    keys = {o.object_name for o in client.list_objects(DATA_BUCKET, prefix="runs/", recursive=True)}
    run_prefix = "runs/default/quickstart"  # the manifest's metadata.name
    for step in STEPS:
        assert f"{run_prefix}/{step}/_SUCCESS.json" in keys, f"{step} has no marker in S3"
    for step in ("sft-phase1", "sft-phase2", "dpo"):
        assert f"{run_prefix}/{step}/model/config.json" in keys and any(
            k.startswith(f"{run_prefix}/{step}/model/") and k.endswith(".safetensors") for k in keys
        ), f"{step} has no model in S3"
    marker = json.loads(client.get_object(DATA_BUCKET, f"{run_prefix}/eval/_SUCCESS.json").read())
    assert marker["step"] == "eval"
    assert not (workdir / "artifacts").exists()  # nothing went to a local folder instead

    # MLflow artifacts: proxied into MLflow's own bucket, read with s3fs.
    fs = s3fs.S3FileSystem(key=KEY, secret=SECRET, client_kwargs={"endpoint_url": s3, "region_name": "us-east-1"})
    artifacts = fs.find(f"{MLFLOW_BUCKET}/artifacts")
    for name in ("curate-funnel.md", "select-funnel.md", "eval-results.json", "eval-samples.parquet"):
        assert any(p.endswith(f"/{name}") for p in artifacts), f"{name} not in MLflow's bucket: {artifacts[:30]}"

    # And the eval table reached MLflow's parent run, through the server.
    import mlflow

    client_mlflow = mlflow.MlflowClient(tracking_uri=mlflow_server)
    (experiment,) = [e for e in client_mlflow.search_experiments() if e.name == "quickstart-s3"]
    runs = client_mlflow.search_runs([experiment.experiment_id])
    metrics = {k for r in runs for k in r.data.metrics}
    assert any(k.startswith("eval.") for k in metrics), sorted(metrics)[:40]
