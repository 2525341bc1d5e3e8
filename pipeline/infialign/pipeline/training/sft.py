"""``train_sft``: one SFT phase on TRL's SFTTrainer, from records to an exported HF model.

Flow: resolve the plan (settings.plan_sft) → tokenise, cut and pack the records once per node (cached on
disk by a digest, so other local ranks and a restarted attempt load it) → load the model → SFTTrainer with
our callbacks → train, resuming from the newest published checkpoint when asked → export
``<output_dir>/model`` (safetensors, tokenizer, chat template; LoRA merged).

Layout under ``output_dir`` (node-local disk): ``data/<digest>/node<k>/`` (prepared dataset),
``checkpoints/`` (HF checkpoints), ``resume/node<k>/`` (downloaded checkpoint), ``model/`` (the export, world
rank 0), ``deepspeed.json`` (the generated config).

Multi-process: launched by torchrun (launch.py), every rank calls ``train_sft`` with the same arguments.
transformers/accelerate initialise ``torch.distributed`` from RANK/WORLD_SIZE/LOCAL_RANK with the backend we
pass (nccl on GPUs, gloo on CPU); DeepSpeed, when the plan says so, joins the same group.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from infialign.pipeline import chat_template as _templates
from infialign.pipeline.training import chat as _chat
from infialign.pipeline.training import checkpoints as _ckpt
from infialign.pipeline.training import data as _data
from infialign.pipeline.training import progress as _progress
from infialign.pipeline.training import runner as _runner
from infialign.pipeline.training import settings as _settings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, TrainerCallback

__all__ = ["RuntimeFacts", "SftResult", "detect_runtime", "train_sft"]

# Defined in runner.py (shared with DPO); re-exported for the callers that know them from here.
RuntimeFacts = _runner.RuntimeFacts
detect_runtime = _runner.detect_runtime

log = logging.getLogger(__name__)

# Bump when the prepared-dataset format changes, so stale caches are not reused.
_DATA_FORMAT = "sft-data-v1"
_RECORD_COLUMNS = ("id", "messages", "response")


@dataclass(kw_only=True)
class SftResult(_runner.TrainingResult):
    """What a finished phase reports: the shared training result, and the truncation and dataset statistics."""

    truncation: _chat.TruncationReport
    dataset: _data.DatasetStats

    def _own_fields(self) -> dict[str, Any]:
        return {"truncation": self.truncation.to_dict(), "dataset": self.dataset.to_dict()}


# ---------------------------------------------------------------------------------------------- helpers


def _records_table(train_records: Iterable[Mapping[str, Any]] | pa.Table) -> pa.Table:
    if isinstance(train_records, pa.Table):
        table = train_records
    else:  # only the columns we read: the map columns (scores, provenance) need not type-check here
        table = pa.Table.from_pylist([{k: r[k] for k in _RECORD_COLUMNS if k in r} for r in train_records])
    missing = [c for c in ("messages", "response") if c not in table.column_names]
    if missing:
        raise ValueError(f"train_records lack columns {missing}; they must follow the record schema (records.py)")
    return table.select([c for c in _RECORD_COLUMNS if c in table.column_names])


def _digest(table: pa.Table, tokenizer: PreTrainedTokenizerBase, settings: _settings.SftSettings, mode: _data.PackingMode) -> str:
    import pyarrow.compute as pc

    h = hashlib.sha256()
    h.update(json.dumps(
        [_DATA_FORMAT, settings.max_length, settings.overlong, settings.system_prompt, settings.chat_template,
         settings.micro_batch_size, settings.seed, mode.value, tokenizer.chat_template, len(tokenizer), table.num_rows],
        default=str,
    ).encode())
    if "id" in table.column_names:
        h.update("\n".join(map(str, table.column("id").to_pylist())).encode())
    h.update(pc.utf8_length(table.column("response")).to_numpy(zero_copy_only=False).tobytes())
    return h.hexdigest()[:16]


def _prepare_data(
    table: pa.Table,
    tokenizer: PreTrainedTokenizerBase,
    settings: _settings.SftSettings,
    mode: _data.PackingMode,
    cache: Path,
) -> tuple[Any, _chat.TruncationReport, _data.DatasetStats]:
    from datasets import Dataset, load_from_disk

    done = cache / "_DONE.json"
    if done.exists():
        meta = json.loads(done.read_text())
        return (
            load_from_disk(str(cache / "train")),
            _chat.TruncationReport(**{k: v for k, v in meta["truncation"].items() if k != "over_length_fraction"}),
            _data.DatasetStats(**{k: v for k, v in meta["dataset"].items() if k != "token_efficiency"}),
        )
    _chat.check_template_keeps_response(tokenizer, table.slice(0, 8).to_pylist(), system_prompt=settings.system_prompt)
    records = Dataset(table)
    tokenised = records.map(
        _chat.tokenise_batch,
        batched=True,
        batch_size=64,
        num_proc=settings.dataset_num_proc,
        remove_columns=records.column_names,
        fn_kwargs={"tokenizer": tokenizer, "system_prompt": settings.system_prompt},
        desc="Tokenising",
    )
    cut, report = _chat.apply_max_length(tokenised, settings.max_length, settings.overlong)
    train, stats = _data.build_train_dataset(
        cut, mode, max_length=settings.max_length, micro_batch_size=settings.micro_batch_size, seed=settings.seed,
        num_proc=settings.dataset_num_proc,
    )
    train.save_to_disk(str(cache / "train"))
    done.write_text(json.dumps({"truncation": report.to_dict(), "dataset": stats.to_dict()}, indent=1))
    return load_from_disk(str(cache / "train")), report, stats


def _make_trainer_class() -> type:
    from trl import SFTTrainer

    class InfiSFTTrainer(SFTTrainer):
        """SFTTrainer that keeps our ``length`` column for ``group_by_length`` (TRL's signature drops it)."""

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if "length" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "length"]

    return InfiSFTTrainer


# ---------------------------------------------------------------------------------------------- entry point


def train_sft(
    settings: _settings.SftSettings,
    model_path: str,
    train_records: Iterable[Mapping[str, Any]] | pa.Table,
    output_dir: Path | str,
    *,
    resume: bool = False,
    heartbeat: _progress.Heartbeat | None = None,
    metrics_sink: _progress.MetricsSink | None = None,
    checkpoint_store: _ckpt.CheckpointStore | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> SftResult:
    """Train one SFT phase and export the model to ``output_dir/model``.

    Args:
        settings: the phase's settings.
        model_path: a local HF model directory (weights, config, tokenizer).
        train_records: records (records.py schema; ``messages`` and ``response`` are used) as dicts or a table.
        output_dir: local working directory (node-local disk is fine).
        resume: continue from the newest checkpoint: the one ``checkpoint_store``'s marker names, else the newest
            under ``output_dir/checkpoints``. Nothing to resume from is not an error (first attempt).
        heartbeat: ``(step, total_steps, metrics, last_checkpoint)``, every ``settings.heartbeat_interval_s``.
        metrics_sink: ``(metrics, step)`` on world rank 0 at every log step (loss, lr, grad norm, tokens/s, MFU).
        checkpoint_store: publish every checkpoint there (upload, then marker); also the resume source.
        callbacks: more ``TrainerCallback`` objects.
    """
    return _runner.isolated_run(
        lambda: _train(
            settings, model_path, train_records, output_dir, resume=resume, heartbeat=heartbeat, metrics_sink=metrics_sink,
            checkpoint_store=checkpoint_store, callbacks=callbacks,
        )
    )


def _train(
    settings: _settings.SftSettings,
    model_path: str,
    train_records: Iterable[Mapping[str, Any]] | pa.Table,
    output_dir: Path | str,
    *,
    resume: bool,
    heartbeat: _progress.Heartbeat | None,
    metrics_sink: _progress.MetricsSink | None,
    checkpoint_store: _ckpt.CheckpointStore | None,
    callbacks: Sequence[TrainerCallback],
) -> SftResult:
    from trl import SFTConfig

    started = time.perf_counter()
    output_dir = Path(output_dir)
    facts = _runner.detect_runtime()
    plan = _settings.plan_sft(
        settings,
        device=facts.device,
        world_size=facts.world_size,
        flash_attn_available=facts.flash_attn_available,
        deepspeed_available=facts.deepspeed_available,
    )
    if facts.rank == 0:
        log.info("SFT plan: %s", plan.describe())
    if plan.packing.mode is _data.PackingMode.PACKED_VARLEN_SDPA:
        from infialign.pipeline.training.attention import register_sdpa_varlen

        register_sdpa_varlen()

    deepspeed_cfg = _runner.setup_deepspeed(plan, settings, facts, output_dir)
    tokenizer = _runner.prepare_tokenizer(model_path, settings)
    table = _records_table(train_records)
    chatml = settings.chat_template == "infialign-chatml"
    args = SFTConfig(
        **_runner.common_args(settings, plan, output_dir, deepspeed_cfg),
        loss_type=settings.loss_type,
        # data: prepared by us, TRL only collates (see data.py)
        packing=plan.packing.mode.packed,
        packing_strategy=_data.PACKING_STRATEGY,
        padding_free=plan.packing.mode.packed,
        dataset_kwargs={"skip_prepare_dataset": True},
        train_sampling_strategy="random" if plan.packing.mode.packed else "group_by_length",
        length_column_name="length",
        eos_token=_templates.IM_END if chatml else None,  # the model must learn to stop at <|im_end|>
    )
    # From here torch.distributed is initialised (SFTConfig set up the device).
    _runner.log_distributed(facts)

    # Tokenise and pack once per node; the other local ranks (and a restarted attempt) load the result.
    node = _runner.node_name()
    cache = output_dir / "data" / _digest(table, tokenizer, settings, plan.packing.mode) / node
    with args.main_process_first(local=True, desc="prepare SFT data"):
        cache.mkdir(parents=True, exist_ok=True)
        train_ds, report, stats = _prepare_data(table, tokenizer, settings, plan.packing.mode, cache)
    if facts.rank == 0:
        log.info("SFT data: %s; %s", report.summary(), stats.to_dict())

    model = _runner.load_model(model_path, plan)
    cbs = _runner.standard_callbacks(
        settings,
        facts,
        flops=_progress.flops_model_for(model, stats.attention_context),
        checkpoint_store=checkpoint_store,
        heartbeat=heartbeat,
        metrics_sink=metrics_sink,
        extra=callbacks,
    )
    trainer = _make_trainer_class()(
        model=model, args=args, train_dataset=train_ds, processing_class=tokenizer, peft_config=_runner.lora_config(settings),
        callbacks=cbs.all,
    )
    _runner.check_engine(trainer, plan)
    resume_from = _runner.resume_checkpoint(resume, checkpoint_store, args, output_dir, facts)

    output = trainer.train(resume_from_checkpoint=resume_from)
    model_dir = _runner.export_model(trainer, settings, model_path, tokenizer, output_dir)

    metrics = {k: float(v) for k, v in output.metrics.items() if isinstance(v, int | float)}
    metrics.update(cbs.metrics.last)
    metrics.update(_runner.run_calibration(trainer, cbs, metrics, settings, facts))
    return SftResult(
        model_dir=model_dir if trainer.is_world_process_zero() else None,
        plan=plan,
        truncation=report,
        dataset=stats,
        global_step=trainer.state.global_step,
        train_loss=float(output.training_loss) if output.training_loss is not None else None,
        metrics=metrics,
        resumed_from=resume_from,
        last_checkpoint=(cbs.publisher.last_published if cbs.publisher else None) or _runner.last_local_checkpoint(args),
        runtime_s=time.perf_counter() - started,
        world_size=facts.world_size,
        rank=facts.rank,
    )
