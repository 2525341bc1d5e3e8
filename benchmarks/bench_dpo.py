"""DPO on the built-in tiny model: steps/s with stored reference log-probs vs TRL's default, and what SAGE selects.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dpo.py --pairs 256 --steps 40

1. Throughput. The same pairs, model and settings in the same process, twice: ``reference="stored"`` (reference
   log-probs computed once before training, no reference model in memory; ours) and ``reference="live"`` (TRL's
   default: a frozen copy of the model scores every batch). Reported: optimizer steps/s of the training loop (the
   Trainer's ``train_steps_per_second``), the one-time reference pass, and the wall time of the whole call.
2. SAGE. One run with SAGE on the same pairs (tiers from the `chosen` length, since world pairs carry no pass
   rate), refreshing every ``--refresh`` steps: pool per tier, competence, unstable fraction, retired, selected.

Pairs: chosen = a ``builtin://reasoning`` record's correct response, rejected = the same response with a slip in the
last step (the world's wrong-answer defect). Run by hand; never part of the test suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from infialign.pipeline import pairs as pairs_mod
from infialign.pipeline import records
from infialign.pipeline.training import DpoSettings, train_dpo
from infialign.pipeline.world import reasoning, tiny_model


def world_pairs(n: int, seed: int) -> Any:
    mix = reasoning.PlantMix(**{f.name: 0.0 for f in dataclasses.fields(reasoning.PlantMix)})
    rng = random.Random(seed)
    rows = []
    for r in records.to_records(reasoning.generate(n, seed=seed, mix=mix).table):
        answer = r["answer"]
        if not answer or not re.fullmatch(r"\d+", answer):
            continue
        wrong = str(int(answer) + rng.choice((1, 2, 10)))
        head, _, tail = r["response"].partition("</think>")
        lines = head.split("\n")
        pattern = re.compile(rf"(?<![\d^]){re.escape(answer)}(?!\d)")
        for i in range(len(lines) - 1, max(len(lines) - 4, -1), -1):
            lines[i] = pattern.sub(wrong, lines[i])
        rejected = "\n".join(lines) + "</think>" + tail.replace("\\boxed{" + answer + "}", "\\boxed{" + wrong + "}")
        rows.append({"id": r["id"], "source": "builtin://reasoning", "prompt": r["messages"], "chosen": r["response"],
                     "rejected": rejected, "answer": answer})
    return pairs_mod.to_pairs_table(rows)


def _settings(steps: int, **extra: Any) -> DpoSettings:
    return DpoSettings(max_length=512, global_batch_size=8, micro_batch_size=4, learning_rate=3e-3, warmup_ratio=0.0, max_steps=steps,
                       save_steps=100_000, logging_steps=10, heartbeat_interval_s=0, **extra)


def throughput(model: Path, table: Any, steps: int, work: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for mode in ("stored", "live"):
        started = time.perf_counter()
        result = train_dpo(_settings(steps, reference=mode), str(model), table, work / mode, model_digest="tiny")
        wall = time.perf_counter() - started
        train_s = result.metrics["train_runtime"]
        out[mode] = {
            "steps_per_s": result.metrics["train_steps_per_second"],
            "train_s": train_s,
            "wall_s": wall,
            "final_loss": result.metrics.get("loss", float("nan")),
            "ref_logps": 1.0 if result.ref_logps == "computed" else 0.0,
        }
    return out


def sage_selection(model: Path, table: Any, steps: int, refresh: int, work: Path) -> list[dict[str, Any]]:
    result = train_dpo(_settings(steps, sage={"enabled": True, "refresh_steps": refresh}), str(model), table, work / "sage", model_digest="tiny")
    return result.sage_refreshes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=256, help="world records to draw pairs from")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--refresh", type=int, default=5, help="SAGE refresh interval R")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        work = Path(tmp)
        model = tiny_model.ensure_tiny_model(work / "cache")
        table = world_pairs(ns.pairs, seed=0)
        speed = throughput(model, table, ns.steps, work)
        refreshes = sage_selection(model, table, ns.steps, ns.refresh, work)
    ratio = speed["stored"]["steps_per_s"] / speed["live"]["steps_per_s"]
    print(f"pairs={table.num_rows} steps={ns.steps} global_batch=8 micro_batch=4 (CPU, tiny model)")
    for mode, figures in speed.items():
        print(f"  {mode:>6}: {figures['steps_per_s']:.3f} steps/s in the loop, {figures['train_s']:.1f}s training, "
              f"{figures['wall_s']:.1f}s wall (incl. load, tokenise{', one reference pass' if mode == 'stored' else ''})")
    print(f"  stored/live steps/s = {ratio:.2f}x (target >= 1.3x)")
    print(f"SAGE, refresh every {ns.refresh} steps:")
    for r in refreshes:
        print(f"  step {r['step']:>3}: pool {r['pool']:>3} {r['pool_by_tier']}, competence {r['competence']:.2f}, unstable "
              f"{100 * r['unstable_fraction']:.0f}% (boundary {r['unstable_boundary']}, flips {r['unstable_flips']}, variance "
              f"{r['unstable_variance']}), retired {r['retired_total']}, selected {r['selected']}, "
              f"score q50 {r['score_quantiles'].get('q50', float('nan')):.3f}, {r['refresh_s']:.2f}s")
    if ns.json:
        ns.json.write_text(json.dumps({"throughput": speed, "ratio": ratio, "sage": refreshes}, indent=1, default=float))


if __name__ == "__main__":
    main()
