"""Verification: math-verify equivalence, string fallback, and real per-item timeouts in killable workers."""

from __future__ import annotations

import pytest
from curation_helpers import make_record, make_table, slow_checker
from infialign.pipeline.curation import verify


@pytest.mark.parametrize(
    ("response", "reference", "verdict"),
    [
        ("<think>...</think> so \\boxed{\\frac{1}{2}}", "0.5", "pass"),
        ("<think>...</think> \\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", "pass"),
        ("\\boxed{3}", "4", "fail"),
        ("no box at all", "4", "fail"),
        ("\\boxed{1,234}", "1234", "pass"),
    ],
)
def test_string_checker(response, reference, verdict):
    assert verify.check_string(response, reference) == verdict


def test_math_verify_backend_and_unknowns():
    pairs = [
        ("<think>x</think> The answer is \\boxed{\\frac{\\sqrt{8}}{2}}", "\\sqrt{2}"),  # needs sympy
        ("\\boxed{x^2 + 2x + 1}", "(x+1)^2"),
        ("\\boxed{7}", "8"),
        ("\\boxed{7}", None),  # no reference: unknown
        (None, "7"),  # no response: unknown
    ]
    out, counters = verify.verify_pairs(pairs, verify.VerifyConfig(workers=1))
    assert out == ["pass", "pass", "fail", "unknown", "unknown"]
    assert counters["timeouts"] == 0


def test_hung_and_crashing_items_become_errors_and_the_rest_finish():
    pairs = [("ok 1", "1"), ("HANG", "1"), ("ok 2", "2"), ("CRASH", "1"), ("ok 3", "9"), ("HANG", "2")]
    out, counters = verify.verify_pairs(pairs, verify.VerifyConfig(workers=2, timeout_s=1.0), checker=slow_checker)
    assert out == ["pass", "error", "pass", "error", "fail", "error"]
    assert counters["timeouts"] == 2  # both hung workers were killed (a sleep of an hour is not waited for)


def test_verify_step_writes_verification():
    t = make_table(
        make_record(response="\\boxed{2}", answer="2"),
        make_record(response="\\boxed{3}", answer="2"),
        make_record(response="\\boxed{3}", answer=None),
        make_record(response="\\boxed{2}", answer="2", verification="fail"),  # already verified: kept
    )
    out, st = verify.verify_answers(t, verify.VerifyConfig(backend="string"))
    assert out.column("verification").to_pylist() == ["pass", "fail", "unknown", "fail"]
    assert st.counters["verification_pass"] == 1 and st.counters["verification_fail"] == 2
