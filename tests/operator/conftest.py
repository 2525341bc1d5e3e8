"""A real Kopf operator (own thread and loop, `KopfRunner`) against kmock's Kubernetes emulator.

The emulator is a database over HTTP, not an API server (research/k8s-operator-anchors.md §7). The
shim below closes the gaps the operator depends on: it stamps `resourceVersion`, `uid`,
`creationTimestamp` and `generation`; answers a failed JSON-patch `test` with 422 like a real server;
and lets watches honour `?resourceVersion=`, so Kopf does not see its own old objects as new.

The tests play the Job controller and the kubelet: `Cluster` creates Pods and patches Job and Pod
status through the HTTP API, so the operator sees them through its watches like on a real cluster.
Every status the operator leaves on a run is validated against the CRD schema at teardown (kmock
neither validates nor prunes), and every object it creates against the Kubernetes OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import jsonpatch
import jsonschema
import kmock as km
import kubernetes_validate
import pytest
from infialign.operator import handlers
from infialign.operator.artifacts import Heartbeat, Success
from infialign.operator.config import OperatorConfig
from infialign.pipeline.api import StepOutput, StepProgress, crd
from infialign.pipeline.runtime.config import RunIdentity, StageConfig, TrackingConfig
from kopf.testing import KopfRunner

logging.getLogger("kubernetes").setLevel(logging.INFO)  # its DEBUG dumps every response body

NS = "ns1"
RUNS = "infialign.dev/v1alpha1/alignmentruns"
JOBS = "batch/v1/jobs"
PODS = "v1/pods"
CONFIGMAPS = "v1/configmaps"
SERVICES = "v1/services"
K8S_VERSION = "1.32.0"
OPERATOR_AGENT = "infialign-operator"


def pytest_configure(config: pytest.Config) -> None:
    # kmock 0.8 loads its bundled resources with a deprecated importlib call, once per test
    config.addinivalue_line("filterwarnings", "ignore:read_binary is deprecated:DeprecationWarning")


# ---------------------------------------------------------------- the API-server shim


@attrs.define(kw_only=True)
class ApiServerEmulator(km.KubernetesEmulator):
    """kmock plus what an API server does to every write: versions, identity, generation, 422s."""

    _rv: int = attrs.field(default=1000, init=False)
    # plural → errors for the next creates of that resource. Unlike a kmock reaction (kmock stores the object
    # before reactions answer), a refused create stores nothing, as an API server's admission would.
    refusals: dict[str, list[km.KubernetesError]] = attrs.field(factory=dict, init=False)

    async def _handle(self, request: km.Request) -> Any:
        if request.resource is not None and request.action == km.action.CREATE and self.refusals.get(request.resource.plural):
            raise self.refusals[request.resource.plural].pop(0)
        if request.resource is not None and request.action in (km.action.CREATE, km.action.UPDATE):
            self._rv += 1
            rv, data = str(self._rv), request.data
            if isinstance(data, dict):
                meta = dict(data.get("metadata") or {}, resourceVersion=rv)
                if request.action == km.action.CREATE:
                    meta.setdefault("uid", str(uuid.uuid4()))
                    meta.setdefault("creationTimestamp", dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
                    meta.setdefault("generation", 1)
                elif request.subresource is None and "spec" in data:
                    meta["generation"] = self._generation(request) + 1
                data = dict(data, metadata=meta)
            elif isinstance(data, list):
                data = [*data, {"op": "add", "path": "/metadata/resourceVersion", "value": rv}]
            object.__setattr__(request, "data", data)  # Request is frozen; a test-only shim
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as e:
            raise km.KubernetesError(status=422, reason="Invalid", message=str(e)) from e

    def _generation(self, request: km.Request) -> int:
        try:
            obj = self.objects[request.resource, request.namespace, request.name]
        except KeyError:
            return 0
        return int((obj.get("metadata") or {}).get("generation") or 0)

    async def _serve_list(self, request: km.Request) -> Any:
        result = await super()._serve_list(request)
        result["metadata"] = {"resourceVersion": str(self._rv)}
        return result

    async def _serve_watch(self, request: km.Request) -> Any:
        since = request.params.get("resourceVersion", "")
        async for event in super()._serve_watch(request):
            rv = event.get("object", {}).get("metadata", {}).get("resourceVersion", "") if isinstance(event, dict) else ""
            if since.isdigit() and rv.isdigit() and int(rv) <= int(since):
                continue  # already delivered by the listing the watch continues from
            yield event


@pytest.fixture
def kmock_options() -> dict[str, Any]:
    return {"cls": ApiServerEmulator}


@pytest.fixture
def kubeconfig(kmock: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "kmock", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": NS}}],
    }
    path = tmp_path / "kubeconfig.json"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return str(path)


@pytest.fixture
def k8s_resources(kmock: Any) -> None:
    kmock.resources.load_bundled()  # core, batch, apiextensions, events: Kopf needs them in discovery
    kmock.resources[RUNS] = {
        "kind": "AlignmentRun",
        "singular": "alignmentrun",
        "namespaced": True,
        "verbs": {"list", "watch", "get", "patch", "create", "delete"},
        "shortnames": {"arun"},
        "categories": {"infialign"},
        "subresources": {"status"},
    }


# ---------------------------------------------------------------- fakes for the artifact store and MLflow


class FakeArtifacts:
    """What the stages would have written: set by the test, read by the operator (from its threads)."""

    def __init__(self, clock: Callable[[], dt.datetime]) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.successes: dict[str, Success] = {}
        self.heartbeats: dict[str, Heartbeat] = {}
        self.done: dict[str, Success] = {}
        self.reads = 0

    def success(self, config: StageConfig) -> Success | None:
        with self._lock:
            self.reads += 1
            return self.successes.get(config.step)

    def heartbeat(self, config: StageConfig) -> Heartbeat | None:
        with self._lock:
            self.reads += 1
            return self.heartbeats.get(config.step)

    def already_done(self, config: StageConfig) -> Success | None:
        with self._lock:
            return self.done.get(config.step)

    def beat(self, step: str, *, done: int, total: int, loss: float = 1.0, checkpoint: str | None = None) -> None:
        progress = StepProgress(step=done, total=total, percent=100.0 * done / total, metrics={"loss": loss}, time=self._clock())
        with self._lock:
            self.heartbeats[step] = Heartbeat(progress=progress, last_checkpoint=checkpoint)

    def succeed(self, step: str, uri: str, rows: int = 10) -> None:
        with self._lock:
            self.successes[step] = Success(
                outputs=[StepOutput(name="out", uri=uri, digest="sha256:0", rows=rows)], metrics={"rows": float(rows)}
            )


class FakeTracker:
    def __init__(self) -> None:
        self.parents: list[str] = []
        self.finished: list[str] = []
        self.params: list[tuple[str | None, dict[str, str]]] = []  # (parent run, params) per log_parent_params call

    def ensure_parent_run(self, tracking: TrackingConfig, run: RunIdentity) -> TrackingConfig:
        self.parents.append(run.name)
        return tracking.model_copy(update={"experiment_id": "7", "parent_run_id": f"parent-{run.name}"})

    def parent_run_url(self, tracking: TrackingConfig) -> str | None:
        return f"{tracking.uri}/#/experiments/{tracking.experiment_id}/runs/{tracking.parent_run_id}"

    def finish_parent_run(self, tracking: TrackingConfig, status: str) -> None:
        self.finished.append(status)

    def log_parent_params(self, tracking: TrackingConfig, params: Mapping[str, str]) -> None:
        self.params.append((tracking.parent_run_id, dict(params)))


# ---------------------------------------------------------------- the operator under test


TEST_CONFIG = OperatorConfig(
    tick_seconds=0.2,
    progress_poll_seconds=0.0,
    job_missing_grace_seconds=30.0,
    retry_delay_seconds=0.2,
    scanning=False,  # kmock cannot list namespaces
    mlflow_retry_seconds=0.0,
)


class FakeClock:
    """The operator's notion of now: real time plus an offset the test advances (timeouts in a blink)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return dt.datetime.now(dt.UTC) + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += dt.timedelta(seconds=seconds)


@dataclasses.dataclass
class OperatorHarness:
    """Starts, stops and restarts the operator; each start is a fresh process-like instance."""

    config: OperatorConfig
    artifacts: FakeArtifacts
    tracker: FakeTracker
    clock: FakeClock
    runner: KopfRunner | None = None
    current: handlers.Operator | None = None
    starts: int = 0

    def start(self) -> handlers.Operator:
        assert self.runner is None, "already running"
        self.current = handlers.make_operator(self.config, artifacts=self.artifacts, tracker=self.tracker, clock=self.clock)
        self.runner = KopfRunner(["run", "--standalone", f"--namespace={NS}", "--verbose"], registry=self.current.registry, timeout=30)
        self.runner.__enter__()
        self.starts += 1
        return self.current

    async def stop(self) -> None:
        if self.runner is None:
            return
        runner, self.runner = self.runner, None
        await asyncio.to_thread(runner.__exit__, None, None, None)  # off-loop: kmock keeps serving meanwhile

    @property
    def reconciler(self) -> Any:
        assert self.current is not None
        return self.current.reconciler


@pytest.fixture
def artifacts(clock: FakeClock) -> FakeArtifacts:
    return FakeArtifacts(clock)


@pytest.fixture
def tracker() -> FakeTracker:
    return FakeTracker()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def operator_config() -> OperatorConfig:
    return TEST_CONFIG


@pytest.fixture
async def operator(
    kmock: Any,
    kubeconfig: str,
    k8s_resources: None,
    artifacts: FakeArtifacts,
    tracker: FakeTracker,
    clock: FakeClock,
    operator_config: OperatorConfig,
) -> Any:
    harness = OperatorHarness(config=operator_config, artifacts=artifacts, tracker=tracker, clock=clock)
    harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
    _check_statuses(kmock)
    _check_children(kmock)


_STATUS_SCHEMA = crd.to_json_schema(crd.openapi_schema()["properties"]["status"])


def _check_statuses(kmock: Any) -> None:
    """Every status the operator left on a run, version by version, against the CRD's status schema."""
    validator = jsonschema.Draft202012Validator(_STATUS_SCHEMA)
    for (resource, namespace, name), obj in kmock.objects.items():
        if (resource.group, resource.plural) != ("infialign.dev", "alignmentruns"):
            continue
        for version in obj.history:
            if version is None or "status" not in version:
                continue
            errors = sorted(validator.iter_errors(_plain(version["status"])), key=str)
            assert not errors, f"{namespace}/{name}: status violates the CRD schema: {errors[0].message} at {list(errors[0].absolute_path)}"


def _plain(value: Any) -> Any:
    """kmock wraps nested mappings in views; the schema validator wants plain dicts."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _check_children(kmock: Any) -> None:
    """Every object the operator POSTed, against the Kubernetes OpenAPI schema (strict: no unknown fields)."""
    for request in operator_requests(kmock, "POST"):
        data = request.data
        if isinstance(data, dict) and data.get("kind") in ("Job", "ConfigMap", "Service", "Event"):
            kubernetes_validate.validate(data, K8S_VERSION, strict=True)


def operator_requests(kmock: Any, method: str | None = None) -> list[Any]:
    """Requests the operator's own client sent (not Kopf's watches, not the test's)."""
    out = []
    for request in list(kmock):
        agent = request.headers.get("User-Agent", "")
        if agent.startswith(OPERATOR_AGENT) and (method is None or request.method.value.upper() == method):
            out.append(request)
    return out


# ---------------------------------------------------------------- the cluster's side, played by the test


async def eventually(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition", interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (KeyError, TypeError, IndexError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def get(kmock: Any, resource: str, name: str, namespace: str = NS) -> Any:
    try:
        obj = kmock.objects[resource, namespace, name]
    except KeyError:
        return None
    return None if obj.deleted else obj


class Cluster:
    """The Job controller and kubelet of the test: pods appear, run, succeed or fail on command."""

    NS = NS

    def __init__(self, kmock: Any) -> None:
        self.kmock = kmock

    # ---- waiting and looking

    async def eventually(self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
        try:
            return await eventually(predicate, timeout=timeout, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}; run status: {json.dumps(self.status(), default=str)[:3000]}") from None

    def operator_requests(self, method: str | None = None) -> list[Any]:
        return operator_requests(self.kmock, method)

    def posts(self, plural: str) -> list[str]:
        """Names the operator POSTed for a resource plural, in order (409s included)."""
        return [
            r.data["metadata"]["name"] for r in self.operator_requests("POST") if r.resource is not None and r.resource.plural == plural
        ]

    # ---- runs

    async def create_run(self, doc: dict[str, Any]) -> None:
        async with self.kmock.post(f"/apis/infialign.dev/v1alpha1/namespaces/{NS}/alignmentruns", json=doc) as resp:
            assert resp.status in (200, 201), await resp.text()

    async def patch_run(self, name: str, patch: dict[str, Any]) -> None:
        async with self.kmock.patch(f"/apis/infialign.dev/v1alpha1/namespaces/{NS}/alignmentruns/{name}", json=patch) as resp:
            assert resp.status == 200, await resp.text()

    async def delete_run(self, name: str) -> None:
        async with self.kmock.delete(f"/apis/infialign.dev/v1alpha1/namespaces/{NS}/alignmentruns/{name}") as resp:
            assert resp.status == 200, await resp.text()

    def run(self, name: str = "r1") -> Any:
        return get(self.kmock, RUNS, name)

    def status(self, name: str = "r1") -> dict[str, Any]:
        run = self.run(name)
        return _plain(run.get("status") or {}) if run is not None else {}  # plain dicts: printable, comparable

    def step(self, step: str, name: str = "r1") -> dict[str, Any]:
        return next((s for s in self.status(name).get("steps", []) if s["name"] == step), {})

    def job(self, name: str) -> Any:
        return get(self.kmock, JOBS, name)

    def jobs(self) -> list[str]:
        return sorted(n for (r, ns, n), o in self.kmock.objects.items() if (r.group, r.plural) == ("batch", "jobs") and not o.deleted)

    # ---- pods

    async def _pod(self, job: str, index: int, status: dict[str, Any]) -> None:
        name = f"{job}-{index}"
        pod_url = f"/api/v1/namespaces/{NS}/pods"
        if get(self.kmock, PODS, name) is None:
            template = self.job(job)["spec"]["template"]
            body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": NS,
                    "labels": {**dict(template["metadata"]["labels"]), "batch.kubernetes.io/job-name": job},
                    "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
                },
                "spec": {"nodeName": f"node-{index}"},
                "status": status,
            }
            async with self.kmock.post(pod_url, json=body) as resp:
                assert resp.status in (200, 201), await resp.text()
        else:
            async with self.kmock.patch(f"{pod_url}/{name}/status", json={"status": status}) as resp:
                assert resp.status == 200, await resp.text()

    def _pods(self, job: str) -> int:
        return int(self.job(job)["spec"].get("parallelism") or 1)

    async def run_pods(self, job: str) -> None:
        for i in range(self._pods(job)):
            await self._pod(job, i, {"phase": "Running", "containerStatuses": [{"name": "stage", "ready": True, "state": {"running": {}}}]})

    async def pull_failing(self, job: str, message: str) -> None:
        waiting = {"waiting": {"reason": "ImagePullBackOff", "message": message}}
        for i in range(self._pods(job)):
            await self._pod(job, i, {"phase": "Pending", "containerStatuses": [{"name": "stage", "ready": False, "state": waiting}]})

    async def _job_status(self, job: str, status: dict[str, Any]) -> None:
        async with self.kmock.patch(f"/apis/batch/v1/namespaces/{NS}/jobs/{job}/status", json={"status": status}) as resp:
            assert resp.status == 200, await resp.text()

    async def complete(self, job: str) -> None:
        now = _now()
        for i in range(self._pods(job)):
            term = {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": now}}
            await self._pod(job, i, {"phase": "Succeeded", "containerStatuses": [{"name": "stage", "ready": False, "state": term}]})
        conditions = [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True", "lastTransitionTime": now}]
        await self._job_status(job, {"succeeded": self._pods(job), "active": 0, "conditions": conditions})

    async def fail(self, job: str, exit_code: int = 1, error: str = "RuntimeError: boom") -> None:
        now = _now()
        message = json.dumps({"step": "?", "attempt": 1, "exitCode": exit_code, "error": error})
        term = {"terminated": {"exitCode": exit_code, "reason": "Error", "message": message, "finishedAt": now}}
        await self._pod(job, 0, {"phase": "Failed", "containerStatuses": [{"name": "stage", "ready": False, "state": term}]})
        conditions = [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}
        ]
        await self._job_status(job, {"failed": 1, "active": 0, "conditions": conditions})

    async def disrupt(self, job: str) -> None:
        now = _now()
        term = {"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": now}}
        status = {
            "phase": "Failed",
            "conditions": [
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": "preempted by a higher-priority pod",
                }
            ],
            "containerStatuses": [{"name": "stage", "ready": False, "state": term}],
        }
        await self._pod(job, 0, status)
        message = f"Pod {NS}/{job}-0 has condition DisruptionTarget matching FailJob rule at index 0"
        await self._job_status(
            job, {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": message}]}
        )

    async def admit(self, job: str) -> None:
        """Kueue's part: unsuspend the Job once its quota is reserved."""
        async with self.kmock.patch(f"/apis/batch/v1/namespaces/{NS}/jobs/{job}", json={"spec": {"suspend": False}}) as resp:
            assert resp.status == 200, await resp.text()

    async def unschedulable(self, job: str, message: str = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.") -> None:
        """The scheduler found no node (yet): the autoscaler may add one, so this is waiting, not failing."""
        scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        for i in range(self._pods(job)):
            await self._pod(job, i, {"phase": "Pending", "conditions": [scheduled]})

    async def preempt(self, job: str) -> None:
        """Kueue's eviction: the Job is suspended again and the Job controller deletes its pods."""
        async with self.kmock.patch(f"/apis/batch/v1/namespaces/{NS}/jobs/{job}", json={"spec": {"suspend": True}}) as resp:
            assert resp.status == 200, await resp.text()
        for i in range(self._pods(job)):
            async with self.kmock.delete(f"/api/v1/namespaces/{NS}/pods/{job}-{i}") as resp:
                assert resp.status in (200, 404), await resp.text()

    async def delete_job(self, job: str) -> None:
        async with self.kmock.delete(f"/apis/batch/v1/namespaces/{NS}/jobs/{job}") as resp:
            assert resp.status == 200, await resp.text()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def cluster(kmock: Any) -> Cluster:
    return Cluster(kmock)


# ---------------------------------------------------------------- runs as a cluster accepts them

CLUSTER_STORAGE: dict[str, Any] = {"s3": {"bucket": "infialign"}}  # a cluster needs S3 or a PVC (never a pod's own disk)


@pytest.fixture
def make_run(make_run: Any) -> Callable[[], Any]:
    """The shared `make_run()`, with storage a cluster accepts; `.set("spec.storage", …)` overrides it."""

    def builder() -> Any:
        return make_run().set("spec.storage", dict(CLUSTER_STORAGE))

    return builder


# ---------------------------------------------------------------- a real S3 endpoint for the operator's reads


@dataclasses.dataclass
class S3Store:
    """moto's S3 server on 127.0.0.1: the stages (played by the test) write markers with their own working
    credentials; the operator reads with the process environment's, which `deny_operator()` makes invalid."""

    endpoint: str
    bucket: str
    prefix: str
    writer: Any  # a boto3 S3 client with credentials moto accepts even when it enforces auth

    def storage(self) -> dict[str, Any]:
        return {"s3": {"endpoint": self.endpoint, "bucket": self.bucket, "prefix": self.prefix}}

    def key(self, step: str, name: str, run: str = "r1") -> str:
        return f"{self.prefix}/{NS}/{run}/{step}/{name}"

    def beat(self, step: str, *, time: dt.datetime, done: int, total: int, run: str = "r1") -> None:
        """Write `progress.json` as the stage's heartbeat writer does."""
        from infialign.pipeline.runtime import markers

        progress = markers.Progress(step=done, total=total, percent=100.0 * done / total, metrics={"loss": 1.0}, time=time)
        body = json.dumps(progress.model_dump(mode="json")).encode()
        self.writer.put_object(Bucket=self.bucket, Key=self.key(step, markers.PROGRESS_FILE, run), Body=body)

    def deny_operator(self) -> None:
        """From now on moto checks credentials: the operator's (the environment's) are unknown to it."""
        import moto.settings

        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3_store(monkeypatch: pytest.MonkeyPatch) -> Any:
    import boto3
    import moto.settings
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # the operator's own identity (moto accepts anything until deny_operator())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "operator")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="runs")
    iam = boto3.client("iam", endpoint_url=endpoint)
    iam.create_user(UserName="stage")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="stage", PolicyName="artifacts", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="stage")["AccessKey"]
    writer = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]
    )
    try:
        yield S3Store(endpoint=endpoint, bucket="runs", prefix="infialign", writer=writer)
    finally:
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
        import urllib.request

        # moto keeps its accounts, users and buckets per process: start the next test from nothing
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()
        server.stop()
