"""The curate stage logs its pool's dataset card to its MLflow run (file-backed store in tmp_path), linked from the funnel page."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from infialign.pipeline import records
from infialign.pipeline.runtime import entrypoint
from infialign.pipeline.runtime.config import RunIdentity, StageConfig, StorageConfig, TrackingConfig
from infialign.pipeline.stages import curate


def _source(path: Path, n: int = 60) -> Path:
    rows = [
        {
            "id": f"r{i}",
            "source": "world",
            "messages": [{"role": "user", "content": f"Compute {i} plus {i * 7 % 13} and give the sum as a number, please."}],
            "response": f"<think>\nAdd {i} and {i * 7 % 13}. " + "Check the carry. " * (i % 9) + f"\n</think>\n\nThe answer is \\boxed{{{i + i * 7 % 13}}}.",
            "answer": str(i + i * 7 % 13),
        }
        for i in range(n)
    ]
    pq.write_table(records.to_table(rows), path)
    return path


def test_curate_logs_the_pool_card_and_the_funnel_links_it(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    source = _source(tmp_path / "source.parquet")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    root = (tmp_path / "artifacts").as_uri()
    config = StageConfig(
        run=RunIdentity(namespace="ns1", name="r1"),
        step="curate",
        stage="curate",
        attempt=1,
        settings={"embeddings": {"model": "hashed", "clusters": 4}, "nearDedup": {"enabled": False}},
        model={"uri": (tmp_path / "no-model").as_uri()},  # no tokenizer: lengths come from the regex proxy
        sources=[{"name": "world", "uri": source.as_uri(), "preset": "records"}],
        output=f"{root}/ns1/r1/curate/",
        storage=StorageConfig(root=root),
        tracking=TrackingConfig(uri=uri, experiment="cards"),
    )
    assert entrypoint.run_stage(config, curate, scratch=tmp_path / "scratch") == entrypoint.EXIT_SUCCESS

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cards")
    (child,) = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("infialign.step") == "curate"]
    cards = {Path(a.path).name for a in client.list_artifacts(child.info.run_id, "cards")}
    assert cards == {"pool.png", "pool.md"}
    local = Path(client.download_artifacts(child.info.run_id, "cards/pool.md", str(tmp_path / "dl")))
    text = local.read_text()
    assert "# Dataset card: pool" in text and "written by step `curate`" in text
    assert "## Response length (response_tokens)" in text and "## Clusters" in text and "| unknown |" in text
    funnel = Path(client.download_artifacts(child.info.run_id, "curate-funnel.md", str(tmp_path / "dl"))).read_text()
    assert "[cards/pool.png](cards/pool.png)" in funnel
