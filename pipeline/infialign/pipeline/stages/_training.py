"""Stage glue shared by the training stages (`sft-<phase>`, `dpo`): model digest, in-process or torchrun, relaying.

One process trains in-process (a laptop, a CPU pod). Several nodes or GPUs go through torchrun with the `PET_*`
environment the operator sets: every rank runs the training worker (training/worker.py) on a `WorkerConfig`, and
this process relays the workers' heartbeat and metrics files into the stage heartbeat and MLflow. Rank 0 of node 0
writes the result JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from infialign.pipeline.runtime.config import config_digest
from infialign.pipeline.runtime.context import StageContext

__all__ = ["model_digest", "uses_torchrun", "storage_options", "run_torchrun", "heartbeat_for", "metrics_sink_for"]

log = logging.getLogger(__name__)


def model_digest(model_dir: Path) -> str:
    """sha256 over the exported files' names and bytes: the model's content identity."""
    h = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        h.update(path.relative_to(model_dir).as_posix().encode())
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def checkpoints_uri(ctx: StageContext) -> str:
    """Where this step's checkpoints live: one folder per config digest.

    A step re-run with other settings or inputs must start over, not resume from checkpoints of the old
    configuration (a DPO re-run with a lower learning rate once resumed at the old final step and trained
    nothing). Attempts of the same configuration share the folder, which is how they resume.
    """
    digest = config_digest(ctx.config, ctx.input_digests).removeprefix("sha256:")[:16]
    return f"{ctx.config.output.rstrip('/')}/checkpoints/{digest}"


def uses_torchrun(env: dict[str, str] | os._Environ[str]) -> bool:
    """Several processes (nodes or GPUs) need torchrun; one process trains in-process."""
    nodes = int(env.get("PET_NNODES") or 1)
    procs = int(env.get("PET_NPROC_PER_NODE") or 1)
    return nodes * procs > 1


def storage_options(ctx: StageContext) -> dict[str, Any]:
    if ctx.config.storage.endpoint and ctx.config.output.startswith("s3://"):
        return {"client_kwargs": {"endpoint_url": ctx.config.storage.endpoint}}
    return {}


def heartbeat_for(ctx: StageContext) -> Any:
    def heartbeat(step: int, total: int, metrics: dict[str, float], last_checkpoint: str | None) -> None:
        ctx.beat(step=step, total=total, metrics=metrics, last_checkpoint=last_checkpoint)

    return heartbeat


def metrics_sink_for(ctx: StageContext) -> Any:
    def metrics_sink(metrics: dict[str, float], step: int) -> None:
        ctx.tracker.log_metrics(metrics, step=step)

    return metrics_sink


def run_torchrun(ctx: StageContext, config: Any, work: Path) -> dict[str, Any]:
    """Launch torchrun for this node on ``config`` (a ``WorkerConfig`` whose heartbeat, metrics and result files are
    under ``work``); rank 0 of node 0 returns the result, the other nodes an empty dict."""
    from infialign.pipeline import training

    config_path = work / "worker.json"
    config_path.write_text(config.model_dump_json(), encoding="utf-8")
    spec = training.TorchrunSpec.from_env(os.environ)
    device = "cuda" if int(ctx.config.resources.get("gpusPerNode", 0) or 0) > 0 else "cpu"
    argv = training.build_torchrun_argv(spec, str(config_path))
    env = training.build_worker_env(os.environ, device=device)
    log.info("launching %s", " ".join(argv))
    heartbeat_file, metrics_file = Path(config.heartbeat_file), Path(config.metrics_file)
    process = subprocess.Popen(argv, env=env)
    seen_metrics = 0
    while process.poll() is None:
        time.sleep(5)
        seen_metrics = _relay(ctx, heartbeat_file, metrics_file, seen_metrics)
    _relay(ctx, heartbeat_file, metrics_file, seen_metrics)
    if process.returncode != 0:
        raise RuntimeError(f"torchrun exited with {process.returncode}; the rank logs above say why")
    if spec.node_rank != 0:
        return {}
    return json.loads(Path(config.result_file).read_text(encoding="utf-8"))


def _relay(ctx: StageContext, heartbeat_file: Path, metrics_file: Path, seen: int) -> int:
    """Copy the workers' heartbeat and metrics files into the stage heartbeat and MLflow."""
    try:
        beat = json.loads(heartbeat_file.read_text(encoding="utf-8"))
        ctx.beat(step=beat.get("step"), total=beat.get("total_steps"), metrics=beat.get("metrics"), last_checkpoint=beat.get("last_checkpoint"))
    except (OSError, ValueError):
        pass
    try:
        lines = metrics_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return seen
    for line in lines[seen:]:
        try:
            entry = json.loads(line)
            ctx.tracker.log_metrics(entry.get("metrics", {}), step=entry.get("step"))
        except ValueError:
            continue
    return len(lines)
