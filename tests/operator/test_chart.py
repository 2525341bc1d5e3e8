"""The Helm chart, without a helm binary: values against values.schema.json always; and, where the
`helm-python-sdk` package (Helm v4's Go SDK as a library) is installed, lint, render a matrix of
values, and validate every rendered object against the Kubernetes OpenAPI schema (strict).

`manifests/install/infialign.yaml` (install without Helm) is the chart rendered with its defaults;
regenerate it with `INFIALIGN_UPDATE_INSTALL=1 pytest tests/operator/test_chart.py`.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import urllib.request
import os
import socket
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "infialign"
INSTALL = ROOT / "manifests" / "install" / "infialign.yaml"
K8S_VERSIONS = ("1.30.0", "1.32.0")
NAMESPACE = "infialign"


def _schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def _values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


# ---------------------------------------------------------------- always: the values schema


def test_values_yaml_matches_its_schema() -> None:
    schema = _schema()
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(_values(), schema)
    assert schema["additionalProperties"] is False
    for section, node in schema["properties"].items():
        if node.get("type") == "object" and section != "global":  # a parent chart's globals are not ours to check
            assert node.get("additionalProperties") is False, f"section {section} accepts unknown keys"


def test_schema_allows_global_for_use_as_a_subchart() -> None:
    jsonschema.validate({**_values(), "global": {"imageRegistry": "registry.example.com", "storageClass": "fast"}}, _schema())


@pytest.mark.parametrize(
    "bad",
    [
        {"replicaCount": 2},  # unknown top-level key
        {"operator": {"tickSecond": 5}},  # a typo in a section
        {"metrics": {"port": 0}},
        {"operator": {"watchNamespaces": ["Not_A_Namespace"]}},
        {"mlflow": {"image": {"pullPolicy": "Sometimes"}}},
        {"minio": {"buckets": ["Not_A_Bucket"]}},
        {"minio": {"imageTag": "latest"}},
        {"kueue": {"localQueues": [{"name": "gpu"}]}},  # no clusterQueue
        {"tracking": {"externalUrl": "mlflow.example.com"}},  # no scheme
        {"tests": {"timeoutSeconds": 5}},
    ],
)
def test_schema_rejects(bad: dict[str, Any]) -> None:
    values = _values()
    for key, value in bad.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) and isinstance(values.get(key), dict) else value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, _schema())


# ---------------------------------------------------------------- with helm-python-sdk: lint and render

try:
    import helm_python as helm
except ImportError:  # the schema tests above still run
    helm = None

needs_helm = pytest.mark.skipif(helm is None, reason="helm-python-sdk is not installed (pip install helm-python-sdk==0.2.2)")

MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced-with-mlflow": {
        "operator": {"watchNamespaces": ["ml-team", "research"], "verbose": True, "tickSeconds": 5},
        "mlflow": {
            "enabled": True,
            "persistence": {"enabled": True, "size": "20Gi"},
            "extraAllowedHosts": ["mlflow.example.com"],
            "artifactsDestination": "s3://mlflow/artifacts",
            "s3": {"endpoint": "http://minio.minio:9000", "secretName": "mlflow-s3"},
        },
        "artifacts": {"s3": {"endpoint": "http://minio.minio:9000", "secretName": "minio-credentials"}},
        "image": {"tag": "0.1.1"},
        "imagePullSecrets": [{"name": "regcred"}],
    },
    "dev-minio-mlflow-kueue": {  # what .github/workflows/e2e.yaml installs on kind, plus Kueue queues
        "minio": {"enabled": True, "persistence": {"enabled": False}},
        "mlflow": {"enabled": True},
        "kueue": {"localQueues": [{"name": "gpu-training", "namespace": "ml-team", "clusterQueue": "cluster-gpus"}, {"name": "cpu", "clusterQueue": "cluster-cpus"}]},
        "tests": {"queueName": "cpu"},
        "tracking": {"tokenSecret": {"name": "mlflow-token"}, "externalUrl": "https://mlflow.example.com"},
        "global": {"imageRegistry": "registry.example.com"},
    },
    "namespaced-minio-existing-secret": {
        "operator": {"watchNamespaces": ["infialign", "ml-team"]},
        "minio": {"enabled": True, "existingSecret": "my-minio", "buckets": ["runs", "mlflow"]},
        "artifacts": {"s3": {"bucket": "runs"}},
        "rbac": {"aggregateToDefaultRoles": False},
    },
    "minimal": {
        "crds": {"install": False},
        "metrics": {"enabled": False},
        "rbac": {"aggregateToDefaultRoles": False},
        "serviceAccount": {"create": False, "name": "ops"},
        "tracking": {"defaultUri": "http://mlflow.shared:5000"},
    },
}


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(str(CHART))
    rendered = chart.render(values, name="infialign", namespace=NAMESPACE, is_install=True)
    objects: list[dict[str, Any]] = []
    for path in sorted(rendered):
        if path.endswith(".yaml"):
            objects += [doc for doc in yaml.safe_load_all(rendered[path]) if doc]
    return objects


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@needs_helm
@pytest.mark.parametrize("case", sorted(MATRIX))
def test_lint_strict(case: str) -> None:
    report = helm.lint(str(CHART), MATRIX[case], strict=True, kube_version="v1.30.0")
    errors = [m for m in report["messages"] if m["severity"] >= 2]
    assert not errors and not report["errors"], report


@needs_helm
@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_rendered_object_is_valid_kubernetes(case: str) -> None:
    objects = _render(MATRIX[case])
    assert objects
    for version in K8S_VERSIONS:
        for obj in objects:
            if obj["kind"] == "LocalQueue":
                continue  # Kueue's CRD: test_kueue_local_queues
            kubernetes_validate.validate(obj, version, strict=True)


@needs_helm
def test_operator_deployment_defaults() -> None:
    objects = _render({})
    (deployment,) = _by_kind(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["operator", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", "--metrics-port=9090"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"} and "readinessProbe" not in container
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and container["securityContext"]["capabilities"] == {
        "drop": ["ALL"]
    }
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["image"] == "ghcr.io/infialign/operator:0.1.0"
    assert [o["metadata"]["name"] for o in _by_kind(objects, "CustomResourceDefinition")] == ["alignmentruns.infialign.dev"]
    assert _by_kind(objects, "Service")[0]["spec"]["ports"][0]["port"] == 9090


@needs_helm
def test_rbac_is_least_privilege_and_never_touches_secrets() -> None:
    for case in MATRIX.values():
        for obj in _render(case):
            for rule in obj.get("rules", []):
                assert "secrets" not in rule["resources"], f"{obj['kind']} {obj['metadata']['name']} grants secrets"
                assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    objects = _render(MATRIX["namespaced-with-mlflow"])
    roles = _by_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml-team", "research"]
    assert [
        r["metadata"]["name"] for r in _by_kind(objects, "ClusterRole") if r["metadata"]["name"] == "infialign"
    ] == []  # no cluster-wide write access
    status_rule = next(r for r in roles[0]["rules"] if r["resources"] == ["alignmentruns/status"])
    assert status_rule["verbs"] == ["get", "patch"]
    # OwnerReferencesPermissionEnforcement (OpenShift): children with blockOwnerDeletion need this
    for case in ("defaults", "namespaced-with-mlflow"):
        for role in [o for o in _render(MATRIX[case]) if o["kind"] in ("Role", "ClusterRole") and o["metadata"]["name"] == "infialign"]:
            finalizers = [r for r in role["rules"] if "alignmentruns/finalizers" in r["resources"]]
            assert finalizers and finalizers[0]["verbs"] == ["update"], f"{case}: {role['kind']} lacks update on alignmentruns/finalizers"
    aggregated = {
        r["metadata"]["name"]: r["metadata"]["labels"] for r in _by_kind(objects, "ClusterRole") if "alignmentrun" in r["metadata"]["name"]
    }
    assert aggregated["infialign-alignmentrun-editor"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert aggregated["infialign-alignmentrun-viewer"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"


@needs_helm
def test_namespaced_mode_and_mlflow() -> None:
    objects = _render(MATRIX["namespaced-with-mlflow"])
    operator, mlflow = sorted(_by_kind(objects, "Deployment"), key=lambda d: d["metadata"]["name"])
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=ml-team" in args and "--namespace=research" in args and "--all-namespaces" not in args and "--verbose" in args
    env = {e["name"]: e for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["INFIALIGN_OPERATOR_MLFLOW_URI"]["value"] == "http://infialign-mlflow.infialign.svc:5000"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "minio-credentials", "key": "AWS_SECRET_ACCESS_KEY"}
    assert env["INFIALIGN_OPERATOR_TICK_SECONDS"]["value"] == "5"
    mlflow_env = {e["name"]: e.get("value") for e in mlflow["spec"]["template"]["spec"]["containers"][0]["env"]}
    allowed = mlflow_env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert "infialign-mlflow.infialign.svc:5000" in allowed and "mlflow.example.com" in allowed
    assert "--artifacts-destination=s3://mlflow/artifacts" in mlflow["spec"]["template"]["spec"]["containers"][0]["args"]
    assert _by_kind(objects, "PersistentVolumeClaim")[0]["spec"]["resources"]["requests"]["storage"] == "20Gi"


@needs_helm
def test_minimal_values_install_no_crd_and_no_metrics() -> None:
    objects = _render(MATRIX["minimal"])
    kinds = {o["kind"] for o in objects}
    assert "CustomResourceDefinition" not in kinds and "Service" not in kinds and "ServiceAccount" not in kinds
    (deployment,) = _by_kind(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


@needs_helm
def test_service_monitor_needs_the_prometheus_operator() -> None:
    with pytest.raises(Exception, match="ServiceMonitor"):
        _render({"metrics": {"serviceMonitor": {"enabled": True}}})


@needs_helm
def test_schema_is_enforced_on_render() -> None:
    with pytest.raises(Exception, match="replicaCount"):
        _render({"replicaCount": 3})


@needs_helm
def test_plain_install_manifests_are_the_rendered_chart() -> None:
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/name": "infialign"}},
    }
    header = (
        "# Install without Helm (the CRD first, it is generated separately by `infialign crd --write`):\n"
        "#   kubectl apply --server-side -f manifests/crd/ -f manifests/install/infialign.yaml\n"
        "# Rendered from charts/infialign with its default values and crds.install=false;\n"
        "# regenerate with INFIALIGN_UPDATE_INSTALL=1 pytest tests/operator/test_chart.py\n"
    )
    text = header + yaml.safe_dump_all([namespace, *_render({"crds": {"install": False}})], sort_keys=False, width=200)
    if os.environ.get("INFIALIGN_UPDATE_INSTALL"):
        INSTALL.parent.mkdir(parents=True, exist_ok=True)
        INSTALL.write_text(text)
    assert INSTALL.exists() and INSTALL.read_text() == text, (
        "manifests/install drifted from the chart; regenerate with INFIALIGN_UPDATE_INSTALL=1"
    )


# ---------------------------------------------------------------- MinIO, MLflow, Kueue and `helm test`


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _load_file(name: str):  # noqa: ANN202 - a module object
    spec = importlib.util.spec_from_file_location(name, CHART / "files" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MINIO = "http://infialign-minio.infialign.svc:9000"


@needs_helm
def test_dev_install_wires_minio_into_the_operator_mlflow_and_the_bucket_job() -> None:
    objects = _render(MATRIX["dev-minio-mlflow-kueue"])
    secret = _named(objects, "Secret", "infialign-minio")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert sorted(secret["data"]) == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert len(base64.b64decode(secret["data"]["AWS_SECRET_ACCESS_KEY"])) == 32
    minio = _named(objects, "Deployment", "infialign-minio")["spec"]["template"]["spec"]
    (server,) = minio["containers"]
    assert server["image"] == "docker.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"  # pinned: the last published release
    assert _env(server)["MINIO_ROOT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "infialign-minio", "key": "AWS_SECRET_ACCESS_KEY"}
    assert minio["volumes"][0] == {"name": "data", "emptyDir": {}}  # persistence off in this case
    assert "PersistentVolumeClaim" not in {o["kind"] for o in objects}
    assert _named(objects, "Service", "infialign-minio")["spec"]["ports"][0]["port"] == 9000

    job = _named(objects, "Job", "infialign-minio-buckets")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    (create,) = job["spec"]["template"]["spec"]["containers"]
    env = _env(create)
    assert env["S3_ENDPOINT"]["value"] == MINIO and env["BUCKETS"]["value"] == "infialign,mlflow"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "infialign-minio"
    script = _named(objects, "ConfigMap", "infialign-minio-buckets")["data"]["create_buckets.py"]
    assert script.strip() == (CHART / "files" / "create_buckets.py").read_text().strip()

    operator = _named(objects, "Deployment", "infialign")["spec"]["template"]["spec"]["containers"][0]
    env = _env(operator)
    assert env["AWS_ENDPOINT_URL"]["value"] == MINIO
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "infialign-minio", "key": "AWS_SECRET_ACCESS_KEY"}
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-token", "key": "MLFLOW_TRACKING_TOKEN"}
    assert env["INFIALIGN_OPERATOR_MLFLOW_EXTERNAL_URL"]["value"] == "https://mlflow.example.com"
    assert env["INFIALIGN_OPERATOR_MLFLOW_URI"]["value"] == "http://infialign-mlflow.infialign.svc:5000"

    mlflow = _named(objects, "Deployment", "infialign-mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert mlflow["image"] == "ghcr.io/infialign/mlflow:3.17.2"  # images/mlflow.Dockerfile: boto3 and psycopg2
    assert "--artifacts-destination=s3://mlflow/artifacts" in mlflow["args"] and "--serve-artifacts" in mlflow["args"]
    env = _env(mlflow)
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == MINIO  # the artifact store, for the server only
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "infialign-minio"
    assert env["AWS_REQUEST_CHECKSUM_CALCULATION"]["value"] == "when_required"
    allowed = env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    assert {"infialign-mlflow", "infialign-mlflow.infialign.svc:5000", "infialign-mlflow.infialign.svc.cluster.local:5000"} <= set(allowed)


@needs_helm
def test_mlflow_without_s3_keeps_artifacts_on_its_volume_and_sets_no_s3_env() -> None:
    objects = _render({"mlflow": {"enabled": True}})
    mlflow = _named(objects, "Deployment", "infialign-mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert "--artifacts-destination=/mlflow/artifacts" in mlflow["args"]
    assert not {"MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"} & set(_env(mlflow))
    operator = _named(objects, "Deployment", "infialign")["spec"]["template"]["spec"]["containers"][0]
    assert not {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "MLFLOW_TRACKING_TOKEN", "INFIALIGN_OPERATOR_MLFLOW_EXTERNAL_URL"} & set(_env(operator))


@needs_helm
def test_an_existing_minio_secret_is_used_and_none_is_generated() -> None:
    objects = _render(MATRIX["namespaced-minio-existing-secret"])
    assert "Secret" not in {o["kind"] for o in objects}
    assert _named(objects, "PersistentVolumeClaim", "infialign-minio")["spec"]["resources"]["requests"]["storage"] == "20Gi"
    server = _named(objects, "Deployment", "infialign-minio")["spec"]["template"]["spec"]["containers"][0]
    assert _env(server)["MINIO_ROOT_USER"]["valueFrom"]["secretKeyRef"]["name"] == "my-minio"
    operator = _named(objects, "Deployment", "infialign")["spec"]["template"]["spec"]["containers"][0]
    assert _env(operator)["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "my-minio"


@needs_helm
def test_kueue_local_queues() -> None:
    queues = _by_kind(_render(MATRIX["dev-minio-mlflow-kueue"]), "LocalQueue")
    assert [(q["apiVersion"], q["metadata"]["namespace"], q["metadata"]["name"], q["spec"]) for q in queues] == [
        ("kueue.x-k8s.io/v1beta1", "ml-team", "gpu-training", {"clusterQueue": "cluster-gpus"}),
        ("kueue.x-k8s.io/v1beta1", NAMESPACE, "cpu", {"clusterQueue": "cluster-cpus"}),
    ]
    assert not _by_kind(_render({}), "LocalQueue")


@needs_helm
@pytest.mark.parametrize("case", ["dev-minio-mlflow-kueue", "namespaced-minio-existing-secret", "namespaced-with-mlflow"])
def test_helm_test_applies_a_valid_cpu_only_run(case: str) -> None:
    from infialign.pipeline import validation

    objects = _render(MATRIX[case])
    hooks = [o for o in objects if o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    if case == "namespaced-with-mlflow":  # the operator does not watch the release namespace: no test to run
        assert hooks == []
        return
    assert sorted(o["kind"] for o in hooks) == ["ConfigMap", "Pod", "Role", "RoleBinding", "ServiceAccount"]
    role = _named(hooks, "Role", "infialign-test")
    assert role["rules"] == [{"apiGroups": ["infialign.dev"], "resources": ["alignmentruns"], "verbs": ["get", "create", "delete"]}]
    data = _named(hooks, "ConfigMap", "infialign-test")["data"]
    assert data["helm_test.py"].strip() == (CHART / "files" / "helm_test.py").read_text().strip()
    result = validation.load_manifest_text(data["run.yaml"])
    assert result.ok and not result.problems, [validation.format_problem("run.yaml", p) for p in result.problems]
    (run,) = result.runs
    assert not validation.cluster_problems(run.spec)
    assert run.metadata.namespace == NAMESPACE
    enabled = [name for name in type(run.spec.stages).model_fields if getattr(run.spec.stages, name).enabled]
    assert enabled == ["curate", "select"]  # CPU stages only
    s3 = run.spec.storage.s3
    bucket = MATRIX[case].get("artifacts", {}).get("s3", {}).get("bucket", "infialign")
    assert s3.endpoint == MINIO and s3.bucket == bucket and s3.bucket in _values_with(MATRIX[case])["minio"]["buckets"]
    assert s3.secret_ref.name == MATRIX[case]["minio"].get("existingSecret", "infialign-minio")
    queue = MATRIX[case].get("tests", {}).get("queueName")
    assert run.spec.stages.curate.resources.queue_name == queue and run.spec.stages.select.resources.queue_name == queue
    pod = _named(hooks, "Pod", "infialign-test")
    assert pod["spec"]["serviceAccountName"] == "infialign-test" and pod["spec"]["containers"][0]["command"] == ["python", "/test/helm_test.py"]


def _values_with(overrides: dict[str, Any]) -> dict[str, Any]:
    values = _values()
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return values


@needs_helm
def test_helm_test_is_not_rendered_without_an_s3_store() -> None:
    assert not [o for o in _render({}) if o["kind"] == "Pod"]
    assert not [o for o in _render({"minio": {"enabled": True}, "tests": {"enabled": False}}) if o["kind"] == "Pod"]


def test_helm_test_verdict() -> None:
    verdict = _load_file("helm_test").verdict
    assert [verdict({"phase": p}) for p in ("Succeeded", "Failed", "Running", "Pending", None)] == [0, 1, None, None, None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_bucket_job_creates_missing_buckets_over_real_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    """files/create_buckets.py against moto's S3 server on 127.0.0.1 (the S3 protocol, not a fake client)."""
    from moto.server import ThreadedMotoServer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        buckets = _load_file("create_buckets")
        endpoint = f"http://127.0.0.1:{port}"
        # moto keeps one in-process store for every server it starts: forget the buckets earlier tests made
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()
        assert buckets.ensure_buckets(endpoint, ["infialign", "mlflow"], wait_seconds=10) == ["infialign", "mlflow"]
        assert buckets.ensure_buckets(endpoint, ["infialign", "mlflow", "more"], wait_seconds=10) == ["more"]  # idempotent
        names = {b["Name"] for b in buckets._client(endpoint, "us-east-1").list_buckets()["Buckets"]}
        assert names == {"infialign", "mlflow", "more"}
        monkeypatch.setenv("S3_ENDPOINT", endpoint)
        monkeypatch.setenv("BUCKETS", "")
        assert buckets.main() == 2  # nothing to do is a configuration error, said as such
    finally:
        server.stop()
    monkeypatch.setenv("BUCKETS", "infialign")
    monkeypatch.setenv("WAIT_SECONDS", "0")
    assert buckets.main() == 1  # the endpoint is gone: a clear failure, not a traceback


@needs_helm
def test_an_mlflow_that_does_not_proxy_artifacts_gives_the_operator_its_own_s3_endpoint() -> None:
    direct = {"tracking": {"defaultUri": "http://mlflow.ml:5000", "artifactsS3Endpoint": "https://s3.mlflow.example.com"}}
    operator = _named(_render(direct), "Deployment", "infialign")["spec"]["template"]["spec"]["containers"][0]
    assert _env(operator)["INFIALIGN_OPERATOR_MLFLOW_S3_ENDPOINT_URL"]["value"] == "https://s3.mlflow.example.com"
    proxied = {**direct, "mlflow": {"enabled": True}}  # the chart's MLflow proxies: clients never reach its store
    operator = _named(_render(proxied), "Deployment", "infialign")["spec"]["template"]["spec"]["containers"][0]
    assert "INFIALIGN_OPERATOR_MLFLOW_S3_ENDPOINT_URL" not in _env(operator)
