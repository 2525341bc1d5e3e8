"""Scoring of generated samples against benchmark references: the ONE place eval and quickEval judge answers.

Every sample goes through `verifiers.verify_all` (math-verify in killable workers, multiple-choice letters,
the code sandbox, the LLM judge), built from the benchmark record by `verifiers.task_from_record`, so eval
judges exactly as `select`, `distill` and `prefs` do. A length-truncated sample is scored wrong before any
verifier sees it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infialign.pipeline.api import VerificationSettings

__all__ = ["Sample", "Score", "score"]


@dataclass(frozen=True)
class Sample:
    """One generated answer to score."""

    text: str
    finish_reason: str | None = None


@dataclass(frozen=True)
class Score:
    """The verdict on one sample; only `passed` counts as correct."""

    passed: bool
    status: str  # pass | fail | error | timeout | unverified | truncated
    verifier: str
    reason: str


_TRUNCATED = Score(False, "truncated", "none", "hit max_tokens (finish_reason=length): unusable, scored wrong")


def score(samples: Sequence[Sample], records: Sequence[Mapping[str, Any]], settings: VerificationSettings) -> list[Score]:
    """Score `samples[i]` against the benchmark record `records[i]` (its `answer`, `provenance`).

    A length-truncated sample is wrong whatever it contains: its answer was never finished.
    """
    from infialign.pipeline import verifiers

    if len(samples) != len(records):
        raise ValueError(f"{len(samples)} samples but {len(records)} records")
    out: list[Score | None] = [None] * len(samples)
    rows: list[int] = []
    tasks: list[verifiers.Task] = []
    for i, (sample, record) in enumerate(zip(samples, records, strict=True)):
        if sample.finish_reason == "length":
            out[i] = _TRUNCATED
        else:
            rows.append(i)
            tasks.append(verifiers.task_from_record(record, response=sample.text))
    if tasks:
        for i, verdict in zip(rows, verifiers.verify_all(tasks, settings), strict=True):
            out[i] = Score(verdict.status == "pass", verdict.status, verdict.verifier, verdict.reason)
    return [s for s in out if s is not None]
