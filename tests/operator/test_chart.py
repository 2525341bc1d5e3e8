"""The Helm chart, without a helm binary: values against values.schema.json always; and, where the
`helm-python-sdk` package (Helm v4's Go SDK as a library) is installed, lint, render a matrix of
values, and validate every rendered object against the Kubernetes OpenAPI schema (strict).

`manifests/install/infialign.yaml` (install without Helm) is the chart rendered with its defaults;
regenerate it with `INFIALIGN_UPDATE_INSTALL=1 pytest tests/operator/test_chart.py`.
"""

from __future__ import annotations

import json
import os
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
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False, f"section {section} accepts unknown keys"


@pytest.mark.parametrize(
    "bad",
    [
        {"replicaCount": 2},  # unknown top-level key
        {"operator": {"tickSecond": 5}},  # a typo in a section
        {"metrics": {"port": 0}},
        {"operator": {"watchNamespaces": ["Not_A_Namespace"]}},
        {"mlflow": {"image": {"pullPolicy": "Sometimes"}}},
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
def test_lint_strict() -> None:
    report = helm.lint(str(CHART), strict=True, kube_version="v1.30.0")
    errors = [m for m in report["messages"] if m["severity"] >= 2]
    assert not errors and not report["errors"], report


@needs_helm
@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_rendered_object_is_valid_kubernetes(case: str) -> None:
    objects = _render(MATRIX[case])
    assert objects
    for version in K8S_VERSIONS:
        for obj in objects:
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
