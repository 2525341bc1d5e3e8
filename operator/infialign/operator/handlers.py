"""The Kopf handlers: thin, each one line into the reconciler.

- login: the pod's service account, else $KUBECONFIG (a custom registry has no default login handlers)
- startup: settings (progress and diff-base in annotations under `infialign.dev/`, watch timeouts
  against silent streams, quiet event posting), the API client, the periodic tick
- indexes of AlignmentRuns, and of Jobs and Pods labelled `infialign.dev/run` (no LIST calls: the
  reconciler reads children from them)
- create/resume/update of a run → `reconcile` (errors go back to Kopf, which retries them)
- Job and Pod events → `poke` the parent run found by its label (coalesced, in the background)
- deletion → mark the MLflow parent run of an unfinished run KILLED, forget; the delete handler
  is optional, so no finalizer is ever added and an uninstalled operator leaves nothing stuck. No Kopf timer either: timers require finalizers
  (nolar/kopf#1104); the tick is one operator-wide task instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import kopf
from infialign.operator import admission, builders, kube
from infialign.operator.artifacts import ArtifactReader, MlflowTracker, StoreReader, Tracker
from infialign.operator.config import OperatorConfig
from infialign.operator.metrics import Metrics
from infialign.operator.reconciler import Reconciler
from infialign.pipeline.api import GROUP, PLURAL, VERSION

__all__ = ["Operator", "make_operator", "make_registry", "RUNS_INDEX", "JOBS_INDEX", "PODS_INDEX", "ANNOTATION_PREFIX"]

log = logging.getLogger(__name__)

RUNS_INDEX: Final = "infialign_runs"
JOBS_INDEX: Final = "infialign_jobs"
PODS_INDEX: Final = "infialign_pods"
ANNOTATION_PREFIX: Final = GROUP  # Kopf's bookkeeping: infialign.dev/last-handled-configuration, infialign.dev/<handler>
_CHILD_FILTER: Final = {builders.LABEL_RUN: kopf.PRESENT}


@dataclasses.dataclass(frozen=True)
class Operator:
    """A registry and what its handlers share; tests and the benchmark look inside through it."""

    registry: kopf.OperatorRegistry
    reconciler: Reconciler
    metrics: Metrics
    config: OperatorConfig


# ---------------------------------------------------------------- what the indexes keep


# Entries keep only what the reconciler reads. No deep copies: every watch event is a freshly parsed
# document that neither Kopf nor the operator mutates, and copying 250 runs' bodies per event was the
# operator's largest CPU cost in the benchmark.


def _pick(mapping: Mapping[str, Any] | None, *keys: str) -> dict[str, Any]:
    mapping = mapping or {}
    return {k: mapping[k] for k in keys if mapping.get(k) is not None}


def _run_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = _pick(body.get("metadata"), "name", "namespace", "uid", "generation", "resourceVersion", "deletionTimestamp")
    accepted = ((body.get("metadata") or {}).get("annotations") or {}).get(admission.ACCEPTED_SPEC_ANNOTATION)
    if accepted:  # only ours: Kopf's and kubectl's annotations would double the index for nothing
        metadata["annotations"] = {admission.ACCEPTED_SPEC_ANNOTATION: accepted}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": metadata,
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }


def _job_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "metadata": _pick(body.get("metadata"), "name", "namespace", "uid", "labels", "ownerReferences", "deletionTimestamp"),
        "spec": _pick(body.get("spec"), "suspend", "parallelism", "completions", "completionMode"),
        "status": body.get("status") or {},
    }


def _pod_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "metadata": _pick(body.get("metadata"), "name", "namespace", "labels", "deletionTimestamp"),
        "spec": _pick(body.get("spec"), "nodeName"),
        "status": body.get("status") or {},
    }


# ---------------------------------------------------------------- the registry


def make_operator(
    config: OperatorConfig | None = None,
    *,
    metrics: Metrics | None = None,
    artifacts: ArtifactReader | None = None,
    tracker: Tracker | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> Operator:
    """The handlers and their shared reconciler. `artifacts`, `tracker` and `clock` are test seams."""
    config = config if config is not None else OperatorConfig.from_env()
    metrics = metrics if metrics is not None else Metrics()
    reconciler = Reconciler(
        config,
        metrics,
        artifacts if artifacts is not None else StoreReader(),
        tracker if tracker is not None else MlflowTracker(),
        **({"clock": clock} if clock is not None else {}),
    )
    registry = kopf.OperatorRegistry()
    tasks: list[asyncio.Task[None]] = []

    @kopf.on.login(registry=registry, id="login")
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry, id="configure")
    async def configure(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        settings.peering.standalone = True  # one replica, strategy Recreate: Kopf has no lease election
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX,
            key="last-handled-configuration",
            # the operator's record of the accepted spec is no change of the run that Kopf should diff
            ignored_fields=[("metadata", "annotations", admission.ACCEPTED_SPEC_ANNOTATION)],
        )
        settings.persistence.finalizer = f"{GROUP}/finalizer"  # unused today: no handler needs one
        settings.posting.level = config.posting_level
        settings.watching.server_timeout = config.watch_server_timeout_seconds
        settings.watching.client_timeout = config.watch_client_timeout_seconds
        settings.networking.request_timeout = config.api_timeout_seconds
        settings.execution.default_backoff = config.retry_delay_seconds
        settings.scanning.disabled = not config.scanning
        client = await asyncio.to_thread(
            lambda: kube.KubeClient(
                kube.load_configuration(),
                workers=config.api_workers,
                timeout=config.api_timeout_seconds,
                retry_delay=config.retry_delay_seconds,
            )
        )
        reconciler.bind(kube_client=client, runs=kwargs[RUNS_INDEX], jobs=kwargs[JOBS_INDEX], pods=kwargs[PODS_INDEX])
        tasks.append(asyncio.get_running_loop().create_task(reconciler.tick_forever(), name="infialign tick"))

    @kopf.on.cleanup(registry=registry, id="shutdown")
    async def shutdown(**_: Any) -> None:
        for task in tasks:
            task.cancel()
        reconciler.close()

    @kopf.on.probe(registry=registry, id="reconciler")
    def probe(**_: Any) -> dict[str, Any]:
        snapshot = reconciler.snapshot()
        if snapshot["secondsSinceTick"] > 3 * config.tick_seconds + 30:
            raise kopf.PermanentError(f"the periodic tick has not run for {snapshot['secondsSinceTick']}s")
        return snapshot

    # ---- indexes (kept current by Kopf; handlers wait until the initial listing is indexed)

    @kopf.index(GROUP, VERSION, PLURAL, registry=registry, id=RUNS_INDEX)
    async def index_runs(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): _run_entry(body)}

    @kopf.index("batch", "v1", "jobs", labels=_CHILD_FILTER, registry=registry, id=JOBS_INDEX)
    async def index_jobs(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> dict[Any, Any]:
        return {(namespace, labels[builders.LABEL_RUN]): _job_entry(body)}

    @kopf.index("v1", "pods", labels=_CHILD_FILTER, registry=registry, id=PODS_INDEX)
    async def index_pods(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> dict[Any, Any]:
        return {(namespace, labels[builders.LABEL_RUN]): _pod_entry(body)}

    # ---- the run itself

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, id="reconcile-resume")
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="reconcile-create")
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry, id="reconcile-update")
    async def reconcile_run(namespace: str, name: str, **_: Any) -> None:
        await reconciler.reconcile(namespace, name)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="run-events")
    async def run_event(type: str, namespace: str, name: str, body: kopf.Body, **_: Any) -> None:  # `type`: Kopf's kwarg name
        if type == "DELETED":
            reconciler.deleted(namespace, name, body)

    @kopf.on.delete(GROUP, VERSION, PLURAL, optional=True, registry=registry, id="run-deleted")
    async def run_deleted(namespace: str, name: str, body: kopf.Body, **_: Any) -> None:
        reconciler.deleted(namespace, name, body)

    # ---- children: find the parent by label through the index, never by a LIST

    @kopf.on.event("batch", "v1", "jobs", labels=_CHILD_FILTER, registry=registry, id="job-events")
    async def job_event(namespace: str, labels: kopf.Labels, **_: Any) -> None:
        reconciler.poke(namespace, labels[builders.LABEL_RUN])

    @kopf.on.event("v1", "pods", labels=_CHILD_FILTER, registry=registry, id="pod-events")
    async def pod_event(namespace: str, labels: kopf.Labels, **_: Any) -> None:
        reconciler.poke(namespace, labels[builders.LABEL_RUN])

    return Operator(registry=registry, reconciler=reconciler, metrics=metrics, config=config)


def make_registry(
    config: OperatorConfig | None = None,
    *,
    metrics: Metrics | None = None,
    artifacts: ArtifactReader | None = None,
    tracker: Tracker | None = None,
) -> kopf.OperatorRegistry:
    """The operator's handlers in a fresh registry (no global state: tests run several in one process)."""
    return make_operator(config, metrics=metrics, artifacts=artifacts, tracker=tracker).registry
