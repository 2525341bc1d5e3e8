"""One cheap trial of "can the tiny model learn the built-in world in the quickstart's budget" (by hand).

    cd /work/wt/world2 && PYTHONPATH=$PWD/pipeline:$PWD/operator OMP_NUM_THREADS=1 \
      /work/main/.venv/bin/python benchmarks/world_trial.py --name t1 --n 2000 --lr 3e-3 --budget 120

It runs the same code the quickstart's stages run, without the executor around them:
``reasoning.generate`` (the world), an optional longest-first cut standing in for `select`'s difficulty
rule, ``training.train_sft`` (TRL SFTTrainer, one phase) and ``quickeval.exact_match`` on the first
``--bench-items`` items of ``builtin://reasoning-bench``. ``--budget`` stops training after that many
CPU seconds of this process (a TrainerCallback), so a trial costs what its budget says; the schedule still
follows ``--epochs``. One JSON line per trial is appended to ``--log`` (default
``/tmp/world-trials.jsonl``) and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _budget_callback(seconds: float) -> Any:
    from transformers import TrainerCallback

    class WallBudget(TrainerCallback):
        """Stop training once the wall budget is spent (the step in flight finishes)."""

        def __init__(self) -> None:
            self.started = time.process_time()
            self.stopped_at: int | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            # CPU time of this process, not wall time: the machine is shared, and with one thread the CPU
            # seconds are what an idle core would take.
            if time.process_time() - self.started > seconds:
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

    return WallBudget()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--n", type=int, default=3000, help="world records generated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiers", default="1,1,1,1", help="world tier weights")
    p.add_argument("--bench-tiers", default=None, help="bench tier weights (default: the bench default)")
    p.add_argument("--clean", action="store_true", help="no planted defects (default: the default plant mix)")
    p.add_argument("--longest", type=float, default=1.0, help="keep this fraction of the records, longest responses first")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=float, default=0.05)
    p.add_argument("--gbs", type=int, default=4)
    p.add_argument("--mbs", type=int, default=4)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--clip", type=float, default=1.0, help="max_grad_norm (0: no clipping)")
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--budget", type=float, default=180.0, help="CPU seconds of training at most")
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--kv-heads", type=int, default=None)
    p.add_argument("--intermediate", type=int, default=None)
    p.add_argument("--pretrain-steps", type=int, default=None, help="TinyModelSpec.pretrain.steps (0: random init)")
    p.add_argument("--pretrain-bs", type=int, default=None, help="TinyModelSpec.pretrain.batch_size")
    p.add_argument("--pretrain-seq", type=int, default=None, help="TinyModelSpec.pretrain.seq_len")
    p.add_argument("--pretrain-lr", type=float, default=None, help="TinyModelSpec.pretrain.learning_rate")
    p.add_argument("--pretrain-share", type=float, default=None, help="TinyModelSpec.pretrain.statement_share")
    p.add_argument("--pretrain-echo", type=float, default=None, help="TinyModelSpec.pretrain.echo_share")
    p.add_argument("--base", default=None, help="train this model directory instead of building builtin://tiny")
    p.add_argument("--base-eval", action="store_true", help="also score the base model before training")
    p.add_argument("--bench-items", type=int, default=100)
    p.add_argument("--log", default="/tmp/world-trials.jsonl")
    args = p.parse_args(argv)

    import dataclasses

    import pyarrow.compute as pc

    from infialign.pipeline import quickeval, training
    from infialign.pipeline.world import reasoning, tiny_model

    overrides = {
        k: v
        for k, v in {
            "hidden_size": args.hidden,
            "num_hidden_layers": args.layers,
            "num_attention_heads": args.heads,
            "num_key_value_heads": args.kv_heads,
            "intermediate_size": args.intermediate,
        }.items()
        if v is not None
    }
    pretrain_overrides = {
        k: v
        for k, v in {
            "steps": args.pretrain_steps,
            "batch_size": args.pretrain_bs,
            "seq_len": args.pretrain_seq,
            "learning_rate": args.pretrain_lr,
            "statement_share": args.pretrain_share,
            "echo_share": args.pretrain_echo,
        }.items()
        if v is not None
    }
    spec = tiny_model.TinyModelSpec()
    spec = dataclasses.replace(spec, pretrain=dataclasses.replace(spec.pretrain, **pretrain_overrides), **overrides)
    model_dir = Path(args.base) if args.base else tiny_model.ensure_tiny_model(spec=spec)
    metadata = json.loads((model_dir / tiny_model.METADATA_FILE).read_text())

    mix = reasoning.PlantMix(**{f.name: 0.0 for f in dataclasses.fields(reasoning.PlantMix)}) if args.clean else None
    table = reasoning.generate(args.n, seed=args.seed, mix=mix, tiers=reasoning.TierMix.parse(args.tiers)).table
    table = table.filter(pc.is_valid(table.column("response")))
    if args.longest < 1.0:
        lengths = pc.utf8_length(table.column("response")).to_numpy(zero_copy_only=False)
        order = lengths.argsort()[::-1][: int(round(args.longest * table.num_rows))]
        table = table.take(sorted(order.tolist()))

    settings = training.SftSettings(
        max_length=args.max_length,
        epochs=args.epochs,
        global_batch_size=args.gbs,
        micro_batch_size=args.mbs,
        learning_rate=args.lr,
        min_learning_rate=args.min_lr,
        warmup_ratio=args.warmup,
        max_grad_norm=args.clip,
        adam_beta2=args.beta2,
        save_steps=100000,
        logging_steps=50,
    )
    bench_tiers = reasoning.TierMix.parse(args.bench_tiers) if args.bench_tiers else None
    bench = reasoning.benchmark(n=args.bench_items, tiers=bench_tiers).to_pylist()
    items = [(r["messages"], r["answer"]) for r in bench]
    groups = [dict(r["provenance"])["tier"] for r in bench]

    base_score = quickeval.exact_match(model_dir, items, groups=groups, max_new_tokens=256) if args.base_eval else None
    budget = _budget_callback(args.budget)
    with tempfile.TemporaryDirectory(prefix=f"world-trial-{args.name}-") as work:
        started, cpu_started = time.monotonic(), time.process_time()
        result = training.train_sft(settings, str(model_dir), table, Path(work), callbacks=[budget])
        train_s, train_cpu_s = time.monotonic() - started, time.process_time() - cpu_started
        score = quickeval.exact_match(result.model_dir, items, groups=groups, max_new_tokens=256)
    out = {
        "name": args.name,
        "args": vars(args),
        "model_dir": str(model_dir),
        "params": metadata["parameters"],
        "pretraining": metadata.get("pretraining"),
        "base_exact_match": base_score.accuracy if base_score else None,
        "base_answered": base_score.answered if base_score else None,
        "rows": table.num_rows,
        "train_s": round(train_s, 1),
        "train_cpu_s": round(train_cpu_s, 1),  # the machine is shared: CPU seconds say what an idle core would need
        "load_avg": os.getloadavg()[0],
        "steps": result.global_step,
        "stopped_by_budget": budget.stopped_at is not None,
        "tokens": result.dataset.to_dict().get("real_tokens"),
        "loss": result.train_loss,
        "exact_match": score.accuracy,
        "answered": score.answered,
        "by_tier": {t: f"{s.correct}/{s.total}" for t, s in score.by_group.items()},
        "samples": [s["output"][:200] for s in score.samples[:3]],
    }
    line = json.dumps(out)
    with open(args.log, "a") as f:
        f.write(line + "\n")
    print(line)
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
