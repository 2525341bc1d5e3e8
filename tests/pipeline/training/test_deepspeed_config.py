"""Generated DeepSpeed configs are accepted by DeepSpeed 0.19.8's own parser."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from infialign.pipeline.training import deepspeed_config as dsc

VARIANTS = [
    (2, False, False),
    (2, True, False),
    (3, False, False),
    (3, True, False),
    (3, True, True),
    (3, False, True),
]


class _DataParallel:
    """The slice of DeepSpeed's `mpu` interface that DeepSpeedConfig reads for the data-parallel size."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size

    def get_data_parallel_world_size(self) -> int:
        return self.world_size


def parse(config: dict[str, Any], world_size: int, monkeypatch: pytest.MonkeyPatch):
    from deepspeed.runtime import config as ds_config

    # DeepSpeedConfig asks torch.distributed for the rank first and falls back to world size 1 when no group
    # exists; pretend to be rank 0 of a group so it reads the data-parallel size from the mpu.
    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)
    return ds_config.DeepSpeedConfig(config, mpu=_DataParallel(world_size))


def all_values(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [v for value in node.values() for v in all_values(value)]
    return [node]


@pytest.mark.parametrize(("stage", "offload_optimizer", "offload_params"), VARIANTS)
@pytest.mark.parametrize("world_size", [1, 16])
def test_configs_parse_with_deepspeed(stage: int, offload_optimizer: bool, offload_params: bool, world_size: int, monkeypatch) -> None:
    config = dsc.build_deepspeed_config(stage, offload_optimizer=offload_optimizer, offload_params=offload_params)  # type: ignore[arg-type]
    json.dumps(config)  # it goes to disk next to the checkpoints
    resolved = dsc.resolve_auto(
        config, micro_batch_size=1, gradient_accumulation_steps=64 // world_size, world_size=world_size,
        max_grad_norm=1.0, bf16=True, hidden_size=3584,
    )
    assert "auto" not in all_values(resolved)
    parsed = parse(resolved, world_size, monkeypatch)
    assert parsed.zero_optimization_stage == stage
    assert parsed.train_batch_size == 64 and parsed.gradient_accumulation_steps == 64 // world_size
    assert parsed.bfloat16_config.enabled and parsed.gradient_clipping == 1.0
    assert parsed.zero_allow_untested_optimizer
    zero = parsed.zero_config
    assert (zero.offload_optimizer is not None) == offload_optimizer
    assert (zero.offload_param is not None) == offload_params
    if stage == 3:
        assert zero.gather_16bit_weights_on_model_save  # Trainer.save_model writes real weights under ZeRO-3
        assert zero.prefetch_bucket_size == int(0.9 * 3584 * 3584)
    assert parsed.optimizer_name == ("adamw" if offload_optimizer else None)  # DeepSpeed CPU Adam only when offloaded


def test_auto_is_left_exactly_where_transformers_fills_it() -> None:
    config = dsc.build_deepspeed_config(3, offload_optimizer=True)
    autos = {k for k, v in itertools.chain(config.items(), config["zero_optimization"].items()) if v == "auto"}
    assert autos == {
        "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size", "gradient_clipping",
        "reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold",
    }
    assert config["bf16"] == {"enabled": "auto"} and "scheduler" not in config  # our schedule is the Trainer's


def test_cpu_configs_do_not_overlap_comm_or_pin_memory() -> None:
    config = dsc.build_deepspeed_config(3, offload_optimizer=True, offload_params=True, device="cpu")
    zero = config["zero_optimization"]
    assert zero["overlap_comm"] is False
    assert zero["offload_optimizer"]["pin_memory"] is False and zero["offload_param"]["pin_memory"] is False


def test_param_offload_needs_zero3() -> None:
    with pytest.raises(ValueError, match="zero_stage=3"):
        dsc.build_deepspeed_config(2, offload_params=True)


def test_transformers_accepts_the_autos(monkeypatch) -> None:
    """transformers' own filler replaces every "auto" without a mismatch error."""
    from types import SimpleNamespace

    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    args = SimpleNamespace(
        world_size=2, per_device_train_batch_size=1, gradient_accumulation_steps=4, max_grad_norm=1.0, learning_rate=2e-5,
        adam_beta1=0.9, adam_beta2=0.95, adam_epsilon=1e-8, weight_decay=0.0, save_on_each_node=False, fp16=False,
        fp16_full_eval=False, bf16=True, bf16_full_eval=False, get_warmup_steps=lambda n: 1,
    )
    hf = HfTrainerDeepSpeedConfig(dsc.build_deepspeed_config(3, offload_optimizer=True))
    hf.trainer_config_process(args)
    hf.trainer_config_finalize(args, SimpleNamespace(config=SimpleNamespace(hidden_size=64)), num_training_steps=10)
    assert "auto" not in all_values(hf.config)
    assert hf.config["train_batch_size"] == 8 and hf.config["optimizer"]["params"]["betas"] == [0.9, 0.95]
