"""The prefs stage's pure parts: funnel rows, the shortfall message, pair building, log-probs, and its graph inputs."""

from __future__ import annotations

import math

import pytest

from infialign.pipeline import graph, pairs, preferences
from infialign.pipeline.api import PrefsStage
from infialign.pipeline.curation.stats import StatsError
from infialign.pipeline.stages import prefs


def _s(status: str, lp: float | None = None, finish: str = "stop", text: str | None = None) -> preferences.ModelSample:
    return preferences.ModelSample(text=text or f"<think>x</think> \\boxed{{{status}}}", status=status, finish_reason=finish, logprob_per_token=lp)


def test_outcome_row_counts_every_prompt_once_and_keeps_only_pairable_ones() -> None:
    outcomes = {"a": "all_right", "b": "all_wrong", "c": "mixed", "d": "undecided", "e": "mixed"}
    row = prefs.outcome_stats(sorted(outcomes), outcomes)
    assert (row.total, row.kept) == (5, 3)
    assert dict(row.dropped) == {"all_right": 1, "undecided": 1}
    assert dict(row.counters) == {"prompts_all_right": 1, "prompts_all_wrong": 1, "prompts_mixed": 2, "prompts_undecided": 1}


def test_selection_row_adds_up_and_names_the_shortfall() -> None:
    row = prefs.selection_stats(10, 4, {"dropped_pass_rate_above_max": 5, "dropped_all_wrong_excluded": 1, "dropped_over_target": 0}, asked=6)
    assert dict(row.dropped) == {"pass_rate_above_max": 5, "all_wrong_excluded": 1}
    assert dict(row.counters) == {"pairs_asked": 6, "pairs_shortfall": 2}
    with pytest.raises(StatsError):  # counts that do not add up are a bug, not a report
        prefs.selection_stats(10, 4, {"dropped_over_target": 1}, asked=6)


def test_shortfall_message_only_when_short() -> None:
    assert prefs.shortfall_message(10, 10) is None
    message = prefs.shortfall_message(3, 10)
    assert message is not None and "3 pairs of the 10" in message and "spec.stages.prefs.pairs" in message


def test_logprob_per_token_reads_the_column_when_present() -> None:
    assert prefs.logprob_per_token({"cumulative_logprob": -6.0, "completion_tokens": 3}) == pytest.approx(-2.0)
    assert prefs.logprob_per_token({"cumulative_logprob": None, "completion_tokens": 3}) is None
    assert prefs.logprob_per_token({"completion_tokens": 3}) is None  # the generation layer without log-probs
    assert prefs.logprob_per_token({"cumulative_logprob": float("nan"), "completion_tokens": 3}) is None


def _prompt(rid: str) -> dict:
    return {
        "id": rid, "source": "world", "domain": "algebra", "messages": [{"role": "user", "content": f"q {rid}"}],
        "response": "<think>ok</think> \\boxed{7}", "answer": "7", "verification": "pass", "provenance": {"answer_type": "math"},
    }


def test_pairs_take_the_most_confident_error_and_validate() -> None:
    samples = {"p": [_s("pass", -0.1), _s("fail", -2.0, text="wrong a"), _s("fail", -0.5, text="wrong b"), _s("fail", -0.2, finish="length", text="cut")]}
    rows = prefs.build_pairs(["p"], {"p": _prompt("p")}, samples, {"p": "mixed"}, prefs.PairContext("file:///m", PrefsStage()))
    table = pairs.to_pairs_table(rows)
    (pair,) = table.to_pylist()
    assert pair["rejected"] == "wrong b"  # highest mean log-prob among decided wrong answers; the truncated one is not decided
    prov = dict(pair["provenance"])
    assert prov["rejected_sample"] == "2" and prov["rejected_rule"] == "confident" and prov["rejected_verdict"] == "fail"
    assert prov["answer_type"] == "math" and prov["pair_model"] == "file:///m" and prov["chosen_source"] == "expert"
    assert pair["difficulty"] == pytest.approx(1 / 3) and dict(pair["scores"])["rejected_logprob_per_token"] == -0.5


def test_without_log_probs_the_first_error_is_taken_and_provenance_says_so() -> None:
    samples = {"p": [_s("fail", text="first"), _s("fail", text="second")]}
    (row,) = prefs.build_pairs(["p"], {"p": _prompt("p")}, samples, {"p": "all_wrong"}, prefs.PairContext("m", PrefsStage()))
    assert row["rejected"] == "first" and row["provenance"]["rejected_rule"] == "first_wrong"
    assert row["difficulty"] == 0.0 and "rejected_logprob_per_token" not in row["scores"]
    assert not math.isnan(row["scores"]["pass_rate"])


def test_no_pairs_message_names_the_setting_to_change() -> None:
    assert "maxPassRate" in prefs._no_pairs_message(4, {"mixed": 4}, {"dropped_pass_rate_above_max": 4})
    assert "no error" in prefs._no_pairs_message(4, {"all_right": 4}, {})
    assert "maxTokens" in prefs._no_pairs_message(4, {"undecided": 4}, {})


def test_prefs_reads_the_last_phase_sft_data_when_select_runs(make_run) -> None:
    spec = make_run().enable("prefs").stage("sft", phases=[{"name": "p1", "fraction": 0.5}, {"name": "p2", "fraction": 1.0}]).spec()
    step = next(s for s in graph.enabled_steps(spec) if s.stage == "prefs")
    inputs = graph.step_inputs(spec, step)
    assert inputs["prompts"] == graph.InputRef("prompts", from_step="select", output="dpo-prompts")
    assert inputs["sft"] == graph.InputRef("sft", from_step="select", output="sft-p2")
    assert graph.step_model(spec, step).from_step == "sft-p2"


def test_prefs_has_no_sft_input_without_a_provider(make_run) -> None:
    spec = make_run().disable("select", "sft").enable("prefs").stage("prefs", promptsUri="s3://b/c.parquet").spec()
    step = next(s for s in graph.enabled_steps(spec) if s.stage == "prefs")
    assert set(graph.step_inputs(spec, step)) == {"prompts"}
    assert not [m for m in graph.missing_inputs(spec) if m.step.stage == "prefs"]
