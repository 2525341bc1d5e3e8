"""Specs for the estimate tests: an example manifest, optionally edited, validated as `infialign validate` does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from infialign.pipeline import validation
from infialign.pipeline.api import AlignmentRunSpec

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_7B = ROOT / "manifests/examples/qwen-7b-infialign.yaml"
QUICKSTART = ROOT / "manifests/examples/quickstart.yaml"


def example_spec(path: Path, edit: Callable[[dict[str, Any]], Any] | None = None) -> AlignmentRunSpec:
    doc = yaml.safe_load(path.read_text())
    if edit is not None:
        edit(doc["spec"])
    result = validation.load_manifest_text(yaml.safe_dump(doc))
    assert result.ok, result.problems
    return result.runs[0].spec
