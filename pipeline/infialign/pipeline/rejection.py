"""Rejection sampling for `distill`: which records need the teacher, and which teacher samples to keep.

Pure functions over plain values; the stage does the I/O (vLLM, storage) around them.

A record needs the teacher when it has no response, when its response fails verification against a
real reference, or when its only reference was taken from that response itself (seeds §1.6: a sample
that fails is re-generated; issue 9: a self-referenced answer never verifies its own response).

How a teacher sample is accepted depends on the reference:

* **reference** (a real answer column, or tests): the sample's verdict must be `pass`.
* **teacher_agreement**: the record's answer came from its own response; the teacher's majority answer
  over all its samples so far equals it. The teacher confirms the answer; samples with that answer are kept.
* **majority_vote**: no usable reference (none, or the teacher disagrees with the self-referenced one);
  the teacher's majority answer wins when it has at least `min_votes` votes and `min_share` of the
  answered samples. Samples with that answer are kept and the majority answer becomes the reference.

Length-truncated samples (`finish_reason == "length"`) are never kept and never vote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from infialign.pipeline.curation import answers

__all__ = [
    "ReferenceSource",
    "TeacherSample",
    "Acceptance",
    "UNUSABLE_FINISH",
    "work_reason",
    "has_real_reference",
    "majority_answer",
    "accept_samples",
]

ReferenceSource = Literal["reference", "teacher_agreement", "majority_vote"]
UNUSABLE_FINISH: Final = frozenset({"length", "abort"})


@dataclass(frozen=True)
class TeacherSample:
    """One teacher output for one record, with its verdict against the record's real reference (if any)."""

    text: str
    finish_reason: str
    round: int
    index: int
    status: str = "unknown"  # the verifier's verdict; only meaningful with a real reference
    logprob_per_token: float | None = None

    @property
    def usable(self) -> bool:
        return self.finish_reason not in UNUSABLE_FINISH and bool(self.text.strip())

    @property
    def answer(self) -> str | None:
        return answers.final_boxed(answers.after_think(self.text)) if self.usable else None


@dataclass(frozen=True)
class Acceptance:
    """What a record keeps after the samples so far: nothing yet, or samples and the reference they met."""

    kept: tuple[TeacherSample, ...]
    reference: str | None
    reference_source: ReferenceSource | None

    @property
    def accepted(self) -> bool:
        return bool(self.kept)


def has_real_reference(record: Mapping[str, Any]) -> bool:
    """A reference that did not come from the response it would check."""
    provenance = record.get("provenance") or {}
    if provenance.get("answer_source") == "response":
        return False
    if provenance.get("answer_type") == "code":
        return bool(provenance.get("tests"))
    return bool((record.get("answer") or "").strip())


def work_reason(record: Mapping[str, Any], verdict: str | None, regenerate: bool) -> str | None:
    """Why the teacher must write this record's chain of thought, or None when it has a verified one."""
    if regenerate:
        return "regenerate"
    if not (record.get("response") or "").strip():
        return "missing_response"
    if not has_real_reference(record):
        return "unverified_reference"
    if verdict != "pass":
        return f"verification_{verdict or 'unknown'}"
    return None


def majority_answer(samples: Sequence[TeacherSample], min_votes: int, min_share: float) -> str | None:
    """The most common final answer (compared after normalisation), if it is a clear majority."""
    votes: Counter[str] = Counter()
    first_form: dict[str, str] = {}
    for s in samples:
        a = s.answer
        if a is None:
            continue
        key = answers.normalize_answer(a)
        votes[key] += 1
        first_form.setdefault(key, a)
    if not votes:
        return None
    (key, count), *rest = votes.most_common()
    if rest and rest[0][1] == count:  # a tie is no majority
        return None
    if count < min_votes or count / sum(votes.values()) < min_share:
        return None
    return first_form[key]


def _keep(candidates: Sequence[TeacherSample], keep: Literal["best", "all"]) -> tuple[TeacherSample, ...]:
    if not candidates or keep == "all":
        return tuple(candidates)
    # best: the teacher's most confident accepted sample (highest mean token log-prob); ties and missing
    # log-probs fall back to generation order, so the choice is deterministic.
    ranked = sorted(
        enumerate(candidates),
        key=lambda p: (-(p[1].logprob_per_token if p[1].logprob_per_token is not None else float("-inf")), p[0]),
    )
    return (ranked[0][1],)


def accept_samples(
    record: Mapping[str, Any],
    samples: Sequence[TeacherSample],
    *,
    keep: Literal["best", "all"],
    min_votes: int,
    min_share: float,
) -> Acceptance:
    """Decide which of a record's teacher samples (all rounds so far) to keep, and against what."""
    usable = [s for s in samples if s.usable]
    if has_real_reference(record):
        passed = [s for s in usable if s.status == "pass"]
        return Acceptance(_keep(passed, keep), record.get("answer"), "reference" if passed else None)
    majority = majority_answer(usable, min_votes, min_share)
    if majority is None:
        return Acceptance((), None, None)
    agreeing = [s for s in usable if answers.answers_equal(s.answer, majority)]
    own = record.get("answer")
    if own and answers.answers_equal(own, majority):
        return Acceptance(_keep(agreeing, keep), own, "teacher_agreement")
    return Acceptance(_keep(agreeing, keep), majority, "majority_vote")
