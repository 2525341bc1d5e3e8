"""Pair-building decisions of `prefs` (pure)."""

from __future__ import annotations

import random

from infialign.pipeline import preferences
from infialign.pipeline.preferences import Candidate, ModelSample


def s(status: str, finish: str = "stop", lp: float | None = None) -> ModelSample:
    return ModelSample(text="t", status=status, finish_reason=finish, logprob_per_token=lp)


def test_outcome_and_pass_rate_ignore_undecided_samples() -> None:
    assert preferences.outcome([s("pass"), s("pass")]) == "all_right"
    assert preferences.outcome([s("fail"), s("timeout")]) == "all_wrong"
    assert preferences.outcome([s("fail"), s("pass"), s("pass", finish="length")]) == "mixed"
    assert preferences.outcome([s("error"), s("pass", finish="length")]) == "undecided"
    assert preferences.pass_rate([s("fail"), s("pass"), s("pass"), s("error")]) == 2 / 3
    assert preferences.pass_rate([s("error")]) is None


def test_rejected_is_the_most_confident_error() -> None:
    samples = [s("fail", lp=-2.0), s("pass", lp=-0.1), s("fail", lp=-0.5), s("fail", finish="length", lp=0.0)]
    assert preferences.choose_rejected(samples, "confident", random.Random(0)) == 2
    assert preferences.choose_rejected(samples, "random", random.Random(0)) in (0, 2)
    assert preferences.choose_rejected([s("pass")], "confident", random.Random(0)) is None


def test_chosen_quality_check() -> None:
    good = "<think>2+2=4</think> The answer is \\boxed{4}."
    assert preferences.chosen_problem(good, "pass", "reference", 10_000) is None
    assert preferences.chosen_problem(good, "fail", "reference", 10_000) == "chosen_not_verified"
    assert preferences.chosen_problem(good, "pass", "response", 10_000) == "chosen_self_referenced"
    assert preferences.chosen_problem("<think>2+2=", "pass", "reference", 10_000) == "chosen_truncated"
    assert preferences.chosen_problem("<think>x</think> four", "pass", "reference", 10_000) == "chosen_no_final_answer"
    assert preferences.chosen_problem(good, "pass", "reference", 10) == "chosen_too_long"
    assert preferences.chosen_problem(None, "pass", "reference", 10) == "chosen_missing"


def test_challenges_prefer_mixed_hard_prompts_and_balance_domains() -> None:
    cands = [Candidate(f"a{i}", "algebra", "mixed", 0.25) for i in range(10)]
    cands += [Candidate("a-easy", "algebra", "mixed", 0.875), Candidate("a-wrong", "algebra", "all_wrong", 0.0)]
    cands += [Candidate(f"n{i}", "number_theory", "all_wrong", 0.0) for i in range(2)]
    cands += [Candidate("right", "algebra", "all_right", 1.0)]
    kept, dropped = preferences.select_challenges(cands, 6, max_pass_rate=0.75, include_all_wrong=True, seed=0)
    assert len(kept) == 6
    assert sum(k.startswith("n") for k in kept) == 2  # the small domain gets its turns
    assert "a-easy" not in kept and "right" not in kept
    assert dropped["dropped_pass_rate_above_max"] == 1
    assert dropped["dropped_over_target"] == 13 - 6  # 10 mixed + 3 all-wrong eligible
    kept2, _ = preferences.select_challenges(cands, 100, max_pass_rate=0.75, include_all_wrong=False, seed=0)
    assert set(kept2) == {f"a{i}" for i in range(10)}
    # reproducible
    assert preferences.select_challenges(cands, 6, max_pass_rate=0.75, include_all_wrong=True, seed=0)[0] == kept
