"""Multi-part answers (issue 12 item 8): several boxes in the closing paragraph are one ordered tuple,
as the reference (ingest) and as the prediction (the math verifier), so multi-box answers verify end to end."""

from __future__ import annotations

import pyarrow as pa
import pytest
from infialign.pipeline import curation, verifiers
from infialign.pipeline.api import VerificationSettings
from infialign.pipeline.curation import answers

_VIETA = (
    "<think>By Vieta, the sum of the roots is 5 and the product is 6, so the sum of squares is 25 - 12 = 13. "
    "Wait, let me verify with the roots 2 and 3: 4 + 9 = 13 and 2 * 3 = 6.</think>\n\n"
    "By Vieta's formulas, $\\alpha + \\beta = 5$ and $\\alpha\\beta = 6$, so $\\alpha^2 + \\beta^2 = 25 - 12 = 13$.\n\n"
    "$\\alpha^2 + \\beta^2 = \\boxed{13}$ and $\\alpha\\beta = \\boxed{6}$."
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_VIETA, "(13, 6)"),  # two parts in the closing paragraph
        ("Solving the system gives $x = \\boxed{2}$, $y = \\boxed{-3}$", "(2, -3)"),  # a tuple split across boxes
        ("(a) The area is $\\boxed{12}$.\n\n(b) The perimeter is $\\boxed{16}$.", "16"),  # parts in own paragraphs: the last
        ("We get $\\boxed{4}$ as an intermediate value.\n\nSo the answer is $\\boxed{8}$.", "8"),
        ("The answer is $\\boxed{5}$. Indeed, $\\boxed{5}$.", "5"),  # a restated box counts once
        ("The pair is $\\boxed{2}$ and $\\boxed{3}$.\n\nI hope this helps!", "(2, 3)"),  # the last paragraph WITH a box
        ("So $x = \\boxed{2}$ and $y = \\boxed{3", None),  # the last box is cut: no answer
    ],
)
def test_final_boxed(text: str, expected: str | None) -> None:
    assert answers.final_boxed(text) == expected
    assert answers.extract_answer(text) == expected


def test_multi_box_reference_from_a_numina_solution() -> None:
    table = pa.table({"problem": ["Let α and β be the roots of x^2 - 5x + 6 = 0. Find α^2 + β^2 and αβ."], "solution": [_VIETA]})
    rec = curation.records_from_rows(table, curation.FieldMapping(preset="problem_solution"), "numina").to_pylist()[0]
    assert rec["answer"] == "(13, 6)"


def test_multi_box_answers_verify_in_order() -> None:
    settings = VerificationSettings(workers=1)
    responses = {
        "same parts": (_VIETA, "pass"),
        "one box holding the tuple": ("<think>13 and 6.</think>\n\nThe answers are $\\boxed{13, 6}$.", "pass"),
        "parts swapped": ("<think>6 and 13.</think>\n\n$\\alpha\\beta = \\boxed{6}$ and $\\alpha^2 + \\beta^2 = \\boxed{13}$.", "fail"),
        "one part only": ("<think>13.</think>\n\n$\\alpha^2 + \\beta^2 = \\boxed{13}$.", "fail"),
        "wrong second part": ("<think>13 and 5.</think>\n\n$\\boxed{13}$ and $\\boxed{5}$.", "fail"),
    }
    tasks = [verifiers.Task(response=r, reference="(13, 6)") for r, _ in responses.values()]
    verdicts = verifiers.verify_all(tasks, settings)
    assert {k: v.status for k, v in zip(responses, verdicts)} == {k: want for k, (_, want) in responses.items()}
