"""Apply a validated pod-template override to a stage pod template (pure: dicts in, a new dict out).

The override only adds: extended resources next to the operator's own, labels and annotations beside
its labels, volumes and mounts beside its volumes, pull secrets, a few capabilities, host networking.
Everything it may not touch (names, the operator's labels, cpu/memory/GPU, privileged mode) is refused
by `api.PodTemplateOverride` before a builder ever sees it; this module trusts that and stays small.
"""

from __future__ import annotations

import copy
from typing import Any

from infialign.pipeline.api import PodTemplateOverride

__all__ = ["apply_override"]


def apply_override(template: dict[str, Any], override: PodTemplateOverride | None, container_name: str) -> dict[str, Any]:
    """`template` is a Job's `spec.template` ({metadata, spec}); returns a changed copy."""
    if override is None:
        return template
    out = copy.deepcopy(template)
    meta, pod = out.setdefault("metadata", {}), out["spec"]
    container = next(c for c in pod["containers"] if c["name"] == container_name)
    if override.labels:
        # the operator's labels win: the model refuses them, and this keeps that true for any caller
        meta["labels"] = {**override.labels, **meta.get("labels", {})}
    if override.annotations:
        meta["annotations"] = {**meta.get("annotations", {}), **override.annotations}
    if override.extra_resources:
        # extended resources cannot be overcommitted: Kubernetes requires request = limit
        quantities = {name: str(count) for name, count in override.extra_resources.items()}
        resources = container.setdefault("resources", {})
        resources["requests"] = {**resources.get("requests", {}), **quantities}
        resources["limits"] = {**resources.get("limits", {}), **quantities}
    if override.volumes:
        pod["volumes"] = [*pod.get("volumes", []), *copy.deepcopy(override.volumes)]
    if override.volume_mounts:
        container["volumeMounts"] = [*container.get("volumeMounts", []), *(m.dump() for m in override.volume_mounts)]
    if override.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in override.image_pull_secrets]
    if override.capabilities:
        capabilities = container.setdefault("securityContext", {}).setdefault("capabilities", {})
        capabilities["add"] = list(override.capabilities)  # `drop: [ALL]` stays: only these come back
    if override.host_network:
        pod["hostNetwork"] = True
        pod["dnsPolicy"] = "ClusterFirstWithHostNet"  # without it, a host-network pod cannot resolve Services
    return out
