"""Admission of spec edits, decided in the operator (pure: no I/O, no clock).

The CRD's schema and CEL rules hold what the API server can check alone (bounds, one-ofs, `spec.model`
and `spec.storage` immutable). Everything else `infialign validate` checks (inputs no stage produces,
Job names over 63 characters, storage a pod cannot share, …) can only be checked here, after the API
server stored the edit: there is no validating webhook (it would need a TLS endpoint, a
ValidatingWebhookConfiguration and cert rotation in the chart; out of scope for now).

So an edit is judged when it arrives:

- the first spec of a run is invalid → the run fails with `Accepted=False` (it never ran; a fixed spec
  starts it, see the reconciler);
- a later edit is invalid → it is *rejected*: the run goes on with the last accepted spec, nothing
  running is stopped, and `SpecRejected=True` plus a Warning Event name the field and the fix;
- a later valid edit is accepted, and `SpecRejected` turns False.

The last accepted spec survives an operator restart in the annotation `ACCEPTED_SPEC_ANNOTATION`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from infialign.pipeline import planner, validation
from infialign.pipeline.api import API_VERSION, GROUP, KIND, AlignmentRun, AlignmentRunSpec, AlignmentRunStatus, ConditionType, Reason, truncate

__all__ = [
    "ACCEPTED_SPEC_ANNOTATION",
    "Verdict",
    "check",
    "judge",
    "immutability_problems",
    "spec_text",
    "accepted_from_annotation",
    "message",
    "record",
]

ACCEPTED_SPEC_ANNOTATION: Final = f"{GROUP}/accepted-spec"
# Fields the run's identity rests on: the API server holds them with CEL (`self == oldSelf`); the operator
# checks them again, for API servers without CEL and for edits made before the CRD carried the rule.
_IMMUTABLE: Final = (("model", "spec.model"), ("storage", "spec.storage"))


@dataclass(frozen=True)
class Verdict:
    """What the operator runs with after judging the newest spec."""

    spec: AlignmentRunSpec | None  # the spec to run with; None: the run was never accepted and this spec is invalid
    problems: list[validation.Problem] = field(default_factory=list)  # errors of the newest spec
    rejected_edit: bool = False  # True: the newest spec is rejected and `spec` is the last accepted one


def spec_text(raw_spec: Any) -> str:
    """The canonical text of a spec as written (what the annotation stores and what is compared)."""
    return json.dumps(raw_spec, sort_keys=True, separators=(",", ":"))


def immutability_problems(accepted: AlignmentRunSpec, new: AlignmentRunSpec) -> list[validation.Problem]:
    problems = []
    for name, path in _IMMUTABLE:
        if getattr(accepted, name) != getattr(new, name):
            problems.append(
                validation.Problem(
                    path,
                    "is immutable: artifacts and checkpoints of this run belong to the one it was created with; "
                    "restore it, or create a new AlignmentRun",
                )
            )
    return problems


def check(body: Mapping[str, Any]) -> tuple[AlignmentRunSpec | None, list[validation.Problem]]:
    """The newest spec of `body`, checked by every `infialign validate` rule (schema, whole-spec rules, Job-name
    lengths) and the cluster-only ones (storage a pod cannot share is a spec error here, not on a laptop)."""
    meta = body.get("metadata") or {}
    doc = {
        "apiVersion": body.get("apiVersion") or API_VERSION,
        "kind": body.get("kind") or KIND,
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "generation") if meta.get(k) is not None},
        "spec": body.get("spec"),
    }
    try:
        spec = AlignmentRun.model_validate(doc).spec
    except ValueError:
        # the slow path only for bad specs: the same field-path messages as `infialign validate`
        result = validation.load_manifest_text(json.dumps(doc))
        return None, [p for p in result.problems if p.severity == "error"]
    problems = validation.semantic_problems(spec) + validation.name_problems(doc["metadata"]["name"], spec)
    return spec, problems + validation.cluster_problems(spec)


def judge(new: AlignmentRunSpec | None, problems: list[validation.Problem], accepted: AlignmentRunSpec | None) -> Verdict:
    """`new` and `problems`: the newest spec parsed and checked (None if it does not parse). `accepted`: the last
    spec the run was accepted with, or None."""
    errors = [p for p in problems if p.severity == "error"]
    if new is not None and accepted is not None:
        errors += immutability_problems(accepted, new)
    if new is not None and not errors:
        return Verdict(spec=new)
    if accepted is not None:
        return Verdict(spec=accepted, problems=errors or [validation.Problem("spec", "cannot be read")], rejected_edit=True)
    return Verdict(spec=None, problems=errors or [validation.Problem("spec", "cannot be read")])


def accepted_from_annotation(annotations: dict[str, str] | None) -> AlignmentRunSpec | None:
    """The last accepted spec, as the operator stored it on the run; None when absent or unreadable."""
    text = (annotations or {}).get(ACCEPTED_SPEC_ANNOTATION)
    if not text:
        return None
    try:
        return AlignmentRunSpec.model_validate(json.loads(text))
    except ValueError:
        return None


def message(verdict: Verdict, generation: int | None) -> str:
    found = "; ".join(f"{p.path}: {p.message}" for p in verdict.problems)
    return truncate(f"the edit of generation {generation} is rejected and the run goes on with the last accepted spec: {found}") or ""


def record(status: AlignmentRunStatus, verdict: Verdict, generation: int | None, now: dt.datetime) -> AlignmentRunStatus:
    """`SpecRejected` as the verdict says; a condition that was never True is not created."""
    if verdict.rejected_edit:
        status = planner.set_condition(status, ConditionType.SPEC_REJECTED, True, Reason.INVALID_SPEC, message(verdict, generation), now)
        conditions = [
            c.model_copy(update={"observed_generation": generation}) if c.type == ConditionType.SPEC_REJECTED else c for c in status.conditions
        ]
        return status.model_copy(update={"conditions": conditions})
    if any(c.type == ConditionType.SPEC_REJECTED and c.status == "True" for c in status.conditions):
        return planner.set_condition(status, ConditionType.SPEC_REJECTED, False, Reason.EDIT_ACCEPTED, None, now)
    return status
