"""`dpo`: DPO from the last SFT phase's model on the `prefs` pairs (TRL DPOTrainer, DeepSpeed, torchrun), with SAGE.

The stage reads the pairs (pairs.py schema), starts from the model `graph.step_model` names (the last enabled SFT
phase's export, else the base model), keeps the reference log-probs in `<output>/pairs-ref.parquet` (computed once,
reused by every later attempt), publishes checkpoints to `<output>/checkpoints/<config digest>/` and resumes from the newest
complete one, exports `<output>/model/` and registers it in MLflow with alias `dpo`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from infialign.pipeline import pairs as _pairs
from infialign.pipeline.api import DpoStage
from infialign.pipeline.runtime import storage
from infialign.pipeline.runtime.context import StageContext, StageInputError
from infialign.pipeline.stages import _training

__all__ = ["run", "read_pairs"]

log = logging.getLogger(__name__)

REF_LOGPS = "pairs-ref"


def read_pairs(ctx: StageContext, stage: DpoStage) -> pa.Table:
    """The input pairs, validated; errors name the spec field (or the stage) that provided them and the fix."""
    uri = ctx.config.inputs.get("pairs")
    where = "spec.stages.dpo.pairsUri" if stage.pairs_uri else "the prefs stage's output (spec.stages.prefs)"
    if not uri:
        raise StageInputError("dpo has no pairs to train on; enable prefs or set spec.stages.dpo.pairsUri")
    table = ctx.read_table(uri)
    try:
        table = _pairs.validate_pairs(table)
    except _pairs.PairSchemaError as e:
        raise StageInputError(f"{uri} from {where} is not a pairs file: {e}") from e
    if table.num_rows == 0:
        raise StageInputError(f"{uri} from {where} holds no pairs; DPO needs at least one (prefs never writes an empty file)")
    ctx.tracker.log_dataset("pairs", uri, ctx.input_digests.get("pairs") or storage.table_digest(table), "training", rows=table.num_rows)
    return table


def _train_in_process(ctx: StageContext, settings: Any, model_dir: Path, digest: str, pairs: pa.Table, work: Path) -> dict[str, Any]:
    from infialign.pipeline import training

    result = training.train_dpo(
        settings,
        str(model_dir),
        pairs,
        work,
        model_digest=digest,
        ref_logps_uri=ctx.output_uri(REF_LOGPS),
        storage_options=_training.storage_options(ctx),
        resume=True,
        heartbeat=_training.heartbeat_for(ctx),
        metrics_sink=_training.metrics_sink_for(ctx),
        checkpoint_store=training.CheckpointStore.from_uri(_training.checkpoints_uri(ctx), **_training.storage_options(ctx)),
    )
    return result.to_dict()


def _train_with_torchrun(ctx: StageContext, settings: Any, model_dir: Path, digest: str, pairs: pa.Table, work: Path) -> dict[str, Any]:
    from infialign.pipeline import training

    data_path = work / "pairs.parquet"
    pq.write_table(pairs, data_path)
    config = training.WorkerConfig(
        settings=settings,
        model_path=str(model_dir),
        train_data=str(data_path),
        output_dir=str(work),
        model_digest=digest,
        ref_logps_uri=ctx.output_uri(REF_LOGPS),
        resume=True,
        checkpoint_uri=_training.checkpoints_uri(ctx),
        heartbeat_file=str(work / "heartbeat.json"),
        metrics_file=str(work / "metrics.jsonl"),
        result_file=str(work / "dpo_result.json"),
    )
    return _training.run_torchrun(ctx, config, work)


def _headline(result: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {
        "train_loss": result.get("train_loss") or float("nan"),
        "global_step": result["global_step"],
        "pairs": result["pairs"],
        "dropped_overlong": result["dropped_overlong"],
        "ref_logps_reused": 1.0 if result["ref_logps"] == "stored" else 0.0,
    }
    out.update({k: v for k, v in result.get("metrics", {}).items() if isinstance(v, int | float)})
    refreshes = result.get("sage_refreshes") or []
    if refreshes:
        last = refreshes[-1]
        out.update({
            "sage.refreshes": len(refreshes),
            "sage.final_pool": last["pool"],
            "sage.final_selected": last["selected"],
            "sage.final_competence": last["competence"],
            "sage.final_unstable_fraction": last["unstable_fraction"],
            "sage.final_retired": last["retired_total"],
        })
    return out


def run(ctx: StageContext) -> None:
    from infialign.pipeline import training

    stage = ctx.settings(DpoStage)
    pairs = read_pairs(ctx, stage)
    try:
        settings = training.DpoSettings.from_api(stage)
    except (training.SettingsError, ValueError) as e:
        raise StageInputError(f"spec.stages.dpo: {e}") from e
    model_dir = ctx.model_path()
    digest = _training.model_digest(model_dir)
    work = ctx.scratch / "train"
    work.mkdir(parents=True, exist_ok=True)
    ctx.tracker.log_params({"dpo": settings.model_dump(mode="json")})
    train = _train_with_torchrun if _training.uses_torchrun(os.environ) else _train_in_process
    try:
        result = train(ctx, settings, model_dir, digest, pairs, work)
    except training.SettingsError as e:
        raise StageInputError(f"spec.stages.dpo: {e}") from e
    if not result:  # a worker node: rank 0 of node 0 exports and reports
        return
    exported = Path(result["model_dir"])
    (exported / "infialign_training.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    ctx.write_model(exported, _training.model_digest(exported))
    ctx.add_metrics(_headline(result))
    ctx.tracker.set_tags({"infialign.engine": result["engine"], "infialign.ref_logps": result["ref_logps"],
                          "infialign.sage": str(stage.sage.enabled).lower()})
    ctx.tracker.log_dict(result, "dpo_result.json")
    if result.get("sage_refreshes"):
        ctx.tracker.log_dict(result["sage_refreshes"], "sage_refreshes.json")
    ctx.tracker.register_model(ctx.output_uri("model"), f"{ctx.config.run.name}-dpo", alias="dpo")
