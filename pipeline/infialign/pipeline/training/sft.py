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

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from infialign.pipeline import chat_template as _templates
from infialign.pipeline.training import chat as _chat
from infialign.pipeline.training import checkpoints as _ckpt
from infialign.pipeline.training import data as _data
from infialign.pipeline.training import deepspeed_config as _ds
from infialign.pipeline.training import progress as _progress
from infialign.pipeline.training import settings as _settings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, TrainerCallback

__all__ = ["RuntimeFacts", "SftResult", "detect_runtime", "train_sft"]

log = logging.getLogger(__name__)

# Bump when the prepared-dataset format changes, so stale caches are not reused.
_DATA_FORMAT = "sft-data-v1"
_RECORD_COLUMNS = ("id", "messages", "response")


@dataclass(frozen=True)
class RuntimeFacts:
    """What this process found out about where it runs (the impure half of planning)."""

    device: Literal["cpu", "cuda"]
    world_size: int
    rank: int
    local_rank: int
    device_name: str | None
    flash_attn_available: bool
    deepspeed_available: bool


def detect_runtime(env: Mapping[str, str] | None = None) -> RuntimeFacts:
    import torch

    env = os.environ if env is None else env
    cuda = torch.cuda.is_available()
    return RuntimeFacts(
        device="cuda" if cuda else "cpu",
        world_size=int(env.get("WORLD_SIZE", "1")),
        rank=int(env.get("RANK", "0")),
        local_rank=int(env.get("LOCAL_RANK", "0")),
        device_name=torch.cuda.get_device_name(0) if cuda else None,
        flash_attn_available=cuda and importlib.util.find_spec("flash_attn") is not None,
        deepspeed_available=importlib.util.find_spec("deepspeed") is not None,
    )


@dataclass
class SftResult:
    """What a finished phase reports. ``model_dir`` is set on world rank 0, which wrote the export."""

    model_dir: Path | None
    plan: _settings.SftPlan
    truncation: _chat.TruncationReport
    dataset: _data.DatasetStats
    global_step: int
    train_loss: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    resumed_from: str | None = None
    last_checkpoint: str | None = None
    runtime_s: float = 0.0
    world_size: int = 1
    rank: int = 0

    @property
    def engine(self) -> str:
        return self.plan.engine

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "engine": self.engine,
            "plan": self.plan.to_dict(),
            "truncation": self.truncation.to_dict(),
            "dataset": self.dataset.to_dict(),
            "global_step": self.global_step,
            "train_loss": self.train_loss,
            "metrics": self.metrics,
            "resumed_from": self.resumed_from,
            "last_checkpoint": self.last_checkpoint,
            "runtime_s": self.runtime_s,
            "world_size": self.world_size,
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


def _prepare_tokenizer(model_path: str, settings: _settings.SftSettings) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if settings.chat_template == "infialign-chatml":
        vocab = tokenizer.get_vocab()
        missing = [t for t in (_templates.IM_START, _templates.IM_END) if t not in vocab]
        if missing:
            raise _settings.SettingsError(
                f"chat_template='infialign-chatml' needs the tokens {missing} in the tokenizer of {model_path} (Qwen2/2.5 "
                "have them). Set chat_template='model' to train with the checkpoint's own template."
            )
        tokenizer.chat_template = _templates.CHATML_TRAINING_TEMPLATE
    elif not tokenizer.chat_template:
        raise _settings.SettingsError(f"chat_template='model' but {model_path} ships no chat template; use 'infialign-chatml'")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # what TRL does too; padding is never under the loss
    return tokenizer


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process_env_for_deepspeed() -> None:
    # DeepSpeed always initialises torch.distributed, even for one process; give it a group of one.
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def _make_trainer_class() -> type:
    from trl import SFTTrainer

    class InfiSFTTrainer(SFTTrainer):
        """SFTTrainer that keeps our ``length`` column for ``group_by_length`` (TRL's signature drops it)."""

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if "length" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "length"]

    return InfiSFTTrainer


_SCOPED_ENV = ("ACCELERATE_USE_DEEPSPEED", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def _scoped_env(keys: Sequence[str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _without_zero3_init() -> Iterator[None]:
    from transformers.integrations import deepspeed as hf_ds

    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved


def _export(
    trainer: Any,
    settings: _settings.SftSettings,
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: Path,
) -> Path:
    """Write ``output_dir/model`` on world rank 0 (collective under ZeRO-3: every rank must call it)."""
    model_dir = output_dir / "model"
    if not settings.lora.enabled:
        trainer.model.config.use_cache = True  # off for training only; generation wants its KV cache
        trainer.save_model(str(model_dir))  # gathers ZeRO-3 shards; writes on the main process only
    else:
        adapter_dir = output_dir / "adapter"
        trainer.save_model(str(adapter_dir))
        if trainer.is_world_process_zero():
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            # Merge on CPU from the pristine base: independent of how (and whether) the adapter was sharded.
            # Under ZeRO-3, from_pretrained would build the base partitioned (zero.Init) while the Trainer's
            # DeepSpeed config is alive; this model is for one process only.
            with _without_zero3_init():
                base = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto", device_map={"": "cpu"})
            merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
            merged.generation_config = trainer.model.generation_config
            merged.config.eos_token_id = trainer.model.config.get_text_config().eos_token_id
            merged.config.pad_token_id = trainer.model.config.get_text_config().pad_token_id
            merged.save_pretrained(str(model_dir))
            tokenizer.save_pretrained(str(model_dir))
            del base, merged
    # config.json does not store the training-only attention (segment-wise SDPA); loaders get their default.
    trainer.accelerator.wait_for_everyone()
    return model_dir


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
    # accelerate leaves ACCELERATE_USE_DEEPSPEED=true in os.environ after a DeepSpeed run (accelerate/accelerator.py),
    # which silently turns every later Trainer in the process into a DeepSpeed one; we also set RANK/WORLD_SIZE/
    # MASTER_* for a one-process DeepSpeed group. Scope those variables to this call.
    with _scoped_env(_SCOPED_ENV):
        try:
            return _train(
                settings, model_path, train_records, output_dir, resume=resume, heartbeat=heartbeat, metrics_sink=metrics_sink,
                checkpoint_store=checkpoint_store, callbacks=callbacks,
            )
        finally:
            # transformers keeps the DeepSpeed config in a module global while the arguments live; clear it (also when
            # training failed) so a later from_pretrained in this process is not built partitioned by ZeRO-3.
            if "transformers.integrations.deepspeed" in sys.modules:
                sys.modules["transformers.integrations.deepspeed"].unset_hf_deepspeed_config()


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
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig

    started = time.perf_counter()
    output_dir = Path(output_dir)
    facts = detect_runtime()
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

    deepspeed_cfg = None
    if not plan.deepspeed:
        os.environ.pop("ACCELERATE_USE_DEEPSPEED", None)
    if plan.deepspeed:
        deepspeed_cfg = _ds.build_deepspeed_config(
            plan.zero_stage,  # type: ignore[arg-type]
            offload_optimizer=settings.deepspeed.offload_optimizer,
            offload_params=settings.deepspeed.offload_params,
            device=plan.device,
        )
        if facts.world_size == 1:
            _single_process_env_for_deepspeed()
        if facts.rank == 0:
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / "deepspeed.json").write_text(json.dumps(deepspeed_cfg, indent=1))

    tokenizer = _prepare_tokenizer(model_path, settings)
    table = _records_table(train_records)
    chatml = settings.chat_template == "infialign-chatml"
    args = SFTConfig(
        output_dir=str(output_dir / "checkpoints"),
        # schedule
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        per_device_train_batch_size=settings.micro_batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=plan.lr_scheduler_type,
        lr_scheduler_kwargs=dict(plan.lr_scheduler_kwargs),
        warmup_steps=settings.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps (transformers 5)
        adam_beta1=settings.adam_beta1,
        adam_beta2=settings.adam_beta2,
        adam_epsilon=settings.adam_epsilon,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        seed=settings.seed,
        data_seed=settings.seed,
        loss_type=settings.loss_type,
        # data: prepared by us, TRL only collates (see data.py)
        max_length=settings.max_length,
        packing=plan.packing.mode.packed,
        packing_strategy=_data.PACKING_STRATEGY,
        padding_free=plan.packing.mode.packed,
        dataset_kwargs={"skip_prepare_dataset": True},
        train_sampling_strategy="random" if plan.packing.mode.packed else "group_by_length",
        length_column_name="length",
        eos_token=_templates.IM_END if chatml else None,  # the model must learn to stop at <|im_end|>
        # execution
        use_cpu=plan.device == "cpu",
        bf16=plan.precision == "bf16",
        fp16=False,
        gradient_checkpointing=plan.gradient_checkpointing,
        deepspeed=deepspeed_cfg,
        ddp_backend=plan.distributed_backend,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        # checkpoints and logs: our callbacks report; no integrations, no progress bars in pod logs
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.keep_checkpoints,
        save_only_model=False,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        report_to=[],
        disable_tqdm=True,
    )
    # From here torch.distributed is initialised (SFTConfig set up the device).
    if facts.rank == 0 and torch.distributed.is_available() and torch.distributed.is_initialized():
        log.info("torch.distributed: backend=%s world_size=%d", torch.distributed.get_backend(), torch.distributed.get_world_size())

    # Tokenise and pack once per node; the other local ranks (and a restarted attempt) load the result. The node
    # rank (torchrun's GROUP_RANK) keeps nodes apart should output_dir be on a shared filesystem.
    node = f"node{os.environ.get('GROUP_RANK', '0')}"
    cache = output_dir / "data" / _digest(table, tokenizer, settings, plan.packing.mode) / node
    with args.main_process_first(local=True, desc="prepare SFT data"):
        cache.mkdir(parents=True, exist_ok=True)
        train_ds, report, stats = _prepare_data(table, tokenizer, settings, plan.packing.mode, cache)
    if facts.rank == 0:
        log.info("SFT data: %s; %s", report.summary(), stats.to_dict())

    dtype = torch.bfloat16 if plan.deepspeed and plan.precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation=plan.attn_implementation)
    model.config.use_cache = False  # training: a KV cache is never read, and it disables transformers' packed-mask path
    peft_config = None
    if settings.lora.enabled:
        lora = settings.lora
        targets: str | list[str] = "all-linear" if lora.target_modules == ("all-linear",) else list(lora.target_modules)
        peft_config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type="CAUSAL_LM")

    flops = _progress.flops_model_for(model, stats.attention_context)
    peak = settings.peak_tflops_per_device * 1e12 if settings.peak_tflops_per_device else _progress.peak_flops_for(facts.device_name)
    publisher = _ckpt.CheckpointPublisher(checkpoint_store, keep_last=settings.keep_checkpoints) if checkpoint_store else None
    metrics_cb = _progress.MetricsCallback(metrics_sink, world_size=facts.world_size, flops=flops, peak_flops=peak)
    cbs: list[TrainerCallback] = [metrics_cb]
    if publisher:
        cbs.append(publisher)
    if heartbeat:
        cbs.append(
            _progress.HeartbeatCallback(
                heartbeat,
                interval_s=settings.heartbeat_interval_s,
                last_checkpoint=(lambda: publisher.last_published) if publisher else None,
            )
        )
    cbs.extend(callbacks)

    trainer = _make_trainer_class()(
        model=model, args=args, train_dataset=train_ds, processing_class=tokenizer, peft_config=peft_config, callbacks=cbs
    )

    if trainer.is_deepspeed_enabled != plan.deepspeed:  # the plan is what we report; never train differently
        raise RuntimeError(
            f"the plan says engine={plan.engine} but the Trainer has DeepSpeed {'on' if trainer.is_deepspeed_enabled else 'off'}; "
            "a DeepSpeed/accelerate setting leaked in from the environment (ACCELERATE_USE_DEEPSPEED?)"
        )

    resume_from: str | None = None
    if resume:
        if checkpoint_store is not None:
            with args.main_process_first(local=True, desc="download checkpoint"):
                found = _ckpt.find_resume_checkpoint(checkpoint_store, output_dir / "resume" / node)
        else:
            found = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
        resume_from = str(found) if found else None
        if facts.rank == 0:
            log.info("resume: %s", resume_from or "nothing to resume from; starting at step 0")

    output = trainer.train(resume_from_checkpoint=resume_from)
    model_dir = _export(trainer, settings, model_path, tokenizer, output_dir)

    last_local = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    metrics = {k: float(v) for k, v in output.metrics.items() if isinstance(v, int | float)}
    metrics.update(metrics_cb.last)
    return SftResult(
        model_dir=model_dir if trainer.is_world_process_zero() else None,
        plan=plan,
        truncation=report,
        dataset=stats,
        global_step=trainer.state.global_step,
        train_loss=float(output.training_loss) if output.training_loss is not None else None,
        metrics=metrics,
        resumed_from=resume_from,
        last_checkpoint=(publisher.last_published if publisher else None) or last_local,
        runtime_s=time.perf_counter() - started,
        world_size=facts.world_size,
        rank=facts.rank,
    )

