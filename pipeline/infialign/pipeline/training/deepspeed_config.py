"""DeepSpeed ZeRO-2/3 configs, built from our settings. Pure: no DeepSpeed import.

Values that transformers' ``HfTrainerDeepSpeedConfig`` fills from the ``TrainingArguments`` are ``"auto"``
(transformers/integrations/deepspeed.py ``trainer_config_process``/``trainer_config_finalize``): batch
sizes, gradient accumulation and clipping, bf16, and the hidden-size-derived bucket sizes. A value we wrote
that disagrees with the Trainer would raise there, so writing "auto" keeps one source of truth.

No ``scheduler`` section: the Trainer builds our schedule (``cosine_with_min_lr``), which DeepSpeed's
own schedulers do not offer. No ``optimizer`` section unless the optimizer is offloaded: the Trainer's
torch AdamW then runs under ZeRO (``zero_allow_untested_optimizer``), which avoids JIT-building
DeepSpeed's fused Adam on CPU (~90 s, research/cpu-stack-feasibility.md §2c). With optimizer offload,
DeepSpeed's ``AdamW`` section selects its CPU Adam, much faster than torch's on host memory.

``resolve_auto`` fills the "auto" values the way transformers does, for tests and for writing the
effective config next to the checkpoints.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

__all__ = ["build_deepspeed_config", "resolve_auto"]

AUTO = "auto"


def build_deepspeed_config(
    zero_stage: Literal[2, 3],
    *,
    offload_optimizer: bool = False,
    offload_params: bool = False,
    device: Literal["cpu", "cuda"] = "cuda",
) -> dict[str, Any]:
    """A DeepSpeed config dict for ``SFTConfig(deepspeed=...)``."""
    if zero_stage not in (2, 3):
        raise ValueError(f"deepspeed.zero_stage={zero_stage!r} must be 2 or 3")
    if offload_params and zero_stage != 3:
        raise ValueError("deepspeed.offload_params=true needs deepspeed.zero_stage=3: ZeRO-2 does not partition parameters")
    gpu = device == "cuda"
    zero: dict[str, Any] = {
        "stage": zero_stage,
        # Overlap gradient reduction with backward. Streams only exist on GPUs; on CPU it buys nothing.
        "overlap_comm": gpu,
        # Copy gradients into one contiguous buffer as they are produced: less fragmentation at 32K context.
        "contiguous_gradients": True,
        "reduce_bucket_size": AUTO,  # hidden_size² (transformers)
    }
    if zero_stage == 2:
        zero.update(allgather_partitions=True, allgather_bucket_size=int(5e8), reduce_scatter=True)
    else:
        zero.update(
            stage3_prefetch_bucket_size=AUTO,  # 0.9·hidden_size²
            stage3_param_persistence_threshold=AUTO,  # 10·hidden_size
            stage3_max_live_parameters=int(1e9),
            stage3_max_reuse_distance=int(1e9),
            sub_group_size=int(1e9),
            # Without it `Trainer.save_model` writes no weights under ZeRO-3, only the sharded checkpoint.
            stage3_gather_16bit_weights_on_model_save=True,
        )
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": gpu}
    if offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": gpu}

    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": AUTO,
        "gradient_accumulation_steps": AUTO,
        "train_batch_size": AUTO,
        "gradient_clipping": AUTO,
        "bf16": {"enabled": AUTO},
        "zero_optimization": zero,
        # The Trainer's torch AdamW under ZeRO; transformers sets this itself too, we say it explicitly.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1_000_000_000,  # the stage logs its own metrics; keep DeepSpeed's log quiet
        "wall_clock_breakdown": False,
    }
    if offload_optimizer:
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": AUTO, "betas": AUTO, "eps": AUTO, "weight_decay": AUTO},
        }
    return config


def resolve_auto(
    config: dict[str, Any],
    *,
    micro_batch_size: int,
    gradient_accumulation_steps: int,
    world_size: int,
    max_grad_norm: float,
    bf16: bool,
    hidden_size: int,
    learning_rate: float = 2e-5,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> dict[str, Any]:
    """A copy of ``config`` with every "auto" replaced as transformers 5.19's HfTrainerDeepSpeedConfig does."""
    values: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "train_batch_size": micro_batch_size * gradient_accumulation_steps * world_size,
        "gradient_clipping": max_grad_norm,
        "bf16.enabled": bf16,
        "zero_optimization.reduce_bucket_size": hidden_size * hidden_size,
        "zero_optimization.stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "zero_optimization.stage3_param_persistence_threshold": 10 * hidden_size,
        "optimizer.params.lr": learning_rate,
        "optimizer.params.betas": list(betas),
        "optimizer.params.eps": eps,
        "optimizer.params.weight_decay": weight_decay,
    }
    out = copy.deepcopy(config)

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, f"{path}.")
            elif value == AUTO:
                if path not in values:
                    raise KeyError(f"no rule to resolve 'auto' at {path}")
                node[key] = values[path]

    walk(out, "")
    return out
