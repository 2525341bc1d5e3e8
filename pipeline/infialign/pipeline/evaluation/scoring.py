"""Scoring of generated samples against benchmark references: the ONE place eval and quickEval judge answers.

Until the verifiers package (`infialign.pipeline.verifiers.verify_all`) lands on main, math answers are
checked by `curation.verify.verify_pairs` (math-verify in worker processes with hard timeouts, string
fallback). That is the interim: multiple-choice letters pass only when boxed (`\\boxed{C}`), code and
open answers cannot be checked and count as `unverified`. Re-point `score` at `verifiers.verify_all`
(`task_from_record(record, text)` per sample) and these limits go; nothing else changes.
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


def _answer_type(record: Mapping[str, Any]) -> str:
    provenance = record.get("provenance") or {}
    if isinstance(provenance, list):
        provenance = dict(provenance)
    return str(provenance.get("answer_type") or "math")


def score(samples: Sequence[Sample], records: Sequence[Mapping[str, Any]], settings: VerificationSettings) -> list[Score]:
    """Score `samples[i]` against the benchmark record `records[i]` (its `answer`, `provenance`).

    A length-truncated sample is wrong whatever it contains: its answer was never finished.
    """
    from infialign.pipeline.curation import verify

    if len(samples) != len(records):
        raise ValueError(f"{len(samples)} samples but {len(records)} records")
    out: list[Score | None] = [None] * len(samples)
    math_rows: list[int] = []
    for i, (sample, record) in enumerate(zip(samples, records, strict=True)):
        kind = _answer_type(record)
        if sample.finish_reason == "length":
            out[i] = _TRUNCATED
        elif kind in ("math", "choice"):
            math_rows.append(i)
        else:
            out[i] = Score(False, "unverified", "none", f"no {kind} verifier yet (interim scoring; see evaluation.scoring)")
    if math_rows:
        cfg = verify.VerifyConfig(timeout_s=settings.timeout_seconds, workers=settings.workers)
        verdicts, _ = verify.verify_pairs([(samples[i].text, records[i].get("answer")) for i in math_rows], cfg)
        for i, verdict in zip(math_rows, verdicts, strict=True):
            reason = {"pass": "answer equals the reference", "fail": "answer differs from the reference",
                      "error": "check crashed or timed out", "unknown": "no response or no reference"}[verdict]
            status = "unverified" if verdict == "unknown" else verdict
            out[i] = Score(verdict == "pass", status, "math", reason)
    return [s for s in out if s is not None]
