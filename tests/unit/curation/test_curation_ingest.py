"""Presets map the common layouts onto the record schema; explicit keys override; ids are stable."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from infialign.pipeline import records
from infialign.pipeline.curation import answers, ingest

FM = ingest.FieldMapping


def _one(rows, mapping=None, source="src"):
    t = ingest.records_from_rows(rows, mapping or FM(), source)
    return records.to_records(t)


def test_openr1_chat_messages():
    rec = _one(
        [
            {
                "messages": [
                    {"role": "user", "content": "What is 1+1?"},
                    {"role": "assistant", "content": "<think>1+1=2</think> \\boxed{2}"},
                ],
                "answer": "2",
                "uuid": "u-1",
            }
        ]
    )[0]
    assert rec["messages"] == [{"role": "user", "content": "What is 1+1?"}]
    assert rec["response"].endswith("\\boxed{2}") and rec["answer"] == "2"
    assert rec["provenance"] == {
        "source": "src", "row": "0", "preset": "chat", "orig_id": "u-1", "response_field": "messages", "answer_source": "reference"
    }


def test_sharegpt_conversations():
    rec = _one(
        [
            {
                "conversations": [
                    {"from": "system", "value": "Be brief."},
                    {"from": "human", "value": "Name a prime."},
                    {"from": "gpt", "value": "\\boxed{7}"},
                ]
            }
        ]
    )[0]
    assert [m["role"] for m in rec["messages"]] == ["system", "user"]
    assert rec["response"] == "\\boxed{7}" and rec["answer"] == "7"


def test_numina_problem_solution_and_domain_canonicalised():
    rec = _one([{"problem": "Find x.", "solution": "So $x=\\boxed{\\frac{1}{2}}$.", "type": "Counting & Probability"}])[0]
    assert rec["answer"] == "\\frac{1}{2}" and rec["domain"] == "counting_probability"
    assert rec["provenance"]["response_field"] == "solution"


def test_alpaca_instruction_input_output():
    rec = _one([{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}])[0]
    assert rec["messages"][0]["content"] == "Add the numbers.\n\n2 and 3" and rec["response"] == "5"
    assert rec["answer"] is None


def test_gsm8k_question_answer_splits_reasoning_and_final_answer():
    rec = _one([{"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = 7\n#### 7"}])[0]
    assert rec["answer"] == "7" and rec["response"] == "3 + 4 = 7"
    assert rec["provenance"]["preset"] == "question_answer"


def test_explicit_mapping_overrides_preset_and_arrow_input():
    t = pa.table({"q": ["What is 6*7?"], "a": ["The answer: 42"], "problem": ["ignored"], "key": ["k9"]})
    rec = _one(t, FM(prompt="q", answer="a", id="key", default_domain="Prealgebra"))[0]
    assert rec["messages"][0]["content"] == "What is 6*7?"
    assert rec["answer"] == "42"  # last-line fallback strips "The answer:"
    assert rec["domain"] == "prealgebra" and rec["provenance"]["orig_id"] == "k9"


def test_undetectable_layout_and_bad_keys_name_the_fix():
    with pytest.raises(ingest.IngestError, match="FieldMapping"):
        ingest.records_from_rows([{"foo": 1}], FM(), "s")
    with pytest.raises(ingest.IngestError, match="nope"):
        ingest.records_from_rows([{"problem": "p"}], FM(answer="nope"), "s")
    with pytest.raises(ValueError, match="not both"):
        FM(messages="m", prompt="p")


def test_ids_are_stable_unique_and_depend_on_source_prompt_and_row_id():
    rows = [{"problem": "Same?", "solution": "x"}, {"problem": "Same?", "solution": "y"}]
    a = ingest.records_from_rows(rows, FM(), "s").column("id").to_pylist()
    assert a == ingest.records_from_rows(rows, FM(), "s").column("id").to_pylist()
    assert len(set(a)) == 2
    assert a != ingest.records_from_rows(rows, FM(), "other").column("id").to_pylist()
    # The id normalises the prompt: spacing and case do not change it.
    b = ingest.records_from_rows([{"problem": "  same?", "solution": "x"}], FM(), "s").column("id").to_pylist()
    assert b[0] == a[0]
    # Repeated source ids stay unique.
    dup = ingest.records_from_rows([{"problem": "p q r", "id": 1}, {"problem": "p q r", "id": 1}], FM(), "s")
    assert dup.num_rows == 2


def test_rows_without_prompt_are_kept_for_the_empty_filter():
    rec = _one([{"problem": None, "solution": "x"}])[0]
    assert rec["messages"] == []


@pytest.mark.parametrize(
    ("text", "expected", "fallback"),
    [
        ("so \\boxed{\\frac{1}{2}}\n\nthen \\boxed{3}", "3", False),  # an earlier paragraph's box is intermediate
        ("so \\boxed{\\frac{1}{2}} then \\boxed{3}", "(\\frac{1}{2}, 3)", False),  # one paragraph: both are the answer
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}", False),
        ("cut \\boxed{3", None, True),
        ("\\boxed 5", "5", False),
        ("work\n#### 1,234", "1,234", False),
        ("Reasoning.\nAnswer: 42.", "42", False),  # a stated answer line is an answer
        ("Reasoning.\nSo it is 42.", None, False),  # a closing sentence is not
        ("Janet eats 3 and bakes 4, so 16 - 7 = 9 are sold at $2: 9 * 2 = 18.\nThe answer is: 18", "18", False),  # MetaMathQA
        ("So the slope is 1/2.\nThe answer is: $\\frac{1}{2}$", "\\frac{1}{2}", False),
        ("The answer is that f is increasing on its domain", None, False),
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", "18", False),  # GSM8K
        ("Reasoning.\nAnswer: 42.", "42", True),
    ],
)
def test_extract_answer(text, expected, fallback):
    assert answers.extract_answer(text, last_line_fallback=fallback) == expected


def test_metamathqa_types_are_math_domains_so_the_boxed_rule_applies():
    from infialign.pipeline.curation import domains

    row = {"query": "Janet has 3 apples and buys 4. How many?", "response": "3 + 4 = 7.\nThe answer is: 7", "type": "GSM_Rephrased"}
    rec = _one([row], FM(prompt="query"))[0]
    assert rec["domain"] == "gsm_rephrased" and rec["answer"] == "7"
    assert {"gsm_rephrased", "gsm_fobar", "math_ansaug", "math_sv"} <= domains.MATH_DOMAINS


# ---------------------------------------------------------------------------------------------------------
# the columnar path for flat layouts equals the row path

_WS = "\x1c\x1f\x85\xa0\u2003\u3000\t\n "  # every kind of blank str.strip() removes, Unicode included


def _flat_cases() -> list[tuple[str, list[dict], FM]]:
    long_cot = "<think>\nLet x = 3. Then 2x = 6; check: 2 * 3 = 6.\n</think>\n\nThe answer is $\\boxed{6}$."
    numina = [
        {"problem": "Find 2x if x = 3.", "solution": long_cot, "answer": "6", "id": "a"},
        {"problem": "Find 2x if x = 3.", "solution": long_cot, "answer": None, "id": "a"},  # repeated id
        {"problem": _WS, "solution": "no prompt here \\boxed{1}", "answer": _WS, "id": None},
        {"problem": "α+β=π/2; find sin α / cos β.", "solution": None, "answer": "$\\boxed{1}$", "id": "c"},
        {"problem": "Parts.", "solution": "$\\boxed{13}$ and $\\boxed{6}$", "answer": None, "id": " "},
        {"problem": "MetaMath.", "solution": "So x is 5.\nThe answer is: 5", "answer": None, "id": "e"},
        {"problem": "No answer.", "solution": "Cut mid \\boxed{1", "answer": "see the text", "id": "f"},
    ]
    gsm8k = [
        {"question": "Tom has 3 apples and buys 2. How many?", "answer": "3 + 2 = 5\n#### 5"},
        {"question": "Only a number.", "answer": "#### 7"},
        {"question": "Plain.", "answer": "42"},
    ]
    alpaca = [
        {"instruction": "Sum the numbers.", "input": "1, 2, 3", "output": "6", "type": "Counting & Probability"},
        {"instruction": _WS, "input": "only the input", "output": "x", "type": None},
        {"instruction": "No input.", "input": "", "output": "\\boxed{2}", "type": "  Number Theory!! "},
    ]
    return [
        ("numina", numina, FM(preset="problem_solution")),
        ("numina-auto-typed", numina, FM(answer_type="math", default_domain="Algebra")),
        ("gsm8k", gsm8k, FM(preset="question_answer")),
        ("alpaca", alpaca, FM(preset="instruction_output", answer_last_line_fallback=False)),
        ("explicit-prompt", [{**r, "query": r["problem"]} for r in numina], FM(prompt="query")),
        ("none", numina, FM(preset="none", prompt="problem", response="solution")),
        ("empty", [], FM(preset="problem_solution")),
    ]


@pytest.mark.parametrize("case", _flat_cases(), ids=lambda c: c[0])
def test_flat_table_path_equals_row_path(case):
    name, rows, mapping = case
    columns = sorted({k for r in rows for k in r}) or ["problem", "solution"]
    table = pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in columns})
    seen_rows: set[str] = {"a"}  # an id seen in an earlier batch of the same source
    seen_table: set[str] = {"a"}
    if not rows:  # an empty batch: the row path has no columns to detect a layout from
        empty = ingest.records_from_rows(table, mapping, "src")
        assert empty.num_rows == 0 and empty.schema == records.RECORD_SCHEMA
        return
    by_rows = ingest.records_from_rows(table.to_pylist(), mapping, "src", start_index=10, seen_keys=seen_rows)
    by_table = ingest.records_from_rows(table, mapping, "src", start_index=10, seen_keys=seen_table)
    assert ingest._is_flat(ingest.resolve_mapping(mapping, table.column_names), table)
    assert by_table.equals(by_rows), (records.to_records(by_table), records.to_records(by_rows))
    assert seen_table == seen_rows


def test_flat_path_large_string_and_non_string_columns():
    rows = [{"problem": "Find x.", "solution": "x = 1, \\boxed{1}", "answer": 1}, {"problem": "Find y.", "solution": None, "answer": 2}]
    typed = pa.table({"problem": ["Find x.", "Find y."], "solution": pa.array(["x = 1, \\boxed{1}", None], pa.large_string()), "answer": [1, 2]})
    # an int answer column goes through str(value) row by row, as before
    assert not ingest._is_flat(ingest.resolve_mapping(FM(), typed.column_names), typed)
    assert ingest.records_from_rows(typed, FM(), "s").equals(ingest.records_from_rows(rows, FM(), "s"))
    strings = typed.set_column(2, "answer", pa.array(["1", "2"]))
    assert ingest._is_flat(ingest.resolve_mapping(FM(), strings.column_names), strings)
    assert ingest.records_from_rows(strings, FM(), "s").equals(ingest.records_from_rows(strings.to_pylist(), FM(), "s"))


def test_blank_pattern_is_str_strip():
    """The columnar path blanks a value exactly when ``str.strip()`` leaves nothing, for every code point."""
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    arr = pa.array(chars, pa.string())
    arrow_blank = pc.match_substring_regex(arr, ingest._blank_pattern()).to_pylist()
    assert [c for c, b in zip(chars, arrow_blank) if b != (not c.strip())] == []


@pytest.mark.parametrize(
    ("text", "content", "cut"),
    [
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", False),
        ("\\boxed{\\{1\\}}", "\\{1\\}", False),  # escaped braces are no group
        ("\\boxed{a\\}", None, True),  # the escaped closing brace leaves the group open
        ("\\boxed{x\\", None, True),  # a backslash at the very end
        ("\\boxed{{}}", "{}", False),  # nested groups balance
        ("\\fbox{7}", "7", False),
        ("\\boxed 5$", "5", False),
        ("\\boxed  {5}", "5", False),
        ("\\boxed{5}\\boxed{6", None, True),  # the last box is cut: no answer
        ("\\boxed", None, True),
    ],
)
def test_last_boxed_and_box_is_cut_on_escapes_and_cuts(text, content, cut):
    assert answers.last_boxed(text) == content
    assert answers.box_is_cut(text) is cut
