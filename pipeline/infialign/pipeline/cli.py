"""`infialign`: one console script for users, stage pods and the operator image.

Heavy modules are imported inside each command, so `infialign validate` starts fast and the CPU
image does not need torch or kopf to run its commands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_INVALID = 2


def _cmd_validate(args: argparse.Namespace) -> int:
    from infialign.pipeline import validation

    failed = False
    for name in args.files:
        result = validation.load_manifest(name)
        for problem in result.problems:
            print(validation.format_problem(name, problem), file=sys.stderr if problem.severity == "error" else sys.stdout)
        if not result.ok:
            failed = True
        elif not args.quiet:
            runs = ", ".join(r.metadata.name for r in result.runs)
            print(f"{name}: valid ({runs})")
    return EXIT_INVALID if failed else EXIT_OK


def _plan_objects(spec: object, run: object) -> dict[str, list[str]]:
    """The objects the operator would create for each step's first attempt, from its own pure builders."""
    from infialign.operator import builders
    from infialign.pipeline import graph
    from infialign.pipeline.runtime.config import TrackingConfig, artifacts_root, build_stage_config

    out: dict[str, list[str]] = {}
    for step in graph.enabled_steps(spec):  # type: ignore[arg-type]
        config = build_stage_config(spec, run, step.name, 1, artifacts_root(spec), TrackingConfig(enabled=False))  # type: ignore[arg-type]
        described = []
        for obj in builders.build_children(spec, run, step.name, 1, config):  # type: ignore[arg-type]
            name = f"{obj['kind']} {obj['metadata']['name']}"
            if obj["kind"] == "Job" and obj["spec"].get("completionMode") == "Indexed":
                name += f" (Indexed, {obj['spec']['completions']} pods)"
            described.append(name)
        out[step.name] = described
    return out


def _calibration_reference(workdir: Path, manifest: str | None, options: object) -> dict[str, object]:
    """Per step of the finished run in `workdir`: its measured duration beside its work, estimated like the new run's."""
    from infialign.pipeline import evidence
    from infialign.pipeline.estimate import calibrate, estimate_run

    spec, identity = evidence.reference_run(workdir, Path(manifest) if manifest else None)
    records = evidence.finished_steps(spec, identity, workdir)
    if not records:
        raise ValueError(f"--calibrate-from {workdir}: run {identity.namespace}/{identity.name} has no finished step there; run it first")
    estimate = estimate_run(spec, evidence.without_run_outputs(evidence.gather(spec, identity, None)), options)  # type: ignore[arg-type]
    return calibrate.references(estimate, records)  # type: ignore[return-value]


def _cmd_plan(args: argparse.Namespace) -> int:
    from infialign.pipeline import evidence, validation
    from infialign.pipeline.estimate import Options, calibrate, estimate_run, models, render
    from infialign.pipeline.runtime.config import RunIdentity

    result = validation.load_manifest(args.file)
    for problem in result.problems:
        print(validation.format_problem(args.file, problem), file=sys.stderr)
    if not result.ok:
        return EXIT_INVALID
    options = Options(
        gpu=args.gpu, mfu=args.mfu, price_per_gpu_hour=args.price_per_gpu_hour, rows=args.rows,
        tokens_per_row=args.tokens_per_row, params=args.params, teacher_params=args.teacher_params,
    )
    reference = None
    if args.calibrate_from:
        try:
            reference = _calibration_reference(Path(args.calibrate_from), args.calibrate_manifest, options)
        except (models.UnknownModelError, ValueError) as e:
            print(f"{args.file}: {e}", file=sys.stderr)
            return EXIT_INVALID
    for run in result.runs:
        identity = RunIdentity(namespace=run.metadata.namespace or "default", name=run.metadata.name)
        found = evidence.gather(run.spec, identity, Path(args.workdir) if args.workdir else None)
        try:
            if reference is None:
                estimate = estimate_run(run.spec, found, options)
            else:  # the same kind of evidence as the reference's estimate, so the work ratio compares the specs
                estimate = calibrate.apply(estimate_run(run.spec, evidence.without_run_outputs(found), options), reference, args.calibrate_from)
        except (models.UnknownModelError, ValueError) as e:
            print(f"{args.file}: {e}", file=sys.stderr)
            return EXIT_INVALID
        objects = _plan_objects(run.spec, identity)
        if args.output == "json":
            sys.stdout.write(render.to_json(estimate, objects))
        else:
            sys.stdout.write(f"plan for {run.metadata.name} (dry run: nothing is started)\n" + render.to_table(estimate, objects))
    return EXIT_OK


def _cmd_crd(args: argparse.Namespace) -> int:
    from infialign.pipeline.api import crd

    if args.write:
        root = Path(args.root)
        for path, text in ((crd.CRD_FILE, crd.crd_yaml()), (crd.CHART_CRD_FILE, crd.chart_crd_template())):
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
        return EXIT_OK
    sys.stdout.write(crd.crd_yaml())
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from infialign.pipeline import executor

    return executor.run_file(Path(args.file), workdir=Path(args.workdir), name=args.name)


def _cmd_stage(args: argparse.Namespace) -> int:
    from infialign.pipeline.runtime import entrypoint

    return entrypoint.main(args.name, Path(args.config))


def _cmd_operator(args: argparse.Namespace) -> int:
    from infialign.operator import main as operator_main

    return operator_main.run(
        namespaces=args.namespace,
        all_namespaces=args.all_namespaces,
        liveness=args.liveness,
        metrics_port=args.metrics_port,
        verbose=args.verbose,
    )


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}; e.g. 0.3 for 30 % MFU")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infialign",
        description="Align LLMs for reasoning the InfiAlign way: one AlignmentRun, on a laptop or a GPU cluster.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run an AlignmentRun on this machine (local executor); re-running resumes")
    run.add_argument("file", help="an AlignmentRun manifest")
    run.add_argument("--workdir", default=".infialign", help="work dir for artifacts, logs and MLflow (default: .infialign)")
    run.add_argument("--name", default=None, help="run only the manifest document with this metadata.name")
    run.set_defaults(func=_cmd_run)

    validate = sub.add_parser("validate", help="check manifests: schema and semantics; exit 2 on any error")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    validate.set_defaults(func=_cmd_validate)

    plan = sub.add_parser("plan", help="dry run: the Jobs each step creates, tokens, FLOPs, GPU-hours, cost and a GPU-memory fit check")
    plan.add_argument("file", help="an AlignmentRun manifest")
    plan.add_argument("--gpu", default="h100", choices=["h100", "h200", "a100", "l40s", "b200"], help="GPU type (default: h100)")
    plan.add_argument("--price-per-gpu-hour", type=_positive, default=None, metavar="USD", help="price one GPU-hour to get costs")
    plan.add_argument("--mfu", type=_fraction, default=0.3,
                      help="model-FLOPs utilisation for training and prefill (default: 0.3, benchmarks/gpu_estimate.md)")
    plan.add_argument("--output", choices=["table", "json"], default="table")
    plan.add_argument("--rows", type=int, default=None, help="records in the sources when they are not readable here")
    plan.add_argument("--tokens-per-row", type=_positive, default=None, help="mean tokens of a record (prompt + response)")
    plan.add_argument("--params", type=_positive, default=None, help="the student's parameter count, when its config.json is not readable")
    plan.add_argument("--teacher-params", type=_positive, default=None, help="the teacher's parameter count")
    plan.add_argument("--workdir", default=None, help="the local executor's work dir, to read finished steps (as for `run`)")
    plan.add_argument("--calibrate-from", default=None, metavar="WORKDIR",
                      help="scale each step's measured duration in a finished run's work dir (`infialign run --workdir`) to this manifest")
    plan.add_argument("--calibrate-manifest", default=None, metavar="FILE",
                      help="the manifest of the --calibrate-from run, when its work dir has no runs/<ns>/<name>/spec.json (older runs)")
    plan.set_defaults(func=_cmd_plan)

    crd = sub.add_parser("crd", help="print the AlignmentRun CustomResourceDefinition generated from the API models")
    crd.add_argument("--write", action="store_true", help="write manifests/crd/ and the chart's copy instead of printing")
    crd.add_argument("--root", default=".", help="repository root for --write (default: .)")
    crd.set_defaults(func=_cmd_crd)

    stage = sub.add_parser("stage", help="run one stage attempt (the entrypoint of every stage pod and local subprocess)")
    stage.add_argument("name", help="the step name, e.g. curate or sft-phase1")
    stage.add_argument("--config", required=True, help="the stage.json written by the executor or the operator")
    stage.set_defaults(func=_cmd_stage)

    op = sub.add_parser("operator", help="run the Kopf operator that reconciles AlignmentRuns into Jobs")
    op.add_argument("--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    op.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    op.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint (default: %(default)s)")
    op.add_argument("--metrics-port", type=int, default=9090, help="Prometheus metrics port, 0 to disable (default: 9090)")
    op.add_argument("--verbose", action="store_true")
    op.set_defaults(func=_cmd_operator)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
