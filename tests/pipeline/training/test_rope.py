"""The RoPE decision for long-context SFT, and the config the model is loaded with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infialign.pipeline.training import rope

# Qwen2.5-Math-7B's published config: 4,096 positions, rope_theta 10,000; InfiAlign trains it at 32K.
MATH_7B = {"max_position_embeddings": 4096, "rope_theta": 10000.0}


def decide(scaling: str, max_length: int = 32768, factor: float | None = None, config: dict[str, Any] = MATH_7B) -> rope.RopePlan:
    positions, theta = rope.model_positions(config)
    return rope.plan_rope(scaling, theta=300_000.0, factor=factor, max_length=max_length, positions=positions, model_theta=theta)  # type: ignore[arg-type]


# One row per rule: (scaling, max_length, factor) → (changes, positions covered).
TABLE = [
    ("auto", 32768, None, {"max_position_embeddings": 32768, "rope_parameters": {"rope_type": "default", "rope_theta": 300000.0}}, 32768),
    ("auto", 4096, None, {}, 4096),  # fits: the model as it is
    ("theta", 4096, None, {"max_position_embeddings": 4096, "rope_parameters": {"rope_type": "default", "rope_theta": 300000.0}}, 4096),
    ("none", 2048, None, {}, 4096),
    ("linear", 32768, None, {"rope_parameters": {"rope_type": "linear", "factor": 8.0, "rope_theta": 10000.0}}, 32768),
    ("dynamic", 16384, 4.0, {"rope_parameters": {"rope_type": "dynamic", "factor": 4.0, "rope_theta": 10000.0}}, 16384),
    ("yarn", 32768, None, {"rope_parameters": {"rope_type": "yarn", "factor": 8.0, "rope_theta": 10000.0, "original_max_position_embeddings": 4096}}, 32768),
]


@pytest.mark.parametrize(("scaling", "max_length", "factor", "changes", "positions"), TABLE)
def test_rope_decision_table(scaling: str, max_length: int, factor: float | None, changes: dict[str, Any], positions: int) -> None:
    plan = decide(scaling, max_length, factor)
    assert (plan.changes, plan.positions) == (changes, positions) and plan.reason


def test_auto_never_lowers_a_larger_theta() -> None:
    plan = decide("auto", 65536, config={"max_position_embeddings": 32768, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}})
    assert plan.changes["rope_parameters"]["rope_theta"] == 1e6 and plan.positions == 65536


@pytest.mark.parametrize(
    ("scaling", "max_length", "factor", "config", "fragment"),
    [
        ("none", 32768, None, MATH_7B, "maxLength is 32768, above the model's max_position_embeddings 4096"),
        ("yarn", 32768, 4.0, MATH_7B, "factor 4 × max_position_embeddings 4096 covers 16384"),
        ("linear", 32768, None, {}, "cannot be derived"),
    ],
)
def test_lengths_the_model_cannot_take_name_the_fields_and_the_fix(scaling: str, max_length: int, factor: float | None, config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(rope.RopeError, match=fragment) as err:
        decide(scaling, max_length, factor, config)
    assert "spec.stages.sft.rope" in str(err.value)


def test_the_model_receives_the_config_and_the_export_keeps_it(tmp_path: Path, tiny_model_path: Path) -> None:
    """The tiny model (1,024 positions, θ 10,000) at 4,096 tokens: the loaded model's rotary embedding uses θ 300,000."""
    import torch

    from infialign.pipeline.training import runner, settings

    positions, theta = rope.model_positions(runner.load_config(str(tiny_model_path)).to_dict())
    assert (positions, theta) == (1024, 10000.0)
    plan = rope.plan_rope("auto", theta=300_000.0, factor=None, max_length=4096, positions=positions, model_theta=theta)
    training_plan = settings.plan_sft(settings.SftSettings(max_length=4096, global_batch_size=1, packing="off"), device="cpu", world_size=1,
                                      flash_attn_available=False, deepspeed_available=False)
    model = runner.load_model(str(tiny_model_path), training_plan, plan)
    assert model.config.max_position_embeddings == 4096 and model.config.rope_parameters["rope_theta"] == 300_000.0
    rotary = model.model.rotary_emb
    dim = model.config.hidden_size // model.config.num_attention_heads
    expected = 1.0 / (300_000.0 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    assert torch.allclose(rotary.inv_freq, expected)
    model.save_pretrained(tmp_path / "out")
    assert rope.model_positions(runner.load_config(str(tmp_path / "out")).to_dict()) == (4096, 300_000.0)
    # without a plan the model is loaded as published
    assert runner.load_model(str(tiny_model_path), training_plan).config.rope_parameters["rope_theta"] == 10000.0
