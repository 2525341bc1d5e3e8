"""Is `builtin://tiny-teacher` measurably better than the student? (started by hand; not part of the test suite)

    OMP_NUM_THREADS=1 PYTHONPATH=pipeline:operator .venv/bin/python benchmarks/bench_teacher.py [--questions 200]

Builds (or reuses) the teacher and prints its build time from its metadata, then decodes greedily with
vLLM on `builtin://reasoning-bench` for each model and scores with the eval stage's scoring
(`evaluation.scoring`: math-verify on the final `\\boxed{}`; truncated answers are wrong). Prints accuracy
overall and per tier, and the share of answers that are verifiable at all (a `\\boxed{}` after `</think>`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--models", nargs="+", default=["builtin://tiny", "builtin://tiny-teacher"])
    args = parser.parse_args()

    from infialign.pipeline import generation, records
    from infialign.pipeline.api import VerificationSettings
    from infialign.pipeline.curation import answers
    from infialign.pipeline.evaluation import scoring
    from infialign.pipeline.world import reasoning, tiny_model, tiny_teacher

    started = time.monotonic()
    teacher_dir = tiny_teacher.ensure_tiny_teacher()
    meta = json.loads((teacher_dir / tiny_teacher.METADATA_FILE).read_text())
    print(f"teacher {teacher_dir.name}: build_seconds={meta['build_seconds']} (this call {time.monotonic() - started:.1f} s), "
          f"steps={meta['global_step']} train_loss={meta['train_loss']}")

    bench = reasoning.benchmark(n=args.questions)
    rows = records.to_records(bench)
    prompts = bench.select(["id", "messages"])
    system = "Please reason step by step, and put your final answer within \\boxed{}."
    sampling = generation.Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=args.max_tokens)
    for uri in args.models:
        model_dir = Path(tiny_model.resolve_model_uri(uri))
        with tempfile.TemporaryDirectory() as tmp, generation.open_engine(model_dir, generation.EngineOptions(max_model_len=512)) as engine:
            out = generation.generate(engine, prompts, sampling, out=Path(tmp).as_uri(), storage=None, system_prompt=system)
        by_id = {r["id"]: r for r in out.to_pylist()}
        samples = [scoring.Sample(by_id[r["id"]]["text"], by_id[r["id"]]["finish_reason"]) for r in rows]
        scores = scoring.score(samples, rows, VerificationSettings())
        tiers: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r, s in zip(rows, scores, strict=True):
            t = tiers[str((r.get("provenance") or {}).get("tier", "?"))]
            t[0] += s.passed
            t[1] += 1
        boxed = sum(answers.last_boxed(answers.after_think(s.text)) is not None for s in samples)
        correct = sum(s.passed for s in scores)
        per_tier = ", ".join(f"tier{k} {c}/{n}" for k, (c, n) in sorted(tiers.items()))
        print(f"{uri:24s} accuracy {correct}/{len(rows)} = {correct / len(rows):.3f}  (boxed answers {boxed}/{len(rows)}; {per_tier})")


if __name__ == "__main__":
    main()
