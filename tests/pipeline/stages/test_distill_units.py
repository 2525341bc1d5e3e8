"""The distill stage's glue without vLLM: which records go to the teacher, per-round sampling, rewritten rows, the funnel."""

from __future__ import annotations

from concurrent.futures import Future

import pyarrow as pa
import pytest

from infialign.pipeline import generation, records, rejection, verifiers
from infialign.pipeline.api import DistillStage
from infialign.pipeline.generation import store
from infialign.pipeline.stages import distill


def _row(rid: str, response: str | None, answer: str | None, source: str = "column") -> dict:
    return {
        "id": rid, "source": "s", "domain": "algebra", "messages": [{"role": "user", "content": f"q {rid}"}], "response": response,
        "answer": answer, "verification": "unknown", "response_tokens": None, "cluster": None, "scores": {},
        "provenance": {"answer_source": source},
    }


def test_open_work_names_why_each_record_goes_to_the_teacher() -> None:
    rows = [_row("ok", "\\boxed{4}", "4"), _row("none", None, "4"), _row("self", "\\boxed{5}", "5", "response"), _row("bad", "\\boxed{3}", "4")]
    work = distill.open_work(rows, ["pass", None, None, "fail"], regenerate=False)
    assert work == {"none": "missing_response", "self": "unverified_reference", "bad": "verification_fail"}
    assert set(distill.open_work(rows, ["pass", None, None, "fail"], regenerate=True)) == {"ok", "none", "self", "bad"}


def test_each_round_draws_with_its_own_seed_and_best_asks_for_logprobs() -> None:
    s = DistillStage(samples=3, seed=7, keep="best")
    r0, r2 = distill.round_sampling(s, 0), distill.round_sampling(s, 2)
    assert (r0.n, r0.seed, r2.seed, r0.logprobs) == (3, 7, 9, True)
    assert distill.round_sampling(DistillStage(keep="all"), 0).logprobs is False
    assert distill.round_sampling(DistillStage(seed=2**31 - 1), 1).seed == 0  # wraps within vLLM's seed range


def test_logprob_per_token_is_the_mean_or_none() -> None:
    assert store.logprob_per_token({"cumulative_logprob": -6.0, "completion_tokens": 3}) == -2.0
    assert store.logprob_per_token({"cumulative_logprob": None, "completion_tokens": 3}) is None
    assert generation.logprob_per_token({"cumulative_logprob": -1.0, "completion_tokens": 0}) is None


def test_parts_written_before_the_logprob_column_still_read(tmp_path) -> None:
    old = pa.table({"id": ["a"], "sample": pa.array([0], pa.int32()), "text": ["t"], "finish_reason": ["stop"],
                    "prompt_tokens": pa.array([1], pa.int32()), "completion_tokens": pa.array([1], pa.int32())})
    import pyarrow.parquet as pq

    pq.write_table(old.replace_schema_metadata({b"infialign.fingerprint": b"fp"}), tmp_path / "part-00000.parquet")
    table = store.read_parts(str(tmp_path), None, "fp")
    assert table.schema == store.GENERATION_SCHEMA and table.column("cumulative_logprob").to_pylist() == [None]


def test_distilled_rows_carry_provenance_and_keep_all_makes_new_ids() -> None:
    row = _row("r", "\\boxed{5}", "5", "response")
    a = rejection.TeacherSample("<think>x</think> \\boxed{4}", "stop", round=1, index=0, status="unknown", logprob_per_token=-0.5)
    b = rejection.TeacherSample("<think>y</think> \\boxed{4}", "stop", round=1, index=1)
    acc = rejection.Acceptance((a, b), "4", "majority_vote")
    prov = distill.provenance_of("builtin://tiny-teacher", DistillStage(seed=3))
    out = distill.distilled_rows(row, acc, "unverified_reference", prov, base_seed=3)
    assert [r["id"] for r in out] == ["r", "r#d1"]
    p = out[0]["provenance"]
    assert (out[0]["answer"], out[0]["verification"]) == ("4", "pass")
    assert p["teacher"] == "builtin://tiny-teacher" and p["distill_round"] == "1" and p["distill_round_seed"] == "4"
    assert p["reference_source"] == "majority_vote" and p["answer_source"] == "majority_vote"  # no longer the response's own
    assert p["distill_logprob_per_token"] == "-0.500000" and p["distill_temperature"] == "0.6"
    records.to_table(out)  # valid record rows


def test_a_record_the_teacher_could_not_write_stays_and_says_so() -> None:
    row = _row("self", "\\boxed{5}", "5", "response")
    kept = distill.undistilled_row(row, None, "unverified_reference")
    assert kept["verification"] == "unverified" and kept["provenance"]["distill_result"] == "not_verified"
    assert distill.undistilled_row(_row("ok", "\\boxed{4}", "4"), "pass", None)["verification"] == "pass"


def test_funnel_merges_shards_per_round_and_domain() -> None:
    a = distill.ShardStats(records=5, work={"missing_response": 3}, accepted_by={"reference": 2}, domains={"algebra": [3, 2]}, rounds=[[3, 1], [2, 1]])
    b = distill.ShardStats.from_json(
        distill.ShardStats(records=4, work={"unverified_reference": 2}, accepted_by={"majority_vote": 1}, domains={"geometry": [2, 1]}, rounds=[[2, 1], [1, 0]]).to_json()
    )
    funnel, metrics = distill.funnel_and_metrics([a, b])
    assert metrics["verified_yield"] == pytest.approx(3 / 5)
    assert metrics["yield.round0"] == pytest.approx(2 / 5) and metrics["yield.round1"] == pytest.approx(1 / 3)
    assert metrics["yield.domain.algebra"] == pytest.approx(2 / 3) and metrics["yield.domain.geometry"] == 0.5
    assert metrics["accepted_by.majority_vote"] == 1
    rows = {r["step"]: r for r in funnel.to_rows()}
    assert rows["needs_teacher"]["rows_in"] == 9 and rows["teacher_round_0"]["rows_out"] == 2 and rows["teacher_round_1"]["dropped"] == 2


def test_a_teacher_that_cannot_be_loaded_fails_permanently_naming_the_field(tmp_path, capsys, caplog) -> None:
    import pyarrow.parquet as pq

    from infialign.pipeline.api import AlignmentRun
    from infialign.pipeline.runtime import entrypoint
    from infialign.pipeline.runtime.config import RunIdentity, StorageConfig, TrackingConfig, build_stage_config

    pool = tmp_path / "pool.parquet"
    pq.write_table(records.to_table([_row("a", None, "4")]), pool)
    spec = AlignmentRun.model_validate(
        {
            "apiVersion": "infialign.dev/v1alpha1", "kind": "AlignmentRun", "metadata": {"name": "di", "namespace": "ns"},
            "spec": {
                "model": {"uri": "builtin://tiny"}, "teacher": {"uri": str(tmp_path / "no-such-teacher")},
                "stages": {**{s: {"enabled": False} for s in ("curate", "select", "sft", "prefs", "dpo", "eval")}, "distill": {"poolUri": pool.as_uri()}},
            },
        }
    ).spec
    storage = StorageConfig(root=(tmp_path / "artifacts").as_uri())
    config = build_stage_config(spec, RunIdentity(namespace="ns", name="di"), "distill", 1, storage, TrackingConfig(enabled=False))
    assert entrypoint.run_stage(config, distill, scratch=tmp_path) == entrypoint.EXIT_PERMANENT
    assert "spec.teacher.uri" in caplog.text and "no-such-teacher" in caplog.text


def test_greedy_distillation_takes_one_sample() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="samples: 1 or a temperature above 0"):
        DistillStage(temperature=0.0, samples=2)
    assert DistillStage(temperature=0.0, samples=1).samples == 1


class _RecordingVerifier:
    """Stands in for `verifiers.Verifier`: passes every task and remembers the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def submit(self, tasks: list[verifiers.Task]) -> Future:
        self.batches.append([t.response for t in tasks])
        done: Future = Future()
        done.set_result([verifiers.Verdict("pass", "math", "ok", t.reference_source) for t in tasks])
        return done


def test_samples_are_verified_in_batches_while_generating_and_resumed_ones_at_the_end(monkeypatch) -> None:
    monkeypatch.setattr(distill._RoundVerification, "BATCH", 4)
    by_id = {r["id"]: r for r in (_row("a", None, "1"), _row("b", None, "2"), _row("c", None, "3"), _row("self", None, "5", "response"))}
    checks = distill._RoundVerification(by_id, _RecordingVerifier())

    def out(rid: str, sample: int, finish: str = "stop") -> dict:
        return {"id": rid, "sample": sample, "text": f"{rid}{sample}", "finish_reason": finish, "prompt_tokens": 1, "completion_tokens": 2}

    checks.add([out("a", 0), out("a", 1)])
    assert checks.verifier.batches == []  # below one batch: nothing handed off yet
    checks.add([out("b", 0), out("b", 1, "length"), out("self", 0)])
    assert checks.verifier.batches == []  # a cut-off sample and a self-referenced record are never checked
    checks.add([out("c", 0), out("c", 1)])
    assert checks.verifier.batches == [["a0", "a1", "b0", "c0", "c1"]]  # a prompt's samples go together, while the engine runs
    # the round's table also holds rows read back from an earlier attempt's parts (never passed to add)
    table = store.rows_to_table([out("a", 0), out("a", 1), out("b", 0), out("b", 1, "length"), out("self", 0), out("c", 0), out("c", 1),
                                 out("c", 2)])
    statuses = checks.statuses(table)
    assert checks.verifier.batches[1:] == [["c2"]]
    assert statuses == {("a", 0): "pass", ("a", 1): "pass", ("b", 0): "pass", ("c", 0): "pass", ("c", 1): "pass", ("c", 2): "pass"}
    samples = distill._teacher_samples(table, statuses, 0)
    assert [s.status for s in samples["b"]] == ["pass", "unknown"] and [s.status for s in samples["self"]] == ["unknown"]
