"""Rejection sampling decisions of `distill` (pure)."""

from __future__ import annotations

from infialign.pipeline import rejection
from infialign.pipeline.rejection import TeacherSample


def sample(answer: str | None, *, status: str = "unknown", finish: str = "stop", lp: float | None = None, i: int = 0) -> TeacherSample:
    text = "<think>work</think> done" if answer is None else f"<think>work</think> \\boxed{{{answer}}}"
    return TeacherSample(text=text, finish_reason=finish, round=0, index=i, status=status, logprob_per_token=lp)


REAL = {"response": "<think>x</think> \\boxed{4}", "answer": "4", "provenance": {}}
SELF = {"response": "<think>2+2</think> \\boxed{5}", "answer": "5", "provenance": {"answer_source": "response"}}
NONE = {"response": None, "answer": None, "provenance": {}}


def test_work_reason_table() -> None:
    assert rejection.work_reason(REAL, "pass", regenerate=False) is None
    assert rejection.work_reason(REAL, "pass", regenerate=True) == "regenerate"
    assert rejection.work_reason(REAL, "fail", regenerate=False) == "verification_fail"
    assert rejection.work_reason(REAL, "timeout", regenerate=False) == "verification_timeout"
    assert rejection.work_reason(SELF, "pass", regenerate=False) == "unverified_reference"  # its own box never verifies it
    assert rejection.work_reason(NONE, None, regenerate=False) == "missing_response"


def test_code_reference_needs_tests() -> None:
    code = {"response": "x", "answer": None, "provenance": {"answer_type": "code", "tests": '{"cases": []}'}}
    assert rejection.has_real_reference(code)
    assert not rejection.has_real_reference({**code, "provenance": {"answer_type": "code"}})


def test_real_reference_keeps_only_passing_usable_samples() -> None:
    samples = [sample("4", status="pass", finish="length", i=0), sample("3", status="fail", i=1), sample("4", status="pass", lp=-0.5, i=2),
               sample("4", status="pass", lp=-0.1, i=3)]
    best = rejection.accept_samples(REAL, samples, keep="best", min_votes=2, min_share=0.5)
    assert best.reference_source == "reference" and [s.index for s in best.kept] == [3]  # most confident, truncated one excluded
    every = rejection.accept_samples(REAL, samples, keep="all", min_votes=2, min_share=0.5)
    assert [s.index for s in every.kept] == [2, 3]
    none = rejection.accept_samples(REAL, [sample("3", status="fail")], keep="best", min_votes=2, min_share=0.5)
    assert not none.accepted and none.reference_source is None


def test_self_reference_is_confirmed_only_by_teacher_agreement() -> None:
    agree = rejection.accept_samples(SELF, [sample("5"), sample("5", i=1), sample("4", i=2)], keep="all", min_votes=2, min_share=0.5)
    assert agree.reference_source == "teacher_agreement" and agree.reference == "5" and len(agree.kept) == 2
    overrule = rejection.accept_samples(SELF, [sample("4"), sample("4", i=1), sample("5", i=2)], keep="best", min_votes=2, min_share=0.5)
    assert overrule.reference_source == "majority_vote" and overrule.reference == "4"
    assert all(s.answer == "4" for s in overrule.kept)


def test_majority_needs_votes_share_and_no_tie() -> None:
    assert rejection.majority_answer([sample("1"), sample("1")], min_votes=2, min_share=0.5) == "1"
    assert rejection.majority_answer([sample("1")], min_votes=2, min_share=0.5) is None
    assert rejection.majority_answer([sample("1"), sample("2")], min_votes=1, min_share=0.1) is None  # tie
    assert rejection.majority_answer([sample("1"), sample("1"), sample("2"), sample("3"), sample("4")], min_votes=2, min_share=0.5) is None
    # answers compare after normalisation; truncated samples do not vote
    votes = [sample("\\dfrac{1}{2}"), sample("\\frac{1}{2}"), sample("7", finish="length"), sample("7", finish="length")]
    assert rejection.majority_answer(votes, min_votes=2, min_share=0.5) == "\\dfrac{1}{2}"
    assert rejection.accept_samples(NONE, [sample(None), sample(None)], keep="best", min_votes=1, min_share=0.5).accepted is False
