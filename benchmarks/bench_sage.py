"""SAGE against uniform DPO on the built-in world: steps (and wall time) to reach uniform's final held-out accuracy.

    cd <repo> && PYTHONPATH=pipeline:operator OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/bench_sage.py \
        --steps 80 --every 10 --seeds 0 1 2 --variants uniform sage-old-defaults sage-r10 sage

Issue 10: "SAGE against uniform DPO on the built-in world: steps to reach the uniform run's final accuracy. Target
<= 50% of the steps. Plot and report the curves."

Same pairs, model, settings and step budget for every variant of a seed; only the pair selection differs. Pairs are
bench_dpo.py's (chosen = a ``builtin://reasoning`` record's correct response, rejected = the same response with the
world's wrong-answer slip), drawn per seed; the held-out pairs are one fixed set from another world seed (no shared
ids). The model is ``builtin://tiny``. During training a ``preference_eval.curve_callback`` measures the held-out
implicit-reward preference accuracy every ``--every`` steps; the reference log-probs of the held-out pairs are
computed once and shared by every run.

Reported per seed and on the seed-averaged curves: uniform's final accuracy (the target), the first step at which
each SAGE variant reaches it (``reach``), the ratio to uniform's step budget, the first step from which it *stays*
at or above the target (``stays``: a single lucky point on a noisy curve is not convergence), and the same in wall
seconds of training (SAGE refreshes included, curve evaluations excluded), so a refresh that costs more than the
steps it saves shows. Uniform's own first reach of its final accuracy is printed too: it is the noise floor.

Writes ``--out`` (default benchmarks/results/sage/): ``curves.json`` (every point and refresh), ``curves.png``,
and ``README.md`` (the tables and the command). Run by hand; never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_dpo  # noqa: E402  (world_pairs and the DPO settings bench_dpo.py measures throughput with)

from infialign.pipeline.training import preference_eval as _pe  # noqa: E402
from infialign.pipeline.training import train_dpo  # noqa: E402
from infialign.pipeline.world import tiny_model  # noqa: E402

# The SageSettings values before this benchmark (research/seeds-algorithms.md §2.5 as first implemented), spelled
# out so that `sage-old-defaults` and `sage-r10` keep meaning the same when the shipped defaults change.
OLD_DEFAULTS: dict[str, Any] = {"enabled": True, "refresh_steps": 50, "select_fraction": 0.5, "margin_tau": 2.0, "tiers": 3,
                                "tier_pass_rates": [0.5, 0.125], "explore_fraction": 0.1, "sampling": "top"}

# SAGE settings per variant name. `sage-old-defaults`: the old defaults; `sage-r10`: them with R = 10 (the earlier
# attempt's fix); `sage`: the shipped SageSettings defaults at the time of the run (R: a third of an epoch); the
# `sage-*` ablations: one change each against `sage-r10`, to explain the differences (README).
VARIANTS: dict[str, dict[str, Any] | None] = {
    "uniform": None,
    "sage-old-defaults": OLD_DEFAULTS,
    "sage-r10": {**OLD_DEFAULTS, "refresh_steps": 10},
    "sage": {"enabled": True},
    "sage-auto-rho0.75": {"enabled": True, "refresh_steps": None, "select_fraction": 0.75},  # a candidate default, not kept
    "sage-rho1": {**OLD_DEFAULTS, "refresh_steps": 10, "select_fraction": 1.0},
    "sage-no-retire": {**OLD_DEFAULTS, "refresh_steps": 10, "margin_tau": 100.0},
    "sage-one-tier": {**OLD_DEFAULTS, "refresh_steps": 10, "tiers": 1, "tier_pass_rates": []},
    "sage-weighted": {**OLD_DEFAULTS, "refresh_steps": 10, "sampling": "weighted"},
}


def sage_for(name: str) -> dict[str, Any] | None:
    base = VARIANTS[name]
    return None if base is None else dict(base)


def run_one(name: str, seed: int, *, model: Path, train: Any, tokenizer: Any, held_out: Any, reference: _pe.PairLogps, ns: argparse.Namespace,
            work: Path) -> dict[str, Any]:
    sage = sage_for(name)
    settings = bench_dpo._settings(ns.steps, seed=seed, **({"sage": sage} if sage else {}))
    curve = _pe.curve_callback(tokenizer, held_out, reference, beta=settings.beta, every=ns.every, batch_size=ns.eval_batch)
    started = time.perf_counter()
    result = train_dpo(settings, str(model), train, work / f"{name}-{seed}", model_digest="tiny", callbacks=[curve])
    wall = time.perf_counter() - started
    refreshes = [
        {k: r[k] for k in ("refresh", "step", "scored", "pool", "pool_by_tier", "admitted_tiers", "competence", "retired_total", "unstable",
                           "selected", "fallback", "refresh_s")}
        for r in result.sage_refreshes
    ]
    points = [asdict(p) for p in curve.points]
    print(f"  {name:>14} seed {seed}: final acc {points[-1]['accuracy']:.3f} margin {points[-1]['mean_margin']:.3f}, "
          f"{points[-1]['train_s']:.0f}s training ({sum(r['refresh_s'] for r in refreshes):.1f}s in {len(refreshes)} refreshes), {wall:.0f}s wall",
          flush=True)
    return {"variant": name, "seed": seed, "sage": sage, "points": points, "refreshes": refreshes, "wall_s": wall,
            "train_runtime_s": result.metrics.get("train_runtime")}


# ---------------------------------------------------------------------------------------------- analysis (pure)


def first_reach(steps: np.ndarray, acc: np.ndarray, target: float) -> int | None:
    """Index of the first point at or above ``target``."""
    hit = np.flatnonzero(acc >= target - 1e-12)
    return int(hit[0]) if hit.size else None


def first_stay(steps: np.ndarray, acc: np.ndarray, target: float) -> int | None:
    """Index of the first point from which every later point is at or above ``target``."""
    below = np.flatnonzero(acc < target - 1e-12)
    start = int(below[-1]) + 1 if below.size else 0
    return start if start < acc.size else None


def compare(uniform: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, Any]:
    """Target = uniform's final accuracy; when and at what training wall time ``other`` reaches it (and stays)."""
    target = float(uniform["acc"][-1])
    budget_steps, budget_s, budget_c = float(uniform["steps"][-1]), float(uniform["train_s"][-1]), float(uniform["compute"][-1])
    out: dict[str, Any] = {"target": target, "final": float(other["acc"][-1])}
    for key, fn in (("reach", first_reach), ("stays", first_stay)):
        i = fn(other["steps"], other["acc"], target)
        out[f"{key}_step"] = None if i is None else int(other["steps"][i])
        out[f"{key}_ratio"] = None if i is None else float(other["steps"][i]) / budget_steps
        out[f"{key}_time_ratio"] = None if i is None else float(other["train_s"][i]) / budget_s
        out[f"{key}_compute_ratio"] = None if i is None else float(other["compute"][i]) / budget_c
    return out


GLOBAL_BATCH = 8  # bench_dpo._settings
BACKWARD_FORWARDS = 2.0  # a training step's backward costs about two forwards, so training a pair ≈ 3 scoring passes


def arrays(run: dict[str, Any]) -> dict[str, np.ndarray]:
    """Steps, accuracy, training wall seconds and compute in pair-forwards (trained pairs × 3 + pairs SAGE scored) per point."""
    out = {k: np.array([p[src] for p in run["points"]], dtype=np.float64) for k, src in (("steps", "step"), ("acc", "accuracy"),
                                                                                          ("train_s", "train_s"))}
    scored = np.array([sum(r["scored"] for r in run["refreshes"] if r["step"] <= step) for step in out["steps"]], dtype=np.float64)
    out["compute"] = (1 + BACKWARD_FORWARDS) * GLOBAL_BATCH * out["steps"] + scored
    return out


def mean_curve(runs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    curves = [arrays(r) for r in runs]
    steps = curves[0]["steps"]
    if any(not np.array_equal(c["steps"], steps) for c in curves):
        raise ValueError("curves of one variant were evaluated at different steps")
    return {k: steps if k == "steps" else np.mean([c[k] for c in curves], axis=0) for k in curves[0]}


def analyse(runs: list[dict[str, Any]]) -> dict[str, Any]:
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["variant"], r["seed"]): r for r in runs}
    per_seed: dict[str, dict[int, Any]] = {}
    for v in variants:
        per_seed[v] = {s: compare(arrays(by["uniform", s]), arrays(by[v, s])) for s in seeds if (v, s) in by and ("uniform", s) in by}
    means = {v: mean_curve([by[v, s] for s in seeds if (v, s) in by]) for v in variants}
    # the seed-averaged comparison of a variant uses uniform's mean over the same seeds (ablations may have fewer)
    averaged = {v: compare(mean_curve([by["uniform", s] for s in seeds if (v, s) in by]), means[v]) for v in variants}
    refresh_s = {v: float(np.mean([sum(x["refresh_s"] for x in by[v, s]["refreshes"]) for s in seeds if (v, s) in by])) for v in variants}
    return {"variants": variants, "seeds": seeds, "per_seed": per_seed, "averaged": averaged, "refresh_s": refresh_s,
            "mean_curves": {v: {k: a.tolist() for k, a in c.items()} for v, c in means.items()}}


# ---------------------------------------------------------------------------------------------- report


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "never" if x is None else format(x, spec)


def table(analysis: dict[str, Any]) -> str:
    lines = ["| variant | seed | uniform final acc (target) | final acc | reach: step (ratio) | reach: compute, time ratio | stays: step (ratio) | "
             "stays: compute, time ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for v in analysis["variants"]:
        rows = [(str(s), c) for s, c in analysis["per_seed"][v].items()] + [("mean curve", analysis["averaged"][v])]
        for seed, c in rows:
            lines.append(
                f"| {v} | {seed} | {c['target']:.3f} | {c['final']:.3f} | {_fmt(c['reach_step'], 'd')} ({_fmt(c['reach_ratio'])}) | "
                f"{_fmt(c['reach_compute_ratio'])}, {_fmt(c['reach_time_ratio'])} | {_fmt(c['stays_step'], 'd')} ({_fmt(c['stays_ratio'])}) | "
                f"{_fmt(c['stays_compute_ratio'])}, {_fmt(c['stays_time_ratio'])} |"
            )
    return "\n".join(lines)


def plot(analysis: dict[str, Any], runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    target = analysis["averaged"]["uniform"]["target"]
    for i, v in enumerate(analysis["variants"]):
        c = colours[i % len(colours)]
        for r in runs:
            if r["variant"] == v:
                a = arrays(r)
                axes[0].plot(a["steps"], a["acc"], color=c, alpha=0.2, lw=0.8)
        m = analysis["mean_curves"][v]
        axes[0].plot(m["steps"], m["acc"], color=c, lw=2, label=v)
        axes[1].plot(m["train_s"], m["acc"], color=c, lw=2, label=v)
    xlabels = ("optimizer step", "training wall seconds (mean over seeds, refreshes included; a shared machine: a rough guide)")
    for ax, xlabel in zip(axes, xlabels, strict=True):
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"uniform final {target:.3f}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out preference accuracy")
        ax.grid(alpha=0.3)
    axes[0].set_title(f"held-out accuracy (thin: seeds {analysis['seeds']}, thick: mean)")
    axes[1].set_title("mean curves against wall time")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def readme(analysis: dict[str, Any], runs: list[dict[str, Any]], ns: argparse.Namespace, command: str, pairs: int, held: int) -> str:
    """The tables and the command, then ``<out>/findings.md`` verbatim (the hand-written analysis) when it exists."""
    findings = ns.out / "findings.md"
    refresh_lines = []
    for v in analysis["variants"]:
        rs = [r for r in runs if r["variant"] == v]
        train_s = np.mean([r["points"][-1]["train_s"] for r in rs])
        refresh_lines.append(f"| {v} | {train_s:.1f} | {analysis['refresh_s'][v]:.1f} | {np.mean([len(r['refreshes']) for r in rs]):.0f} |")
    return "\n".join([
        "# SAGE against uniform DPO: steps to reach uniform's final held-out accuracy",
        "",
        "Issue 10 target: SAGE reaches the uniform run's final accuracy in <= 50% of the steps. Produced by",
        "`benchmarks/bench_sage.py` (its docstring says what is measured and how):",
        "",
        "```console",
        command,
        "```",
        "",
        f"{pairs} training pairs per seed (world seed = training seed), {held} fixed held-out pairs, `builtin://tiny`, "
        f"{runs[0]['points'][-1]['step']} optimizer steps of 8 pairs, lr 3e-3 cosine to 0 without warm-up, beta 0.1 (bench_dpo.py's settings); "
        f"held-out implicit-reward preference accuracy every {runs[0]['points'][1]['step']} steps; seeds {analysis['seeds']}.",
        "",
        "`reach`: first curve point at or above the target (the issue's measure). `stays`: first point from which the curve",
        "never drops below the target again. Ratios are against uniform's whole run: its step budget (step ratio), its compute",
        "(compute ratio: pair-forwards, a trained pair counted as 3 — forward plus a backward of about two — and a pair SAGE",
        "scores at a refresh as 1; machine-independent) and its training wall time (time ratio: SAGE refreshes included,",
        "curve evaluations excluded; the machine was shared, so wall times carry contention noise). `mean curve`: the same",
        "on the seed-averaged curves.",
        "The `uniform` rows are the noise floor: how early uniform itself first touches its own final accuracy.",
        "",
        table(analysis),
        "",
        "Training wall time per run (mean over seeds) and what the SAGE refreshes cost inside it:",
        "",
        "| variant | training s | refresh s | refreshes |",
        "|---|---|---|---|",
        *refresh_lines,
        "",
        "![curves](curves.png)",
        "",
        *([findings.read_text()] if findings.is_file() else []),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=256, help="world records to draw training pairs from, per seed")
    parser.add_argument("--held-out", type=int, default=128, help="world records to draw the held-out pairs from")
    parser.add_argument("--steps", type=int, default=120, help="optimizer steps, the same for every variant")
    parser.add_argument("--every", type=int, default=5, help="held-out curve interval in steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["uniform", "sage-old-defaults", "sage-r10", "sage"], choices=list(VARIANTS))
    parser.add_argument("--eval-batch", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "sage")
    parser.add_argument("--runs-json", type=Path, nargs="+", default=None,
                        help="re-analyse (and merge) the curves.json of earlier calls, e.g. seeds run in parallel, instead of training")
    ns = parser.parse_args()
    command = "PYTHONPATH=pipeline:operator OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/bench_sage.py " + shlex.join(sys.argv[1:])

    if ns.runs_json:
        saved = [json.loads(p.read_text()) for p in ns.runs_json]
        runs, pairs, held = [r for d in saved for r in d["runs"] if r["variant"] in ns.variants], saved[0]["pairs"], saved[0]["held_out"]
        command = "\n".join([*dict.fromkeys(c for d in saved for c in d["command"].split("\n")), f"# merged: {command}"])
    else:
        from transformers import AutoTokenizer

        runs = []
        with tempfile.TemporaryDirectory(prefix="bench-sage-") as tmp:
            work = Path(tmp)
            model = tiny_model.ensure_tiny_model(work / "cache")
            tokenizer = AutoTokenizer.from_pretrained(str(model))
            held_out = bench_dpo.world_pairs(ns.held_out, seed=10_000)
            encoded = _pe.encode_pairs(tokenizer, held_out)
            reference = _pe.reference_logps(model, encoded, pad_id=tokenizer.pad_token_id or 0, batch_size=ns.eval_batch)
            held = held_out.num_rows
            for seed in ns.seeds:
                train = bench_dpo.world_pairs(ns.pairs, seed=seed)
                pairs = train.num_rows
                assert not set(train.column("id").to_pylist()) & set(held_out.column("id").to_pylist())
                for name in ns.variants:
                    runs.append(run_one(name, seed, model=model, train=train, tokenizer=tokenizer, held_out=held_out, reference=reference,
                                        ns=ns, work=work))
                    ns.out.mkdir(parents=True, exist_ok=True)  # after every run: an interrupted call keeps what it measured
                    (ns.out / "runs.partial.json").write_text(json.dumps({"command": command, "pairs": pairs, "held_out": held, "runs": runs}))
    if not any(r["variant"] == "uniform" for r in runs):  # e.g. SAGE seeds run in parallel with the uniform runs
        print(f"no uniform run to compare against: runs kept in {ns.out / 'runs.partial.json'}; merge them with --runs-json")
        return
    analysis = analyse(runs)
    ns.out.mkdir(parents=True, exist_ok=True)
    (ns.out / "curves.json").write_text(json.dumps({"command": command, "pairs": pairs, "held_out": held, "runs": runs,
                                                     "analysis": analysis}, indent=1))
    plot(analysis, runs, ns.out / "curves.png")
    (ns.out / "README.md").write_text(readme(analysis, runs, ns, command, pairs, held))
    print(table(analysis))
    print(f"written to {ns.out}")


if __name__ == "__main__":
    main()
