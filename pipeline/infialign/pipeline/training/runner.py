"""The trainer-agnostic half of a training run, shared by ``train_sft`` and ``train_dpo``.

A trainer module (sft.py, dpo.py) holds only what differs: its data preparation, its TRL config class and
trainer, and its result. Everything else is here, once:

* ``detect_runtime``: where this process runs (device, ranks, what is installed);
* ``isolated_run``: environment scoping around one run (accelerate's and DeepSpeed's process globals);
* ``setup_deepspeed``: the generated ZeRO config, a one-process group when needed, ``deepspeed.json``;
* ``prepare_tokenizer``: our ChatML training template (keeps ``<think>``) or the model's own;
* ``common_args``: the ``TrainingArguments`` keywords every trainer passes (schedule, execution, checkpoints,
  logs), to be spread into ``SFTConfig``/``DPOConfig``;
* ``load_model``, ``lora_config``;
* ``standard_callbacks``: metrics, atomic checkpoint publishing, heartbeat;
* ``check_engine``, ``resume_checkpoint``, ``export_model``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from infialign.pipeline import chat_template as _templates
from infialign.pipeline.training import checkpoints as _ckpt
from infialign.pipeline.training import deepspeed_config as _ds
from infialign.pipeline.training import progress as _progress
from infialign.pipeline.training import rope as _rope
from infialign.pipeline.training import settings as _settings

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig
    from transformers import PreTrainedTokenizerBase, TrainerCallback

__all__ = [
    "RuntimeFacts",
    "detect_runtime",
    "isolated_run",
    "setup_deepspeed",
    "prepare_tokenizer",
    "common_args",
    "load_model",
    "load_config",
    "lora_config",
    "Callbacks",
    "standard_callbacks",
    "peak_flops",
    "run_calibration",
    "check_engine",
    "log_distributed",
    "last_local_checkpoint",
    "node_name",
    "resume_checkpoint",
    "export_model",
]

log = logging.getLogger(__name__)

T = TypeVar("T")



@dataclass(kw_only=True)
class TrainingResult:
    """What every finished training run reports (SFT phase, DPO). ``model_dir`` is set on world rank 0, which wrote the export.

    A trainer's result adds its own fields and lists them in ``_own_fields``; ``to_dict`` is the JSON the stage logs.
    """

    model_dir: Path | None
    plan: _settings.TrainingPlan
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

    def _own_fields(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_dir": str(self.model_dir) if self.model_dir else None,
            "engine": self.engine,
            "plan": self.plan.to_dict(),
            **self._own_fields(),
            "global_step": self.global_step,
            "train_loss": self.train_loss,
            "metrics": self.metrics,
            "resumed_from": self.resumed_from,
            "last_checkpoint": self.last_checkpoint,
            "runtime_s": self.runtime_s,
            "world_size": self.world_size,
        }


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


# ---------------------------------------------------------------------------------------------- process globals

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


def isolated_run(run: Callable[[], T]) -> T:
    """Run one training in this process without leaking its process globals into the next one.

    accelerate leaves ACCELERATE_USE_DEEPSPEED=true in os.environ after a DeepSpeed run (accelerate/accelerator.py),
    which silently turns every later Trainer in the process into a DeepSpeed one; we also set RANK/WORLD_SIZE/MASTER_*
    for a one-process DeepSpeed group. Those variables are scoped to the call. transformers keeps the DeepSpeed config
    in a module global while the arguments live; it is cleared (also when training failed) so a later from_pretrained
    in this process is not built partitioned by ZeRO-3.
    """
    with _scoped_env(_SCOPED_ENV):
        try:
            return run()
        finally:
            if "transformers.integrations.deepspeed" in sys.modules:
                sys.modules["transformers.integrations.deepspeed"].unset_hf_deepspeed_config()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process_env_for_deepspeed() -> None:
    # DeepSpeed always initialises torch.distributed, even for one process; give it a group of one.
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


@contextlib.contextmanager
def _without_zero3_init() -> Iterator[None]:
    from transformers.integrations import deepspeed as hf_ds

    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved


# ---------------------------------------------------------------------------------------------- set-up


def setup_deepspeed(
    plan: _settings.TrainingPlan, settings: _settings.TrainingSettings, facts: RuntimeFacts, output_dir: Path
) -> dict[str, Any] | None:
    """The DeepSpeed config the plan asks for (None: plain torch), written to ``output_dir/deepspeed.json``."""
    if not plan.deepspeed:
        os.environ.pop("ACCELERATE_USE_DEEPSPEED", None)
        return None
    config = _ds.build_deepspeed_config(
        plan.zero_stage,  # type: ignore[arg-type]
        offload_optimizer=settings.deepspeed.offload_optimizer,
        offload_params=settings.deepspeed.offload_params,
        device=plan.device,
    )
    if facts.world_size == 1:
        _single_process_env_for_deepspeed()
    if facts.rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "deepspeed.json").write_text(json.dumps(config, indent=1))
    return config


def prepare_tokenizer(model_path: str, settings: _settings.TrainingSettings) -> PreTrainedTokenizerBase:
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


def common_args(
    settings: _settings.TrainingSettings, plan: _settings.TrainingPlan, output_dir: Path, deepspeed: dict[str, Any] | None
) -> dict[str, Any]:
    """``TrainingArguments`` keywords shared by every trainer; the trainer adds its own and builds its TRL config."""
    return dict(
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
        max_length=settings.max_length,
        # execution
        use_cpu=plan.device == "cpu",
        bf16=plan.precision == "bf16",
        fp16=False,
        gradient_checkpointing=plan.gradient_checkpointing,
        deepspeed=deepspeed,
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


def log_distributed(facts: RuntimeFacts) -> None:
    import torch

    if facts.rank == 0 and torch.distributed.is_available() and torch.distributed.is_initialized():
        log.info("torch.distributed: backend=%s world_size=%d", torch.distributed.get_backend(), torch.distributed.get_world_size())


def load_model(model_path: str, plan: _settings.TrainingPlan, rope: _rope.RopePlan | None = None) -> torch.nn.Module:
    """The model to train; ``rope`` changes its config (theta, positions, scaling) before the weights are loaded."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if plan.deepspeed and plan.precision == "bf16" else torch.float32
    kwargs: dict[str, Any] = {}
    if rope is not None and rope.changes:
        kwargs["config"] = _rope.apply_rope(load_config(model_path), rope)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation=plan.attn_implementation, **kwargs)
    model.config.use_cache = False  # training: a KV cache is never read, and it disables transformers' packed-mask path
    return model


def load_config(model_path: str) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_path)


def lora_config(settings: _settings.TrainingSettings) -> LoraConfig | None:
    if not settings.lora.enabled:
        return None
    from peft import LoraConfig

    lora = settings.lora
    targets: str | list[str] = "all-linear" if lora.target_modules == ("all-linear",) else list(lora.target_modules)
    return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type="CAUSAL_LM")


@dataclass
class Callbacks:
    """The callbacks of one run, in the order the Trainer must call them, and the two a trainer reads back."""

    all: list[TrainerCallback]
    metrics: _progress.MetricsCallback
    publisher: _ckpt.CheckpointPublisher | None
    heartbeat: _progress.HeartbeatCallback | None


def standard_callbacks(
    settings: _settings.TrainingSettings,
    facts: RuntimeFacts,
    *,
    flops: _progress.FlopsModel | None,
    checkpoint_store: _ckpt.CheckpointStore | None,
    heartbeat: _progress.Heartbeat | None,
    metrics_sink: _progress.MetricsSink | None,
    before_publish: Sequence[TrainerCallback] = (),
    extra: Sequence[TrainerCallback] = (),
) -> Callbacks:
    """Metrics, then ``before_publish`` (callbacks that add files to a checkpoint on save), then the publisher
    (upload, then marker), then the heartbeat, then ``extra``."""
    peak = peak_flops(settings, facts)
    publisher = _ckpt.CheckpointPublisher(checkpoint_store, keep_last=settings.keep_checkpoints) if checkpoint_store else None
    metrics_cb = _progress.MetricsCallback(metrics_sink, world_size=facts.world_size, flops=flops, peak_flops=peak)
    cbs: list[TrainerCallback] = [metrics_cb, *before_publish]
    if publisher:
        cbs.append(publisher)
    heartbeat_cb = None
    if heartbeat:
        heartbeat_cb = _progress.HeartbeatCallback(
            heartbeat,
            interval_s=settings.heartbeat_interval_s,
            last_checkpoint=(lambda: publisher.last_published) if publisher else None,
        )
        cbs.append(heartbeat_cb)
    cbs.extend(extra)
    return Callbacks(cbs, metrics_cb, publisher, heartbeat_cb)


PEAK_FLOPS_ENV = "INFIALIGN_PEAK_FLOPS"  # peak dense FLOP/s of one device, for hardware the GPU table does not know


def peak_flops(settings: _settings.TrainingSettings, facts: RuntimeFacts, env: Mapping[str, str] | None = None) -> float | None:
    """Peak FLOP/s of one device: the setting, else ``$INFIALIGN_PEAK_FLOPS``, else the GPU table; None on CPU."""
    if settings.peak_tflops_per_device:
        return settings.peak_tflops_per_device * 1e12
    raw = (os.environ if env is None else env).get(PEAK_FLOPS_ENV)
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if value > 0:
            return value
        log.warning("ignoring %s=%r: expected a positive number of FLOP/s per device, e.g. 989e12 for an H100 SXM", PEAK_FLOPS_ENV, raw)
    return _progress.peak_flops_for(facts.device_name)


def run_calibration(trainer: Any, cbs: Callbacks, train_metrics: Mapping[str, float], settings: _settings.TrainingSettings, facts: RuntimeFacts) -> dict[str, float]:
    """Measured tokens/s, train FLOPs and (with a known peak) MFU of the whole ``train()`` call of this process."""
    # TRL's running count of non-padding tokens over all ranks (SFTTrainer and DPOTrainer keep it; it starts
    # at 0 in each process, like `train_runtime`). The last *logged* `num_tokens` misses the steps after the
    # last log, so the counter itself is read; the logged value is the fallback if TRL renames it.
    tokens = getattr(trainer, "_total_train_tokens", None) or cbs.metrics.trained_tokens
    flops = cbs.metrics.flops
    return _progress.calibration_metrics(
        tokens,
        train_metrics.get("train_runtime"),
        flops.matmul_params if flops is not None else None,
        world_size=facts.world_size,
        peak_flops_per_device=peak_flops(settings, facts),
    )


def check_engine(trainer: Any, plan: _settings.TrainingPlan) -> None:
    if trainer.is_deepspeed_enabled != plan.deepspeed:  # the plan is what we report; never train differently
        raise RuntimeError(
            f"the plan says engine={plan.engine} but the Trainer has DeepSpeed {'on' if trainer.is_deepspeed_enabled else 'off'}; "
            "a DeepSpeed/accelerate setting leaked in from the environment (ACCELERATE_USE_DEEPSPEED?)"
        )


def node_name() -> str:
    """This node's name for node-local paths; torchrun's GROUP_RANK keeps nodes apart on a shared filesystem."""
    return f"node{os.environ.get('GROUP_RANK', '0')}"


def resume_checkpoint(
    resume: bool, checkpoint_store: _ckpt.CheckpointStore | None, args: Any, output_dir: Path, facts: RuntimeFacts
) -> str | None:
    """The checkpoint directory to resume from: the store's marker, else the newest local one; None: step 0."""
    if not resume:
        return None
    from transformers.trainer_utils import get_last_checkpoint

    if checkpoint_store is not None:
        with args.main_process_first(local=True, desc="download checkpoint"):
            found = _ckpt.find_resume_checkpoint(checkpoint_store, output_dir / "resume" / node_name())
    else:
        found = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    resume_from = str(found) if found else None
    if facts.rank == 0:
        log.info("resume: %s", resume_from or "nothing to resume from; starting at step 0")
    return resume_from


def last_local_checkpoint(args: Any) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None


def export_model(
    trainer: Any,
    settings: _settings.TrainingSettings,
    model_path: str,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: Path,
    rope: _rope.RopePlan | None = None,
) -> Path:
    """Write ``output_dir/model`` on world rank 0 (collective under ZeRO-3: every rank must call it).

    The config written is the one trained with, ``rope`` changes included, so eval and vLLM use the same positions."""
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
            kwargs: dict[str, Any] = {}
            if rope is not None and rope.changes:
                kwargs["config"] = _rope.apply_rope(load_config(model_path), rope)
            with _without_zero3_init():
                base = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto", device_map={"": "cpu"}, **kwargs)
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
