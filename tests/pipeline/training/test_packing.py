"""The packing decision, and proof that packed examples do not attend to each other on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from infialign.pipeline.training import data
from infialign.pipeline.training.attention import SDPA_VARLEN
from infialign.pipeline.training.data import PackingMode

# One row per rule: (attn_implementation, device, requested) → (mode, attention the model loads with).
DECISIONS = [
    ("flash_attention_2", "cuda", "auto", PackingMode.PACKED_VARLEN_FLASH, "flash_attention_2"),
    ("flash_attention_3", "cuda", "on", PackingMode.PACKED_VARLEN_FLASH, "flash_attention_3"),
    ("kernels-community/flash-attn2", "cuda", "auto", PackingMode.PACKED_VARLEN_FLASH, "kernels-community/flash-attn2"),
    ("flash_attention_2", "cuda", "off", PackingMode.PADDED_GROUPED, "flash_attention_2"),
    ("sdpa", "cpu", "auto", PackingMode.PACKED_VARLEN_SDPA, SDPA_VARLEN),
    ("sdpa", "cpu", "on", PackingMode.PACKED_VARLEN_SDPA, SDPA_VARLEN),
    ("sdpa", "cuda", "auto", PackingMode.PACKED_VARLEN_SDPA, SDPA_VARLEN),
    ("sdpa", "cpu", "off", PackingMode.PADDED_GROUPED, "sdpa"),
    ("eager", "cpu", "auto", PackingMode.PADDED_GROUPED, "eager"),
    ("eager", "cuda", "auto", PackingMode.PADDED_GROUPED, "eager"),
    ("flex_attention", "cpu", "auto", PackingMode.PADDED_GROUPED, "flex_attention"),
]


@pytest.mark.parametrize(("attn", "device", "requested", "mode", "loaded"), DECISIONS)
def test_packing_decision_table(attn: str, device: str, requested: str, mode: PackingMode, loaded: str) -> None:
    decision = data.decide_packing(attn, device, requested)  # type: ignore[arg-type]
    assert (decision.mode, decision.attn_implementation) == (mode, loaded)
    assert decision.reason


@pytest.mark.parametrize(
    ("attn", "device", "requested", "fragment"),
    [
        ("eager", "cpu", "on", "no varlen path"),
        ("flex_attention", "cuda", "on", "no varlen path"),
        ("flash_attention_2", "cpu", "auto", "needs a CUDA device"),
        ("sdpa", "cpu", "maybe", "not one of"),
    ],
)
def test_unsafe_packing_is_refused_with_the_fix(attn: str, device: str, requested: str, fragment: str) -> None:
    with pytest.raises(data.PackingError, match=fragment):
        data.decide_packing(attn, device, requested)  # type: ignore[arg-type]


# ---------------------------------------------------------------- isolation on the real model


@pytest.fixture(scope="module")
def examples() -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(0)
    return [torch.randint(10, 900, (n,), generator=g).tolist() for n in (9, 23, 5, 17)]


def per_example_losses(model, batch, lengths: list[int], **kw) -> list[float]:
    """Summed next-token NLL of each example, from one forward over the (packed or single) batch."""
    import torch

    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, **kw).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    out, start = [], 0
    for n in lengths:
        ids = batch["input_ids"][0, start : start + n]
        out.append(float(-logp[start : start + n - 1].gather(1, ids[1:, None]).sum()))
        start += n
    return out


def packed_batch(examples: list[list[int]]):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    # Exactly what SFTTrainer feeds the model for a packed row: flattened ids, position_ids resets, cu_seq_lens.
    collator = DataCollatorForLanguageModeling(pad_token_id=3, padding_free=True)
    flat = [t for ex in examples for t in ex]
    return collator([{"input_ids": flat, "seq_lengths": [len(ex) for ex in examples]}])


def load(path: Path, attn: str):
    from transformers import AutoModelForCausalLM

    if attn == SDPA_VARLEN:
        from infialign.pipeline.training.attention import register_sdpa_varlen

        register_sdpa_varlen()
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn).eval()


def alone(model, examples: list[list[int]]) -> list[float]:
    import torch

    return [
        per_example_losses(model, {"input_ids": torch.tensor([ex])}, [len(ex)], use_cache=False)[0] for ex in examples
    ]


def test_segment_wise_sdpa_keeps_packed_examples_apart(tiny_model_path: Path, examples: list[list[int]]) -> None:
    model = load(tiny_model_path, SDPA_VARLEN)
    batch = packed_batch(examples)
    assert "attention_mask" not in batch and batch["cu_seq_lens_q"].tolist() == [0, 9, 32, 37, 54]
    packed = per_example_losses(model, batch, [len(e) for e in examples])  # default config: use_cache=True
    assert packed == pytest.approx(alone(model, examples), rel=1e-5)


def test_stock_sdpa_isolates_only_without_a_kv_cache(tiny_model_path: Path, examples: list[list[int]]) -> None:
    """Documents transformers 5.19: stock sdpa derives a block-diagonal mask from position_ids resets, but only
    with use_cache=False (TRL's compute_loss sets it). With the model's default use_cache=True, packed examples
    attend to each other. If this starts failing, transformers changed the rule: revisit attention.py."""
    model = load(tiny_model_path, "sdpa")
    batch = packed_batch(examples)
    reference = alone(model, examples)
    assert per_example_losses(model, batch, [len(e) for e in examples], use_cache=False) == pytest.approx(reference, rel=1e-5)
    leaky = per_example_losses(model, batch, [len(e) for e in examples])
    assert leaky[0] == pytest.approx(reference[0], rel=1e-5)  # the first example has nothing before it
    assert any(abs(a - b) > 1e-3 * abs(b) for a, b in zip(leaky[1:], reference[1:], strict=True))


def test_segment_wise_sdpa_equals_sdpa_on_padded_batches(tiny_model_path: Path) -> None:
    import torch

    ids = torch.tensor([[11, 12, 13, 14, 15], [21, 22, 23, 3, 3]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    a = load(tiny_model_path, SDPA_VARLEN)(input_ids=ids, attention_mask=mask).logits
    b = load(tiny_model_path, "sdpa")(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(a[mask.bool()], b[mask.bool()], atol=1e-5)


# ---------------------------------------------------------------- the dataset TRL consumes


def tokenised_dataset(lengths: list[int]):
    from datasets import Dataset

    ids = [[100 + i] * n for i, n in enumerate(lengths)]
    masks = [[0] * (n // 2) + [1] * (n - n // 2) for n in lengths]
    return Dataset.from_dict(
        {"input_ids": ids, "assistant_masks": masks, "num_tokens": lengths, "loss_tokens": [sum(m) for m in masks]}
    )


def test_packed_dataset_is_one_example_per_row_plus_the_filler() -> None:
    lengths = [40, 90, 10, 60, 100, 25, 75]
    ds, stats = data.build_train_dataset(tokenised_dataset(lengths), PackingMode.PACKED_VARLEN_SDPA, max_length=100, pad_token_id=7)
    assert set(ds.column_names) == {"input_ids", "labels", "length"}
    assert ds["length"] == [*lengths, 1] and ds[-1]["input_ids"] == [7] and ds[-1]["labels"] == [-100]  # outside the loss
    assert stats.real_tokens == stats.computed_tokens == sum(lengths) and stats.token_efficiency == 1.0
    assert stats.examples == stats.rows == len(lengths)
    assert stats.loss_tokens == sum(n - n // 2 for n in lengths)


# ---------------------------------------------------------------- packed steps: samples per step, not rows


def test_every_step_takes_global_batch_size_samples_within_the_token_budget() -> None:
    import random

    rng = random.Random(0)
    lengths = [rng.choice([30, 200, 900, 2000, 4000]) for _ in range(203)]
    layout = data.plan_step_batches(lengths, samples_per_step=16, world_size=4, micro_batch_size=1, max_length=4096, epochs=2, seed=1)
    assert layout.steps_per_epoch == 13  # ceil(203 / 16): the same as padded batches of 16 samples
    filler = len(lengths)
    for epoch in (0, 1):
        batches = data.step_micro_batches(lengths, layout, epoch, filler)
        assert len(batches) == layout.micro_batches_per_epoch
        per_step = layout.micro_batches_per_step
        seen: list[int] = []
        for s in range(layout.steps_per_epoch):
            step = [i for b in batches[s * per_step : (s + 1) * per_step] for i in b if i != filler]
            assert len(step) == min(16, 203 - 16 * s)
            seen += step
        assert sorted(seen) == list(range(203))  # every sample once per epoch
        assert all(sum(lengths[i] if i != filler else 1 for i in b) <= 4096 for b in batches)
    # a new order every epoch, the same on every rank (a function of seed and epoch only)
    assert data.step_micro_batches(lengths, layout, 0, filler) != data.step_micro_batches(lengths, layout, 1, filler)
    assert data.step_micro_batches(lengths, layout, 1, filler) == data.step_micro_batches(lengths, layout, 1, filler)


def test_accumulation_grows_only_as_far_as_the_heaviest_step_needs() -> None:
    # 8 samples of 1000 tokens per step on 2 devices at 2000 tokens: 4 micro-batches per step → 2 accumulation steps
    layout = data.plan_step_batches([1000] * 40, samples_per_step=8, world_size=2, micro_batch_size=1, max_length=2000, epochs=1, seed=0)
    assert (layout.grad_accum, layout.steps_per_epoch) == (2, 5)
    # short samples all fit one micro-batch per device
    layout = data.plan_step_batches([10] * 40, samples_per_step=8, world_size=2, micro_batch_size=1, max_length=2000, epochs=1, seed=0)
    assert layout.grad_accum == 1


def test_devices_get_balanced_work_and_empty_slots_get_the_filler() -> None:
    lengths = [500, 400, 300, 200, 100, 100, 50]
    layout = data.StepBatching(samples_per_step=7, world_size=2, grad_accum=1, token_budget=1000, examples=7, seed=0)
    (a, b) = data.step_micro_batches(lengths, layout, 0, filler=7)
    assert abs(sum(lengths[i] for i in a) - sum(lengths[i] for i in b)) <= 100
    # 3 samples on 4 devices: one device trains the filler (no loss) so every rank runs the same forwards
    layout = data.StepBatching(samples_per_step=4, world_size=4, grad_accum=1, token_budget=1000, examples=3, seed=0)
    assert sorted(data.step_micro_batches([5, 6, 7], layout, 0, filler=3)) == [[0], [1], [2], [3]]


def test_padded_dataset_has_labels_and_lengths() -> None:
    lengths = [4, 6]
    ds, stats = data.build_train_dataset(tokenised_dataset(lengths), PackingMode.PADDED_GROUPED, max_length=8, micro_batch_size=2)
    assert set(ds.column_names) == {"input_ids", "labels", "length"}
    assert ds["labels"][0] == [-100, -100, 100, 100] and ds["length"] == lengths
    assert stats.computed_tokens == 12 and stats.token_efficiency == pytest.approx(10 / 12)


def test_an_example_over_max_length_is_a_bug_upstream() -> None:
    with pytest.raises(ValueError, match="apply_max_length"):
        data.build_train_dataset(tokenised_dataset([10]), PackingMode.PADDED_GROUPED, max_length=8)


def test_padded_efficiency_counts_pad_to_longest() -> None:
    real, computed = data.padded_token_efficiency([1, 3, 2, 2], 2, group_by_length=True)
    assert real == 8 and computed in (10, 12)
