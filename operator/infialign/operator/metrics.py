"""Prometheus metrics of the operator, served on their own port (Kopf has none of its own).

Each operator instance owns a `CollectorRegistry`, so tests can start several operators in one process.
Label values are bounded: run phases, stage kinds (not step or run names) and failure classes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import prometheus_client
from infialign.pipeline.api import FailureClass, RunPhase
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

_RECONCILE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.runs = Gauge("infialign_runs", "AlignmentRuns known to the operator, by phase.", ["phase"], registry=self.registry)
        self.transitions = Counter(
            "infialign_stage_transitions_total",
            "Step phase changes, by stage kind and the phase entered.",
            ["stage", "phase"],
            registry=self.registry,
        )
        self.restarts = Counter(
            "infialign_restarts_total", "Step restarts decided by the planner, by failure class.", ["failure_class"], registry=self.registry
        )
        self.reconcile_seconds = Histogram(
            "infialign_reconcile_duration_seconds",
            "Wall time of one reconcile of one run.",
            buckets=_RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "infialign_reconcile_errors_total", "Reconciles that ended in an error (retried).", registry=self.registry
        )
        for phase in RunPhase:  # export zeros, so dashboards see every phase from the start
            self.runs.labels(phase=phase.value).set(0)
        for cls in FailureClass:
            self.restarts.labels(failure_class=cls.value)

    def set_run_phases(self, phases: Iterable[str]) -> None:
        counts = {phase.value: 0 for phase in RunPhase}
        for phase in phases:
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            self.runs.labels(phase=phase).set(count)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serve /metrics from a daemon thread (prometheus_client's own server)."""
        prometheus_client.start_http_server(port, addr=addr, registry=self.registry)
