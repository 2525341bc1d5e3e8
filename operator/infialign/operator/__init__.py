"""The AlignmentRun operator: Kopf handlers, and the Kubernetes objects they create.

Modules, each with one job: `builders` (spec → Job/Service/ConfigMap, pure), `observe` (Job and Pods →
what happened, pure), `reconciler` (observe → planner → side effects → status), `kube` (the few API
writes), `artifacts` (markers and MLflow), `handlers` (thin Kopf handlers), `metrics`, `config`, and
`main` (the `infialign operator` entrypoint). Import modules, not names (house rule 2); the names
below are the curated public surface (`observe.observe` stays in its module: a package attribute of
the same name would shadow the module).
"""

from infialign.operator.builders import build_children, build_configmap, build_job, build_service
from infialign.operator.config import OperatorConfig
from infialign.operator.handlers import Operator, make_operator, make_registry

__all__ = [
    "build_children",
    "build_configmap",
    "build_job",
    "build_service",
    "make_registry",
    "make_operator",
    "Operator",
    "OperatorConfig",
]
