"""The verifier contract: a :class:`Task` in, a :class:`Verdict` out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["AnswerType", "ANSWER_TYPES", "Status", "STATUSES", "Task", "Verdict"]

Status = Literal["pass", "fail", "error", "timeout", "unverified"]
STATUSES: Final = ("pass", "fail", "error", "timeout", "unverified")
AnswerType = Literal["math", "code", "choice", "open"]
ANSWER_TYPES: Final = ("math", "code", "choice", "open")


@dataclass(frozen=True)
class Verdict:
    """What a verifier decided about one response, and why.

    ``status``: only ``pass`` counts as verified. ``verifier``: ``math`` | ``code`` | ``choice`` | ``judge``
    | ``none``. ``reason``: short and human ("boxed 5 ≠ reference 4", "3/3 tests passed").
    ``reference_source``: where the reference came from: ``reference`` (a dataset's answer column),
    ``tests``, ``teacher``, ``teacher_agreement``, ``majority_vote``, ``response`` (the response itself:
    never a verification) or ``none``.
    """

    status: Status
    verifier: str
    reason: str
    reference_source: str


@dataclass(frozen=True)
class Task:
    """One response to check. ``tests`` is a :mod:`infialign.pipeline.codetests` JSON spec (code);
    ``prompt`` is the question, for the judge."""

    response: str
    reference: str | None
    answer_type: AnswerType = "math"
    reference_source: str = "reference"
    tests: str | None = None
    prompt: str | None = None
