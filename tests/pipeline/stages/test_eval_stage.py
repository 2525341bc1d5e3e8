"""The eval stage through its real entrypoint (`infialign stage eval --config`), real vLLM on CPU, the tiny model.

One scenario, as the operator runs it: two shard pods of an Indexed Job, n=2 samples per question.
Shard 1 finishes; shard 0 (the leader) is SIGKILLed after its first part file, then re-run alone:
it resumes without duplicates or lost rows, finds shard 1 done, merges, scores and writes
`results.json` and `_SUCCESS.json` with the results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from infialign.pipeline import generation
from infialign.pipeline.api import AlignmentRun
from infialign.pipeline.runtime import markers
from infialign.pipeline.runtime.config import RunIdentity, StorageConfig, TrackingConfig, build_stage_config

from .conftest import run_stage

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

QUESTIONS = 12
SAMPLES = 2


def _spec(shards: int) -> AlignmentRun:
    return AlignmentRun.model_validate(
        {
            "apiVersion": "infialign.dev/v1alpha1",
            "kind": "AlignmentRun",
            "metadata": {"name": "ev", "namespace": "ns"},
            "spec": {
                "model": {"uri": "builtin://tiny"},
                "benchmarks": [
                    {"name": "bench", "uri": f"builtin://reasoning-bench?n={QUESTIONS}", "preset": "records", "samples": SAMPLES, "maxTokens": 48}
                ],
                "stages": {
                    **{s: {"enabled": False} for s in ("curate", "distill", "select", "sft", "prefs", "dpo")},
                    "eval": {"models": ["base"], "shards": shards, "maxModelLen": 512},
                },
            },
        }
    )


def _stage(config_path: Path, env: dict[str, str], log: Path) -> int:
    return run_stage("eval", config_path, env, log, chunk_prompts=2, timeout=600)


def test_sharded_eval_resumes_a_killed_shard_and_reports(tmp_path: Path) -> None:
    spec = _spec(shards=2).spec
    storage = StorageConfig(root=(tmp_path / "artifacts").as_uri())
    config = build_stage_config(spec, RunIdentity(namespace="ns", name="ev"), "eval", 1, storage, TrackingConfig(enabled=False))
    config_path = tmp_path / "stage.json"
    config_path.write_text(config.model_dump_json(), encoding="utf-8")
    log = tmp_path / "stage.log"
    shard_dir = Path(config.output.removeprefix("file://")) / "generations" / "base" / "bench"
    shard0, shard1 = (shard_dir / generation.Shard(i, 2).name for i in range(2))

    # shard 1's pod: generates its half and exits 0 without markers (only the leader writes them)
    assert _stage(config_path, {"INFIALIGN_SHARD_INDEX": "1", "INFIALIGN_SHARD_COUNT": "2"}, log) == 0, log.read_text()[-3000:]
    assert (shard1 / "_DONE.json").exists() and not (shard0 / "_DONE.json").exists()
    assert markers.read_success(config.output, storage) is None
    shard1_parts = {p.name: p.stat().st_mtime_ns for p in shard1.glob("part-*.parquet")}

    # shard 0's pod dies (SIGKILL) right after its first part file
    code = _stage(config_path, {"INFIALIGN_SHARD_INDEX": "0", "INFIALIGN_SHARD_COUNT": "2", "INFIALIGN_TEST_KILL_AFTER_PARTS": "1"}, log)
    assert code == -9, log.read_text()[-3000:]
    assert [p.name for p in shard0.glob("part-*.parquet")] == ["part-00000.parquet"] and not (shard0 / "_DONE.json").exists()

    # the retry of shard 0 alone: resumes, finds shard 1 done (not redone), merges and reports
    assert _stage(config_path, {"INFIALIGN_SHARD_INDEX": "0", "INFIALIGN_SHARD_COUNT": "2"}, log) == 0, log.read_text()[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in shard1.glob("part-*.parquet")} == shard1_parts
    assert len(list(shard0.glob("part-*.parquet"))) > 1

    samples = pq.read_table(config.output.removeprefix("file://") + "samples.parquet")
    keys = list(zip(samples.column("id").to_pylist(), samples.column("sample").to_pylist(), strict=True))
    assert len(keys) == len(set(keys)) == QUESTIONS * SAMPLES  # no duplicate, no lost row
    assert set(samples.column("sample").to_pylist()) == set(range(SAMPLES))
    assert set(samples.column("status").to_pylist()) <= {"pass", "fail", "error", "unverified", "truncated"}

    marker = markers.read_success(config.output, storage)
    assert marker is not None
    results = json.loads(Path(config.output.removeprefix("file://"), "results.json").read_text())["results"]
    assert results == marker.results
    whole = {(r["metric"], r.get("subset")) for r in results if r["model"] == "base" and r["benchmark"] == "bench"}
    assert {("avg@2", None), ("pass@2", None)} <= whole
    assert all(r["samples"] == SAMPLES and 0.0 <= r["value"] <= 1.0 for r in results)
    status = markers.status_results(marker.results)
    assert len(status) == len(results)
