"""Ingest presets for code and multiple choice, the self-reference mark, and dedup's choice of
representative made on what is known before verification."""

from __future__ import annotations

import json

from infialign.pipeline import codetests, records, verifiers
from infialign.pipeline.api import DataSource, VerificationSettings
from infialign.pipeline.curation import dedup, ingest
from infialign.pipeline.stages import curate

SETTINGS = VerificationSettings(workers=1)

GPQA_ROW = {
    "Record ID": "rec1",
    "Question": "Which particle mediates the electromagnetic force?",
    "Correct Answer": "Photon",
    "Incorrect Answer 1": "Gluon",
    "Incorrect Answer 2": "W boson",
    "Incorrect Answer 3": "Graviton",
    "Subdomain": "Physics",
}


def _recs(rows, preset, name="src"):
    return records.to_records(ingest.records_from_rows(rows, ingest.FieldMapping(preset=preset), name))


def test_gpqa_options_are_shuffled_per_question_deterministically_and_the_letter_is_the_reference():
    rows = [GPQA_ROW | {"Record ID": f"rec{i}"} for i in range(12)]
    first, again = _recs(rows, "gpqa"), _recs(rows, "gpqa")
    assert [r["messages"] for r in first] == [r["messages"] for r in again]
    letters = {r["answer"] for r in first}
    assert len(letters) > 1  # not always the same position
    for r in first:
        text = r["messages"][0]["content"]
        assert f"{r['answer']}) Photon" in text and r["provenance"]["answer_type"] == "choice"
    v = verifiers.verify_all([verifiers.task_from_record(first[0], response=f"The answer is {first[0]['answer']}")], SETTINGS)[0]
    assert (v.status, v.verifier) == ("pass", "choice")


def test_apps_and_taco_rows_get_stdio_or_call_tests_and_a_reference_solution():
    stdio_row = {
        "problem_id": 7,
        "question": "Read two integers and print their sum.",
        "solutions": json.dumps(["a, b = map(int, input().split())\nprint(a + b)"]),
        "input_output": json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]}),
        "starter_code": "",
    }
    call_row = {"question": "Double it.", "solutions": [], "input_output": {"fn_name": "double", "inputs": [[2]], "outputs": [[4]]}}
    a, b = _recs([stdio_row, call_row], "apps")
    assert codetests.loads(a["provenance"]["tests"]).mode == "stdio" and a["provenance"]["orig_id"] == "7"
    assert codetests.loads(b["provenance"]["tests"]).mode == "call" and b["provenance"]["entry_point"] == "double"
    assert b["response"] is None and "standard input" not in b["messages"][0]["content"]
    assert verifiers.verify_all([verifiers.task_from_record(a)], SETTINGS)[0].status == "pass"
    broken = _recs([stdio_row | {"input_output": "not json"}], "apps")[0]
    assert "tests_error" in broken["provenance"]
    assert verifiers.verify_all([verifiers.task_from_record(broken)], SETTINGS)[0].status == "unverified"


def test_livecodebench_rows_and_auto_detection():
    row = {
        "question_id": "abc123",
        "question_title": "Sum",
        "question_content": "Print the sum of two integers.",
        "starter_code": "",
        "public_test_cases": json.dumps([{"input": "2 3\n", "output": "5\n", "testtype": "stdin"}]),
        "private_test_cases": json.dumps([{"input": "4 4\n", "output": "8\n", "testtype": "stdin"}]),
        "metadata": "{}",
        "contest_date": "2024-09-01T00:00:00",
    }
    rec = _recs([row], "auto")[0]
    assert rec["provenance"]["preset"] == "livecodebench" and rec["provenance"]["lcb_contest_date"].startswith("2024-09")
    assert codetests.loads(rec["provenance"]["tests"]).n_tests == 2
    good = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    assert verifiers.verify_all([verifiers.task_from_record(rec, response=good)], SETTINGS)[0].status == "pass"
    assert _recs([GPQA_ROW], "auto")[0]["provenance"]["preset"] == "gpqa"


def test_api_presets_set_the_answer_type():
    aime = DataSource.model_validate({"name": "aime24", "uri": "file:///x.jsonl", "preset": "aime"})
    table = curate.to_records(__import__("pyarrow").Table.from_pylist([{"problem": "Find x.", "answer": "204", "id": 1}]), aime)
    prov = records.to_records(table)[0]["provenance"]
    assert prov["answer_type"] == "math" and prov["answer_source"] == "reference"
    essay = DataSource.model_validate({"name": "chat", "uri": "file:///x.jsonl", "answerType": "open"})
    table = curate.to_records(__import__("pyarrow").Table.from_pylist([{"prompt": "Write a haiku.", "response": "Leaves fall."}]), essay)
    assert records.to_records(table)[0]["provenance"]["answer_type"] == "open"


def test_an_answer_taken_from_the_response_is_marked_and_never_verifies():
    rows = [{"problem": "What is 2 + 2?", "solution": "2 + 2 = \\boxed{5}"}]  # no answer column
    rec = _recs(rows, "problem_solution")[0]
    assert rec["answer"] == "5" and rec["provenance"]["answer_source"] == "response"
    v = verifiers.verify_all([verifiers.task_from_record(rec)], SETTINGS)[0]
    assert v.status == "unverified" and v.reference_source == "response"


def test_dedup_keeps_the_duplicate_with_an_independent_reference():
    prompt = "Compute the sum of the first ten positive integers and explain each step."
    long_wrong = "<think>" + "adding carefully " * 40 + "</think> \\boxed{56}"
    rows = [
        {"problem": prompt, "solution": long_wrong},  # longer CoT, its answer is its own boxed 56
        {"problem": prompt, "solution": "<think>10*11/2</think> \\boxed{55}", "answer": "55"},
    ]
    table = ingest.records_from_rows(rows, ingest.FieldMapping(preset="problem_solution"), "src")
    kept, stats = dedup.dedup_exact(table, dedup.ExactDedupConfig())
    assert stats.n_dropped == 1
    assert records.to_records(kept)[0]["answer"] == "55"
    # without any reference the longer CoT still wins, as before
    no_ref = ingest.records_from_rows([rows[0], {"problem": prompt, "solution": "short"}], ingest.FieldMapping(preset="problem_solution"), "s2")
    kept, _ = dedup.dedup_exact(no_ref, dedup.ExactDedupConfig())
    assert records.to_records(kept)[0]["response"] == long_wrong
