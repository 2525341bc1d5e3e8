"""MLflow tracking: one parent run per AlignmentRun, one nested child run per stage attempt.

MLflow being down must never fail a stage. Every call goes through `_Resilient`: the first failure
logs one warning and switches the tracker offline; later calls are queued, replayed once at the end,
and whatever still fails is written to `tracking-pending.jsonl` next to the stage's outputs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal

from infialign.pipeline.runtime.config import RunIdentity, StageConfig, TrackingConfig

__all__ = [
    "ensure_parent_run",
    "parent_run_url",
    "finish_parent_run",
    "log_parent_params",
    "local_tracking_uri",
    "flatten",
    "StageTracker",
    "RUN_TAG",
]

log = logging.getLogger(__name__)

RUN_TAG = "infialign.run"  # <namespace>/<name> on the parent run: the idempotency key across restarts
STEP_TAG = "infialign.step"


def _quiet_http() -> None:
    # MLflow retries a dead server for minutes by default; a stage should notice within seconds.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def local_tracking_uri(workdir: Path) -> str:
    return f"sqlite:///{(workdir / 'mlflow.db').resolve()}"


def _artifact_location(uri: str) -> str | None:
    """Local stores keep artifacts beside the database instead of in ./mlruns of whatever the cwd is."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return None


def _client(uri: str) -> Any:
    _quiet_http()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


# MLflow 3's UI opens an experiment by its kind; without this tag it guesses "GenAI" and shows an empty traces
# overview instead of our training runs (mlflow/server/js: ExperimentKind.CUSTOM_MODEL_DEVELOPMENT).
EXPERIMENT_KIND_TAG: Final = "mlflow.experimentKind"
EXPERIMENT_KIND: Final = "custom_model_development"
# MLflow 3.17's UI picks GenAI or "Model training" from this query parameter (else a browser setting that defaults to GenAI)
UI_VIEW_QUERY: Final = "workflowType=machine_learning"


def _experiment_id(client: Any, tracking: TrackingConfig) -> str:
    if tracking.experiment_id:
        return tracking.experiment_id
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in (experiment.tags or {}):  # created before the tag, or by someone else: say what it holds
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return str(experiment.experiment_id)
    assert tracking.uri is not None
    try:
        return str(
            client.create_experiment(
                tracking.experiment, artifact_location=_artifact_location(tracking.uri), tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        )
    except Exception:  # noqa: BLE001  lost a creation race with another process: read it back
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def ensure_parent_run(tracking: TrackingConfig, run: RunIdentity) -> TrackingConfig:
    """Find or create the parent run of `run`; never raises. Returns `tracking` with ids filled in."""
    if not tracking.enabled or not tracking.uri:
        return tracking
    if tracking.parent_run_id and tracking.experiment_id:
        return tracking
    try:
        client = _client(tracking.uri)
        experiment_id = _experiment_id(client, tracking)
        key = f"{run.namespace}/{run.name}"
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{key}'", max_results=1, order_by=["attributes.start_time DESC"]
        )
        if found:
            run_id = found[0].info.run_id
        else:
            tags = {RUN_TAG: key, "infialign.namespace": run.namespace, "infialign.name": run.name}
            if run.uid:
                tags["infialign.uid"] = run.uid
            run_id = client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
        return tracking.model_copy(update={"experiment_id": experiment_id, "parent_run_id": run_id})
    except Exception as e:  # noqa: BLE001
        log.warning("MLflow at %s is unreachable; tracking continues without a parent run: %s", tracking.uri, _short(e))
        return tracking


def parent_run_url(tracking: TrackingConfig) -> str | None:
    if not (tracking.uri and tracking.experiment_id and tracking.parent_run_id):
        return None
    if tracking.uri.startswith(("http://", "https://")):
        # the query opens the UI's "Model training" view; its default, GenAI, hides runs behind a traces overview
        return f"{tracking.uri.rstrip('/')}/#/experiments/{tracking.experiment_id}/runs/{tracking.parent_run_id}?{UI_VIEW_QUERY}"
    return None


def finish_parent_run(tracking: TrackingConfig, status: Literal["FINISHED", "FAILED", "KILLED"]) -> None:
    if not (tracking.enabled and tracking.uri and tracking.parent_run_id):
        return
    try:
        _client(tracking.uri).set_terminated(tracking.parent_run_id, status=status)
    except Exception as e:  # noqa: BLE001
        log.warning("could not close the MLflow parent run: %s", _short(e))


def log_parent_params(tracking: TrackingConfig, params: Mapping[str, str]) -> None:
    """Log `params` on the parent run; never raises. MLflow params cannot change once logged, so a key the run
    already holds with another value (an estimate of an earlier spec generation) is kept and named in a warning."""
    if not (tracking.enabled and tracking.uri and tracking.parent_run_id) or not params:
        return
    try:
        from mlflow.entities import Param

        client = _client(tracking.uri)
        held = client.get_run(tracking.parent_run_id).data.params
        new = {k: str(v)[:6000] for k, v in params.items() if k not in held}
        changed = sorted(k for k, v in params.items() if k in held and held[k] != str(v)[:6000])
        items = [Param(k, v) for k, v in new.items()]
        for i in range(0, len(items), 100):
            client.log_batch(tracking.parent_run_id, params=items[i : i + 100])
        if changed:
            log.warning("MLflow params cannot change; the parent run keeps its earlier %s (status.estimate has the new ones)", ", ".join(changed[:5]))
    except Exception as e:  # noqa: BLE001
        log.warning("could not log params on the MLflow parent run: %s", _short(e))


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested settings → `a.b.c` params (MLflow params are flat strings of ≤6000 characters)."""
    out: dict[str, str] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}"))  # MLflow keys allow no brackets
    else:
        out[prefix] = json.dumps(value) if not isinstance(value, str) else value
        out[prefix] = out[prefix][:6000]
    return out


def _short(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 300 else text[:297] + "..."


class StageTracker:
    """The child run of one stage attempt. Safe to use when tracking is disabled or down."""

    def __init__(self, config: StageConfig, pending_file: Path | None = None) -> None:
        self.config = config
        self.tracking = config.tracking
        self.run_id: str | None = None
        self.online = bool(self.tracking.enabled and self.tracking.uri)
        self._pending: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._pending_file = pending_file
        self._client: Any = None

    # ---- plumbing

    def _call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.online:
            if self.tracking.enabled and self.tracking.uri:
                self._pending.append((name, args, kwargs))
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            log.warning("MLflow call %s failed; tracking goes offline and will retry at the end: %s", name, _short(e))
            self.online = False
            self._pending.append((name, args, kwargs))
            return None

    def start(self) -> str | None:
        if not self.online:
            return None
        try:
            assert self.tracking.uri is not None
            self._client = _client(self.tracking.uri)
            import mlflow

            mlflow.set_tracking_uri(self.tracking.uri)
            self.tracking = ensure_parent_run(self.tracking, self.config.run)
            experiment_id = _experiment_id(self._client, self.tracking)
            tags = {
                RUN_TAG: f"{self.config.run.namespace}/{self.config.run.name}",
                STEP_TAG: self.config.step,
                "infialign.stage": self.config.stage,
                "infialign.attempt": str(self.config.attempt),
            }
            if self.tracking.parent_run_id:
                tags["mlflow.parentRunId"] = self.tracking.parent_run_id
            if self.config.image:
                tags["infialign.image"] = self.config.image
            sha = os.environ.get("INFIALIGN_GIT_SHA")
            if sha:
                tags["mlflow.source.git.commit"] = sha
            run = self._client.create_run(experiment_id, run_name=f"{self.config.step}-a{self.config.attempt}", tags=tags)
            self.run_id = run.info.run_id
        except Exception as e:  # noqa: BLE001
            log.warning("MLflow at %s is unreachable; the stage runs untracked and retries at the end: %s", self.tracking.uri, _short(e))
            self.online = False
            self._pending.append(("start", (), {}))
        return self.run_id

    # ---- what stages log

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = flatten(params)
        self._call("log_params", self._log_params, flat)

    def _log_params(self, flat: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        self._call("log_metrics", self._log_metrics, clean, step)

    def _log_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self._client.log_batch(self.run_id, metrics=items[i : i + 500])

    def log_dataset(self, name: str, uri: str, digest: str, context: Literal["training", "input", "output", "evaluation"], rows: int | None = None) -> None:
        """Record a dataset with *our* content digest and its URI as source (MetaDataset's own digest hashes only metadata)."""
        self._call("log_dataset", self._log_dataset, name, uri, digest, context, rows)

    def _log_dataset(self, name: str, uri: str, digest: str, context: str, rows: int | None) -> None:
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        try:
            source = resolve_dataset_source(uri)
        except Exception:  # noqa: BLE001  schemes MLflow does not know (builtin://, hf://) still deserve a record
            from mlflow.data.http_dataset_source import HTTPDatasetSource

            source = HTTPDatasetSource(url=uri)
        dataset = MetaDataset(source=source, name=name, digest=digest.removeprefix("sha256:")[:36])
        tags = [InputTag(key="mlflow.data.context", value=context)]
        if rows is not None:
            tags.append(InputTag(key="infialign.rows", value=str(rows)))
        self._client.log_inputs(self.run_id, datasets=[DatasetInput(dataset=dataset._to_mlflow_entity(), tags=tags)])

    def log_artifact(self, local_path: Path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", lambda p, a: self._client.log_artifact(self.run_id, str(p), a), local_path, artifact_path)

    def log_dict(self, value: Any, artifact_file: str) -> None:
        self._call("log_dict", lambda v, f: self._client.log_dict(self.run_id, v, f), value, artifact_file)

    def log_table(self, data: dict[str, list[Any]], artifact_file: str) -> None:
        self._call("log_table", lambda d, f: self._client.log_table(self.run_id, d, f), data, artifact_file)

    def log_on_parent(self, metrics: Mapping[str, float], table: dict[str, list[Any]] | None = None, artifact_file: str | None = None) -> None:
        """The run's headline results on the parent run as well: its page is where users land (`status.mlflow.url`),
        and the MLflow run list compares AlignmentRuns by their parent runs' metrics."""
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        self._call("log_on_parent", self._log_on_parent, clean, table, artifact_file)

    def _log_on_parent(self, metrics: dict[str, float], table: dict[str, list[Any]] | None, artifact_file: str | None) -> None:
        import time

        from mlflow.entities import Metric

        parent = self.tracking.parent_run_id
        if not parent:
            return
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, 0) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self._client.log_batch(parent, metrics=items[i : i + 500])
        if table is not None and artifact_file:
            self._client.log_table(parent, table, artifact_file)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._call("set_tags", lambda t: [self._client.set_tag(self.run_id, k, v) for k, v in t.items()], dict(tags))

    def register_model(self, model_uri: str, registered_name: str, alias: str) -> None:
        """Register weights already in the artifact store without uploading them again (an external LoggedModel)."""
        self._call("register_model", self._register_model, model_uri, registered_name, alias)

    def _register_model(self, model_uri: str, registered_name: str, alias: str) -> None:
        import mlflow

        model = mlflow.create_external_model(
            name=alias,
            source_run_id=self.run_id,
            tags={"checkpoint_uri": model_uri, RUN_TAG: f"{self.config.run.namespace}/{self.config.run.name}"},
            model_type="transformers-checkpoint",
            experiment_id=self.tracking.experiment_id,
        )
        version = mlflow.register_model(f"models:/{model.model_id}", registered_name, tags={"checkpoint_uri": model_uri})
        self._client.set_registered_model_alias(registered_name, alias, version.version)

    def end(self, status: Literal["FINISHED", "FAILED", "KILLED"]) -> None:
        """Close the child run, replaying queued calls once if MLflow came back."""
        if self._pending and self.tracking.enabled and self.tracking.uri:
            self._replay()
        if self.online and self.run_id:
            try:
                self._client.set_terminated(self.run_id, status=status)
            except Exception as e:  # noqa: BLE001
                log.warning("could not close the MLflow run: %s", _short(e))
        self._save_pending()

    def _replay(self) -> None:
        pending, self._pending = self._pending, []
        self.online = True
        if self.run_id is None:
            if pending and pending[0][0] == "start":
                pending = pending[1:]
            self.start()
            if not self.online:
                self._pending = pending
                return
        for name, args, kwargs in pending:
            method = getattr(self, f"_{name}", None) or getattr(self, name)
            self._call(name, method, *args, **kwargs)
            if not self.online:
                break
        else:
            log.info("replayed %d queued MLflow calls", len(pending))

    def _save_pending(self) -> None:
        if not self._pending or self._pending_file is None:
            return
        try:
            self._pending_file.parent.mkdir(parents=True, exist_ok=True)
            with self._pending_file.open("a", encoding="utf-8") as f:
                for name, args, kwargs in self._pending:
                    f.write(json.dumps({"call": name, "args": args, "kwargs": kwargs}, default=str) + "\n")
            log.warning("%d MLflow calls could not be logged; they are kept in %s", len(self._pending), self._pending_file)
        except OSError as e:
            log.warning("could not keep the unlogged MLflow calls: %s", e)
