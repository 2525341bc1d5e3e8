"""The prefs stage through its real entrypoint (`infialign stage prefs --config`), real vLLM on CPU, n=4.

The policy is an "SFT-ish" tiny model: the built-in tiny Qwen2 overfitted for a few seconds on four
questions, two of them with two different answers. It learns the answer format (`<think>…</think>` and a
boxed number) but, this small, mostly says 5 or 8 whatever the question. The references are therefore
set against what this policy says (not arithmetic truth; the test is about the mechanics): "5" for a
question it always answers 5 (all right), "5" and "8" where its samples disagree (mixed), and "9", which
it never says (all wrong). Generation is seeded per prompt, so the outcomes are reproducible. The
challenge file also holds a duplicate prompt, a prompt from the SFT data, a benchmark question and an
unverified expert answer, which cleaning and the quality check drop before any sampling.

Scenarios, as the operator runs them: two shard pods; shard 1 finishes, shard 0 is SIGKILLed after its
first part and re-run: it resumes, finds shard 1 done, merges, verifies and writes the pairs. Then a
spec whose selection keeps nothing ends with exit 2, a message naming the setting, and no pairs file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from infialign.pipeline import generation, pairs, records
from infialign.pipeline.api import AlignmentRun
from infialign.pipeline.runtime import markers
from infialign.pipeline.runtime.config import RunIdentity, StageConfig, StorageConfig, TrackingConfig, build_stage_config

from .conftest import run_stage

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
# question -> the answers the policy is trained to give (two answers: it learns to say either)
TRAINED = {"What is 2 + 3?": ["5"], "What is 4 + 4?": ["8"], "What is 6 + 1?": ["7", "8"], "What is 9 + 2?": ["11", "12"]}


def _solution(question: str, answer: str) -> str:
    expr = question.removeprefix("What is ").removesuffix("?")
    return f"<think>\n{expr} = {answer}\n</think>\n\n\\boxed{{{answer}}}"


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model overfitted on TRAINED (plain torch; seconds on one CPU thread)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from infialign.pipeline.world import tiny_model

    base = tiny_model.ensure_tiny_model()
    tok = AutoTokenizer.from_pretrained(base)
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
    texts = [
        tok.apply_chat_template(
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}, {"role": "assistant", "content": _solution(q, a)}],
            tokenize=False,
        )
        for q, answers in TRAINED.items()
        for a in answers * (2 // len(answers))  # every question twice: one-answer ones twice, two-answer ones once each
    ]
    batch = tok(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    out = tmp_path_factory.mktemp("policy") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _record(rid: str, question: str, answer: str, domain: str, verification: str = "pass") -> dict:
    return {
        "id": rid, "source": "world", "domain": domain, "messages": [{"role": "user", "content": question}],
        "response": _solution(question, answer), "answer": answer, "verification": verification,
        "provenance": {"answer_type": "math", "answer_source": "reference"},
    }


def _write(table_rows: list[dict], path: Path) -> str:
    pq.write_table(records.to_table(table_rows), path)
    return path.as_uri()


def _inputs(tmp_path: Path) -> tuple[str, str, str]:
    challenge = [
        _record("right", "What is 2 + 3?", "5", "arith"),  # the policy always says 5: all right
        _record("wrong", "What is 4 + 4?", "9", "algebra"),  # it never says 9: all wrong
        _record("mixed-a", "What is 6 + 1?", "5", "algebra"),  # it says 5 or 8: mixed
        _record("mixed-b", "What is 9 + 2?", "8", "arith"),  # mixed
        _record("dup", "What is 6 + 1?", "5", "algebra"),  # the same prompt again: dedup
        _record("in-sft", "What is 5 + 5 + 5?", "15", "arith"),  # in the SFT data: decontaminated
        _record("in-bench", "What is 8 + 3 + 1?", "12", "arith"),  # a benchmark question: decontaminated
        _record("unchecked", "What is 1 + 1?", "2", "arith", verification="unverified"),  # quality check
    ]
    prompts = _write(challenge, tmp_path / "challenge.parquet")
    sft = _write([_record("s1", "What is 5 + 5 + 5?", "15", "arith")], tmp_path / "sft.parquet")
    bench = _write([_record("b1", "What is 8 + 3 + 1?", "12", "arith")], tmp_path / "bench.parquet")
    return prompts, sft, bench


def _config(tmp_path: Path, policy: Path, prompts: str, sft: str, bench: str, root: Path, **prefs: object) -> Path:
    spec = AlignmentRun.model_validate(
        {
            "apiVersion": "infialign.dev/v1alpha1",
            "kind": "AlignmentRun",
            "metadata": {"name": "pr", "namespace": "ns"},
            "spec": {
                "model": {"uri": policy.as_uri()},
                "benchmarks": [{"name": "bench", "uri": bench, "preset": "records", "evaluate": False}],
                "stages": {
                    **{s: {"enabled": False} for s in ("curate", "distill", "select", "sft", "dpo", "eval")},
                    "prefs": {"promptsUri": prompts, "samples": 4, "temperature": 1.0, "maxTokens": 48, "maxModelLen": 256,
                              "pairs": 5, "shards": 2, "maxPassRate": 0.75, **prefs},
                },
            },
        }
    ).spec
    storage = StorageConfig(root=root.as_uri())
    config = build_stage_config(spec, RunIdentity(namespace="ns", name="pr"), "prefs", 1, storage, TrackingConfig(enabled=False))
    # the SFT data as select would hand it over (graph: prefs' optional `sft` input)
    config = StageConfig.model_validate({**config.model_dump(), "inputs": {**config.inputs, "sft": sft}})
    path = tmp_path / f"stage-{len(list(tmp_path.glob('stage-*.json')))}.json"
    path.write_text(config.model_dump_json(), encoding="utf-8")
    return path


def _stage(config_path: Path, env: dict[str, str], log: Path) -> int:
    return run_stage("prefs", config_path, env, log, chunk_prompts=1, timeout=900)


def test_sharded_prefs_resumes_and_pairs_errors_with_expert_answers(tmp_path: Path, policy: Path) -> None:
    prompts, sft, bench = _inputs(tmp_path)
    root = tmp_path / "artifacts"
    config_path = _config(tmp_path, policy, prompts, sft, bench, root)
    config = StageConfig.model_validate_json(config_path.read_text())
    log = tmp_path / "stage.log"
    shard0, shard1 = (Path(config.output.removeprefix("file://")) / "samples" / generation.Shard(i, 2).name for i in range(2))

    assert _stage(config_path, {"INFIALIGN_SHARD_INDEX": "1", "INFIALIGN_SHARD_COUNT": "2"}, log) == 0, log.read_text()[-3000:]
    assert (shard1 / "_DONE.json").exists() and markers.read_success(config.output) is None
    code = _stage(config_path, {"INFIALIGN_SHARD_INDEX": "0", "INFIALIGN_SHARD_COUNT": "2", "INFIALIGN_TEST_KILL_AFTER_PARTS": "1"}, log)
    assert code == -9, log.read_text()[-3000:]
    assert not (shard0 / "_DONE.json").exists() and len(list(shard0.glob("part-*.parquet"))) == 1
    shard1_parts = {p.name: p.stat().st_mtime_ns for p in shard1.glob("part-*.parquet")}
    assert _stage(config_path, {"INFIALIGN_SHARD_INDEX": "0", "INFIALIGN_SHARD_COUNT": "2"}, log) == 0, log.read_text()[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in shard1.glob("part-*.parquet")} == shard1_parts  # shard 1 not redone

    # every prompt that survived cleaning has exactly n samples, none twice
    samples = [pq.read_table(p) for d in (shard0, shard1) for p in sorted(d.glob("part-*.parquet"))]
    ids = [(i, s) for t in samples for i, s in zip(t.column("id").to_pylist(), t.column("sample").to_pylist(), strict=True)]
    kept = sorted({i for i, _ in ids})
    assert len(kept) == 4 and {"mixed-b", "right", "wrong"} < set(kept) and ({"mixed-a", "dup"} & set(kept))  # one of the duplicates
    assert sorted(ids) == sorted((i, s) for i in kept for s in range(4))

    funnel = {s["step"]: s for s in json.loads((Path(config.output.removeprefix("file://")) / "funnel.json").read_text())}
    assert funnel["dedup_exact"]["dropped"] == {"exact_duplicate": 1}
    assert funnel["filter_contamination"]["dropped"] == {"contaminated": 1 + 1}
    assert funnel["chosen_quality"]["dropped"] == {"chosen_not_verified": 1}
    outcome = funnel["model_outcome"]
    counts = {o: outcome["counters"][f"prompts_{o}"] for o in ("all_right", "all_wrong", "mixed", "undecided")}
    assert sum(counts.values()) == outcome["total"] == 4
    # Which of the 5-or-8 prompts comes out mixed depends on the seeded draw (the per-prompt seeds changed
    # when Sampling gained `logprobs`); mixed classification itself is unit-tested in test_preferences.py.
    assert counts["all_right"] >= 1 and counts["all_wrong"] >= 1, counts
    selection = funnel["challenge_selection"]
    assert selection["total"] == counts["mixed"] + counts["all_wrong"] == outcome["kept"]

    table = pairs.validate_pairs(pq.read_table(Path(config.output.removeprefix("file://")) / "pairs.parquet"))
    rows = {r["id"]: r for r in table.to_pylist()}
    assert "wrong" in rows and "right" not in rows
    assert table.num_rows == selection["kept"] < 5
    # the shortfall against spec.stages.prefs.pairs is a warning: in the funnel, the log and the metrics
    assert selection["counters"]["pairs_shortfall"] == 5 - table.num_rows
    assert "spec.stages.prefs.pairs" in log.read_text()
    for r in rows.values():
        prov = dict(r["provenance"])
        assert r["chosen"] != r["rejected"] and prov["rejected_verdict"] == "fail" and prov["chosen_source"] == "expert"
        assert f"\\boxed{{{r['answer']}}}" not in r["rejected"]  # verified wrong: it does not box the reference
        assert r["prompt"] == [{"role": "user", "content": r["prompt"][0]["content"]}]
        assert 0.0 <= r["difficulty"] < 1.0 and dict(r["scores"])["pass_rate"] == r["difficulty"]
    assert rows["wrong"]["difficulty"] == 0.0
    success = markers.read_success(config.output)
    assert success is not None and success.output("pairs").rows == table.num_rows
    assert success.metrics["prompts_all_right"] == counts["all_right"] and success.metrics["pairs"] == table.num_rows
    assert success.metrics["pairs_shortfall"] == 5 - table.num_rows
    assert success.metrics["generated_tokens_per_second"] > 0  # one engine's rate over both shards' done markers
    assert success.warnings and "spec.stages.prefs.pairs" in success.warnings[0]  # → the step's status message

    # nothing to pair once mixed prompts are capped at pass rate 0 and all-wrong ones are excluded:
    # a permanent exit with the fix in the message, and no pairs file
    other = tmp_path / "other"
    empty = _config(tmp_path, policy, prompts, sft, bench, other, maxPassRate=0.0, includeAllWrong=False, shards=1)
    log2 = tmp_path / "stage2.log"
    assert _stage(empty, {}, log2) == 2, log2.read_text()[-3000:]
    text = log2.read_text()
    assert "no preference pair" in text and "includeAllWrong" in text
    out2 = Path(StageConfig.model_validate_json(empty.read_text()).output.removeprefix("file://"))
    assert not (out2 / "pairs.parquet").exists() and markers.read_success(out2.as_uri()) is None
