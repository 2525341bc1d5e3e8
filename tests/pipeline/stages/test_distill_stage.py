"""The distill stage through its real entrypoint (`infialign stage distill --config`), real vLLM on CPU.

The teacher is `builtin://tiny-teacher` (built once per cache). A probe draws the teacher's round-0 samples
exactly as the stage will (same ids, seeds and sampling) and keeps prompts where both samples agree; the pool
then holds records whose fate only verification can decide:

* `r0-ref`, `r1-ref`: no response, a real reference equal to the teacher's answer → accepted by `reference`;
* `r2-selfwrong`: a wrong response whose only reference is its own `\\boxed{}` → never passes by itself,
  accepted only by `majority_vote`, with the teacher's answer as the new reference;
* `r3-selfright`: a self-referenced answer the teacher agrees with → `teacher_agreement`;
* `r4-imp`: an impossible reference → no sample passes in any round; the record stays unverified;
* `r5-done`: an already verified response → not sent to the teacher.

Two shard pods (n=2 samples, near-greedy: vLLM allows n > 1 only with a temperature above 0): shard 1 finishes; shard 0 is SIGKILLed after its first part file and
re-run alone: it resumes without duplicates, does not redo shard 1, merges and writes the pool.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infialign.pipeline import generation, records
from infialign.pipeline.api import AlignmentRun, DistillStage
from infialign.pipeline.curation import answers
from infialign.pipeline.runtime import markers
from infialign.pipeline.runtime.config import RunIdentity, StorageConfig, TrackingConfig, build_stage_config
from infialign.pipeline.stages import distill
from infialign.pipeline.world import reasoning, tiny_model

from .conftest import run_stage

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
MAX_TOKENS = 320
IMPOSSIBLE = "-987654321"


ROLES = ["r0-ref", "r1-ref", "r2-selfwrong", "r3-selfright", "r4-imp", "r5-done"]
SETTINGS = {"samples": 2, "temperature": 0.05, "maxTokens": MAX_TOKENS, "maxRetries": 1, "maxModelLen": 512, "shards": 2, "minVotes": 2, "keep": "best"}


def _probe(teacher: Path, world: list[dict], out: Path) -> list[dict[str, str | None]]:
    """The teacher's round-0 answers, exactly as the stage will draw them: same ids (the seed derives from the
    id), same sampling, same system prompt. Candidate k puts world record k + j under role j's id."""
    sampling = distill.round_sampling(DistillStage.model_validate(SETTINGS), 0)
    found: list[dict[str, str | None]] = []
    with generation.open_engine(teacher, generation.EngineOptions(max_model_len=512)) as engine:
        for k in range(0, len(world) - len(ROLES), len(ROLES)):
            batch = world[k : k + len(ROLES)]
            prompts = pa.table({"id": ROLES, "messages": [r["messages"] for r in batch]})
            table = generation.generate(engine, prompts, sampling, out=(out / str(k)).as_uri(), storage=None, system_prompt=SYSTEM)
            agreed: dict[str, str | None] = {}
            for role in ROLES:
                got = {answers.last_boxed(answers.after_think(r["text"])) for r in table.to_pylist() if r["id"] == role and r["finish_reason"] == "stop"}
                agreed[role] = got.pop() if len(got) == 1 and None not in got else None  # both samples, one answer
            found.append({"offset": str(k), **agreed})
            if all(any(f[role] and not answers.answers_equal(f[role], IMPOSSIBLE) for f in found) for role in ROLES):
                break
    return found


def _pool(tmp_path: Path, teacher: Path) -> tuple[Path, dict[str, str]]:
    world = records.to_records(reasoning.generate(48, seed=4242, mix=reasoning.PlantMix().scaled(0.0)).table)
    probes = _probe(teacher, world, tmp_path / "probe")
    pool, expected = [], {}
    for j, name in enumerate(ROLES):
        pick = next(((int(p["offset"]), p[name]) for p in probes if p[name] and not answers.answers_equal(p[name], IMPOSSIBLE)), None)
        assert pick is not None, f"no probe gave two agreeing boxed answers for {name}"
        row, g = world[pick[0] + j], pick[1]
        new = {**row, "id": name, "response": None, "answer": g, "verification": "unknown", "provenance": {"answer_source": "column"}}
        if name == "r2-selfwrong":
            new.update(response="<think>guess</think>\nThe answer is \\boxed{-77777}.", answer="-77777", provenance={"answer_source": "response"})
        elif name == "r3-selfright":
            new.update(response=f"<think>guess</think>\nThe answer is \\boxed{{{g}}}.", provenance={"answer_source": "response"})
        elif name == "r4-imp":
            new["answer"] = IMPOSSIBLE
        elif name == "r5-done":
            new.update(response=f"<think>known</think>\nThe answer is \\boxed{{{g}}}.")
        pool.append(new)
        expected[name] = g
    path = tmp_path / "pool.parquet"
    pq.write_table(records.to_table(pool), path)
    return path, expected


def _spec(pool: Path) -> AlignmentRun:
    return AlignmentRun.model_validate(
        {
            "apiVersion": "infialign.dev/v1alpha1",
            "kind": "AlignmentRun",
            "metadata": {"name": "di", "namespace": "ns"},
            "spec": {
                "model": {"uri": "builtin://tiny"},
                "teacher": {"uri": "builtin://tiny-teacher"},
                "stages": {
                    **{s: {"enabled": False} for s in ("curate", "select", "sft", "prefs", "dpo", "eval")},
                    "distill": {**SETTINGS, "poolUri": pool.as_uri()},
                },
            },
        }
    )


def _stage(config_path: Path, env: dict[str, str], log: Path) -> int:
    return run_stage("distill", config_path, env, log, chunk_prompts=1, timeout=900)


def test_distill_keeps_what_verification_accepts_and_resumes_a_killed_shard(tmp_path: Path) -> None:
    teacher = Path(tiny_model.resolve_model_uri("builtin://tiny-teacher"))
    pool_path, expected = _pool(tmp_path, teacher)
    spec = _spec(pool_path).spec
    storage = StorageConfig(root=(tmp_path / "artifacts").as_uri())
    config = build_stage_config(spec, RunIdentity(namespace="ns", name="di"), "distill", 1, storage, TrackingConfig(enabled=False))
    config_path = tmp_path / "stage.json"
    config_path.write_text(config.model_dump_json(), encoding="utf-8")
    log = tmp_path / "stage.log"
    out = Path(config.output.removeprefix("file://"))
    shard0, shard1 = (generation.Shard(i, 2).name for i in range(2))

    # shard 1's pod: its records through every round, then its result; no markers (only the leader writes them)
    assert _stage(config_path, {"INFIALIGN_SHARD_INDEX": "1", "INFIALIGN_SHARD_COUNT": "2"}, log) == 0, log.read_text()[-3000:]
    assert (out / "shards" / shard1 / "result.json").exists() and not (out / "shards" / shard0).exists()
    assert markers.read_success(config.output, storage) is None
    shard1_files = {p: p.stat().st_mtime_ns for p in (out / "shards" / shard1).iterdir()} | {
        p: p.stat().st_mtime_ns for p in (out / "generations" / shard1).rglob("*.parquet")
    }

    # shard 0's pod dies (SIGKILL) right after its first part file of round 0
    code = _stage(config_path, {"INFIALIGN_SHARD_INDEX": "0", "INFIALIGN_SHARD_COUNT": "2", "INFIALIGN_TEST_KILL_AFTER_PARTS": "1"}, log)
    assert code == -9, log.read_text()[-3000:]
    round0 = out / "generations" / shard0 / "round-00"
    assert [p.name for p in round0.glob("part-*.parquet")] == ["part-00000.parquet"] and not (round0 / "_DONE.json").exists()

    # the retry of shard 0 alone: resumes round 0, runs round 1, finds shard 1 done (not redone), merges
    assert _stage(config_path, {"INFIALIGN_SHARD_INDEX": "0", "INFIALIGN_SHARD_COUNT": "2"}, log) == 0, log.read_text()[-3000:]
    assert {p: p.stat().st_mtime_ns for p in shard1_files} == shard1_files
    gens = pq.read_table(round0).select(["id", "sample"]).to_pylist()
    assert len(gens) == len({(g["id"], g["sample"]) for g in gens}) == 3 * 2  # shard 0 has 3 open records × n=2, no duplicate

    pool = {r["id"]: r for r in records.to_records(pq.read_table(out / "pool.parquet"))}
    assert sorted(pool) == sorted(expected)  # every record once, no duplicate, none lost
    for name in ("r0-ref", "r1-ref"):
        assert pool[name]["verification"] == "pass" and pool[name]["provenance"]["reference_source"] == "reference"
        assert answers.answers_equal(answers.last_boxed(answers.after_think(pool[name]["response"])), expected[name])
        assert pool[name]["provenance"]["teacher"] == "builtin://tiny-teacher" and pool[name]["provenance"]["distill_round"] in ("0", "1")
    wrong = pool["r2-selfwrong"]
    assert wrong["provenance"]["reference_source"] == "majority_vote" and wrong["answer"] != "-77777"
    assert answers.answers_equal(wrong["answer"], expected["r2-selfwrong"]) and "-77777" not in wrong["response"]
    assert pool["r3-selfright"]["provenance"]["reference_source"] == "teacher_agreement"
    imp = pool["r4-imp"]
    assert imp["verification"] != "pass" and imp["response"] is None and imp["provenance"]["distill_result"] == "not_verified"
    assert pool["r5-done"]["verification"] == "pass" and "distill_reason" not in pool["r5-done"]["provenance"]
    assert (out / "generations" / shard0 / "round-01").exists()  # r4-imp was retried

    marker = markers.read_success(config.output, storage)
    assert marker is not None
    funnel = json.loads((out / "funnel.json").read_text())
    assert "teacher_round_1" in json.dumps(funnel)
    assert marker.metrics["records_to_distill"] == 5 and marker.metrics["records_distilled"] == 4
    assert marker.metrics["verified_yield"] == pytest.approx(0.8)
    assert marker.metrics["generated_tokens_per_second"] > 0  # Σ tokens / Σ seconds of the rounds' done markers
