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

import dataclasses
import hashlib
import json
import logging
import math
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
from infialign.pipeline.training import rope as _rope
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
_DATA_FORMAT = "sft-data-v2"  # v2: packed = one example per row + the filler (StepBatchSampler packs per step)
_RECORD_COLUMNS = ("id", "messages", "response")


@dataclass(kw_only=True)
class SftResult(_runner.TrainingResult):
    """What a finished phase reports: the shared training result, and the truncation and dataset statistics."""

    truncation: _chat.TruncationReport
    dataset: _data.DatasetStats
    rope: _rope.RopePlan = field(default_factory=_rope.RopePlan)
    step_batching: _data.StepBatching | None = None  # packed mode: how each step's samples became micro-batches

    def _own_fields(self) -> dict[str, Any]:
        return {
            "truncation": self.truncation.to_dict(),
            "dataset": self.dataset.to_dict(),
            "rope": self.rope.to_dict(),
            "step_batching": self.step_batching.to_dict() if self.step_batching else None,
        }


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
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class InfiSFTTrainer(SFTTrainer):
        """SFTTrainer that keeps our ``length`` column for ``group_by_length`` (TRL's signature drops it) and, when
        packing, draws each optimizer step's samples from ``step_batches`` (data.py: samples per step, not rows)."""

        step_batches: _data.StepBatchSampler | None = None

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if "length" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "length"]

        def get_train_dataloader(self) -> Any:
            if self.step_batches is None:
                return super().get_train_dataloader()
            from torch.utils.data import DataLoader

            dataset = self._remove_unused_columns(self.train_dataset, description="Training")
            loader = DataLoader(
                dataset, batch_sampler=self.step_batches, collate_fn=self.data_collator,
                num_workers=self.args.dataloader_num_workers, pin_memory=self.args.dataloader_pin_memory,
            )
            return self.accelerator.prepare(loader)  # shards the micro-batches round-robin across ranks

    class StepEpochCallback(TrainerCallback):
        """Tells the sampler the epoch before it is iterated. The Trainer's own ``set_epoch`` does not reach a batch
        sampler behind accelerate's skip wrapper in the epoch a multi-process run resumes in (accelerate 1.16
        ``DataLoaderShard.set_epoch``), and that epoch would replay epoch 0's order. Drop when accelerate forwards it."""

        def __init__(self, sampler: _data.StepBatchSampler) -> None:
            self.sampler = sampler

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.sampler.set_epoch(int(math.floor(state.epoch + 1e-6)))  # a resumed state holds e.g. 2.4: epoch 2

    InfiSFTTrainer.StepEpochCallback = StepEpochCallback  # type: ignore[attr-defined]
    return InfiSFTTrainer


def _layout(
    train_ds: Any, settings: _settings.SftSettings, facts: _runner.RuntimeFacts
) -> tuple[_data.StepBatching, _data.StepBatchSampler]:
    """The packed step layout for this run's data and world size, and its sampler (filler: the dataset's last row)."""
    lengths = train_ds.data.column("length").to_numpy()[:-1]
    probe = _data.StepBatching(settings.global_batch_size, facts.world_size, 1, settings.max_length, len(lengths), settings.seed)
    epochs = math.ceil(settings.max_steps / probe.steps_per_epoch) if settings.max_steps else math.ceil(settings.epochs)
    layout = _data.plan_step_batches(
        lengths, samples_per_step=settings.global_batch_size, world_size=facts.world_size,
        micro_batch_size=settings.micro_batch_size, max_length=settings.max_length, epochs=epochs, seed=settings.seed,
    )
    return layout, _data.StepBatchSampler(lengths, layout, filler=len(lengths))


def _rope_plan(model_path: str, settings: _settings.SftSettings) -> _rope.RopePlan:
    try:
        positions, theta = _rope.model_positions(_runner.load_config(model_path).to_dict())
        return _rope.plan_rope(
            settings.rope.scaling, theta=settings.rope.theta, factor=settings.rope.factor, max_length=settings.max_length,
            positions=positions, model_theta=theta, length_field="max_length", rope_field="rope",
        )
    except _rope.RopeError as e:
        raise _settings.SettingsError(str(e)) from e


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

    rope = _rope_plan(model_path, settings)  # before any work: a length the model cannot take fails here
    deepspeed_cfg = _runner.setup_deepspeed(plan, settings, facts, output_dir)
    tokenizer = _runner.prepare_tokenizer(model_path, settings)
    table = _records_table(train_records)
    chatml = settings.chat_template == "infialign-chatml"
    config_kwargs: dict[str, Any] = dict(
        **_runner.common_args(settings, plan, output_dir, deepspeed_cfg),
        loss_type=settings.loss_type,
        # data: prepared by us, TRL only collates (see data.py); packed steps come from InfiSFTTrainer.step_batches
        packing=plan.packing.mode.packed,
        packing_strategy=_data.PACKING_STRATEGY,
        padding_free=plan.packing.mode.packed,
        dataset_kwargs={"skip_prepare_dataset": True},
        train_sampling_strategy="sequential" if plan.packing.mode.packed else "group_by_length",
        length_column_name="length",
        eos_token=_templates.IM_END if chatml else None,  # the model must learn to stop at <|im_end|>
    )
    args = SFTConfig(**config_kwargs)
    # From here torch.distributed is initialised (SFTConfig set up the device).
    _runner.log_distributed(facts)

    # Tokenise and pack once per node; the other local ranks (and a restarted attempt) load the result.
    node = _runner.node_name()
    cache = output_dir / "data" / _digest(table, tokenizer, settings, plan.packing.mode) / node
    with args.main_process_first(local=True, desc="prepare SFT data"):
        cache.mkdir(parents=True, exist_ok=True)
        train_ds, report, stats = _prepare_data(table, tokenizer, settings, plan.packing.mode, cache)
    layout = sampler = None
    if plan.packing.mode.packed:
        layout, sampler = _layout(train_ds, settings, facts)
        stats = dataclasses.replace(stats, rows=layout.micro_batches_per_epoch)
        plan = dataclasses.replace(plan, gradient_accumulation_steps=layout.grad_accum)
        # A new config, not an assignment: TrainingArguments fills DeepSpeed's `auto` batch values when it is built.
        args = SFTConfig(**{**config_kwargs, "gradient_accumulation_steps": layout.grad_accum})
    if facts.rank == 0:
        log.info("SFT data: %s; %s; step layout %s; RoPE %s", report.summary(), stats.to_dict(),
                 layout.to_dict() if layout else "padded", rope.reason)

    model = _runner.load_model(model_path, plan, rope)
    cbs = _runner.standard_callbacks(
        settings,
        facts,
        flops=_progress.flops_model_for(model, stats.attention_context),
        checkpoint_store=checkpoint_store,
        heartbeat=heartbeat,
        metrics_sink=metrics_sink,
        extra=callbacks,
    )
    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(
        model=model, args=args, train_dataset=train_ds, processing_class=tokenizer, peft_config=_runner.lora_config(settings),
        callbacks=[*cbs.all, *([trainer_cls.StepEpochCallback(sampler)] if sampler else [])],
    )
    trainer.step_batches = sampler
    _runner.check_engine(trainer, plan)
    resume_from = _runner.resume_checkpoint(resume, checkpoint_store, args, output_dir, facts)

    output = trainer.train(resume_from_checkpoint=resume_from)
    model_dir = _runner.export_model(trainer, settings, model_path, tokenizer, output_dir, rope)

    metrics = {k: float(v) for k, v in output.metrics.items() if isinstance(v, int | float)}
    metrics.update(cbs.metrics.last)
    metrics.update(_runner.run_calibration(trainer, cbs, metrics, settings, facts))
    return SftResult(
        model_dir=model_dir if trainer.is_world_process_zero() else None,
        plan=plan,
        truncation=report,
        dataset=stats,
        rope=rope,
        step_batching=layout,
        global_step=trainer.state.global_step,
        train_loss=float(output.training_loss) if output.training_loss is not None else None,
        metrics=metrics,
        resumed_from=resume_from,
        last_checkpoint=(cbs.publisher.last_published if cbs.publisher else None) or _runner.last_local_checkpoint(args),
        runtime_s=time.perf_counter() - started,
        world_size=facts.world_size,
        rank=facts.rank,
    )
