"""InfiAlign's ablation table in miniature, as real AlignmentRuns through the local executor.

    python benchmarks/paper_table.py --source 'builtin://reasoning?n=3000&seed=0' \\
        --bench 'builtin://reasoning-bench?n=200' --seeds 3 --out benchmarks/results/paper-table

Arms (issue 11; the paper's table: less, curated data beats more, uncurated data):

| arm        | training data                                                                  |
|------------|--------------------------------------------------------------------------------|
| `base`     | no training                                                                    |
| `full`     | SFT on the whole pool, deduplicated but otherwise uncurated                    |
| `random`   | SFT on a uniform random subset of the `full` pool, the size of `curated`       |
| `curated`  | SFT on InfiAlign's selection (rule filters, verification, quotas, difficulty, curriculum) |
| `dpo`      | `curated` + DPO on its own errors                                              |
| `dpo-sage` | `curated` + SAGE-selected DPO                                                  |

Every arm is a manifest written from `--template` (default: the quickstart) and run with `infialign run`,
the command a user runs; scores are read from the run's `status.results` (what the `eval` stage reports
to kubectl, MLflow and `results.json`). All arms decontaminate against the bench, so no arm scores on
leaked questions; all arms train the same phases with the same epochs, so a smaller selection is also
less compute; the table reports rows and tokens trained beside accuracy. `--seeds` repeats each trained
arm with another training seed (the data and its selection stay fixed). The two pools are curated once
and shared by every arm (`select.poolUri`); the DPO arms start from the `curated` arm's model of the same
seed (`spec.model`) and its challenge prompts (`prefs.promptsUri`).

Writes `DIR/table.json`, `DIR/table.md`, `DIR/table.png`, and one MLflow run per arm (experiment
`paper-table`, in `DIR/work/mlflow.db`) holding the mean and spread, beside the AlignmentRuns' own runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

ARMS = ("base", "full", "random", "curated", "dpo", "dpo-sage")
REPO = Path(__file__).resolve().parent.parent


def _load_template(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs[0]


def _off(*stages: str) -> dict[str, Any]:
    return {s: {"enabled": False} for s in stages}


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Table:
    """Runs the arms and collects their scores."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out).resolve()
        self.work = self.out / "work"
        self.manifests = self.out / "manifests"
        self.template = _load_template(Path(args.template))
        spec = self.template["spec"]
        spec["sources"] = [{"name": f"src{i}", "uri": uri, "preset": args.preset} for i, uri in enumerate(args.source)]
        bench = dict(spec["benchmarks"][0]) if spec.get("benchmarks") else {"name": "bench", "preset": "records", "samples": 1}
        bench["uri"] = args.bench
        spec["benchmarks"] = [bench]
        spec.setdefault("tracking", {})["experiment"] = "paper-table"
        if args.model:
            spec["model"] = {"uri": args.model}
        self.bench_name = bench["name"]
        self.log: list[str] = []

    # ---- running AlignmentRuns

    def manifest(self, name: str, patch: dict[str, Any]) -> Path:
        doc = _merge(self.template, {"metadata": {"name": name}, "spec": patch})
        self.manifests.mkdir(parents=True, exist_ok=True)
        path = self.manifests / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return path

    def run(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        path = self.manifest(name, patch)
        started = time.monotonic()
        cmd = [sys.executable, "-m", "infialign.pipeline.cli", "run", str(path), "--workdir", str(self.work)]
        print(f"[paper-table] {name}: {' '.join(cmd[2:])}", flush=True)
        proc = subprocess.run(cmd, cwd=REPO, capture_output=not self.args.verbose, text=True)
        seconds = time.monotonic() - started
        self.log.append(f"{name}: exit {proc.returncode} in {seconds:.0f} s")
        if proc.returncode != 0:
            tail = (proc.stderr or "")[-3000:] if not self.args.verbose else ""
            raise SystemExit(f"[paper-table] {name} failed (exit {proc.returncode}); manifest {path}\n{tail}")
        return json.loads(self.status_file(name).read_text(encoding="utf-8"))

    def status_file(self, name: str) -> Path:
        return self.work / "runs" / "default" / name / "status.json"

    def artifact(self, run: str, step: str, name: str) -> Path:
        return self.work / "artifacts" / "default" / run / step / name

    # ---- reading results

    def score(self, status: dict[str, Any], model: str) -> float:
        results = status.get("results") or []
        for r in results:
            if r.get("model") == model and r.get("benchmark") == self.bench_name and not r.get("subset") and str(r.get("metric", "")).startswith("avg@"):
                return float(r["value"])
        raise SystemExit(f"[paper-table] no avg@k result for model {model!r} on {self.bench_name!r}; results: {results}")

    def trained(self, run: str, phases: list[dict[str, Any]]) -> tuple[int, int]:
        """Rows of the full selection, and tokens trained: Σ over phases of epochs × response tokens."""
        rows = tokens = 0
        for phase in phases:
            table = pq.read_table(self.artifact(run, "select", f"sft-{phase['name']}.parquet"), columns=["response_tokens"])
            rows = max(rows, table.num_rows)
            tokens += int(phase.get("epochs", 1) * sum(n or 0 for n in table.column("response_tokens").to_pylist()))
        return rows, tokens

    # ---- the arms

    def execute(self) -> dict[str, Any]:
        a = self.args
        phases = self.template["spec"]["stages"]["sft"]["phases"]
        last_sft = f"sft-{phases[-1]['name']}"
        no_train = _off("distill", "select", "sft", "prefs", "dpo")

        # The two pools, curated once: InfiAlign's curation, and dedup + decontamination only.
        self.run("pt-pool-curated", {"stages": _off("distill", "select", "sft", "prefs", "dpo", "eval")})
        uncurated_filters = {"language": False, "requireAnswer": False, "truncated": False, "repetition": False, "minPromptChars": 0}
        self.run("pt-pool-full", {"stages": {**_off("distill", "select", "sft", "prefs", "dpo", "eval"), "curate": {"filters": uncurated_filters}}})
        curated_pool = self.artifact("pt-pool-curated", "curate", "pool.parquet").as_uri()
        full_pool = self.artifact("pt-pool-full", "curate", "pool.parquet").as_uri()
        pool_rows = pq.read_metadata(self.artifact("pt-pool-full", "curate", "pool.parquet").as_uri().removeprefix("file://")).num_rows

        arms: dict[str, dict[str, Any]] = {name: {"scores": [], "rows": None, "tokens": None} for name in a.arms}
        if "base" in arms:
            status = self.run("pt-base", {"stages": {**no_train, "curate": {"enabled": False}, "eval": {"enabled": True, "models": ["base"]}}})
            arms["base"].update(scores=[self.score(status, "base")], rows=0, tokens=0)

        select_common = {"challengeSize": a.challenge_size}
        curated_size = None
        for seed in range(a.seeds):
            sft = {"seed": seed, "quickEval": 0}  # the eval stage scores every arm; the in-training check would only cost time
            curated_name = f"pt-curated-s{seed}"
            if {"curated", "dpo", "dpo-sage", "random"} & set(arms):
                status = self.run(curated_name, {"stages": {
                    **_off("curate", "distill", "prefs", "dpo"),
                    "select": {**select_common, "poolUri": curated_pool, "targetFraction": a.target_fraction},
                    "sft": sft, "eval": {"enabled": True, "models": ["sft"]}}})
                rows, tokens = self.trained(curated_name, phases)
                curated_size = rows
                if "curated" in arms:
                    arms["curated"]["scores"].append(self.score(status, last_sft))
                    arms["curated"].update(rows=rows, tokens=tokens)
            for arm, select in (
                ("full", {"strategy": "random", "targetFraction": 1.0, "verification": {"enabled": False}}),
                ("random", {"strategy": "random", "targetSize": curated_size, "verification": {"enabled": False}}),
            ):
                if arm not in arms:
                    continue
                name = f"pt-{arm}-s{seed}"
                status = self.run(name, {"stages": {
                    **_off("curate", "distill", "prefs", "dpo"),
                    "select": {**select_common, "poolUri": full_pool, "seed": seed, **select},
                    "sft": sft, "eval": {"enabled": True, "models": ["sft"]}}})
                rows, tokens = self.trained(name, phases)
                arms[arm]["scores"].append(self.score(status, last_sft))
                arms[arm].update(rows=rows, tokens=tokens)
            for arm, sage in (("dpo", False), ("dpo-sage", True)):
                if arm not in arms:
                    continue
                model_dir = self.artifact(curated_name, last_sft, "model")
                prompts = self.artifact(curated_name, "select", "dpo-prompts.parquet").as_uri()
                name = f"pt-{arm}-s{seed}"
                status = self.run(name, {"model": {"uri": str(model_dir)}, "stages": {
                    **_off("curate", "distill", "select", "sft"),
                    "prefs": {"enabled": True, "promptsUri": prompts, "seed": seed},
                    "dpo": {"enabled": True, "seed": seed, "sage": {"enabled": sage}},
                    "eval": {"enabled": True, "models": ["dpo"]}}})
                arms[arm]["scores"].append(self.score(status, "dpo"))
                arms[arm].update(rows=arms.get("curated", {}).get("rows"), tokens=arms.get("curated", {}).get("tokens"), pairs=_pairs(self, name))
        return {"pool_rows": pool_rows, "bench": a.bench, "sources": a.source, "seeds": a.seeds, "arms": arms, "runs": self.log}


def _pairs(table: Table, run: str) -> int | None:
    path = table.artifact(run, "prefs", "pairs.parquet")
    return pq.read_metadata(path).num_rows if path.exists() else None


def _mean_sd(scores: list[float]) -> tuple[float, float]:
    if not scores:
        return math.nan, math.nan
    return statistics.fmean(scores), statistics.stdev(scores) if len(scores) > 1 else 0.0


def write_reports(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    pool = result["pool_rows"] or 1
    lines = [
        f"Pool: {result['pool_rows']} rows from {', '.join(result['sources'])}; bench {result['bench']}; {result['seeds']} seed(s).",
        "",
        "| arm | accuracy (mean ± sd) | seeds | rows trained | share of pool | tokens trained |",
        "|---|---|---|---|---|---|",
    ]
    for name, arm in result["arms"].items():
        mean, sd = _mean_sd(arm["scores"])
        rows = arm.get("rows")
        share = f"{100 * rows / pool:.1f}%" if rows is not None else "–"
        lines.append(
            f"| {name} | {100 * mean:.1f}% ± {100 * sd:.1f} | {len(arm['scores'])} | {rows if rows is not None else '–'} | {share} | "
            f"{arm.get('tokens') if arm.get('tokens') is not None else '–'} |"
        )
    (out / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _plot(result, out / "table.png")


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["arms"])
    stats = [_mean_sd(result["arms"][n]["scores"]) for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(names, [100 * m for m, _ in stats], yerr=[100 * s for _, s in stats], capsize=4, color="#4C72B0")
    for i, name in enumerate(names):
        for s in result["arms"][name]["scores"]:
            ax.plot(i, 100 * s, "k.", alpha=0.6)
    ax.set_ylabel("bench accuracy (%)")
    ax.set_title("InfiAlign ablation in miniature (mean ± sd over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def log_to_mlflow(result: dict[str, Any], work: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    mlflow.set_experiment("paper-table")
    for name, arm in result["arms"].items():
        mean, sd = _mean_sd(arm["scores"])
        with mlflow.start_run(run_name=f"arm:{name}"):
            mlflow.log_params({"arm": name, "seeds": len(arm["scores"]), "bench": result["bench"]})
            metrics = {"accuracy_mean": mean, "accuracy_sd": sd, "rows_trained": arm.get("rows") or 0, "tokens_trained": arm.get("tokens") or 0}
            mlflow.log_metrics({k: v for k, v in metrics.items() if not math.isnan(v)})
            for i, s in enumerate(arm["scores"]):
                mlflow.log_metric("accuracy", s, step=i)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", action="append", required=True, help="a source URI a manifest accepts (repeatable)")
    parser.add_argument("--preset", default="records", help="ingest preset of the sources (default: records)")
    parser.add_argument("--bench", required=True, help="the benchmark URI")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per arm (default: 3)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--template", default=str(REPO / "manifests/examples/quickstart.yaml"), help="manifest whose settings the arms share")
    parser.add_argument("--model", default=None, help="base model URI (default: the template's)")
    parser.add_argument("--target-fraction", type=float, default=0.2, help="curated selection as a share of the pool (default: 0.2, [SRC] ~20%%)")
    parser.add_argument("--challenge-size", type=int, default=200, help="DPO challenge prompts (default: 200)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    parser.add_argument("--verbose", action="store_true", help="stream each run's output")
    args = parser.parse_args(argv)
    args.arms = [x.strip() for x in args.arms.split(",") if x.strip()]
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown:
        parser.error(f"--arms: unknown {unknown}; choose from {list(ARMS)}")
    table = Table(args)
    started = time.monotonic()
    result = table.execute()
    result["seconds"] = round(time.monotonic() - started)
    write_reports(result, Path(args.out))
    log_to_mlflow(result, table.work)
    print((Path(args.out) / "table.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
