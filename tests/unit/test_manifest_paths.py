"""Relative local paths in a manifest resolve against the manifest's directory, not the current directory
(issue 12 item 10d): `infialign run project/run.yaml` and `cd project && infialign run run.yaml` read the
same files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from infialign.pipeline import validation
from infialign.pipeline.api import DataSource
from infialign.pipeline.runtime import sources
from infialign.pipeline.stages import curate


def _project(root: Path, make_run) -> Path:
    """A manifest in root/project/ whose source and benchmark are relative paths next to it."""
    project = root / "project"
    (project / "data").mkdir(parents=True)
    rows = [{"problem": "Solve 3x + 5 = 20 for the real number x.", "solution": "3x = 15, so x = \\boxed{5}."}]
    (project / "data" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    (project / "bench.jsonl").write_text(json.dumps({"problem": "What is 2 + 2?", "answer": "4"}) + "\n", encoding="utf-8")
    doc = make_run().set("spec.sources", [{"name": "numina", "uri": "data/train.jsonl", "preset": "numina"}]).dict()
    doc["spec"]["benchmarks"] = [{"name": "tiny", "uri": "./bench.jsonl"}]
    doc["spec"]["stages"]["sft"] = {"phases": [{"name": "phase1", "fraction": 1.0, "dataUri": "phase1.parquet"}]}
    manifest = project / "run.yaml"
    manifest.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return manifest


def test_relative_source_paths_resolve_against_the_manifest_from_another_directory(tmp_path, monkeypatch, make_run) -> None:
    manifest = _project(tmp_path, make_run)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = validation.load_manifest(Path("..") / "project" / "run.yaml")
    assert result.ok, result.problems
    spec = result.runs[0].spec
    assert spec.sources[0].uri == str(manifest.parent / "data" / "train.jsonl")
    assert spec.benchmarks[0].uri == str(manifest.parent / "bench.jsonl")
    assert spec.model.uri == "builtin://tiny"  # URIs with a scheme are left alone
    assert spec.stages.sft.phases[0].data_uri == str(manifest.parent / "phase1.parquet")  # nested lists too
    table = sources.open_dataset(spec.sources[0].uri)  # the real read, from the other directory
    rec = curate.to_records(table, spec.sources[0]).to_pylist()[0]
    assert rec["answer"] == "5"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("data/x.jsonl", "/m/data/x.jsonl"),
        ("./x.parquet", "/m/x.parquet"),
        ("../shared/x.parquet", "/shared/x.parquet"),
        ("/abs/x.parquet", "/abs/x.parquet"),
        ("file:///abs/x.parquet", "file:///abs/x.parquet"),
        ("s3://bucket/x.parquet", "s3://bucket/x.parquet"),
        ("hf://org/name?split=train", "hf://org/name?split=train"),
        ("builtin://reasoning?n=10", "builtin://reasoning?n=10"),
    ],
)
def test_only_relative_local_paths_are_anchored(uri: str, expected: str, make_run) -> None:
    run = make_run().set("spec.sources", [{"name": "s", "uri": uri}]).stage("select", poolUri=uri).run()
    anchored = validation.anchor_local_paths(run, "/m")
    assert anchored.spec.sources[0].uri == anchored.spec.stages.select.pool_uri == expected


def test_tracking_and_storage_are_not_anchored(make_run) -> None:
    run = make_run().set("spec.tracking.uri", "mlruns").run()
    anchored = validation.anchor_local_paths(run, "/m")
    assert anchored.spec.tracking.uri == "mlruns" and anchored.spec.storage == run.spec.storage
