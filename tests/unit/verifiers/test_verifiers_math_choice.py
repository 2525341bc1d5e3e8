"""Math and multiple-choice verdicts, the self-reference rule, and the pool's hard timeouts."""

from __future__ import annotations

import pytest
from infialign.pipeline import verifiers
from infialign.pipeline.api import VerificationSettings
from infialign.pipeline.verifiers import _pool, choice
from verifier_helpers import slow

SETTINGS = VerificationSettings(workers=2)


def _math(response: str, reference: str | None, source: str = "reference") -> verifiers.Verdict:
    return verifiers.verify_all([verifiers.Task(response=response, reference=reference, reference_source=source)], SETTINGS)[0]


EQUIVALENT = [
    ("\\boxed{0.5}", "\\frac{1}{2}"),
    ("\\boxed{2/4}", "\\frac{1}{2}"),
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\left(1, 2\\right)}", "(1,2)"),
    ("\\boxed{[0,1)}", "[0,1)"),
    ("\\boxed{\\{1,2\\}}", "\\{2,1\\}"),
    ("<think>try 3... no</think> So \\boxed{\\frac{\\sqrt{8}}{2}}", "\\sqrt{2}"),
    ("\\boxed{x^2 + 2x + 1}", "(x+1)^2"),
    ("\\boxed{1,234}", "1234"),
]
DIFFERENT = [
    ("\\boxed{0.51}", "\\frac{1}{2}"),
    ("\\boxed{[0,1)}", "[0,1]"),
    ("\\boxed{(0,1]}", "[0,1]"),
    ("\\boxed{\\{1,3\\}}", "\\{2,1\\}"),
    ("\\boxed{3}", "4"),
    ("<think>\\boxed{4}</think> the answer is \\boxed{3}", "4"),  # only the final answer counts
]


def test_known_pairs_in_one_batch():
    tasks = [verifiers.Task(response=r, reference=g) for r, g in EQUIVALENT + DIFFERENT]
    verdicts = verifiers.verify_all(tasks, SETTINGS)
    assert [v.status for v in verdicts] == ["pass"] * len(EQUIVALENT) + ["fail"] * len(DIFFERENT)
    assert all(v.verifier == "math" and v.reference_source == "reference" for v in verdicts)
    assert verdicts[len(EQUIVALENT) + 4].reason == "boxed 3 ≠ reference 4"


def test_a_reference_taken_from_the_response_never_passes():
    record = {
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        "response": "<think>2 + 2 is 5</think> \\boxed{5}",
        "answer": "5",  # ingest extracted it from the response: no answer column
        "provenance": {"answer_source": "response"},
    }
    v = verifiers.verify_all([verifiers.task_from_record(record)], SETTINGS)[0]
    assert v.status == "unverified" and v.reference_source == "response"
    assert v.reason == "reference came from the response itself"
    # the same answer from a real reference column is checked, and a wrong one fails
    record["provenance"] = {"answer_source": "reference"}
    record["answer"] = "4"
    assert verifiers.verify_all([verifiers.task_from_record(record)], SETTINGS)[0].status == "fail"


def test_nothing_to_check_against_is_unverified_and_an_empty_response_fails():
    assert _math("\\boxed{7}", None).status == "unverified"
    assert _math("", "7").status == "fail"
    open_task = verifiers.Task(response="A thoughtful essay.", reference=None, answer_type="open")
    v = verifiers.verify_all([open_task], SETTINGS)[0]
    assert (v.status, v.verifier) == ("unverified", "judge") and "judge.endpoint" in v.reason


@pytest.mark.parametrize(
    "response",
    [
        "<think>A or C? B is out.</think>The answer is C",
        "Therefore \\boxed{C}",
        "After all that:\n(C)",
        "Answer: C",
        "**Answer:** (C).",
        "Final: $\\boxed{\\text{C}}$",
    ],
)
def test_choice_letters_pass(response):
    v = verifiers.verify_all([verifiers.Task(response=response, reference="C", answer_type="choice")], SETTINGS)[0]
    assert (v.status, v.verifier, v.reason) == ("pass", "choice", "option C = reference C")


@pytest.mark.parametrize("response", ["The answer is D", "\\boxed{B}", "(A)", "Option C is tempting, but no letter is final"])
def test_choice_other_letters_or_none_fail(response):
    assert choice.check(response, "C")[0] == "fail"


def test_answer_type_is_inferred_from_the_record():
    rec = {"response": "The answer is B", "answer": "B", "provenance": {}}
    assert verifiers.task_from_record(rec).answer_type == "choice"
    assert verifiers.task_from_record({**rec, "answer": "12"}).answer_type == "math"
    assert verifiers.task_from_record({**rec, "provenance": {"answer_type": "open"}}).answer_type == "open"
    code = verifiers.task_from_record({**rec, "answer": None, "provenance": {"tests": "{}"}})
    assert (code.answer_type, code.reference_source) == ("code", "tests")
    # a new generation is checked against the record's reference
    assert verifiers.task_from_record(rec, response="\\boxed{A}").response == "\\boxed{A}"


def test_pool_kills_hung_items_and_reports_each_failure_alone():
    items = ["a", "HANG", "b", "RAISE", "c", "DIE", "HANG", "d"]
    out = _pool.run_pool(items, slow, timeout_s=1.0, workers=2)
    assert out[0] == "A" and out[2] == "B" and out[4] == "C" and out[7] == "D"
    assert [out[i].kind for i in (1, 3, 5, 6)] == ["timeout", "exception", "crash", "timeout"]
    assert "RuntimeError: boom" in out[3].detail


def test_a_pool_timeout_is_a_timeout_verdict_never_a_fail():
    from infialign.pipeline.verifiers import dispatch

    task = verifiers.Task(response="\\boxed{1}", reference="1")
    v = dispatch._math_verdict(_pool.PoolFailure("timeout", "no result within 5 s"), task, SETTINGS)
    assert (v.status, v.verifier) == ("timeout", "math") and "within 5 s" in v.reason
    assert dispatch._math_verdict(_pool.PoolFailure("crash", "worker exited with -9"), task, SETTINGS).status == "error"


def test_importing_the_verifiers_loads_no_heavy_dependency():
    import subprocess
    import sys

    code = (
        "import sys, infialign.pipeline.verifiers as v; "
        "heavy = [m for m in ('math_verify', 'sympy', 'torch', 'vllm', 'transformers') if m in sys.modules]; "
        "print(','.join(heavy)); assert set(v.__all__) <= set(dir(v))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
