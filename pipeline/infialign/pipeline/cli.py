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
