"""The CRD is generated from the models; the committed copies must not drift, and the schema must be structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from infialign.pipeline.api import crd

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


def test_manifests_crd_matches_the_models() -> None:
    committed = (ROOT / crd.CRD_FILE).read_text(encoding="utf-8")
    assert committed == crd.crd_yaml(), "manifests/crd drifted from the API models: run `make crd`"


def test_chart_crd_matches_the_models() -> None:
    committed = (ROOT / crd.CHART_CRD_FILE).read_text(encoding="utf-8")
    assert committed == crd.chart_crd_template(), "the chart's CRD drifted from the API models: run `make crd`"


def test_crd_shape() -> None:
    manifest = crd.crd_manifest()
    spec = manifest["spec"]
    assert manifest["metadata"]["name"] == "alignmentruns.infialign.dev"
    assert spec["group"] == "infialign.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "AlignmentRun" and spec["names"]["shortNames"] == ["arun"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = version["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["Phase", "Stage", "Progress", "Restarts", "Age", "Message"]
    assert columns[-1] == {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1}  # `kubectl get -o wide`
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["kopf"]["x-kubernetes-preserve-unknown-fields"] is True


def _walk(node: Any, path: str, found: list[str]) -> None:
    if not isinstance(node, dict):
        return
    for bad in ("$ref", "anyOf", "allOf", "oneOf", "definitions", "$defs"):
        if bad in node:
            found.append(f"{path}: {bad}")
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields") and not node.get("x-kubernetes-int-or-string"):
        found.append(f"{path}: no type")
    if node.get("additionalProperties") is False:
        found.append(f"{path}: additionalProperties false")
    if "properties" in node and isinstance(node.get("additionalProperties"), dict):
        found.append(f"{path}: properties and additionalProperties together")
    for key, sub in (node.get("properties") or {}).items():
        _walk(sub, f"{path}.{key}", found)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], f"{path}[]", found)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], f"{path}{{}}", found)


def test_schema_is_structural() -> None:
    found: list[str] = []
    _walk(crd.openapi_schema(), "", found)
    assert found == []


def test_every_field_is_documented() -> None:
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for key, sub in (node.get("properties") or {}).items():
            if path.startswith(".spec") or path.startswith(".status") or key in ("spec", "status"):
                if not sub.get("description") and key != "kopf":
                    missing.append(f"{path}.{key}")
            walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + "[]")

    walk(crd.openapi_schema(), "")
    assert missing == [], "fields without a description (kubectl explain shows nothing): " + ", ".join(missing)


def test_lists_are_bounded() -> None:
    unbounded: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(path)
        for key, sub in (node.get("properties") or {}).items():
            walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + "[]")

    walk(crd.openapi_schema(), "")
    assert unbounded == []


def test_cel_rules_are_present() -> None:
    schema = crd.openapi_schema()
    spec = schema["properties"]["spec"]["properties"]
    assert "has(self.s3) != has(self.local)" in [r["rule"] for r in spec["storage"]["x-kubernetes-validations"]]
    assert any("oldSelf" in r["rule"] for r in spec["model"]["x-kubernetes-validations"])
    assert "self == oldSelf" in [r["rule"] for r in spec["storage"]["x-kubernetes-validations"]]  # storage is immutable like model
    assert "has(self.storage) == has(oldSelf.storage)" in [r["rule"] for r in schema["properties"]["spec"]["x-kubernetes-validations"]]
    assert any("metadata.name.size()" in r["rule"] for r in schema["x-kubernetes-validations"])


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate_against_the_generated_schema(path: Path) -> None:
    schema = crd.to_json_schema(crd.openapi_schema())
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        jsonschema.validate(doc, schema)


def test_the_generated_schema_rejects_what_the_models_reject(make_run) -> None:
    schema = crd.to_json_schema(crd.openapi_schema())
    bad = make_run().stage("sft", phases=[{"name": "p1", "epochs": 0}]).dict()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    typo = make_run().stage("sft", pakcing="on").dict()
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(typo, schema)
