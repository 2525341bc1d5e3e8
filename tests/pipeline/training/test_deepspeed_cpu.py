"""DeepSpeed ZeRO on CPU (gloo) through train_sft: same curve as plain torch, and a loadable export.

First use on a machine JIT-builds DeepSpeed's shared-memory comm op into $TORCH_EXTENSIONS_DIR (~1 min);
conftest.py points it at <repo>/.cache/torch_extensions so that happens once. (ZeRO-3 also probes for libaio
and prints "cannot find -laio"; harmless, async I/O offload to NVMe is not used.)
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from infialign.pipeline.training import train_sft

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("zero_stage", "lora"),
    [(2, None), (3, {"enabled": True, "rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})],
    ids=["zero2-full", "zero3-lora"],
)
def test_deepspeed_zero_on_cpu_matches_plain_torch(
    tmp_path, tiny_model_path, clean_records, small_settings, zero_stage: int, lora: dict[str, Any] | None
) -> None:
    from transformers import AutoModelForCausalLM

    extra = {"lora": lora} if lora else {}
    torch_losses: dict[int, float] = {}
    ds_losses: dict[int, float] = {}
    plain = train_sft(
        small_settings(max_steps=4, **extra), str(tiny_model_path), clean_records, tmp_path / "torch",
        metrics_sink=lambda m, s: torch_losses.setdefault(s, m["loss"]),
    )
    result = train_sft(
        small_settings(max_steps=4, deepspeed={"mode": "on", "zero_stage": zero_stage}, **extra), str(tiny_model_path),
        clean_records, tmp_path / "ds", metrics_sink=lambda m, s: ds_losses.setdefault(s, m["loss"]),
    )
    assert plain.engine == "torch" and result.engine == f"deepspeed-zero{zero_stage}"
    # accelerate's process-wide switch must not outlive the run (it would make later runs DeepSpeed silently)
    assert "ACCELERATE_USE_DEEPSPEED" not in os.environ
    assert result.plan.distributed_backend == "gloo" and (tmp_path / "ds" / "deepspeed.json").is_file()
    assert sorted(ds_losses) == [1, 2, 3, 4]
    for step, loss in torch_losses.items():
        assert ds_losses[step] == pytest.approx(loss, rel=1e-4)
    assert (tmp_path / "ds" / "checkpoints" / "checkpoint-4" / "global_step4").is_dir()  # ZeRO optimizer shards
    # ZeRO shards gathered (or the adapter merged) into a plain HF model, loadable in this same process
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    reference = AutoModelForCausalLM.from_pretrained(plain.model_dir)
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        assert p.shape == q.shape and (p - q).abs().max() < 1e-4, name


class Killed(Exception):
    pass


def test_zero3_kill_and_resume_is_exact(tmp_path, tiny_model_path, clean_records, small_settings) -> None:
    """The HF Trainer restores ZeRO-3 shards, scheduler and RNG from a published checkpoint: the same weights."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from infialign.pipeline.training import CheckpointStore

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise Killed

    settings = small_settings(max_steps=6, save_steps=3, deepspeed={"mode": "on", "zero_stage": 3})
    straight = train_sft(settings, str(tiny_model_path), clean_records, tmp_path / "straight")
    store = CheckpointStore.from_uri((tmp_path / "remote").as_uri())
    with pytest.raises(Killed):
        train_sft(settings, str(tiny_model_path), clean_records, tmp_path / "a1", checkpoint_store=store, callbacks=[KillAfterSave()])
    resumed = train_sft(settings, str(tiny_model_path), clean_records, tmp_path / "a2", resume=True, checkpoint_store=store)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-3") and resumed.global_step == 6
    a, b = load_file(str(straight.model_dir / "model.safetensors")), load_file(str(resumed.model_dir / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max() < 1e-6 for k in a)
