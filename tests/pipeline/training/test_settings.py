"""Settings validation and the plan table (every `auto` resolved per machine)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from infialign.pipeline.training import settings as st
from infialign.pipeline.training.attention import SDPA_VARLEN
from infialign.pipeline.training.data import PackingMode


def plan(device: str = "cpu", world_size: int = 1, flash: bool = False, ds: bool = True, **overrides: Any) -> st.SftPlan:
    values = {"global_batch_size": 64, "micro_batch_size": 1, **overrides}
    return st.plan_sft(st.SftSettings(**values), device=device, world_size=world_size, flash_attn_available=flash, deepspeed_available=ds)  # type: ignore[arg-type]


def test_cpu_plan_is_plain_torch_fp32_packed_with_segment_sdpa() -> None:
    p = plan("cpu")
    assert (p.engine, p.precision, p.gradient_checkpointing, p.distributed_backend) == ("torch", "fp32", False, None)
    assert p.packing.mode is PackingMode.PACKED_VARLEN_SDPA and p.attn_implementation == SDPA_VARLEN
    assert p.gradient_accumulation_steps == 64
    assert p.lr_scheduler_type == "cosine_with_min_lr" and p.lr_scheduler_kwargs == {"min_lr_rate": pytest.approx(0.1)}


def test_cpu_with_two_processes_is_ddp_over_gloo() -> None:
    p = plan("cpu", world_size=2)
    assert (p.engine, p.distributed_backend, p.gradient_accumulation_steps) == ("torch-ddp", "gloo", 32)


def test_gpu_plan_is_deepspeed_zero3_bf16_with_flash_packing() -> None:
    p = plan("cuda", world_size=16, flash=True)
    assert (p.engine, p.precision, p.gradient_checkpointing, p.distributed_backend) == ("deepspeed-zero3", "bf16", True, "nccl")
    assert p.packing.mode is PackingMode.PACKED_VARLEN_FLASH and p.attn_implementation == "flash_attention_2"
    assert p.gradient_accumulation_steps == 4


def test_gpu_without_flash_attn_packs_with_segment_sdpa() -> None:
    assert plan("cuda", flash=False).packing.mode is PackingMode.PACKED_VARLEN_SDPA


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"device": "cpu", "deepspeed": st.DeepSpeedOptions(mode="on", zero_stage=2)}, "deepspeed-zero2"),
        ({"device": "cuda", "deepspeed": st.DeepSpeedOptions(mode="off")}, "torch"),
        ({"device": "cuda", "ds": False}, "torch"),  # auto without deepspeed installed: plain torch, said so
    ],
)
def test_deepspeed_mode(kwargs: dict[str, Any], expected: str) -> None:
    assert plan(**kwargs).engine == expected


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"world_size": 3, "packing": "off"}, "global_batch_size=64 is not a multiple"),
        ({"device": "cpu", "ds": False, "deepspeed": st.DeepSpeedOptions(mode="on")}, "deepspeed.mode='on'"),
        ({"device": "cuda", "flash": False, "attn_implementation": "flash_attention_2"}, "flash_attn"),
    ],
)
def test_plan_errors_name_the_field_and_the_fix(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(st.SettingsError, match=fragment):
        plan(**kwargs)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"min_learning_rate": 1e-3}, "min_learning_rate"),
        ({"micro_batch_size": 128}, "micro_batch_size"),
        ({"max_length": 8}, "max_length"),
        ({"deepspeed": {"zero_stage": 2, "offload_params": True}}, "zero_stage"),
        ({"lora": {"enabled": True, "target_modules": ["q_proj", "lm_head"]}}, "lm_head"),
        ({"packing": "yes"}, "packing"),
        ({"learning_rte": 1e-5}, "learning_rte"),
    ],
)
def test_invalid_settings(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        st.SftSettings(**values)


@pytest.mark.parametrize(("scheduler", "floor", "expected"), [("linear", 2e-6, "linear"), ("constant", 2e-6, "constant_with_warmup"), ("cosine", 0.0, "cosine")])
def test_scheduler_mapping(scheduler: str, floor: float, expected: str) -> None:
    assert plan(lr_scheduler=scheduler, min_learning_rate=floor).lr_scheduler_type == expected


def test_every_default_that_differs_from_trl_is_listed() -> None:
    """House rule 12: the module docstring lists each default that differs from TRL's SFTConfig."""
    from trl import SFTConfig

    trl = SFTConfig(output_dir="x", use_cpu=True, bf16=False)
    ours = st.SftSettings()
    pairs = {  # our field → the SFTConfig value it maps to
        "max_length": (ours.max_length, trl.max_length),
        "epochs": (ours.epochs, trl.num_train_epochs),
        "micro_batch_size": (ours.micro_batch_size, trl.per_device_train_batch_size),
        "learning_rate": (ours.learning_rate, trl.learning_rate),
        "warmup_ratio": (ours.warmup_ratio, trl.warmup_steps),
        "adam_beta1": (ours.adam_beta1, trl.adam_beta1),
        "adam_beta2": (ours.adam_beta2, trl.adam_beta2),
        "adam_epsilon": (ours.adam_epsilon, trl.adam_epsilon),
        "weight_decay": (ours.weight_decay, trl.weight_decay),
        "max_grad_norm": (ours.max_grad_norm, trl.max_grad_norm),
        "seed": (ours.seed, trl.seed),
        "logging_steps": (ours.logging_steps, trl.logging_steps),
        "save_steps": (ours.save_steps, trl.save_steps),
        "loss_type": (ours.loss_type, trl.loss_type),
        "lr_scheduler": ("cosine", str(trl.lr_scheduler_type.value)),
    }
    table = st.__doc__ or ""
    for name, (mine, theirs) in pairs.items():
        if mine != theirs:
            assert f"\n{name} " in table, f"{name}: ours {mine!r} vs TRL {theirs!r} is not in the settings docstring table"
        else:
            assert name in table.split("Same as TRL:")[1], f"{name} equals TRL's default; say so under 'Same as TRL'"


def test_packed_batches_take_any_global_batch_size() -> None:
    # packed steps hold global_batch_size samples in however many micro-batches they need (data.plan_step_batches)
    assert plan(world_size=3).packing.mode.packed


def test_lora_changes_the_schedule_defaults_only_where_the_user_left_them() -> None:
    from infialign.pipeline.api import spec

    stage = spec.SftStage.model_validate(
        {"lora": {"enabled": True}, "phases": [{"name": "a"}, {"name": "b", "learningRate": 3e-5, "epochs": 2}]}
    )
    a, b = (st.SftSettings.from_api(stage, p) for p in stage.phases)
    assert (a.learning_rate, a.epochs) == (spec.LORA_LEARNING_RATE, spec.LORA_EPOCHS) == (1e-4, 3)
    assert (b.learning_rate, b.epochs) == (3e-5, 2)  # set by the user: kept
    # the stage config is the stage dumped in full; reading it back keeps the resolved values
    again = spec.SftStage.model_validate(stage.model_dump(mode="json", by_alias=True))
    assert [(p.learning_rate, p.epochs) for p in again.phases] == [(1e-4, 3), (3e-5, 2)]
    # full fine-tuning keeps the [SRC-2] values, the default phases included
    full = spec.SftStage()
    assert {(p.learning_rate, p.epochs) for p in full.phases} == {(2e-5, 5)}
    assert {(p.learning_rate, p.epochs) for p in spec.SftStage(lora={"enabled": True}).phases} == {(1e-4, 3)}


def test_from_api_maps_the_stage_and_phase() -> None:
    from infialign.pipeline.api import spec

    stage = spec.SftStage(
        packing="off", save_steps=50, keep_checkpoints=3, seed=7,
        deepspeed=spec.DeepSpeedSettings(mode="on", zero_stage=2, gradient_clipping=0.5),
        lora=spec.LoraSettings(enabled=True, rank=8, alpha=16), rope=spec.RopeSettings(scaling="yarn", factor=4),
    )
    phase = spec.SftPhase(name="phase1", epochs=2, learning_rate=1e-5, min_learning_rate=1e-6, global_batch_size=32, max_length=4096)
    s = st.SftSettings.from_api(stage, phase, max_steps=10)
    assert (s.packing, s.save_steps, s.keep_checkpoints, s.seed, s.max_grad_norm) == ("off", 50, 3, 7, 0.5)
    assert (s.epochs, s.learning_rate, s.min_learning_rate, s.global_batch_size, s.max_length, s.max_steps) == (2, 1e-5, 1e-6, 32, 4096, 10)
    assert (s.deepspeed.mode, s.deepspeed.zero_stage) == ("on", 2)
    assert (s.lora.enabled, s.lora.rank, s.lora.alpha, s.lora.target_modules) == (True, 8, 16, ("all-linear",))
    assert (s.rope.scaling, s.rope.theta, s.rope.factor) == ("yarn", 300_000.0, 4.0)


def test_settings_round_trip_through_json() -> None:
    s = st.SftSettings(lora={"enabled": True}, deepspeed={"zero_stage": 2}, system_prompt="Think.")
    assert st.SftSettings.model_validate_json(s.model_dump_json()) == s
