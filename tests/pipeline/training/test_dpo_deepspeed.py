"""DeepSpeed for DPO: the config train_dpo hands to the Trainer (unit), and a ZeRO run on CPU over gloo (slow)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from infialign.pipeline.training import deepspeed_config as dsc
from infialign.pipeline.training import dpo_settings, runner


def _all_values(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [v for value in node.values() for v in _all_values(value)]
    return [node]


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_the_config_dpo_receives(tmp_path, zero_stage: int) -> None:
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    settings = dpo_settings.DpoSettings(
        global_batch_size=64, micro_batch_size=2, deepspeed={"mode": "on", "zero_stage": zero_stage}, max_grad_norm=0.5,
    )
    plan = dpo_settings.plan_dpo(settings, device="cpu", world_size=4, flash_attn_available=False, deepspeed_available=True)
    assert plan.engine == f"deepspeed-zero{zero_stage}" and plan.distributed_backend == "gloo"
    assert plan.gradient_accumulation_steps == 8 and plan.packing.mode.value == "padded-length-grouped"
    facts = runner.RuntimeFacts("cpu", 4, 1, 1, None, False, True)  # rank 1: writes no deepspeed.json
    config = runner.setup_deepspeed(plan, settings, facts, tmp_path)
    assert config == dsc.build_deepspeed_config(zero_stage, device="cpu") and not (tmp_path / "deepspeed.json").exists()
    assert config["zero_optimization"]["overlap_comm"] is False  # no CUDA streams on CPU
    args = runner.common_args(settings, plan, tmp_path, config)
    assert args["deepspeed"] is config and args["ddp_backend"] == "gloo" and args["use_cpu"] and not args["bf16"]
    assert args["learning_rate"] == 5e-7 and args["adam_beta2"] == 0.999 and args["warmup_steps"] == 0.1  # DPO's own defaults

    # transformers' filler accepts every "auto" with the values DPOConfig will carry
    hf = HfTrainerDeepSpeedConfig(config)
    targs = SimpleNamespace(
        world_size=4, per_device_train_batch_size=args["per_device_train_batch_size"],
        gradient_accumulation_steps=args["gradient_accumulation_steps"], max_grad_norm=args["max_grad_norm"],
        learning_rate=args["learning_rate"], adam_beta1=args["adam_beta1"], adam_beta2=args["adam_beta2"],
        adam_epsilon=args["adam_epsilon"], weight_decay=args["weight_decay"], save_on_each_node=False, fp16=False,
        fp16_full_eval=False, bf16=args["bf16"], bf16_full_eval=False, get_warmup_steps=lambda n: 1,
    )
    hf.trainer_config_process(targs)
    hf.trainer_config_finalize(targs, SimpleNamespace(config=SimpleNamespace(hidden_size=128)), num_training_steps=10)
    assert "auto" not in _all_values(hf.config)
    assert hf.config["train_batch_size"] == 64 and hf.config["gradient_clipping"] == 0.5 and hf.config["bf16"]["enabled"] is False


@pytest.mark.slow
def test_dpo_with_deepspeed_zero2_on_cpu(tmp_path, tiny_model_path, world_pairs, dpo_settings) -> None:
    """ZeRO-2 over gloo in one process: the reference pass runs through DeepSpeed, and the curve matches plain torch."""
    import os

    from infialign.pipeline.training import train_dpo

    pairs = world_pairs(32, 12)
    plain_losses: dict[int, float] = {}
    ds_losses: dict[int, float] = {}
    plain = train_dpo(dpo_settings(max_steps=3), str(tiny_model_path), pairs, tmp_path / "torch", model_digest="tiny",
                      metrics_sink=lambda m, s: plain_losses.setdefault(s, m["loss"]))
    result = train_dpo(dpo_settings(max_steps=3, deepspeed={"mode": "on", "zero_stage": 2}), str(tiny_model_path), pairs,
                       tmp_path / "ds", model_digest="tiny", metrics_sink=lambda m, s: ds_losses.setdefault(s, m["loss"]))
    assert result.engine == "deepspeed-zero2" and result.ref_logps == "computed" and "ACCELERATE_USE_DEEPSPEED" not in os.environ
    assert (tmp_path / "ds" / "deepspeed.json").is_file() and sorted(ds_losses) == [1, 2, 3]
    for step, loss in plain_losses.items():
        assert ds_losses[step] == pytest.approx(loss, rel=1e-3)
    assert plain.pairs == result.pairs
