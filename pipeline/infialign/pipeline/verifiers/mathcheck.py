"""Math: math-verify equivalence of the response's final ``\\boxed{}`` (after ``</think>``; several boxes in
its closing paragraph form an ordered tuple, see :func:`answers.final_boxed`) and the
reference (seeds §1.6 "MathVerify"), with the normalised string comparison of
:func:`infialign.pipeline.curation.answers.answers_equal` as a fallback when math-verify cannot parse a
side or says no to an equal string.

:func:`check` runs inside the worker processes of :mod:`._pool`, so math-verify's own ``signal.alarm``
timeouts are off (``parsing_timeout=None``, ``timeout_seconds=None``) and the pool enforces the limit.
"""

from __future__ import annotations

import logging

from infialign.pipeline.curation import answers

__all__ = ["check", "check_string", "final_answer", "warmup"]

_SHOW = 60


def _short(s: str | None) -> str:
    if s is None:
        return "nothing"
    s = " ".join(s.split())
    return s if len(s) <= _SHOW else s[: _SHOW - 1] + "…"


def final_answer(response: str) -> tuple[str, str | None]:
    """``(text after </think>, its final boxed answer or None)``: several boxes in the closing paragraph
    are one ordered tuple, the same rule that made the reference (:func:`answers.final_boxed`)."""
    tail = answers.after_think(response)
    return tail, answers.final_boxed(tail)


def check_string(response: str, reference: str) -> tuple[str, str]:
    """String-only check (no math-verify): ``(status, reason)``."""
    _, boxed = final_answer(response)
    if boxed is None:
        return "fail", "no \\boxed{} answer after </think>"
    ok = answers.answers_equal(boxed, reference)
    return ("pass" if ok else "fail"), f"boxed {_short(boxed)} {'=' if ok else '≠'} reference {_short(reference)}"


def check(item: tuple[str, str]) -> tuple[str, str]:
    """``(status, reason)`` for ``(response, reference)``; runs in a worker process."""
    from math_verify import parse, verify

    response, reference = item
    tail, boxed = final_answer(response)
    gold = parse(f"\\boxed{{{reference}}}", parsing_timeout=None)
    # No box: math-verify still reads a final expression from the closing text ("the answer is $5$").
    pred = parse(f"\\boxed{{{boxed}}}" if boxed is not None else tail, parsing_timeout=None)
    what = f"boxed {_short(boxed)}" if boxed is not None else f"no \\boxed{{}}; final text read as {_short(str(pred[-1]) if pred else None)}"
    if gold and pred and verify(gold, pred, timeout_seconds=None):
        return "pass", f"{what} = reference {_short(reference)} (math-verify)"
    if boxed is not None and answers.answers_equal(boxed, reference):
        return "pass", f"{what} = reference {_short(reference)} (normalised string)"
    return "fail", f"{what} ≠ reference {_short(reference)}"


def warmup() -> None:
    """Load math-verify (and sympy) once per worker, before it takes items."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    check(("\\boxed{1}", "1"))
