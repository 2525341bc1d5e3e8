"""`infialign stage NAME --config stage.json`: the single entrypoint of every stage pod and local subprocess.

Exit codes (documented in the README; the planner classifies them):
    0   success, or skipped because `_SUCCESS.json` already matches the config digest
    2   permanent: bad config, unusable input, stage not available — retrying cannot help
    1   retryable: any other error (the traceback is in the log, its tail in the termination message)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Final

from infialign.pipeline import stages
from infialign.pipeline.runtime import markers
from infialign.pipeline.runtime.config import StageConfig, StageConfigError, config_digest, load_stage_config, step_prefix
from infialign.pipeline.runtime.context import StageContext, StageInputError
from infialign.pipeline.runtime.tracking import StageTracker

__all__ = ["EXIT_SUCCESS", "EXIT_PERMANENT", "EXIT_RETRYABLE", "main", "run_stage", "input_digests", "finished_marker", "is_leader"]

EXIT_SUCCESS: Final = 0
EXIT_PERMANENT: Final = 2
EXIT_RETRYABLE: Final = 1

log = logging.getLogger("infialign.stage")


def _setup_logging() -> None:
    level = os.environ.get("INFIALIGN_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("urllib3", "botocore", "s3fs", "fsspec", "aiobotocore", "alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _termination_message(summary: dict[str, object]) -> None:
    """Kubernetes shows /dev/termination-log in the pod status; the operator copies it into the run's status."""
    path = Path(os.environ.get("INFIALIGN_TERMINATION_LOG", "/dev/termination-log"))
    if not path.parent.exists():
        return
    try:
        path.write_text(json.dumps(summary)[-4000:], encoding="utf-8")
    except OSError:
        pass


def input_digests(config: StageConfig) -> dict[str, str]:
    """Content digests of inputs produced by earlier steps, read from their `_SUCCESS.json`.

    They go into this step's config digest: when an earlier step re-ran with other settings, this
    step's inputs changed under the same URI and it must not be skipped.
    """
    digests: dict[str, str] = {}
    wanted = dict(config.input_steps)
    if config.model.from_step:
        wanted["model"] = config.model.from_step
    for name, step in sorted(wanted.items()):
        marker = markers.read_success(step_prefix(config.storage.root, config.run, step), config.storage)
        if marker is None:
            raise StageInputError(f"input {name!r} comes from step {step!r}, which has not succeeded (no _SUCCESS.json)")
        output = "model" if name == "model" else config.inputs[name].rstrip("/").rsplit("/", 1)[-1].removesuffix(".parquet")
        record = marker.output(output)
        digests[name] = (record.digest if record and record.digest else marker.config_digest) or ""
    return digests


def finished_marker(config: StageConfig) -> markers.SuccessMarker | None:
    """The step's `_SUCCESS.json` if it matches this config and these inputs, else None.

    The stage's own skip rule, also checked by the executor and the operator before they start a
    process or schedule a pod for a step that has nothing to do.
    """
    marker = markers.read_success(config.output, config.storage)
    if marker is None:
        return None
    try:
        digest = config_digest(config, input_digests(config))
    except Exception as e:  # noqa: BLE001  an input without a marker, an unreadable store: run the step
        log.debug("%s: not skipping: %s", config.step, e)
        return None
    return marker if marker.config_digest == digest else None


def is_leader(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Node 0 of a multi-node stage, or shard 0 of a generation stage, owns the markers and the MLflow
    run; the other nodes and shards only compute (shard 0 waits for them and merges)."""
    return env.get("PET_NODE_RANK", "0") in ("", "0") and env.get("INFIALIGN_SHARD_INDEX", "0") in ("", "0")


def run_stage(config: StageConfig, module: ModuleType | Callable[[StageContext], None], scratch: Path | None = None) -> int:
    """Run one attempt of a stage implementation with markers, heartbeat and tracking around it."""
    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC)
    leader = is_leader()
    try:
        digests = input_digests(config)
    except StageInputError as e:
        log.error("%s", e)
        _termination_message({"step": config.step, "attempt": config.attempt, "exitCode": EXIT_PERMANENT, "error": str(e)})
        return EXIT_PERMANENT
    digest = config_digest(config, digests)
    done = markers.read_success(config.output, config.storage)
    if done is not None and done.config_digest == digest:
        log.info("%s already succeeded (attempt %d, %s); skipping", config.step, done.attempt, digest[:19])
        return EXIT_SUCCESS

    tracked = config if leader else config.model_copy(update={"tracking": config.tracking.model_copy(update={"enabled": False})})
    tracker = StageTracker(tracked, pending_file=scratch / "tracking-pending.jsonl" if scratch else None)
    tracker.start()
    interval = float(os.environ.get("INFIALIGN_HEARTBEAT_SECONDS", "30")) if leader else float("inf")
    heartbeat = markers.Heartbeat(config.output, config.storage, interval=interval, enabled=leader)
    ctx = StageContext(config, tracker, heartbeat, scratch=scratch, input_digests=digests)
    tracker.log_params({"step": config.step, "stage": config.stage, "attempt": config.attempt, "settings": config.settings, "model": config.model.uri})
    heartbeat.beat(step=0, message="started", force=True)
    run = module if callable(module) else module.run
    try:
        run(ctx)
    except (StageConfigError, StageInputError, stages.StageNotAvailable) as e:
        log.error("%s: %s", config.step, e)
        tracker.end("FAILED")
        _termination_message({"step": config.step, "attempt": config.attempt, "exitCode": EXIT_PERMANENT, "error": str(e)[-2000:]})
        return EXIT_PERMANENT
    except KeyboardInterrupt:
        tracker.end("KILLED")
        raise
    except Exception as e:  # noqa: BLE001  every other error is retryable; the log has the traceback
        tail = traceback.format_exc()
        log.error("%s failed:\n%s", config.step, tail)
        tracker.end("FAILED")
        _termination_message({"step": config.step, "attempt": config.attempt, "exitCode": EXIT_RETRYABLE, "error": f"{type(e).__name__}: {e}\n{tail[-1500:]}"})
        return EXIT_RETRYABLE

    duration = time.monotonic() - started
    if not leader:
        who = f"shard {os.environ['INFIALIGN_SHARD_INDEX']}" if os.environ.get("INFIALIGN_SHARD_INDEX") else f"node {os.environ.get('PET_NODE_RANK')}"
        log.info("%s: %s finished its part; the leader writes the markers", config.step, who)
        return EXIT_SUCCESS
    ctx.add_metrics({"duration_seconds": duration}, headline=False)
    heartbeat.beat(step=1, total=1, message="finished" + (f" with warnings: {'; '.join(ctx.warnings)}" if ctx.warnings else ""), force=True)
    # The marker is written last: its presence means every output above is complete.
    marker = markers.SuccessMarker(
        config_digest=digest,
        step=config.step,
        attempt=config.attempt,
        outputs=ctx.outputs,
        metrics=ctx.metrics,
        started_at=started_at,
        finished_at=dt.datetime.now(dt.UTC),
        duration_seconds=duration,
        results=ctx.results,
        warnings=ctx.warnings,
    )
    markers.write_success(config.output, marker, config.storage)
    tracker.end("FINISHED")
    _termination_message({"step": config.step, "attempt": config.attempt, "exitCode": EXIT_SUCCESS, "outputs": len(ctx.outputs)})
    log.info("%s succeeded in %.1f s: %s", config.step, duration, ", ".join(f"{o.name}={o.rows if o.rows is not None else '-'} rows" for o in ctx.outputs))
    return EXIT_SUCCESS


def main(step_name: str, config_path: Path) -> int:
    _setup_logging()
    try:
        config = load_stage_config(config_path)
        if config.step != step_name:
            raise StageConfigError(f"the config at {config_path} is for step {config.step!r}, not {step_name!r}")
        module = stages.load(config.stage)
    except (StageConfigError, stages.StageNotAvailable) as e:
        log.error("%s", e)
        _termination_message({"step": step_name, "exitCode": EXIT_PERMANENT, "error": str(e)})
        return EXIT_PERMANENT
    scratch_env = os.environ.get("INFIALIGN_SCRATCH")
    scratch = Path(scratch_env) if scratch_env else None
    return run_stage(config, module, scratch=scratch)
