"""Shared fixtures. `make_run()` builds AlignmentRun manifests fluently (house rule 15)."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

MINIMAL: dict[str, Any] = {
    "apiVersion": "infialign.dev/v1alpha1",
    "kind": "AlignmentRun",
    "metadata": {"name": "r1", "namespace": "ns1"},
    "spec": {
        "model": {"uri": "builtin://tiny"},
        "sources": [{"name": "reasoning", "uri": "builtin://reasoning?n=200", "preset": "records"}],
        # No benchmarks, so decontamination is off: on, it would only raise `infialign validate`'s "nothing to check" warning.
        "stages": {
            "curate": {"decontamination": {"enabled": False}},
            "distill": {"enabled": False}, "prefs": {"enabled": False}, "dpo": {"enabled": False}, "eval": {"enabled": False},
        },
    },
}


class RunBuilder:
    """`make_run().disable("sft").stage("select", targetSize=10).dict()`; `.spec()` gives the pydantic spec."""

    def __init__(self) -> None:
        self.doc = copy.deepcopy(MINIMAL)

    def name(self, name: str) -> RunBuilder:
        self.doc["metadata"]["name"] = name
        return self

    def set(self, path: str, value: Any) -> RunBuilder:
        """Set a dotted camelCase path under the document, creating mappings on the way."""
        node = self.doc
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        return self

    def stage(self, stage: str, **settings: Any) -> RunBuilder:
        self.doc["spec"]["stages"].setdefault(stage, {}).update(settings)
        return self

    def enable(self, *stages: str) -> RunBuilder:
        for s in stages:
            self.stage(s, enabled=True)
        return self

    def disable(self, *stages: str) -> RunBuilder:
        for s in stages:
            self.stage(s, enabled=False)
        return self

    def policy(self, **policy: Any) -> RunBuilder:
        self.doc["spec"].setdefault("failurePolicy", {}).update(policy)
        return self

    def dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.doc)

    def run(self):  # noqa: ANN201
        from infialign.pipeline.api import AlignmentRun

        return AlignmentRun.model_validate(self.dict())

    def spec(self):  # noqa: ANN201
        return self.run().spec


@pytest.fixture
def make_run():
    return RunBuilder
