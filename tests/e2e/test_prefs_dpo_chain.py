"""The second half of the recipe end to end on the local executor: select → sft → prefs → dpo → eval.

A tiny budget on the built-in world and the tiny model: one short SFT phase, the SFT model samples the
challenge prompts with real vLLM (n=4), every sample is verified, pairs are made from its verified errors,
DPO trains on those pairs, and eval compares base, SFT and DPO. This is the test that proves the chain
works: each stage reads exactly what the previous one wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from infialign.pipeline import pairs


def _manifest() -> dict:
    return {
        "apiVersion": "infialign.dev/v1alpha1",
        "kind": "AlignmentRun",
        "metadata": {"name": "chain"},
        "spec": {
            "model": {"uri": "builtin://tiny"},
            "sources": [{"name": "reasoning", "uri": "builtin://reasoning?n=400&seed=0", "preset": "records"}],
            "benchmarks": [{"name": "bench", "uri": "builtin://reasoning-bench?n=16", "preset": "records", "samples": 1, "maxTokens": 96}],
            "stages": {
                "curate": {"embeddings": {"model": "hashed", "clusters": 4}},
                "distill": {"enabled": False},
                "select": {"targetFraction": 0.5, "challengeSize": 24},
                "sft": {
                    "phases": [
                        {"name": "phase1", "fraction": 1.0, "epochs": 1, "learningRate": 0.003, "minLearningRate": 0.0003,
                         "globalBatchSize": 4, "microBatchSize": 4, "maxLength": 512}
                    ],
                },
                "prefs": {"samples": 4, "temperature": 1.0, "maxTokens": 96, "maxModelLen": 512, "pairs": 24, "shards": 2,
                          "resources": {"gpusPerNode": 1}},
                "dpo": {"epochs": 1, "globalBatchSize": 4, "microBatchSize": 4, "learningRate": 0.0001, "maxLength": 512,
                        "resources": {"gpusPerNode": 1}},
                "eval": {"maxModelLen": 512},
            },
            "storage": {"local": {"path": "artifacts"}},
        },
    }


def test_select_sft_prefs_dpo_eval_chain(tmp_path: Path) -> None:
    manifest, workdir = tmp_path / "chain.yaml", tmp_path / "work"
    manifest.write_text(yaml.safe_dump(_manifest()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INFIALIGN_HEARTBEAT_SECONDS": "1", "COLUMNS": "200"}
    run = subprocess.run([sys.executable, "-m", "infialign.pipeline.cli", "run", str(manifest), "--workdir", str(workdir)],
                         capture_output=True, text=True, timeout=3000, env=env)
    assert run.returncode == 0, run.stderr[-5000:]

    root = workdir / "artifacts" / "default" / "chain"
    made = pairs.validate_pairs(pq.read_table(root / "prefs" / "pairs.parquet"))
    assert made.num_rows >= 1
    rows = made.to_pylist()
    assert all(r["chosen"] != r["rejected"] for r in rows)
    assert all(dict(r["provenance"])["rejected_verdict"] == "fail" for r in rows)
    assert all(dict(r["provenance"])["pair_model"].endswith("/sft-phase1/model/") or "sft-phase1" in dict(r["provenance"])["pair_model"] for r in rows)

    funnel = json.loads((root / "prefs" / "funnel.json").read_text())
    steps = {s["step"]: s for s in funnel}
    outcome = steps["model_outcome"]
    counted = sum(outcome["counters"][f"prompts_{o}"] for o in ("all_right", "all_wrong", "mixed", "undecided"))
    assert counted == outcome["total"] == steps["chosen_quality"]["kept"]
    assert steps["challenge_selection"]["kept"] == made.num_rows

    success = json.loads((root / "dpo" / "_SUCCESS.json").read_text())
    assert any(o["name"] == "model" for o in success["outputs"])
    results = json.loads((root / "eval" / "results.json").read_text())["results"]
    assert {r["model"] for r in results} == {"base", "sft-phase1", "dpo"}
    for r in results:
        if "subset" not in r or r.get("subset") is None:
            print(r)  # the figures the report quotes
