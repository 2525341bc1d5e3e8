"""The eval stage's pure parts: metrics, benchmark defaults, report forms, inputs, results in the status."""

from __future__ import annotations

import json

from pathlib import Path

import pyarrow as pa
import pytest

from infialign.pipeline import graph, planner, records
from infialign.pipeline.api import Benchmark, EvalResult, StepPhase, VerificationSettings
from infialign.pipeline.evaluation import metrics, presets, report, scoring
from infialign.pipeline.executor import results_table
from infialign.pipeline.runtime import markers
from infialign.pipeline.stages import eval as eval_stage

# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize(("n", "c", "k", "expected"), [(4, 0, 1, 0.0), (4, 4, 1, 1.0), (4, 1, 1, 0.25), (4, 1, 4, 1.0), (4, 2, 2, 1 - 1 / 6), (8, 0, 8, 0.0)])
def test_pass_at_k_is_the_unbiased_estimator(n: int, c: int, k: int, expected: float) -> None:
    assert metrics.pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="0 < k ≤ n"):
        metrics.pass_at_k(2, 3, 1)


def test_avg_and_pass_per_benchmark_and_per_tier() -> None:
    qs = [metrics.QuestionScore("a", 4, 4, "tier1"), metrics.QuestionScore("b", 4, 0, "tier1"), metrics.QuestionScore("c", 4, 1, "tier2")]
    entries = metrics.metric_entries("base", "bench", qs, 4)
    got = {(e.get("subset"), e["metric"]): e["value"] for e in entries}
    assert got[(None, "avg@4")] == pytest.approx((1 + 0 + 0.25) / 3)
    assert got[(None, "pass@4")] == pytest.approx(2 / 3)
    assert got[("tier1", "avg@4")] == pytest.approx(0.5) and got[("tier2", "pass@4")] == pytest.approx(1.0)
    assert [e.get("subset") for e in entries][:2] == [None, None]  # the whole benchmark first
    assert all(EvalResult.model_validate(e) for e in entries)  # every entry fits the status schema


# ---------------------------------------------------------------- presets


@pytest.mark.parametrize(
    ("preset", "name", "expected"),
    [
        ("aime", "x", (32, 31000, "math")),
        ("auto", "aime24", (32, 31000, "math")),
        ("auto", "aime-2025", (32, 31000, "math")),
        ("auto", "gpqa-diamond", (8, 26000, "choice")),
        ("auto", "livecodebench-v5", (8, 27000, "code")),
        ("auto", "math500", (4, 32768, "math")),
        ("auto", "humaneval", (8, 32768, "code")),
        ("records", "reasoning-bench", (8, 32768, "math")),
    ],
)
def test_benchmark_defaults_by_preset_then_name(preset: str, name: str, expected: tuple[int, int, str]) -> None:
    row = presets.defaults_for(preset, name)
    assert (row.samples, row.max_tokens, row.answer_type) == expected


def test_a_benchmarks_own_settings_win_over_the_table() -> None:
    bench = Benchmark.model_validate({"name": "aime24", "uri": "s3://b/a.parquet", "samples": 2, "maxTokens": 64})
    assert presets.resolve(bench) == (2, 64, "math")
    assert presets.resolve(Benchmark.model_validate({"name": "aime24", "uri": "s3://b/a.parquet"}))[:2] == (32, 31000)


# ---------------------------------------------------------------- scoring


def test_truncated_samples_are_wrong_and_code_goes_through_the_sandbox() -> None:
    tests = json.dumps({"mode": "call", "entry_point": "add", "cases": [{"input": [1, 2], "output": 3}, {"input": [5, 5], "output": 10}]})
    code = {"answer": None, "provenance": {"answer_type": "code", "tests": tests}}
    good = "<think>add them</think>\n```python\ndef add(a, b):\n    return a + b\n```"
    bad = "<think>oops</think>\n```python\ndef add(a, b):\n    return a - b\n```"
    scores = scoring.score(
        [scoring.Sample("\\boxed{4}", "length"), scoring.Sample(good, "stop"), scoring.Sample(bad, "stop")],
        [{"answer": "4"}, code, code],
        VerificationSettings(),
    )
    assert [(s.passed, s.status) for s in scores] == [(False, "truncated"), (True, "pass"), (False, "fail")]
    assert scores[1].verifier == "code"


def test_math_samples_are_verified_against_the_reference() -> None:
    refs = [{"answer": "\\frac{1}{2}"}, {"answer": "7"}]
    scores = scoring.score([scoring.Sample("so \\boxed{0.5}", "stop"), scoring.Sample("\\boxed{8}", "stop")], refs, VerificationSettings(workers=1))
    assert [(s.passed, s.status, s.verifier) for s in scores] == [(True, "pass", "math"), (False, "fail", "math")]


# ---------------------------------------------------------------- report forms


def test_metric_keys_are_valid_mlflow_keys() -> None:
    entry = {"model": "sft-phase1", "benchmark": "aime24", "metric": "avg@32", "value": 0.5, "samples": 32, "subset": "tier1"}
    assert report.metric_key(entry) == "eval.sft-phase1.aime24.tier1.avg_at_32"


def test_chart_is_drawn(tmp_path: Path) -> None:
    entries = metrics.metric_entries("base", "b", [metrics.QuestionScore("a", 2, 1)], 2) + metrics.metric_entries("sft-p1", "b", [metrics.QuestionScore("a", 2, 2)], 2)
    png = report.plot_png(entries, tmp_path / "c.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_table_has_one_row_per_model_and_one_column_per_benchmark_and_tier() -> None:
    entries = [EvalResult.model_validate(e) for e in metrics.metric_entries("base", "b", [metrics.QuestionScore("a", 2, 1, "tier1")], 2)]
    table = results_table(entries)
    assert table is not None and [c.header for c in table.columns] == ["model", "b", "b/tier1"] and table.row_count == 1
    assert results_table([]) is None


# ---------------------------------------------------------------- stage inputs


def _bench_table(answers: list[str | None]) -> pa.Table:
    return records.to_table(
        {"id": f"q{i}", "source": "b", "messages": [{"role": "user", "content": "?"}], "answer": a, "provenance": {"tier": "2"} if i == 0 else {}}
        for i, a in enumerate(answers)
    )


def test_questions_without_a_reference_are_not_evaluated() -> None:
    kept, dropped = eval_stage.usable_questions(_bench_table(["1", None, " "]))
    assert kept.column("id").to_pylist() == ["q0"] and dropped == 2


def test_tier_provenance_becomes_a_subset() -> None:
    rows = records.to_records(_bench_table(["1", "2"]))
    assert [eval_stage.subset_of(r) for r in rows] == ["tier2", None]


def test_results_from_scored_samples() -> None:
    scored = pa.table(
        {
            "model": ["base"] * 4, "benchmark": ["b"] * 4, "subset": ["tier1", "tier1", None, None],
            "id": ["x", "x", "y", "y"], "correct": [True, False, False, False],
        }
    )
    bench = eval_stage.LoadedBenchmark(0, Benchmark(name="b", uri="s3://b/x.parquet"), _bench_table(["1"]), 0, 2, 64)
    got = {(e.get("subset"), e["metric"]): e["value"] for e in eval_stage.results_from_samples(scored, [bench], ["base"])}
    assert got[(None, "avg@2")] == pytest.approx(0.25) and got[(None, "pass@2")] == pytest.approx(0.5) and got[("tier1", "avg@2")] == 0.5


def test_eval_gets_the_base_model_every_sft_phase_and_dpo(make_run) -> None:
    spec = make_run().enable("eval", "prefs", "dpo").set("spec.teacher", {"uri": "builtin://tiny"}).set(
        "spec.benchmarks", [{"name": "b", "uri": "builtin://reasoning-bench"}]
    ).spec()
    step = next(s for s in graph.pipeline_steps(spec) if s.stage == "eval")
    inputs = graph.step_inputs(spec, step)
    assert list(inputs) == ["model:base", "model:sft-phase1", "model:sft-phase2", "model:dpo"]
    assert inputs["model:sft-phase1"].from_step == "sft-phase1" and inputs["model:dpo"].from_step == "dpo"
    assert [label for label, _ in eval_stage.model_inputs({k: "u" for k in inputs})] == ["base", "sft-phase1", "sft-phase2", "dpo"]
    assert graph.step_outputs(spec, step) == ["results", "samples"]


def test_eval_of_sft_with_sft_disabled_is_a_missing_input(make_run) -> None:
    spec = make_run().disable("sft").enable("eval").stage("eval", models=["base", "sft"]).set("spec.benchmarks", [{"name": "b", "uri": "builtin://reasoning-bench"}]).spec()
    assert [(m.input, m.path) for m in graph.missing_inputs(spec) if m.step.stage == "eval"] == [("model:sft", "spec.stages.eval.models")]


# ---------------------------------------------------------------- results in the status


def test_results_reach_the_status_only_from_a_succeeded_step(make_run) -> None:
    spec = make_run().spec()
    status = planner.initial_status(spec)
    results = markers.status_results([{"model": "base", "benchmark": "b", "metric": "avg@2", "value": 0.5, "samples": 2}, {"model": "x", "benchmark": "b", "metric": "avg@2", "value": 7.0, "samples": 2}])
    assert len(results) == 1  # the out-of-bounds entry is dropped, not fatal
    assert planner.record_results(status, "curate", results).results is None  # not succeeded
    done = status.model_copy(update={"steps": [s.model_copy(update={"phase": StepPhase.SUCCEEDED}) if s.name == "curate" else s for s in status.steps]})
    assert planner.record_results(done, "curate", results).results == results
