"""Generate the AlignmentRun CustomResourceDefinition from the pydantic models.

The models are the single source of truth; `manifests/crd/` and the chart hold this function's output,
and a test fails when they drift. The JSON Schema pydantic emits is turned into a *structural*
OpenAPI v3 schema: references inlined, `Optional` as `nullable`, no `additionalProperties: false`
(the API server prunes unknown fields instead), bounds kept, defaults moved into the descriptions
(the models apply them, so the API server must not persist a second copy).
"""

from __future__ import annotations

from typing import Any

import yaml

from infialign.pipeline.api.resource import GROUP, KIND, MAX_NAME_LENGTH, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from infialign.pipeline.api.spec import AlignmentRunSpec
from infialign.pipeline.api.status import AlignmentRunStatus

__all__ = ["crd_manifest", "crd_yaml", "chart_crd_template", "openapi_schema", "to_structural", "to_json_schema", "CRD_FILE", "CHART_CRD_FILE"]

CRD_FILE = "manifests/crd/alignmentruns.infialign.dev.yaml"
CHART_CRD_FILE = "charts/infialign/templates/crds/alignmentruns.infialign.dev.yaml"

_DROP_KEYS = {"title", "default", "examples", "propertyNames", "discriminator"}

# Cross-field rules the API server must hold, attached to the schema node at the given path.
_VALIDATIONS: dict[tuple[str, ...], list[dict[str, str]]] = {
    ("spec",): [
        # `storage` is optional (the models default it): a transition rule on it alone misses adding or removing it
        {
            "rule": "has(self.storage) == has(oldSelf.storage)",
            "message": "spec.storage is immutable (the run's artifacts live there); create a new AlignmentRun",
        }
    ],
    ("spec", "storage"): [
        {"rule": "has(self.s3) != has(self.local)", "message": "set exactly one of spec.storage.s3 and spec.storage.local"},
        {"rule": "self == oldSelf", "message": "spec.storage is immutable (the run's artifacts live there); create a new AlignmentRun"},
    ],
    ("spec", "stages", "sft", "phases"): [
        {
            "rule": "self.all(p, self.filter(q, q.name == p.name).size() == 1)",
            "message": "spec.stages.sft.phases: phase names must be unique",
        }
    ],
    ("spec", "model"): [{"rule": "self == oldSelf", "message": "spec.model is immutable; create a new AlignmentRun"}],
}


def to_structural(node: Any, defs: dict[str, Any]) -> Any:
    """Turn one pydantic JSON-Schema node into a structural OpenAPI v3 node."""
    if isinstance(node, list):
        return [to_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        merged = {**target, **node}  # field-level description and extensions win over the type's own
        return to_structural(merged, defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = node.pop("allOf")[0]
        return to_structural({**to_structural(inner, defs), **node}, defs)
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o != {"type": "null"}]
        if len(options) != 1:
            raise ValueError(f"unions other than Optional cannot be expressed in a structural schema: {options}")
        inner = to_structural(options[0], defs)
        return to_structural({**inner, **node, "nullable": True}, defs)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    description = node.get("description")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "exclusiveMinimum" and not isinstance(value, bool):  # already converted when a node is revisited
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = to_structural(value, defs)
            # `false` is implied by pruning and `true` by preserve-unknown-fields
        elif key == "properties":
            out[key] = {name: to_structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = to_structural(value, defs)
        elif key == "enum" and "type" not in node:
            out[key] = value
            out["type"] = "integer" if all(isinstance(v, int) for v in value) else "string"
        else:
            out[key] = value
    if description is not None:
        out["description"] = " ".join(description.split())
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("type", "object")
    return out


def _attach_validations(schema: dict[str, Any]) -> None:
    for path, rules in _VALIDATIONS.items():
        if not rules:
            continue
        node = schema
        for key in path:
            node = node["properties"][key]
        node.setdefault("x-kubernetes-validations", [])
        for rule in rules:
            if rule not in node["x-kubernetes-validations"]:
                node["x-kubernetes-validations"].append(rule)


def _model_schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return to_structural(raw, defs)


def openapi_schema() -> dict[str, Any]:
    """The `openAPIV3Schema` of the AlignmentRun CRD."""
    spec = _model_schema(AlignmentRunSpec)
    status = _model_schema(AlignmentRunStatus)
    # Kopf keeps its own bookkeeping under status.kopf; a typed status would prune it (kopf docs, configuration).
    status["properties"]["kopf"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema: dict[str, Any] = {
        "type": "object",
        "description": "An InfiAlign alignment run: curate → distill → select → curriculum SFT → prefs → DPO → eval.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
                "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters (child Job names append to it)",
            }
        ],
    }
    _attach_validations(schema)
    return schema


def crd_manifest() -> dict[str, Any]:
    """The full `apiextensions.k8s.io/v1` CustomResourceDefinition."""
    columns = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Stage", "type": "string", "jsonPath": ".status.currentStage"},
        {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
        {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        # `kubectl get arun -o wide`: what the run waits for, why it failed, or that it runs
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "infialign", "app.kubernetes.io/component": "crd"},
            # Helm must not delete the CRD (and with it every AlignmentRun) on uninstall.
            "annotations": {"helm.sh/resource-policy": "keep"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["infialign", "ml"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def crd_yaml() -> str:
    header = "# Generated by `infialign crd` from infialign.pipeline.api. Do not edit; run `make crd`.\n"
    return header + yaml.dump(crd_manifest(), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def chart_crd_template() -> str:
    """The chart's copy: the same CRD, installed and upgraded by Helm unless `crds.install` is false."""
    return "{{- if .Values.crds.install }}\n" + crd_yaml() + "{{- end }}\n"


def to_json_schema(node: Any) -> Any:
    """The CRD's OpenAPI v3.0 schema as JSON Schema, for `jsonschema` checks of manifests and status patches.

    OpenAPI 3.0 spells `nullable: true` and boolean `exclusiveMinimum`; JSON Schema wants a type list and a
    numeric bound. `x-kubernetes-*` keys are dropped; `additionalProperties: false` is added to objects
    with properties, because the API server prunes unknown fields that a test must instead report.
    """
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "exclusiveMinimum", "exclusiveMaximum"):
            continue
        if key == "properties":
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = to_json_schema(value)
        else:
            out[key] = value
    if node.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("exclusiveMaximum") is True:
        out["exclusiveMaximum"] = out.pop("maximum")
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in out and not node.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out
