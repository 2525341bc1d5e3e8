"""`sft-<phase>`: one curriculum phase of supervised fine-tuning (TRL SFTTrainer, DeepSpeed, torchrun).

The phase starts from the base model (first phase) or the previous phase's exported model, trains on
its `select` dataset, publishes checkpoints to `<output>/checkpoints/<config digest>/` (upload, then marker) and
resumes from the newest complete one, and exports the model to `<output>/model/`.

One process trains in-process (a laptop, a CPU pod). Several nodes or GPUs go through torchrun with
the `PET_*` environment the operator sets; rank 0's result comes back in a JSON file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from infialign.pipeline.api import Benchmark, SftStage
from infialign.pipeline.runtime.context import StageContext, StageInputError
from infialign.pipeline.stages import _training

__all__ = ["run", "model_digest", "uses_torchrun"]

log = logging.getLogger(__name__)


model_digest = _training.model_digest  # shared with dpo (stages/_training.py); the names callers know
uses_torchrun = _training.uses_torchrun


def _train_in_process(ctx: StageContext, settings: Any, model_dir: Path, data: pa.Table, work: Path, checkpoints: str) -> dict[str, Any]:
    from infialign.pipeline import training

    result = training.train_sft(
        settings,
        str(model_dir),
        data,
        work,
        resume=True,
        heartbeat=_training.heartbeat_for(ctx),
        metrics_sink=_training.metrics_sink_for(ctx),
        checkpoint_store=training.CheckpointStore.from_uri(checkpoints, **_training.storage_options(ctx)),
    )
    return result.to_dict()


def _train_with_torchrun(ctx: StageContext, settings: Any, model_dir: Path, data: pa.Table, work: Path, checkpoints: str) -> dict[str, Any]:
    """Launch torchrun for this node; rank 0 of node 0 writes the result, every node waits for its workers."""
    from infialign.pipeline import training

    data_path = work / "train.parquet"
    pq.write_table(data, data_path)
    config = training.WorkerConfig(
        settings=settings,
        model_path=str(model_dir),
        train_data=str(data_path),
        output_dir=str(work),
        resume=True,
        checkpoint_uri=checkpoints,
        heartbeat_file=str(work / "heartbeat.json"),
        metrics_file=str(work / "metrics.jsonl"),
        result_file=str(work / "sft_result.json"),
    )
    return _training.run_torchrun(ctx, config, work)


def _quick_eval(ctx: StageContext, settings: SftStage, model_dir: Path, label: str) -> None:
    from infialign.pipeline import quickeval

    benchmarks = [Benchmark.model_validate(b) for b in ctx.config.benchmarks]
    if not benchmarks:
        log.warning("quickEval is set but the run has no benchmark; skipping the check")
        return
    bench = benchmarks[0]
    table = ctx.read_table(bench.uri).slice(0, settings.quick_eval)
    columns = [c for c in ("messages", "answer", "provenance") if c in table.column_names]
    rows = [row for row in table.select(columns).to_pylist() if row["answer"]]
    items = [(row["messages"], row["answer"]) for row in rows]
    tiers = [_tier_of(row.get("provenance")) for row in rows]
    result = quickeval.exact_match(
        model_dir, items, max_new_tokens=settings.quick_eval_max_tokens, groups=tiers if any(tiers) else None
    )
    per_tier = {f"quick_eval.{label}.tier{tier}.exact_match": score.accuracy for tier, score in result.by_group.items()}
    log.info(
        "quick eval (%s) on %s: %d/%d = %.3f%s", label, bench.name, result.correct, result.total, result.accuracy,
        "".join(f"; tier {t}: {s.correct}/{s.total}" for t, s in result.by_group.items()),
    )
    ctx.add_metrics(
        {
            f"quick_eval.{label}.exact_match": result.accuracy,
            f"quick_eval.{label}.answer_format": result.answered / max(result.total, 1),
            **per_tier,
        }
    )
    ctx.tracker.log_dict(
        {
            "benchmark": bench.name,
            "accuracy": result.accuracy,
            "by_tier": {t: {"correct": s.correct, "total": s.total, "accuracy": s.accuracy} for t, s in result.by_group.items()},
            "samples": result.samples,
        },
        f"quick-eval-{label}.json",
    )


def _tier_of(provenance: Any) -> str | None:
    """``provenance["tier"]`` of a record (a map column reads as key/value pairs), or None."""
    if not provenance:
        return None
    tier = dict(provenance).get("tier")
    return str(tier) if tier else None


def run(ctx: StageContext) -> None:
    from infialign.pipeline import training

    stage = ctx.settings(SftStage)
    (phase,) = stage.phases
    data = ctx.read_records("data")
    if data.num_rows == 0:
        raise StageInputError(f"{ctx.config.inputs['data']} has no records to train on")
    try:
        settings = training.SftSettings.from_api(stage, phase)
    except training.SettingsError as e:
        raise StageInputError(str(e)) from e
    model_dir = ctx.model_path()
    work = ctx.scratch / "train"
    work.mkdir(parents=True, exist_ok=True)
    checkpoints = _training.checkpoints_uri(ctx)
    ctx.tracker.log_params({"sft": settings.model_dump(mode="json")})
    if stage.quick_eval and ctx.config.phase_index == 0:
        _quick_eval(ctx, stage, model_dir, "before")
    train = _train_with_torchrun if uses_torchrun(os.environ) else _train_in_process
    result = train(ctx, settings, model_dir, data, work, checkpoints)
    if not result:  # a worker node: rank 0 of node 0 exports and reports
        return
    exported = Path(result["model_dir"])
    (exported / "infialign_training.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    ctx.write_model(exported, model_digest(exported))
    ctx.add_metrics(
        {
            "train_loss": result.get("train_loss") or float("nan"),
            "global_step": result["global_step"],
            "over_length_examples": result["truncation"]["over_length_examples"],
            "dropped_examples": result["truncation"]["dropped_examples"],
            "truncated_examples": result["truncation"]["truncated_examples"],
            **{k: v for k, v in result.get("metrics", {}).items() if isinstance(v, int | float)},
        }
    )
    packing = result["plan"]["packing"]
    ctx.tracker.set_tags({"infialign.engine": result["engine"], "infialign.packing": str(packing.get("mode", packing))})
    ctx.tracker.log_dict(result, "sft_result.json")
    if stage.quick_eval:
        _quick_eval(ctx, stage, exported, "after")
    last = ctx.config.phase_index is not None and ctx.config.phase_count == ctx.config.phase_index + 1
    ctx.tracker.register_model(ctx.output_uri("model"), f"{ctx.config.run.name}-sft", alias="sft" if last else f"sft-{phase.name}")
