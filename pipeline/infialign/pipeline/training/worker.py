"""Per-rank entry point under torchrun: ``python -m infialign.pipeline.training.worker --config worker.json``.

Every rank reads the same JSON (``WorkerConfig``), loads the training data and calls ``train_sft`` or ``train_dpo``
(``settings.kind`` says which). Callables cannot
cross the process boundary, so progress leaves as files the parent (the stage runtime) reads:

* ``heartbeat_file``: JSON ``{step, total_steps, metrics, last_checkpoint, time}``, rewritten atomically by each
  node's local rank 0 at most every ``settings.heartbeat_interval_s``.
* ``metrics_file``: JSON lines ``{step, metrics}`` appended by world rank 0 at every log step.
* ``result_file``: ``SftResult.to_dict()``/``DpoResult.to_dict()`` written by world rank 0 at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from infialign.pipeline.training import dpo_settings as _dpo_settings
from infialign.pipeline.training import settings as _settings

__all__ = ["WorkerConfig", "main", "run"]

log = logging.getLogger(__name__)


class WorkerConfig(BaseModel):
    """What one torchrun worker needs. Paths are local to the pod."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    settings: Annotated[_settings.SftSettings | _dpo_settings.DpoSettings, Field(discriminator="kind")] = Field(
        description="The trainer's settings; `kind` picks SFT or DPO."
    )
    model_path: str = Field(min_length=1, description="Local HF model directory to start from.")
    train_data: str = Field(
        min_length=1, description="Parquet file (or fsspec URI): records (records.py schema) for SFT, pairs (pairs.py) for DPO."
    )
    model_digest: str | None = Field(default=None, description="DPO: content digest of the start model (reference log-probs' fingerprint).")
    ref_logps_uri: str | None = Field(default=None, description="DPO: where the reference log-probs are stored. Empty: <output_dir>/pairs-ref.parquet.")
    output_dir: str = Field(min_length=1, description="Local working directory; the export lands in <output_dir>/model.")
    resume: bool = Field(default=False, description="Continue from the newest checkpoint (marker in checkpoint_uri, else local).")
    checkpoint_uri: str | None = Field(default=None, description="fsspec URI to publish checkpoints to (s3://… or file://…).")
    heartbeat_file: str | None = Field(default=None, description="Where to write heartbeats. Empty: none.")
    metrics_file: str | None = Field(default=None, description="JSON-lines metrics log. Empty: none.")
    result_file: str | None = Field(default=None, description="Where world rank 0 writes the result. Empty: <output_dir>/<kind>_result.json.")


def _write_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, default=str))
    tmp.replace(path)


def run(config: WorkerConfig) -> dict[str, Any]:
    import fsspec
    import pyarrow.parquet as pq

    from infialign.pipeline.training import checkpoints as _ckpt

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    fs, path = fsspec.core.url_to_fs(config.train_data)  # a local path, file://, or s3:// (credentials from env)

    heartbeat = None
    if config.heartbeat_file:
        hb_path = Path(config.heartbeat_file)

        def heartbeat(step: int, total_steps: int, metrics: dict[str, float], last_checkpoint: str | None) -> None:
            _write_atomic(hb_path, {"step": step, "total_steps": total_steps, "metrics": metrics,
                                    "last_checkpoint": last_checkpoint, "time": time.time()})

    sink = None
    if config.metrics_file:
        metrics_path = Path(config.metrics_file)

        def sink(metrics: dict[str, float], step: int) -> None:
            with metrics_path.open("a") as f:
                f.write(json.dumps({"step": step, "metrics": metrics}) + "\n")

    store = _ckpt.CheckpointStore.from_uri(config.checkpoint_uri) if config.checkpoint_uri else None
    common: dict[str, Any] = dict(resume=config.resume, heartbeat=heartbeat, metrics_sink=sink, checkpoint_store=store)
    result: Any
    if isinstance(config.settings, _dpo_settings.DpoSettings):
        from infialign.pipeline.training import dpo as _dpo

        if not config.model_digest:
            raise ValueError("WorkerConfig.model_digest is required for DPO: it fingerprints the stored reference log-probs")
        result = _dpo.train_dpo(
            config.settings, config.model_path, pq.read_table(path, filesystem=fs), output_dir, model_digest=config.model_digest,
            ref_logps_uri=config.ref_logps_uri, **common,
        )
    else:
        from infialign.pipeline.training import sft as _sft

        table = pq.read_table(path, filesystem=fs, columns=["id", "messages", "response"])
        result = _sft.train_sft(config.settings, config.model_path, table, output_dir, **common)
    payload = result.to_dict()
    log.info("rank %d of %d finished at step %d (%s)", result.rank, result.world_size, result.global_step, result.engine)
    if result.rank == 0:
        default = output_dir / f"{config.settings.kind}_result.json"
        _write_atomic(Path(config.result_file) if config.result_file else default, payload)
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infialign.pipeline.training.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="WorkerConfig JSON file")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[rank {os.environ.get('RANK', '0')}] %(asctime)s %(name)s: %(message)s")
    config = WorkerConfig.model_validate_json(Path(ns.config).read_text())
    run(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
