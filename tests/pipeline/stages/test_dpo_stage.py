"""The `dpo` stage through the stage runtime: pairs in, model out, stored reference log-probs, alias `dpo`, bad input."""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from infialign.pipeline import pairs as pairs_mod
from infialign.pipeline.api import DpoStage
from infialign.pipeline.runtime import entrypoint, markers
from infialign.pipeline.runtime.config import RunIdentity, StageConfig, StorageConfig, TrackingConfig
from infialign.pipeline.stages import REGISTRY, load

pytestmark = pytest.mark.slow

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from infialign.pipeline.world import tiny_model

    cache = Path(os.environ["INFIALIGN_CACHE"]) / "models" if os.environ.get("INFIALIGN_CACHE") else tmp_path_factory.mktemp("cache")
    return tiny_model.ensure_tiny_model(cache)


def _pairs(n: int) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        a, b = rng.randrange(10, 50), rng.randrange(10, 50)
        answer, wrong = a + b, a + b + rng.choice((-1, 1, 10))
        rows.append({
            "id": f"p{i}", "source": "test", "prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
            "chosen": f"<think>\n{a} + {b} = {answer}.\n</think>\n\nThe answer is \\boxed{{{answer}}}.",
            "rejected": f"<think>\n{a} + {b} = {wrong}.\n</think>\n\nThe answer is \\boxed{{{wrong}}}.",
            "answer": str(answer), "difficulty": rng.choice((None, 0.0, 0.5, 1.0)),
        })
    return rows


def _config(tmp_path: Path, model: Path, pairs_uri: str, *, settings: dict, tracking: TrackingConfig, attempt: int = 1) -> StageConfig:
    root = (tmp_path / "artifacts").as_uri()
    return StageConfig(
        run=RunIdentity(namespace="ns1", name="r1"),
        step="dpo",
        stage="dpo",
        attempt=attempt,
        settings=DpoStage.model_validate(settings).model_dump(by_alias=True, mode="json"),
        model={"uri": model.as_uri()},
        inputs={"pairs": pairs_uri},
        output=f"{root}/ns1/r1/dpo/",
        storage=StorageConfig(root=root),
        tracking=tracking,
    )


SETTINGS = {
    "epochs": 1, "globalBatchSize": 8, "microBatchSize": 4, "maxLength": 256, "learningRate": 1e-3, "warmupRatio": 0.0,
    "saveSteps": 1, "resources": {"gpusPerNode": 0},
    "sage": {"enabled": True, "refreshSteps": 1},
}


def test_dpo_is_registered() -> None:
    assert REGISTRY["dpo"] == "infialign.pipeline.stages.dpo" and hasattr(load("dpo"), "run")


def test_dpo_stage_trains_registers_and_reuses_reference_log_probs(tmp_path: Path, tiny_model: Path) -> None:
    from mlflow import MlflowClient

    from infialign.pipeline.stages import dpo

    source = tmp_path / "pairs.parquet"
    pq.write_table(pairs_mod.to_pairs_table(_pairs(24)), source)
    tracking = TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="exp")
    config = _config(tmp_path, tiny_model, source.as_uri(), settings={**SETTINGS, "pairsUri": source.as_uri()}, tracking=tracking)
    assert entrypoint.run_stage(config, dpo.run, scratch=tmp_path / "scratch1") == entrypoint.EXIT_SUCCESS

    out = Path(config.output.removeprefix("file://"))
    marker = markers.read_success(config.output)
    assert marker is not None and [o.name for o in marker.outputs] == ["model"]
    assert marker.metrics["pairs"] == 24 and marker.metrics["global_step"] == 3 and marker.metrics["ref_logps_reused"] == 0.0
    assert marker.metrics["sage.refreshes"] == 2  # steps 1 and 2 (none after the last step)
    assert (out / "model" / "model.safetensors").is_file() and (out / "pairs-ref.parquet").is_file()
    (latest,) = (out / "checkpoints").glob("*/latest.json")  # one folder per config digest
    assert json.loads(latest.read_text())["step"] == 3
    client = MlflowClient(tracking_uri=tracking.uri)
    assert client.get_model_version_by_alias("r1-dpo", "dpo").tags["checkpoint_uri"].endswith("/dpo/model/")

    # a new attempt (the marker gone: e.g. the model upload failed) resumes and reuses the stored reference log-probs
    (out / "_SUCCESS.json").unlink()
    again = config.model_copy(update={"attempt": 2})
    assert entrypoint.run_stage(again, dpo.run, scratch=tmp_path / "scratch2") == entrypoint.EXIT_SUCCESS
    assert markers.read_success(config.output).metrics["ref_logps_reused"] == 1.0


@pytest.mark.parametrize(
    ("with_uri", "field"),
    [(True, "spec.stages.dpo.pairsUri"), (False, "the prefs stage's output")],
)
def test_bad_pairs_are_a_permanent_error_naming_their_source(tmp_path: Path, tiny_model: Path, monkeypatch, with_uri: bool, field: str) -> None:
    from infialign.pipeline.stages import dpo

    termination = tmp_path / "termination.json"
    monkeypatch.setenv("INFIALIGN_TERMINATION_LOG", str(termination))
    source = tmp_path / "pairs.parquet"
    pq.write_table(pairs_mod.to_pairs_table(_pairs(4)).drop_columns(["rejected"]), source)
    settings = {**SETTINGS, **({"pairsUri": source.as_uri()} if with_uri else {})}
    config = _config(tmp_path, tiny_model, source.as_uri(), settings=settings, tracking=TrackingConfig(enabled=False))
    assert entrypoint.run_stage(config, dpo.run, scratch=tmp_path / "scratch") == entrypoint.EXIT_PERMANENT
    error = json.loads(termination.read_text())["error"]
    assert field in error and "missing columns ['rejected']" in error
    assert re.search(r"pairs\.parquet", error)


def test_checkpoints_are_kept_per_configuration(tmp_path: Path) -> None:
    """A re-run with other settings starts over; another attempt of the same configuration resumes."""
    from types import SimpleNamespace

    from infialign.pipeline.stages import _training

    tracking = TrackingConfig(enabled=False)
    one = _config(tmp_path, tmp_path / "m", "file:///p.parquet", settings={"learningRate": 0.003}, tracking=tracking)
    again = _config(tmp_path, tmp_path / "m", "file:///p.parquet", settings={"learningRate": 0.003}, tracking=tracking, attempt=2)
    other = _config(tmp_path, tmp_path / "m", "file:///p.parquet", settings={"learningRate": 0.0001}, tracking=tracking)
    uri = [_training.checkpoints_uri(SimpleNamespace(config=c, input_digests={"pairs": "sha256:x"})) for c in (one, again, other)]
    assert uri[0] == uri[1] and uri[0] != uri[2]
    assert uri[0].startswith(one.output.rstrip("/") + "/checkpoints/")
