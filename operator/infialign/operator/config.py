"""Operator settings: small, grouped, each field documented with its unit and why its default.

Read once at start-up from `INFIALIGN_OPERATOR_*` environment variables (the chart sets them), so
tests and benchmarks can shrink every interval without touching code.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Final

__all__ = ["OperatorConfig", "ENV_PREFIX"]

ENV_PREFIX: Final = "INFIALIGN_OPERATOR_"


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    tick_seconds: float = 15.0
    """How often every active run is re-checked (stall and startup timeouts, heartbeats), in seconds.
    Retries at a known time (`retryAfter`) are woken exactly; this is the level-based safety net that
    also retries whatever an event handler could not finish. 15 s keeps a 200-run operator under 15
    reconciles per second."""

    progress_poll_seconds: float = 15.0
    """Minimum seconds between two reads of a running step's `progress.json`. Stages write it at most
    every 30 s, so reading more often only costs storage requests."""

    job_missing_grace_seconds: float = 60.0
    """A running attempt whose Job is absent from the watch cache for this long after it was started, and
    that a GET confirms is gone, counts as an infrastructure failure (someone deleted the Job). Covers watch
    lag after a create; the GET covers an index that is still filling after the operator started.
    Within it, a Job without any pod yet is not reported as waiting (saves a status write per step)."""

    create_failure_threshold: int = 3
    """Consecutive failed attempts to create a step's children (403 from RBAC, an admission webhook, a
    quota) after which the run shows `ChildCreateFailed=True` and a Warning Event. One transient 5xx is
    retried quietly; a create that keeps failing must not leave a run Pending without a word."""

    retry_delay_seconds: float = 10.0
    """Delay before Kopf retries a handler that raised `TemporaryError` (API 5xx, timeouts)."""

    api_timeout_seconds: float = 30.0
    """Timeout of one Kubernetes API request made by the operator (not the watch streams)."""

    api_workers: int = 16
    """Threads for Kubernetes API calls and artifact-store reads (the clients are synchronous)."""

    watch_server_timeout_seconds: float = 270.0
    """`timeoutSeconds` asked of the API server per watch request: a silent watch is re-established
    at least this often (stale-watch reports, nolar/kopf#1276)."""

    watch_client_timeout_seconds: float = 300.0
    """Client-side total timeout of a watch request; slightly above the server timeout so the server
    normally closes first, and a stream the server forgot is still cut."""

    events: bool = True
    """Post Kubernetes Events on the run for step transitions (`kubectl describe arun`)."""

    scanning: bool = True
    """Let Kopf watch CRDs and namespaces for changes at runtime. Off in tests: kmock cannot list
    namespaces."""

    posting_level: int = logging.WARNING
    """Lowest level of Kopf's own log messages that it also posts as Events on the run. Kopf's INFO
    messages ("Handler succeeded") would double the API calls of every create."""

    mlflow_uri: str | None = None
    """The tracking URI for runs whose `spec.tracking.uri` is empty (the chart's MLflow, if enabled)."""

    mlflow_external_url: str | None = None
    """The MLflow UI as users reach it (an Ingress), for `status.mlflow.url`; empty uses `mlflow_uri`, which is
    often an in-cluster Service name a browser cannot open."""

    mlflow_s3_endpoint_url: str | None = None
    """The S3 endpoint of the default MLflow's artifact store, when that MLflow does not proxy artifacts; stage
    pods get it as `MLFLOW_S3_ENDPOINT_URL`. Empty for a proxying MLflow (the chart's): clients never touch its store.
    It is not the run's data store: the two are often different buckets, endpoints or clouds."""

    mlflow_timeout_seconds: float = 15.0
    """How long the first attempt of a run waits for the MLflow parent run before starting without it."""

    mlflow_retry_seconds: float = 300.0
    """Minimum seconds between two attempts to create a run's MLflow parent run when MLflow is down."""

    estimate_gpu: str = "h100"
    """The GPU type `status.estimate` is priced for (`--gpu` of `infialign plan`: h100, h200, a100, l40s, b200).
    The operator estimates when it accepts a spec generation; an unknown name leaves the estimate empty with
    a message naming the known ones."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Every field can be set as `INFIALIGN_OPERATOR_<FIELD>` (upper case)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            values[field.name] = _parse(field.name, raw, field.type)
        return cls(**values)  # type: ignore[arg-type]


def _parse(name: str, raw: str, kind: object) -> object:
    text = str(kind)
    try:
        if name == "posting_level":
            level = logging.getLevelName(raw.upper()) if not raw.isdigit() else int(raw)
            if not isinstance(level, int):
                raise ValueError(raw)
            return level
        if text.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if text.startswith("int"):
            return int(raw)
        if text.startswith("float"):
            return float(raw)
        return raw
    except ValueError as e:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}: cannot parse {raw!r} as {text}") from e
