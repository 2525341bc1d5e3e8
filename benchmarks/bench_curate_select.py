"""End-to-end `curate` + `select` on the built-in world: rows/s and peak memory, through the real stage runtime.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_curate_select.py --rows 100000

Baseline named in the output: the same two stages with every optional feature off (no near-dup, no
decontamination, no verification) in the same run, so the ratio shows what the full pipeline costs.
Run by hand; never part of the test suite.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from infialign.pipeline import stages
from infialign.pipeline.api import AlignmentRunSpec
from infialign.pipeline.runtime import entrypoint, markers
from infialign.pipeline.runtime.config import RunIdentity, TrackingConfig, artifacts_root, build_stage_config


def _spec(rows: int, full: bool) -> AlignmentRunSpec:
    curate: dict = {"embeddings": {"model": "hashed"}}
    select: dict = {"targetFraction": 0.2, "verification": {"workers": 2}}
    if not full:
        curate |= {"nearDedup": {"enabled": False}, "decontamination": {"enabled": False}}
        select["verification"] = {"enabled": False}
    return AlignmentRunSpec.model_validate(
        {
            "model": {"uri": "builtin://tiny"},
            "sources": [{"name": "reasoning", "uri": f"builtin://reasoning?n={rows}&seed=0", "preset": "records"}],
            "benchmarks": [{"name": "bench", "uri": "builtin://reasoning-bench?n=200", "preset": "records"}],
            "stages": {"curate": curate, "select": select, "distill": {"enabled": False}, "sft": {"enabled": False},
                       "prefs": {"enabled": False}, "dpo": {"enabled": False}, "eval": {"enabled": False}},
        }
    )


def _run(rows: int, full: bool, workdir: Path) -> dict[str, float]:
    spec = _spec(rows, full)
    storage = artifacts_root(spec, workdir)
    run = RunIdentity(name="full" if full else "bare")
    out: dict[str, float] = {}
    for step in ("curate", "select"):
        config = build_stage_config(spec, run, step, 1, storage, TrackingConfig(enabled=False))
        started = time.perf_counter()
        code = entrypoint.run_stage(config, stages.load(step))
        assert code == 0, f"{step} exited {code}"
        out[f"{step}_seconds"] = time.perf_counter() - started
        marker = markers.read_success(config.output, storage)
        assert marker is not None
        out[f"{step}_rows_out"] = sum(o.rows or 0 for o in marker.outputs if o.name in ("pool", "sft-phase2"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = _run(args.rows, False, Path(tmp) / "bare")
        full = _run(args.rows, True, Path(tmp) / "full")
    self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    for name, r in (("baseline: rule filters + exact dedup + clusters + selection", bare), ("full curate + select", full)):
        total = r["curate_seconds"] + r["select_seconds"]
        print(f"{name}: curate {r['curate_seconds']:.1f} s ({args.rows / r['curate_seconds']:,.0f} rows/s, pool {r['curate_rows_out']:,.0f}), "
              f"select {r['select_seconds']:.1f} s (selected {r['select_rows_out']:,.0f}); end to end {args.rows / total:,.0f} rows/s")
    ratio = (full["curate_seconds"] + full["select_seconds"]) / (bare["curate_seconds"] + bare["select_seconds"])
    print(f"full pipeline costs {ratio:.2f}x the baseline's time")
    print(f"peak RSS: stage process {self_peak:,.0f} MiB, largest worker process {child_peak:,.0f} MiB")


if __name__ == "__main__":  # verification spawns worker processes
    main()
