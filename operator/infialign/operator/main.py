"""`infialign operator`: Kopf, standalone, with our registry, a liveness endpoint and /metrics.

One replica with `strategy: Recreate` (the chart): Kopf has no lease-based leader election, and the
operator keeps per-run state in memory that a second writer would contradict.
"""

from __future__ import annotations

import logging
import sys

import kopf
from infialign.operator import handlers
from infialign.operator.metrics import Metrics

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(namespaces: list[str], all_namespaces: bool, liveness: str, metrics_port: int, verbose: bool) -> int:
    """Run until SIGTERM. Returns the process exit code (2 for bad arguments)."""
    if bool(namespaces) == bool(all_namespaces):
        print("infialign operator: pass --namespace NS (repeatable) or --all-namespaces, not both", file=sys.stderr)
        return 2
    kopf.configure(verbose=verbose)
    noisy = ["urllib3", "kubernetes", "mlflow", "botocore", "s3fs", "aiobotocore", "fsspec"]
    if not verbose:
        # Kopf logs "Handler … succeeded" at INFO for every event of every Job and Pod: at hundreds of
        # runs that is most of the log and a good share of the CPU. Warnings and errors stay.
        noisy += ["kopf.objects", "aiohttp.access"]
    for name in noisy:
        logging.getLogger(name).setLevel(logging.WARNING)
    metrics = Metrics()
    if metrics_port:
        metrics.serve(metrics_port)
        log.info("metrics on :%d/metrics", metrics_port)
    operator = handlers.make_operator(metrics=metrics)
    kopf.run(
        registry=operator.registry,
        standalone=True,
        namespaces=namespaces,
        clusterwide=all_namespaces,
        liveness_endpoint=liveness or None,
    )
    return 0
