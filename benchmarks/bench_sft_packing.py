"""SFT packing benchmark (started by hand; not part of the test suite).

    OMP_NUM_THREADS=1 PYTHONPATH=pipeline:operator .venv/bin/python benchmarks/bench_sft_packing.py [--part a|b|c|all]

(a) Token efficiency on long-CoT length distributions, no training:
    * packed (best-fit decreasing, TRL's ``pack_dataset`` as data.build_train_dataset uses it): the row fill
      real ÷ (rows × max_length). Padding-free batches compute no padding at all; the fill is what a fixed
      per-step token budget (and pad-to-max_length rows, as sequence parallelism needs) gets. Target ≥ 98 %.
    * TRL's default unpacked batches: random order, each batch padded to its longest (per-device batch 8).
    * our padded fallback: the same with transformers' length-grouped sampler.
    Distributions: lognormal long CoT (median 6K tokens, σ 0.8, cut at 32K) and the built-in reasoning data
    (``infialign.pipeline.world.reasoning``) tokenised with the tiny model's tokenizer.
(b) Tokens/s of real tokens on the tiny model on CPU, one epoch over the same examples in one process, through
    TRL's SFTTrainer: packed (segment-wise SDPA), TRL-default padded, length-grouped padded, and TRL packing with
    stock sdpa (dense block-diagonal mask) for reference. Target: packed ≥ 2× TRL-default padded.
(c) On-paper estimate: Qwen2.5-7B at 32K on 8×H100 with the config the sft stage generates, vs torchtitan.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

LONG_COT = {"median": 6000, "sigma": 0.8, "cap": 32768, "n": 20000, "max_length": 32768}
TRL_DEFAULT_BATCH = 8


# ------------------------------------------------------------------------------------------------ (a)


def lognormal_lengths(n: int, median: float, sigma: float, cap: int, seed: int = 0, floor: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(math.log(median), sigma, n).astype(np.int64), floor, cap)


def builtin_lengths(n: int = 4000) -> tuple[np.ndarray, int]:
    from transformers import AutoTokenizer

    from infialign.pipeline import records
    from infialign.pipeline.training import chat
    from infialign.pipeline.world import reasoning, tiny_model

    mix = reasoning.PlantMix(**{f.name: 0.0 for f in dataclasses.fields(reasoning.PlantMix)})
    rows = records.to_records(reasoning.generate(n, seed=11, mix=mix).table)
    tok = AutoTokenizer.from_pretrained(tiny_model.ensure_tiny_model())
    lengths = [len(chat.tokenise_conversation(tok, chat.conversation(r)).input_ids) for r in rows]
    return np.asarray(lengths, dtype=np.int64), 1024


def packed_fill(lengths: np.ndarray, max_length: int) -> tuple[int, float]:
    """Rows and fill when the real data pipeline packs examples of these lengths (BFD, TRL's pack_dataset)."""
    from datasets import Dataset

    from infialign.pipeline.training import data

    # Token *values* do not matter for bin packing; one id per example keeps the table small.
    ds = Dataset.from_dict(
        {
            "input_ids": [[1] * int(n) for n in lengths],
            "assistant_masks": [[1] * int(n) for n in lengths],
            "num_tokens": lengths.tolist(),
            "loss_tokens": lengths.tolist(),
        }
    )
    packed, stats = data.build_train_dataset(ds, data.PackingMode.PACKED_VARLEN_SDPA, max_length=max_length)
    return stats.rows, stats.real_tokens / (stats.rows * max_length)


def part_a() -> dict[str, Any]:
    from infialign.pipeline.training import data

    print("\n(a) token efficiency = real tokens ÷ computed tokens")
    out: dict[str, Any] = {}
    dists = {
        f"lognormal long CoT (median {LONG_COT['median']}, σ {LONG_COT['sigma']}, cap {LONG_COT['cap']}, n {LONG_COT['n']})": (
            lognormal_lengths(LONG_COT["n"], LONG_COT["median"], LONG_COT["sigma"], LONG_COT["cap"]),
            LONG_COT["max_length"],
        ),
        "built-in reasoning data (tiny tokenizer, n 4000)": builtin_lengths(),
    }
    for name, (lengths, max_length) in dists.items():
        rows, fill = packed_fill(lengths, max_length)
        real, trl_default = data.padded_token_efficiency(lengths, TRL_DEFAULT_BATCH, group_by_length=False)
        _, grouped = data.padded_token_efficiency(lengths, TRL_DEFAULT_BATCH, group_by_length=True)
        lower = math.ceil(real / max_length)
        print(f"  {name}: mean {lengths.mean():.0f}, p50 {np.median(lengths):.0f}, max {lengths.max()} tokens; max_length {max_length}")
        print(f"    packed BFD rows:                     {fill:7.2%}  ({rows} rows; lower bound {lower})  [target ≥ 98%]")
        print("    packed, padding-free batches:        100.00%  (no pad tokens are computed)")
        print(f"    TRL default padding (batch {TRL_DEFAULT_BATCH}, random): {real / trl_default:7.2%}")
        print(f"    padded, length-grouped (batch {TRL_DEFAULT_BATCH}):     {real / grouped:7.2%}")
        print(f"    packed ÷ TRL default:                {fill / (real / trl_default):7.2f}×")
        out[name] = {"packed_fill": fill, "trl_default": real / trl_default, "grouped": real / grouped, "rows": rows}
    return out


# ------------------------------------------------------------------------------------------------ (b)


def _synthetic_tokenised(n: int, max_length: int, seed: int = 0):
    """Long-CoT-shaped examples on the tiny model's context: lognormal lengths, prompt 15 % unmasked."""
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    lengths = lognormal_lengths(n, median=max_length / 5, sigma=0.8, cap=max_length, seed=seed, floor=32)
    ids = [rng.integers(10, 1000, int(m)).tolist() for m in lengths]
    masks = [[0] * int(0.15 * m) + [1] * (int(m) - int(0.15 * m)) for m in lengths]
    return Dataset.from_dict(
        {"input_ids": ids, "assistant_masks": masks, "num_tokens": lengths.tolist(), "loss_tokens": [sum(m) for m in masks]}
    )


def _builtin_tokenised(n: int):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from infialign.pipeline import records
    from infialign.pipeline.training import chat
    from infialign.pipeline.world import reasoning, tiny_model

    mix = reasoning.PlantMix(**{f.name: 0.0 for f in dataclasses.fields(reasoning.PlantMix)})
    table = records.to_table(records.to_records(reasoning.generate(n, seed=5, mix=mix).table))
    tok = AutoTokenizer.from_pretrained(tiny_model.ensure_tiny_model())
    batch = {k: table.column(k).to_pylist() for k in ("id", "messages", "response")}
    return Dataset.from_dict(chat.tokenise_batch(batch, tokenizer=tok))


def _run(variant: str, tokenised, max_length: int, model_path: Path, workdir: Path) -> dict[str, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig

    from infialign.pipeline.training import attention, data, sft

    packed = variant in ("packed-varlen-sdpa", "trl-packing-stock-sdpa")
    mode = data.PackingMode.PACKED_VARLEN_SDPA if packed else data.PackingMode.PADDED_GROUPED
    train_ds, stats = data.build_train_dataset(tokenised, mode, max_length=max_length, micro_batch_size=TRL_DEFAULT_BATCH)
    attn = attention.register_sdpa_varlen() if variant == "packed-varlen-sdpa" else "sdpa"
    # Equal work per step on average: a packed row of max_length vs TRL's 8 padded examples.
    batch = max(1, round(TRL_DEFAULT_BATCH * stats.real_tokens / stats.examples / max_length)) if packed else TRL_DEFAULT_BATCH
    args = SFTConfig(
        output_dir=str(workdir / variant), per_device_train_batch_size=batch, num_train_epochs=1, learning_rate=1e-4,
        max_length=max_length, packing=packed, padding_free=packed, dataset_kwargs={"skip_prepare_dataset": True},
        train_sampling_strategy="group_by_length" if variant == "padded-length-grouped" else "random", length_column_name="length",
        use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[], save_strategy="no", logging_steps=10_000,
        disable_tqdm=True, seed=0, data_seed=0,
    )
    model = AutoModelForCausalLM.from_pretrained(model_path, attn_implementation=attn)
    model.config.use_cache = False
    trainer = sft._make_trainer_class()(model=model, args=args, train_dataset=train_ds, processing_class=AutoTokenizer.from_pretrained(model_path))
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    return {"tokens_per_s": stats.real_tokens / wall, "wall_s": wall, "steps": trainer.state.global_step, "batch": batch, "rows": stats.rows}


def part_b(repeats: int = 1) -> dict[str, Any]:
    from infialign.pipeline.world import tiny_model

    model_path = tiny_model.ensure_tiny_model()
    print(f"\n(b) tokens/s (real tokens) on the tiny model (CPU, 1 thread, one epoch, best of {repeats}), same data, same process")
    variants = ["packed-varlen-sdpa", "padded-trl-default", "padded-length-grouped", "trl-packing-stock-sdpa"]
    datasets = {"lognormal long-CoT shape (n 512, median 205, cap 1024)": (_synthetic_tokenised(512, 1024), 1024),
                "built-in reasoning data (n 1024)": (_builtin_tokenised(1024), 1024)}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (tokenised, max_length) in datasets.items():
            results = {v: max((_run(v, tokenised, max_length, model_path, Path(tmp)) for _ in range(repeats)), key=lambda r: r["tokens_per_s"]) for v in variants}
            base = results["padded-trl-default"]["tokens_per_s"]
            print(f"  {name}:")
            for v, r in results.items():
                print(f"    {v:26s} {r['tokens_per_s']:9.0f} tok/s  {r['tokens_per_s'] / base:5.2f}×  ({r['steps']} steps of {r['batch']} rows, {r['wall_s']:.1f} s)")
            out[name] = {v: r["tokens_per_s"] for v, r in results.items()}
    return out


# ------------------------------------------------------------------------------------------------ (c)


def part_c() -> None:
    """Qwen2.5-7B, 8×H100 SXM, the config the sft stage generates at 32K (see gpu_estimate.md)."""
    from infialign.pipeline.training import SftSettings, plan_sft
    from infialign.pipeline.training.progress import FlopsModel

    settings = SftSettings()  # InfiAlign defaults: 32K rows, global batch 64, ZeRO-3
    plan = plan_sft(settings, device="cuda", world_size=8, flash_attn_available=True, deepspeed_available=True)
    # Qwen2.5-7B: 28 layers, hidden 3584, 28 query heads × 128, vocab 152,064, untied head, 7.62 B parameters.
    total, embed = 7_615_616_512, 152_064 * 3584
    n = total - embed  # the input embedding is a lookup; the untied head is a matmul
    lengths = lognormal_lengths(LONG_COT["n"], LONG_COT["median"], LONG_COT["sigma"], LONG_COT["cap"])
    context = float((lengths.astype(float) ** 2).sum() / lengths.sum())  # packed: attention within each example
    _, fill = packed_fill(lengths[:5000], settings.max_length)
    fm_packed = FlopsModel(n, 28, 3584, context)
    fm_full = FlopsModel(n, 28, 3584, float(settings.max_length))  # torchtitan's convention: T = row length
    peak = 989e12
    tokens_per_step = settings.global_batch_size * settings.max_length * fill
    examples, mean_len = 165_000, float(lengths.mean())  # InfiAlign phase 2 set (seeds-algorithms §1.8)
    print("\n(c) on-paper estimate: Qwen2.5-7B SFT at 32K on 8×H100 SXM (bf16 dense peak 989 TFLOP/s)")
    print(f"  plan: {plan.describe()}")
    print(f"  row fill {fill:.1%}; {tokens_per_step / 1e6:.2f} M real tokens per optimizer step (64 rows × 32K)")
    print(f"  N = {n / 1e9:.2f} B matmul parameters; 6N = {fm_packed.per_token_6n / 1e9:.1f} GFLOP/token")
    print(f"  + attention 12·L·H·Q·T, T = Σl²/Σl = {context:.0f} (packed): {fm_packed.per_token_with_attention / 1e9:.1f} GFLOP/token;"
          f" T = 32K (unpacked, torchtitan-style): {fm_full.per_token_with_attention / 1e9:.1f} GFLOP/token")
    print(f"  {'model-FLOPs MFU':>16s} | {'tok/s/GPU':>9s} | {'step (s)':>8s} | {'epoch of 165k (h)':>17s} | 5 epochs (h)")
    for mfu in (0.25, 0.30, 0.35, 0.39):
        tps = mfu * peak / fm_packed.per_token_with_attention
        step = tokens_per_step / (8 * tps)
        epoch_h = examples * mean_len / (8 * tps) / 3600
        print(f"  {mfu:>16.0%} | {tps:9.0f} | {step:8.1f} | {epoch_h:17.1f} | {5 * epoch_h:.1f}")
    print("  torchtitan (Llama-3.1-8B, 8×H100, FSDP2): 33–39 % MFU at 8K; 3,890 tok/s/GPU at 32K with compile+FP8.")
    print("  Expect HF Trainer + DeepSpeed ZeRO-3 + FA2 at the low end (25–35 %, training-anchors.md §7).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["a", "b", "c", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=1, help="(b): runs per variant; the best is kept")
    ns = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as hf_logging

    disable_progress_bar()
    hf_logging.disable_progress_bar()
    if ns.part in ("a", "all"):
        part_a()
    if ns.part in ("b", "all"):
        part_b(ns.repeats)
    if ns.part in ("c", "all"):
        part_c()
    return 0


if __name__ == "__main__":
    sys.exit(main())
