"""Multiple choice: the option letter the response settles on, against the reference letter.

Seeds §1.6 [RECON]: "a rule check on the extracted option letter first". The letter is read from the
text after ``</think>``, in this order of trust: the last ``\\boxed{C}`` (also ``\\boxed{(C)}``,
``\\boxed{\\text{C}}``); the last "answer is C" / "Answer: C" / "answer: (C)"; a closing line that is only
"(C)" or "C." or "**C**". A letter mentioned in passing ("option C is tempting") is not an answer.
"""

from __future__ import annotations

import re
from typing import Final

from infialign.pipeline.curation import answers

__all__ = ["LETTERS", "check", "extract_letter", "reference_letter"]

LETTERS: Final = "ABCDEFGHIJ"  # up to 10 options (MMLU-Pro)
_L = f"[{LETTERS}]"
_BOX_LETTER = re.compile(rf"^\s*(?:\\text\{{|\\mathrm\{{|\\textbf\{{)?\s*\(?\s*({_L})\s*\)?\s*\}}?\s*(?:[.:)].*)?$", re.IGNORECASE)
_ANSWER_IS = re.compile(
    rf"answer\s*(?:is|:|：)?\s*(?:option\s*|choice\s*)?[:：]?[\s*_$\\{{(\[]*((?-i:{_L}))\b(?![A-Za-z])",
    re.IGNORECASE,
)
_LAST_LINE = re.compile(rf"^\s*[*_(\[]*\s*({_L})\s*[)\].:*_]*\s*(?:[-:)].*)?$")


def reference_letter(reference: str | None) -> str | None:
    """"C", "(C)", "c", "C)" → "C"; anything else (a word, a number) → None."""
    if reference is None:
        return None
    m = re.fullmatch(rf"\s*\(?\s*({_L})\s*\)?\.?\s*", reference, re.IGNORECASE)
    return m.group(1).upper() if m else None


def extract_letter(response: str) -> str | None:
    """The option letter the response's final answer names, or None when it names none."""
    tail = answers.after_think(response)
    boxed = answers.last_boxed(tail)
    if boxed is not None:
        m = _BOX_LETTER.match(boxed)
        return m.group(1).upper() if m else None  # a boxed non-letter is the answer: do not look further
    hits = _ANSWER_IS.findall(tail)
    if hits:
        return hits[-1].upper()
    lines = [ln for ln in tail.strip().splitlines() if ln.strip()]
    if lines:
        m = _LAST_LINE.match(lines[-1])
        if m:
            return m.group(1).upper()
    return None


def check(response: str, reference: str) -> tuple[str, str]:
    """``(status, reason)``; ``error`` when the reference is not a letter (a mapping mistake in ingest)."""
    ref = reference_letter(reference)
    if ref is None:
        return "error", f"reference {reference[:40]!r} is not an option letter {LETTERS[0]}-{LETTERS[-1]}"
    got = extract_letter(response)
    if got is None:
        return "fail", "no option letter in the final answer"
    return ("pass" if got == ref else "fail"), f"option {got} {'=' if got == ref else '≠'} reference {ref}"
