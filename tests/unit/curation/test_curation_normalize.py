"""Normalisation keeps numbers, operators and LaTeX; spacing and boilerplate do not matter."""

from __future__ import annotations

import pytest
from curation_helpers import make_record, make_table
from infialign.pipeline.curation import dedup, normalize


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Solve x^2+3x=5.", "solve  x^2 + 3x = 5 ."),
        ("Ｆｉｎｄ ２＋３", "find 2+3"),  # NFKC: full-width forms
        ("What is 2+3?\nPlease reason step by step, and put your final answer within \\boxed{}.", "What is 2+3?"),
        ("Return your final response within \\boxed{}. What is 2+3?", "What is 2+3?"),
        ("What is 2+3? Let's think step by step.", "What is 2+3?"),
    ],
)
def test_equivalent_forms_normalise_equal(a, b):
    assert normalize.normalize_text(a) == normalize.normalize_text(b)


def test_numbers_operators_and_latex_are_kept():
    assert normalize.normalize_text("Compute 3 + 5") != normalize.normalize_text("Compute 7 + 2")
    assert normalize.normalize_text("x - 1") != normalize.normalize_text("x + 1")
    assert normalize.word_tokens("\\frac{1}{2}") == ["\\", "frac", "{", "1", "}", "{", "2", "}"]
    # The suffix is only stripped at the end: the same words inside a problem stay.
    assert "step" in normalize.normalize_text("Reason step by step about why 2+2=4, then compute 3+3.")


def test_problems_differing_only_in_a_number_are_not_duplicates():
    base = "A rectangle has length {n} cm and width 4 cm. A square has the same perimeter as the rectangle. What is the area of the square in square centimetres?"
    a, b = base.format(n=12), base.format(n=13)
    t = make_table(make_record(a), make_record(b))
    out, st = dedup.dedup_exact(t, dedup.ExactDedupConfig())
    assert out.num_rows == 2 and st.n_dropped == 0
    out, st = dedup.dedup_near(t, dedup.MinHashConfig())
    assert out.num_rows == 2 and st.n_dropped == 0


def test_tokenize_handles_empty_and_null():
    assert normalize.tokenize_array(normalize.normalize_array(["", None, " a  b "])).to_pylist() == [[], [], ["a", "b"]]
