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


def _strip_everywhere(texts: list[str]) -> list[str]:
    """_strip_instructions without its row filter: every pattern on every row (the reference)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(texts, pa.string())
    for _ in range(2):
        for pattern in normalize.INSTRUCTION_SUFFIXES:
            arr = pc.replace_substring_regex(arr, pattern, "")
    for pattern in normalize.INSTRUCTION_PREFIXES:
        arr = pc.replace_substring_regex(arr, pattern, "")
    return arr.to_pylist()


def test_instruction_row_filter_is_exact_at_the_edges():
    # The filter looks at 64 code points of each end: whitespace and ".!{}" runs longer than that, boilerplate
    # cut by the slice boundary, short texts, and non-ASCII text must strip exactly as every pattern on every row.
    suffix = "please reason step by step, and put your final answer within \\boxed{}."
    prefix = "return your final response within \\boxed{}. "
    bodies = ["what is 2+3?", "", "é" * 70, "x" * 200, "step", "\\boxed{}", "the answer is \\boxed{5}."]
    tails = [suffix, "let's think step by step.", "let's think step by step" + " " * 100 + "!", suffix + "\n" * 90,
             "put your final answer in \\boxed{ }" + " " * 64 + ".", "step" + "{}" * 40, "\\boxed" + "." * 80, "",
             "steps.", "xstep ", "boxed{}", "think step by step." + "é"]
    heads = [prefix, " " * 100 + prefix, "\n" * 63 + "please put your final answer in \\boxed{}.", "", "présent ", "pleas", "output"]
    texts = [h + b + t for h in heads for b in bodies for t in tails]
    texts += [t[:k] for t in (prefix + suffix, suffix + suffix) for k in range(len(t) + 1)]
    # The 64-code-point tail starts inside "step" / "\\boxed"; the head ends inside "present".
    texts += ["2+3? put your final answer in \\boxed{" + " " * m + "}" for m in range(50, 66)]
    texts += ["2+3? let's think step by step" + " " * m + "." for m in range(55, 66)]
    texts += [" " * m + "present your final answer in \\boxed{}. 2+3?" for m in range(50, 66)]
    import pyarrow as pa

    got = normalize._strip_instructions(pa.array(texts, pa.string())).to_pylist()
    assert got == _strip_everywhere(texts)
    assert got != texts  # the patterns did strip
