"""Decontamination: our hashed n-gram index vs a naive per-item n-gram set lookup, same data.

Started by hand, never by the test suite::

    OMP_NUM_THREADS=1 PYTHONPATH=pipeline:operator .venv/bin/python benchmarks/bench_decontam.py [--docs 20000]

Timings are the best of 3 runs (2 for naive), CPU time; the index build is inside every "ours" run.

Data: a ``builtin://reasoning`` world of ``--docs`` records (templated math problems with CoTs; 3 % of
them are planted leaks of ``builtin://reasoning-bench`` items, copies or light wording edits), plus
``--extra-leaks`` harder leaks made here from benchmark items: one word in the middle replaced, one
deleted (words, never numbers: a leak keeps the problem's numbers), and a numbered prefix ("Problem 12.")
added. The benchmark is ``benchmark(n=600)``.

Methods, all from raw prompt text:

- naive: for each document, for each benchmark item, the intersection of the document's word 8-gram set
  with the item's (per-item hit counts, as a report needs); tokens from the same ``normalize_tokens`` as
  ours, so both apply the same rule; item sets prebuilt once, not timed;
- ours, 8-gram only (``number_aware=False``, no fuzzy, no 13-gram): the same rule as naive, through the
  hashed index, so its flags must equal naive's exactly;
- ours, default config: number-aware 8-grams on the prompt + 13-grams on prompt+response + fuzzy ratio.

Recall is over the planted leaks; "false pos" counts flagged documents that are not planted leaks.
The world's problems are templated, so template-sharing 8-grams flag clean problems unless the check is
number-aware (the default): that is what the false-positive column shows.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))

from infialign.pipeline import records
from infialign.pipeline.curation import _arrow, decontam, normalize
from infialign.pipeline.world import reasoning

N = 8


def naive_grams(words: list[str]) -> set[tuple[str, ...]]:
    if not words:
        return set()
    return {tuple(words[i : i + N]) for i in range(len(words) - N + 1)} if len(words) >= N else {tuple(words)}


def make_data(n_docs: int, extra: int, seed: int) -> tuple[pa.Table, pa.Table, set[str]]:
    world = reasoning.generate(n=n_docs, seed=seed)
    bench = reasoning.benchmark(n=600)
    leaks = set(world.planted["benchmark_leak"])
    rng = random.Random(seed)
    items = records.to_records(bench)
    extra_recs = []
    for k in range(extra):
        item = items[rng.randrange(len(items))]
        words = item["messages"][0]["content"].split()
        plain = [i for i, w in enumerate(words) if w.isalpha() and i > 0]  # edit wording, never a number
        mid = plain[len(plain) // 2]
        words[mid] = "certain" if words[mid] != "certain" else "given"
        del words[plain[max(0, len(plain) // 2 - 3)]]
        extra_recs.append(
            {
                "id": f"extra-leak-{k}",
                "source": "bench-leaks",
                "messages": [{"role": "user", "content": f"Problem {rng.randrange(1, 40)}. " + " ".join(words)}],
                "response": item["response"],
                "answer": item["answer"],
            }
        )
        leaks.add(f"extra-leak-{k}")
    table = pa.concat_tables([world.table, records.to_table(extra_recs)])
    return table, bench, leaks


def timed(fn, *args, repeat: int = 3):
    """Best of ``repeat`` runs: (result, CPU seconds, wall seconds). Single-threaded, so CPU time is the
    fair measure on a shared host (wall time is printed too)."""
    best_cpu = best_wall = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*args)
        best_cpu, best_wall = min(best_cpu, time.process_time() - c), min(best_wall, time.perf_counter() - t)
    return out, best_cpu, best_wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--extra-leaks", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    table, bench, leaks = make_data(args.docs, args.extra_leaks, args.seed)
    ids = table.column("id").to_pylist()
    prompts = _arrow.prompt_texts(table).to_pylist()
    responses = table.column("response").to_pylist()
    bench_prompts = _arrow.prompt_texts(bench).to_pylist()
    n = len(prompts)
    print(f"{n} documents ({len(leaks)} planted leaks), {len(bench_prompts)} benchmark items, word {N}-grams")

    item_sets = [naive_grams(w) for w in normalize.normalize_tokens(bench_prompts).to_pylist()]

    def naive() -> list[bool]:
        out = []
        for words in normalize.normalize_tokens(prompts).to_pylist():
            g = naive_grams(words)
            hits = [len(g & s) for s in item_sets]
            out.append(any(hits))
        return out

    def ours(cfg: decontam.DecontamConfig) -> list[bool]:
        index = decontam.DecontamIndex.build({"bench": bench}, cfg)
        scores = index.score_texts(prompts, responses)
        flagged = np.zeros(n, dtype=bool)
        for key, col in scores.items():
            method = key.rsplit(":", 1)[1]
            values = np.nan_to_num(col, nan=0.0)
            if method in ("ngram", "full"):
                flagged |= values >= 1
            elif method == "fuzzy" and cfg.fuzzy_ratio is not None:
                flagged |= values >= cfg.fuzzy_ratio
        return flagged.tolist()

    same_rule = decontam.DecontamConfig(number_aware=False, full_ngram=None, fuzzy_ratio=None)
    ours(same_rule)  # warm imports (not timed)
    runs = {}
    runs["naive 8-gram"] = timed(naive, repeat=2)
    runs["ours 8-gram"] = timed(ours, same_rule)
    runs["ours default"] = timed(ours, decontam.DecontamConfig())

    print(f"\n{'method':<14} {'cpu s':>7} {'wall s':>7} {'docs/s':>9} {'recall':>8} {'false pos':>9}")
    for name, (flags, cpu, wall) in runs.items():
        found = sum(f for i, f in zip(ids, flags) if i in leaks)
        fp = sum(f for i, f in zip(ids, flags) if i not in leaks)
        print(f"{name:<14} {cpu:7.2f} {wall:7.2f} {n / cpu:9.0f} {found / len(leaks):8.2%} {fp:>9}")
    naive_flags = runs["naive 8-gram"][0]
    print(f"\nours 8-gram flags == naive flags: {runs['ours 8-gram'][0] == naive_flags}")
    base = runs["naive 8-gram"][1]
    for name in ("ours 8-gram", "ours default"):
        print(f"speed-up {name} vs naive (CPU time, index build included): {base / runs[name][1]:.1f}x")


if __name__ == "__main__":
    main()
