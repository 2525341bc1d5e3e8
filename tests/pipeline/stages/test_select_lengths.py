"""select's SFT length estimate counts what SFT trains on: the rendered conversation, with the student's tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infialign.pipeline import records
from infialign.pipeline.curation import _arrow, selection
from infialign.pipeline.training import chat

COT = (
    "<think>\nLet me set x = a + b. Then x^2 = a^2 + 2ab + b^2 = 25 + 2*6 = 37.\nWait, re-check: a^2 + b^2 = 25 and ab = 6, "
    "so (a + b)^2 = 25 + 12 = 37. Hmm, and (a - b)^2 = 25 - 12 = 13. Yes, x = sqrt(37).\n</think>\n\nThe answer is \\boxed{\\sqrt{37}}."
)
PROMPTS = [
    [{"role": "user", "content": "If a^2 + b^2 = 25 and ab = 6 for positive reals a, b, find a + b."}],
    [{"role": "system", "content": "You are a careful olympiad coach."}, {"role": "user", "content": "Given α + β = π/2, find sin²α + sin²β."}],
    [{"role": "user", "content": "def f(n):\n    return sum(i * i for i in range(n))\n\nWhat does f(4) return?"}],
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from infialign.pipeline.world import tiny_model

    cache = Path(os.environ["INFIALIGN_CACHE"]) / "models" if os.environ.get("INFIALIGN_CACHE") else tmp_path_factory.mktemp("cache")
    return tiny_model.ensure_tiny_model(cache)


def test_the_estimate_matches_the_tokens_sft_trains_on(tiny: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    recs = [{"id": f"r{i}", "source": "t", "messages": m, "response": COT} for i, m in enumerate(PROMPTS)]
    table = records.to_table(recs)
    cfg = selection.SelectionConfig(target_size=3, max_length=4096, tokenizer=str(tiny / "tokenizer.json"))
    scored, _ = selection.score_sft_tokens(table, cfg)
    estimate = _arrow.get_score(scored, "sft_tokens")
    real = [len(chat.tokenise_conversation(tokenizer, chat.conversation(r)).input_ids) for r in recs]
    # Token merges across a template boundary can shift a count by one; nothing more.
    assert all(abs(e - r) <= 1 for e, r in zip(estimate.tolist(), real, strict=True)), (estimate.tolist(), real)


def test_the_select_stage_reports_a_shortfall_in_its_funnel_status_and_success_marker(tmp_path: Path, tiny: Path) -> None:
    import json

    import pyarrow.parquet as pq

    from infialign.pipeline.api import AlignmentRun
    from infialign.pipeline.runtime.config import RunIdentity, StorageConfig, TrackingConfig, build_stage_config

    from .conftest import run_stage

    long_prompt = "Let a, b, c be positive reals with abc = 1. " + "Show every step of the argument carefully. " * 40
    rows = [{"id": f"long{i}", "source": "t", "domain": "algebra", "messages": [{"role": "user", "content": f"{long_prompt} ({i})"}],
             "response": COT, "answer": "x", "verification": "pass"} for i in range(4)]
    rows += [{"id": f"fit{i}", "source": "t", "domain": "algebra", "messages": PROMPTS[0], "response": COT + f" ({i})",
              "answer": "x", "verification": "pass"} for i in range(6)]
    pool = tmp_path / "pool.parquet"
    pq.write_table(records.to_table(rows), pool)
    spec = AlignmentRun.model_validate({
        "apiVersion": "infialign.dev/v1alpha1", "kind": "AlignmentRun", "metadata": {"name": "sel", "namespace": "ns"},
        "spec": {
            "model": {"uri": tiny.as_uri()},
            "stages": {
                **{s: {"enabled": False} for s in ("curate", "distill", "prefs", "dpo", "eval")},
                "select": {"poolUri": pool.as_uri(), "targetSize": 8, "challengeSize": 0, "verification": {"enabled": False}},
                "sft": {"phases": [{"name": "p1", "fraction": 0.5, "maxLength": 300}, {"name": "p2", "maxLength": 300}]},
            },
        },
    }).spec
    config = build_stage_config(spec, RunIdentity(namespace="ns", name="sel"), "select", 1, StorageConfig(root=(tmp_path / "out").as_uri()),
                                TrackingConfig(enabled=False))
    path = tmp_path / "stage.json"
    path.write_text(config.model_dump_json(), encoding="utf-8")
    log = tmp_path / "log.txt"
    assert run_stage("select", path, {}, log, chunk_prompts=1, timeout=600) == 0, log.read_text()[-3000:]
    out = Path(config.output.removeprefix("file://"))
    assert pq.read_table(out / "sft-p2.parquet").column("id").to_pylist() == [f"fit{i}" for i in range(6)]
    funnel = {s["step"]: s for s in json.loads((out / "funnel.json").read_text())}
    assert funnel["select_sft"]["dropped"]["over_max_length"] == 4
    assert (funnel["select_sft"]["counters"]["requested"], funnel["select_sft"]["counters"]["shortfall"]) == (8, 2)
    warnings = json.loads((out / "_SUCCESS.json").read_text())["warnings"]
    assert warnings[0].startswith("targetSize asks for 8 rows but only 6 are eligible (4 over_max_length)")
    assert "maxLength 300" in warnings[1]
