"""Tiny-model SFT runs through TRL on CPU: it learns, LoRA exports merged weights, a killed run resumes exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infialign.pipeline.training import CheckpointStore, train_sft
from infialign.pipeline.training.data import PackingMode

pytestmark = pytest.mark.slow


def load_weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def response_loss(model_path: Path, records: list[dict[str, Any]]) -> float:
    """Mean NLL of the response tokens (the loss mask) of ``records`` under the model at ``model_path``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from infialign.pipeline.training import chat

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    total, count = 0.0, 0
    for r in records:
        t = chat.tokenise_conversation(tok, chat.conversation(r))
        ids = torch.tensor([t.input_ids])
        labels = torch.tensor([[i if m else -100 for i, m in zip(t.input_ids, t.assistant_masks, strict=True)]])
        with torch.no_grad():
            out = model(input_ids=ids, labels=labels)
        n = int((labels[0, 1:] != -100).sum())
        total, count = total + float(out.loss) * n, count + n
    return total / count


def test_tiny_sft_changes_every_parameter_and_lowers_the_loss(tmp_path, tiny_model_path, clean_records, small_settings) -> None:
    beats: list[tuple[Any, ...]] = []
    sunk: list[dict[str, float]] = []
    settings = small_settings(max_steps=10)
    result = train_sft(
        settings, str(tiny_model_path), clean_records, tmp_path,
        heartbeat=lambda *a: beats.append(a), metrics_sink=lambda m, s: sunk.append(m),
    )
    assert result.plan.packing.mode is PackingMode.PACKED_VARLEN_SDPA and result.engine == "torch"
    assert result.global_step == 10 and result.model_dir == tmp_path / "model"
    before, after = load_weights(tiny_model_path), load_weights(result.model_dir)
    assert before.keys() == after.keys()
    unchanged = [name for name in before if (before[name] - after[name]).abs().max() == 0]
    assert not unchanged, f"parameters not trained: {unchanged}"
    probe = clean_records[:16]
    assert response_loss(result.model_dir, probe) < response_loss(tiny_model_path, probe) - 0.5
    # the export is a complete HF model directory with our template
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {
        p.name for p in result.model_dir.iterdir()
    }
    assert "{% generation %}" in (result.model_dir / "chat_template.jinja").read_text().replace("{%- generation -%}", "{% generation %}")
    # reporting: the truncation report, the dataset, metrics and heartbeats
    assert result.truncation.examples == len(clean_records) and result.truncation.over_length_examples == 0
    assert result.dataset.token_efficiency == 1.0 and result.dataset.rows < result.dataset.examples
    assert {"loss", "learning_rate", "grad_norm", "tokens_per_s"} <= sunk[0].keys() and "mfu" not in sunk[0]  # CPU: no peak
    assert sunk[-1]["loss"] < sunk[0]["loss"]
    assert beats[0][:2] == (0, 10) and beats[-1][:2] == (10, 10)
    # calibration for `infialign plan`: whole-run throughput and 6N·tokens; no MFU on CPU (no known peak)
    calibration = result.metrics
    assert calibration["tokens_per_second"] > 0 and "mfu" not in calibration
    trained = calibration["tokens_per_second"] * calibration["train_runtime"]
    assert trained >= result.dataset.rows  # at least one token per packed row trained
    n = calibration["train_flops"] / 6 / trained
    assert 1e5 < n < 1e9  # N of the tiny model, recovered from train_flops


def test_padded_mode_groups_by_length_and_reports_padding(tmp_path, tiny_model_path, clean_records, small_settings) -> None:
    result = train_sft(small_settings(packing="off", max_steps=2, overlong="truncate", max_length=160), str(tiny_model_path), clean_records, tmp_path)
    assert result.plan.packing.mode is PackingMode.PADDED_GROUPED and result.plan.attn_implementation == "sdpa"
    assert result.dataset.rows == result.dataset.examples and result.dataset.token_efficiency < 1.0
    assert result.truncation.truncated_examples > 0 and result.truncation.over_length_tokens > 0
    assert result.global_step == 2


def test_packing_does_not_change_the_number_of_optimizer_steps(tmp_path, tiny_model_path, clean_records, small_settings) -> None:
    """globalBatchSize counts samples, packed or padded: 22 samples in batches of 4 are 6 steps per epoch either way."""
    records = clean_records[:22]
    steps = {}
    for packing in ("on", "off"):
        settings = small_settings(packing=packing, max_steps=None, epochs=2, global_batch_size=4, micro_batch_size=2)
        result = train_sft(settings, str(tiny_model_path), records, tmp_path / packing)
        steps[packing] = result.global_step
        if packing == "on":
            layout = result.step_batching
            assert layout is not None and (layout.samples_per_step, layout.steps_per_epoch) == (4, 6)
            assert result.plan.gradient_accumulation_steps == layout.grad_accum
        else:
            assert result.step_batching is None and result.plan.gradient_accumulation_steps == 2  # 4 samples / 2 per forward
    assert steps == {"on": 12, "off": 12}


def test_lora_exports_merged_weights(tmp_path, tiny_model_path, clean_records, small_settings) -> None:
    from transformers import AutoModelForCausalLM

    settings = small_settings(max_steps=4, lora={"enabled": True, "rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    result = train_sft(settings, str(tiny_model_path), clean_records, tmp_path)
    weights = load_weights(result.model_dir)
    before = load_weights(tiny_model_path)
    assert not any("lora" in k for k in weights) and weights.keys() == before.keys()
    changed = {k for k in before if (before[k] - weights[k]).abs().max() > 0}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed)
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)  # loads as a plain model
    assert type(model).__name__ == "Qwen2ForCausalLM"


class Killed(Exception):
    pass


def test_kill_and_resume_continues_the_curve(tmp_path, tiny_model_path, clean_records, small_settings) -> None:
    from transformers import TrainerCallback

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):  # after the publisher (callbacks run in order)
            raise Killed(f"pod evicted after step {state.global_step}")

    settings = small_settings(max_steps=8, save_steps=4)
    straight_losses: dict[int, float] = {}
    straight = train_sft(
        settings, str(tiny_model_path), clean_records, tmp_path / "straight",
        metrics_sink=lambda m, s: straight_losses.setdefault(s, m["loss"]),
    )

    store = CheckpointStore.from_uri((tmp_path / "remote").as_uri())
    with pytest.raises(Killed):
        train_sft(settings, str(tiny_model_path), clean_records, tmp_path / "attempt1", checkpoint_store=store, callbacks=[KillAfterSave()])
    resumed_losses: dict[int, float] = {}
    resumed = train_sft(
        settings, str(tiny_model_path), clean_records, tmp_path / "attempt2", resume=True, checkpoint_store=store,
        metrics_sink=lambda m, s: resumed_losses.setdefault(s, m["loss"]),
    )
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-4")
    assert sorted(resumed_losses) == [5, 6, 7, 8]
    for step in (5, 6, 7, 8):  # same data order, optimizer and schedule: the same curve
        assert resumed_losses[step] == pytest.approx(straight_losses[step], rel=1e-4)
    a, b = load_weights(straight.model_dir), load_weights(resumed.model_dir)
    for name in a:
        assert (a[name] - b[name]).abs().max() < 1e-5, name
    assert resumed.last_checkpoint == store.path("checkpoint-8")
