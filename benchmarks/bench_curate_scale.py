"""`curate` + `select` on a pool of long-CoT records far larger than the built-in world: time, rows/s, peak RSS.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_curate_scale.py --sizes 100000 300000 \
        --baseline-src /work/main --baseline-sizes 20000
    # curate alone, this branch at 20k against main at 20k, outputs kept to compare:
    ... bench_curate_scale.py --sizes 20000 --baseline-src /work/main --baseline-sizes 20000 --steps curate --keep /tmp/k

For each size N the script writes N records (NuminaMath layout: ``problem`` / ``solution`` / ``answer``,
~3.3 KB each, an R1-style ``<think>`` block and a ``\\boxed{}`` answer; 2 % exact and 2 % near
duplicates) to a Parquet file, then runs ``curate`` and ``select`` through the real stage runtime
(``entrypoint.run_stage``, the same call the local executor makes) in a child process, and samples the
summed RSS of that child and all its descendants (curate's row workers, select's verification workers)
every 0.2 s. CPU seconds are the child's user + system time plus that of its joined children, per stage:
less sensitive to other load on the machine than wall time.

The baseline is named by ``--baseline-src``: the same measurement with another checkout's ``pipeline/``
first on ``PYTHONPATH`` (landed main: the non-streaming path), at the sizes it survives. Both run in
the same invocation, on the same files, so the ratio compares like with like.

Run by hand; never part of the test suite. Results: benchmarks/results/curate_scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_HERE = Path(__file__).resolve()
_REPO = _HERE.parents[1]

_WORDS = (
    "we need the value of sum product root term factor prime integer real number equation function sequence "
    "series limit angle triangle circle radius area volume side length point line plane vector matrix "
    "determinant eigenvalue probability expected value random variable distribution mean median mode ratio "
    "fraction remainder modulo divisor multiple square cube power exponent logarithm derivative integral "
    "slope tangent chord arc polygon hexagon pentagon digit base parity bound minimum maximum inequality "
    "solution case check again so then therefore hence because since let suppose assume consider note "
    "recall compute simplify substitute expand rearrange verify wait actually hmm indeed clearly thus"
).split()
_TEMPLATES = (
    "Let {a} be the {w0} of the {w1} with {w2} {n0}. Find the {w3} of {a} modulo {n1}.",
    "A {w0} has {w1} {n0} and {w2} {n1}. Compute the {w3} of its {w4}.",
    "How many {w0} integers {a} satisfy {a}^2 + {n0}{a} < {n1}, where each {w1} is a {w2}?",
    "Given that the {w0} of a {w1} is {n0} and its {w2} is {n1}, determine the {w3} of the {w4}.",
)


def _sentence(rng: np.random.Generator, k: int) -> str:
    words = rng.choice(_WORDS, size=k)
    nums = rng.integers(0, 1000, size=2)
    return f"{' '.join(words[: k // 2])} {nums[0]} = {' '.join(words[k // 2 :])} {nums[1]}."


def _prompt(rng: np.random.Generator, i: int) -> str:
    w = rng.choice(_WORDS, size=5)
    t = _TEMPLATES[i % len(_TEMPLATES)]
    return t.format(a="x", n0=int(rng.integers(2, 10**6)), n1=int(rng.integers(2, 10**6)), **{f"w{j}": w[j] for j in range(5)}) + (
        f" Problem {i}: {' '.join(rng.choice(_WORDS, size=20))}."
    )


def generate(path: Path, n: int, seed: int = 0, chunk: int = 20_000) -> int:
    """Write ``n`` long-CoT records to ``path``; returns the bytes of response text written."""
    rng = np.random.default_rng(seed)
    # A fixed bank of sentences, drawn at random per response: cheap to build, no 20-gram repeats inside a CoT.
    bank = [_sentence(rng, int(k)) for k in rng.integers(14, 26, size=50_000)]
    bank_arr = np.array(bank, dtype=object)
    schema = pa.schema([("id", pa.string()), ("problem", pa.string()), ("solution", pa.large_string()), ("answer", pa.string())])
    text_bytes = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for c0 in range(0, n, chunk):
            m = min(chunk, n - c0)
            prompts, solutions, answers, ids = [], [], [], []
            picks = rng.integers(0, len(bank), size=(m, 24))
            for j in range(m):
                i = c0 + j
                kind = i % 50
                if kind == 7 and i > 50:  # exact duplicate of an earlier prompt
                    prompt = _prompt(np.random.default_rng(seed * 7919 + i - 7), i - 7)
                else:
                    prompt = _prompt(np.random.default_rng(seed * 7919 + i), i)
                    if kind == 13:  # near duplicate: one word changed
                        prompt = prompt.replace(" the ", " this ", 1)
                ans = str(int(rng.integers(0, 10**4)))
                body = " ".join(bank_arr[picks[j]])
                solution = f"<think>\n{body}\nSo the answer is {ans}.\n</think>\n\nThe answer is $\\boxed{{{ans}}}$."
                prompts.append(prompt)
                solutions.append(solution)
                answers.append(ans)
                ids.append(f"p{i}")
                text_bytes += len(solution)
            writer.write_table(
                pa.table({"id": ids, "problem": prompts, "solution": pa.array(solutions, pa.large_string()), "answer": answers}, schema=schema)
            )
    return text_bytes


def _spec(data: Path, local_workers: int | None = None) -> dict:
    off = {"enabled": False}
    curate: dict = {"embeddings": {"model": "hashed"}}
    if local_workers is not None:  # else the stage's default (a baseline checkout may not know the field)
        curate["localWorkers"] = local_workers
    return {
        "model": {"uri": "builtin://tiny"},
        "sources": [{"name": "longcot", "uri": str(data), "preset": "numina"}],
        "benchmarks": [{"name": "bench", "uri": "builtin://reasoning-bench?n=200", "preset": "records"}],
        "stages": {
            "curate": curate,
            "select": {"targetFraction": 0.2},
            "distill": off, "sft": off, "prefs": off, "dpo": off, "eval": off,
        },
    }


def _cpu_seconds() -> float:
    """User + system CPU of this process and of its children that have been waited for (the curate stage
    joins its worker pool, select its verification workers, before they return)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _child(data: Path, workdir: Path, local_workers: int | None = None, steps: tuple[str, ...] = ("curate", "select")) -> None:
    """Run curate then select in this process; print one JSON line of timings."""
    from infialign.pipeline import stages
    from infialign.pipeline.api import AlignmentRunSpec
    from infialign.pipeline.runtime import entrypoint, markers
    from infialign.pipeline.runtime.config import RunIdentity, TrackingConfig, artifacts_root, build_stage_config

    spec = AlignmentRunSpec.model_validate(_spec(data, local_workers))
    storage = artifacts_root(spec, workdir)
    run = RunIdentity(name="scale")
    out: dict[str, float] = {}
    for step in steps:
        config = build_stage_config(spec, run, step, 1, storage, TrackingConfig(enabled=False))
        started, cpu0 = time.perf_counter(), _cpu_seconds()
        code = entrypoint.run_stage(config, stages.load(step))
        if code != 0:
            print(json.dumps({"failed": step, "code": code}), flush=True)
            return
        out[f"{step}_seconds"] = time.perf_counter() - started
        out[f"{step}_cpu_seconds"] = _cpu_seconds() - cpu0
        marker = markers.read_success(config.output, storage)
        out[f"{step}_rows_out"] = sum(o.rows or 0 for o in marker.outputs if o.name in ("pool", "sft-phase2"))
        print(json.dumps({"done": step, **out}), flush=True)
    print(json.dumps(out), flush=True)


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def measure(
    src: Path, data: Path, rows: int, label: str, limit_gb: float, local_workers: int | None = None, steps: tuple[str, ...] = ("curate", "select"),
    keep: Path | None = None,
) -> dict:
    """One child run with ``src/pipeline`` first on the path; the peak of the process tree's summed RSS.
    ``keep``: a folder to keep the run's artifacts in (to compare outputs), instead of a temporary one."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{src / 'pipeline'}{os.pathsep}{src / 'operator'}")
    extra = ["--local-workers", str(local_workers)] if local_workers is not None else []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        workdir = str(keep) if keep is not None else tmp
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, str(_HERE), "--child", str(data), "--workdir", workdir, "--steps", *steps, *extra],
            env=env, stdout=subprocess.PIPE, text=True,
        )
        peak, lines, killed = 0, [], False
        import threading

        def _read() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line.strip())

        reader = threading.Thread(target=_read, daemon=True)
        reader.start()
        curate_peak = None
        while proc.poll() is None:
            rss = _tree_rss(proc.pid)
            peak = max(peak, rss)
            if curate_peak is None and any('"done": "curate"' in line for line in lines):
                curate_peak = peak  # sampled before select starts its own work
            if rss > limit_gb * 2**30:  # stop before the machine (shared) runs out
                proc.kill()
                killed = True
            time.sleep(0.2)
        reader.join(timeout=5)
        wall = time.perf_counter() - started
    result: dict = {"label": label, "rows": rows, "peak_gb": peak / 2**30, "wall": wall, "killed": killed,
                    "curate_peak_gb": (curate_peak if curate_peak is not None else peak) / 2**30}
    for line in lines:
        try:
            result.update(json.loads(line))
        except json.JSONDecodeError:
            pass
    return result


def _row(r: dict) -> str:
    cur, sel, cpu = r.get("curate_seconds"), r.get("select_seconds"), r.get("curate_cpu_seconds")
    rate = f"{r['rows'] / cur:,.0f}" if cur else "-"
    cpu_rate = f"{r['rows'] / cpu:,.0f}" if cpu else "-"
    status = "killed at limit" if r["killed"] else ("failed in " + r["failed"] if "failed" in r else "ok")
    return (
        f"| {r['label']} | {r['rows']:,} | {cur or float('nan'):.1f} | {cpu or float('nan'):.1f} | {rate} | {cpu_rate} | "
        f"{sel or float('nan'):.1f} | {r.get('select_cpu_seconds') or float('nan'):.1f} | "
        f"{r.get('curate_rows_out', 0):,.0f} | {r.get('select_rows_out', 0):,.0f} | {r['curate_peak_gb']:.2f} | {r['peak_gb']:.2f} | {status} |"
    )


_HEADER = (
    "| run | rows | curate s | curate CPU s | curate rows/s | curate rows/CPU s | select s | select CPU s | pool | selected "
    "| curate peak RSS GiB | peak RSS GiB (curate + select) | status |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 300_000])
    parser.add_argument("--baseline-src", type=Path, default=None, help="checkout whose pipeline/ is the baseline (e.g. /work/main)")
    parser.add_argument("--baseline-sizes", type=int, nargs="*", default=[20_000])
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "bench-curate-scale")
    parser.add_argument("--limit-gb", type=float, default=12.0, help="kill a run whose process tree passes this RSS")
    parser.add_argument("--local-workers", type=int, default=None, help="curate's localWorkers for this branch (default: the stage's)")
    parser.add_argument("--steps", nargs="+", default=["curate", "select"], choices=["curate", "select"], help="stages to run (select needs curate)")
    parser.add_argument("--keep", type=Path, default=None, help="keep each run's artifacts under this folder (<label>-<rows>/)")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _child(args.child, args.workdir, args.local_workers, tuple(args.steps))
        return
    args.data_dir.mkdir(parents=True, exist_ok=True)
    results = []
    plan = [(n, "baseline") for n in (args.baseline_sizes if args.baseline_src else [])] + [(n, "this branch") for n in args.sizes]
    for n, label in plan:
        data = args.data_dir / f"longcot-{n}.parquet"
        if not data.exists():
            started = time.perf_counter()
            text = generate(data, n)
            print(f"generated {n:,} records, {text / 2**30:.2f} GiB of responses, in {time.perf_counter() - started:.0f} s", flush=True)
        src = args.baseline_src if label == "baseline" else _REPO
        workers = args.local_workers if label != "baseline" else None
        keep = None
        if args.keep is not None:
            keep = args.keep / f"{label.replace(' ', '-')}-{n}"
            keep.mkdir(parents=True, exist_ok=True)
        r = measure(src, data, n, f"{label} ({src})", args.limit_gb, workers, tuple(args.steps), keep)
        results.append(r)
        print(_row(r), flush=True)
    print("\n" + _HEADER)
    for r in results:
        print(_row(r))
    base = {r["rows"]: r for r in results if r["label"].startswith("baseline") and r.get("curate_seconds")}
    for r in results:
        b = base.get(r["rows"])
        if b and not r["label"].startswith("baseline") and r.get("curate_seconds"):
            print(
                f"at {r['rows']:,} rows: curate {b['curate_seconds'] / r['curate_seconds']:.2f}x faster in wall time, "
                f"{b['curate_cpu_seconds'] / r['curate_cpu_seconds']:.2f}x fewer CPU s, peak RSS {r['peak_gb'] / b['peak_gb']:.2f}x the baseline's"
            )


if __name__ == "__main__":
    main()
