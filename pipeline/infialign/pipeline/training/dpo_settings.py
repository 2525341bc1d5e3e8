"""Settings of one DPO run, and the plan they resolve to (``plan_dpo``, pure).

The shared fields (chat format, schedule, execution, checkpoints) come from ``TrainingSettings``; this module
adds what only DPO has. Defaults follow research/seeds-algorithms.md §1.9 (all [RECON]: InfiAlign publishes no
DPO hyperparameters).

Defaults that differ from TRL 1.16 ``DPOConfig`` (the rest is passed through unchanged):

=========================  ====================================  ==========================================
field                      ours                                  TRL ``DPOConfig``
=========================  ====================================  ==========================================
learning_rate              5e-7 [RECON]                          1e-6
epochs                     2 [RECON]                             3 (``num_train_epochs``)
global_batch_size          64 pairs [RECON]                      8 × devices
micro_batch_size           1 (one ≤32K pair per device)          8 (``per_device_train_batch_size``)
lr_scheduler               cosine to 0 [RECON]                   ``linear``
warmup_ratio               0.1 [RECON]                           0
max_length                 32768, over-long pairs *dropped*      1024, truncated (cuts the answer off a CoT)
precompute_ref_log_probs   always, stored in pairs-ref.parquet   False (a reference model in memory)
gradient_checkpointing     auto: on for GPU, off on CPU          True
report_to                  none (the stage logs to MLflow)       all installed integrations
=========================  ====================================  ==========================================

Same as TRL: beta 0.1, loss_type ["sigmoid"], adam betas (0.9, 0.999), weight_decay 0, max_grad_norm 1.0,
disable_dropout True, seed 42.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from infialign.pipeline.api import spec as _spec
from infialign.pipeline.training import settings as _settings

__all__ = ["DpoSettings", "plan_dpo"]


class DpoSettings(_settings.TrainingSettings):
    """One DPO run. See the module docstring for the defaults that differ from TRL's ``DPOConfig``."""

    kind: Literal["dpo"] = Field(default="dpo", description="Which trainer these settings are for (the worker dispatches on it).")
    # ---- DPO
    beta: float = Field(default=0.1, gt=0, le=10, description="DPO β. [RECON] 0.1 (TRL's default).")
    loss_type: tuple[_spec.DpoLossType, ...] = Field(
        default=("sigmoid",), min_length=1, max_length=8, description="TRL losses, summed with `loss_weights`. `(sigmoid, sft)` is RPO."
    )
    loss_weights: tuple[float, ...] | None = Field(default=None, max_length=8, description="One weight per loss. Empty: 1 each.")
    ref_batch_size: int | None = Field(
        default=None, ge=1, le=4096, description="Pairs per forward when computing the reference log-probs. Empty: micro_batch_size."
    )
    sage: _spec.SageSettings = Field(default_factory=_spec.SageSettings, description="SAGE pair selection (off: uniform DPO).")
    reference: Literal["stored", "live"] = Field(
        default="stored",
        description="`stored`: reference log-probs computed once with the frozen start model and kept beside the pairs "
        "(no reference model during training). `live`: TRL's default, a frozen copy of the model in memory scores every "
        "batch; for benchmarks only (a second model copy and one more forward per step).",
    )
    # ---- defaults that differ from SFT
    epochs: float = Field(default=2.0, gt=0, le=1000, description="Passes over the pairs. [RECON] 2.")
    learning_rate: float = Field(default=5e-7, gt=0, le=1, description="Peak learning rate. [RECON] 5e-7.")
    min_learning_rate: float = Field(default=0.0, ge=0, le=1, description="Cosine floor. [RECON] 0 (plain cosine).")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1, description="Linear warm-up share of the steps. [RECON] 0.1.")
    adam_beta2: float = Field(default=0.999, ge=0, lt=1, description="Adam β2. Same as TRL (no source for DPO).")

    @model_validator(mode="after")
    def _weights_match_losses(self) -> DpoSettings:
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"loss_weights has {len(self.loss_weights)} values for {len(self.loss_type)} losses {list(self.loss_type)}; "
                "give one weight per loss or none"
            )
        return self

    @classmethod
    def from_api(cls, stage: _spec.DpoStage, **overrides: Any) -> DpoSettings:
        """Settings for the AlignmentRun's `dpo` stage; ``overrides`` win (e.g. ``max_steps``)."""
        values: dict[str, Any] = {
            "beta": stage.beta,
            "loss_type": tuple(stage.loss_type),
            "loss_weights": tuple(stage.loss_weights) if stage.loss_weights is not None else None,
            "learning_rate": stage.learning_rate,
            "epochs": stage.epochs,
            "warmup_ratio": stage.warmup_ratio,
            "global_batch_size": stage.global_batch_size,
            "micro_batch_size": stage.micro_batch_size,
            "max_length": stage.max_length,
            "attn_implementation": stage.attn_implementation,
            "gradient_checkpointing": stage.gradient_checkpointing,
            "save_steps": stage.save_steps,
            "keep_checkpoints": stage.keep_checkpoints,
            "seed": stage.seed,
            "max_grad_norm": stage.deepspeed.gradient_clipping,
            "sage": stage.sage,
            "deepspeed": _settings.DeepSpeedOptions.from_spec(stage.deepspeed),
            "lora": _settings.LoraOptions.from_spec(stage.lora),
        }
        values.update(overrides)
        return cls(**values)


def plan_dpo(
    settings: DpoSettings,
    *,
    device: _settings.Device,
    world_size: int,
    flash_attn_available: bool,
    deepspeed_available: bool,
) -> _settings.TrainingPlan:
    """Resolve every `auto`. DPO never packs (TRL's DPOTrainer pads chosen and rejected side by side). Pure."""
    return _settings.plan_training(
        settings, packing="off", device=device, world_size=world_size, flash_attn_available=flash_attn_available,
        deepspeed_available=deepspeed_available,
    )
