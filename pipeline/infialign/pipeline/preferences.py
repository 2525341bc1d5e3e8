"""Preference pairs from the SFT model's own errors (seeds §1.9): the decisions of the `prefs` stage.

Pure functions over plain values; the stage does the I/O (vLLM, verifiers, storage) around them.

For each challenge prompt the SFT model answers n times and every answer is verified. The prompt's
outcome is `all_right` (nothing to fix), `all_wrong`, `mixed`, or `undecided` (no sample could be
decided: truncated, timed out, errors). A pair sets one verified-wrong model answer (rejected) against
the prompt's verified expert answer (chosen).

InfiAlign's three refinement steps map onto:

1. cleaning — the stage drops duplicate prompts and prompts that overlap the SFT data or a benchmark;
2. challenge selection — :func:`select_challenges`: prompts the model gets wrong often but not always
   (`mixed` with a pass rate ≤ `max_pass_rate`, hardest first), then `all_wrong` prompts if allowed,
   taken round-robin across domains so no domain crowds out the others;
3. quality check — :func:`chosen_problem`: the chosen answer must be verified against a real reference,
   complete (closed `</think>`, a final answer) and within the length budget.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from infialign.pipeline.curation import answers

__all__ = [
    "Outcome",
    "ModelSample",
    "Candidate",
    "OUTCOMES",
    "outcome",
    "pass_rate",
    "choose_rejected",
    "chosen_problem",
    "select_challenges",
]

Outcome = Literal["all_right", "all_wrong", "mixed", "undecided"]
OUTCOMES: Final = ("all_right", "all_wrong", "mixed", "undecided")
_DECIDED: Final = frozenset({"pass", "fail"})


@dataclass(frozen=True)
class ModelSample:
    """One SFT-model answer to a challenge prompt and its verdict."""

    text: str
    status: str  # pass | fail | error | timeout | unverified
    finish_reason: str
    logprob_per_token: float | None = None

    @property
    def decided(self) -> bool:
        return self.finish_reason != "length" and self.status in _DECIDED


def outcome(samples: Sequence[ModelSample]) -> Outcome:
    decided = [s for s in samples if s.decided]
    if not decided:
        return "undecided"
    right = sum(s.status == "pass" for s in decided)
    if right == len(decided):
        return "all_right"
    return "all_wrong" if right == 0 else "mixed"


def pass_rate(samples: Sequence[ModelSample]) -> float | None:
    decided = [s for s in samples if s.decided]
    return sum(s.status == "pass" for s in decided) / len(decided) if decided else None


def choose_rejected(samples: Sequence[ModelSample], mode: Literal["confident", "random"], rng: random.Random) -> int | None:
    """Index of the wrong sample to reject: the model's most confident error, or a random one.

    A "confident error" (highest mean token log-prob among verified-wrong samples) is what SAGE calls
    the most useful supervision [RECON, seeds §1.9]. Without log-probs it falls back to the first.
    """
    wrong = [i for i, s in enumerate(samples) if s.decided and s.status == "fail"]
    if not wrong:
        return None
    if mode == "random":
        return rng.choice(wrong)
    return max(wrong, key=lambda i: (samples[i].logprob_per_token if samples[i].logprob_per_token is not None else float("-inf"), -i))


def chosen_problem(response: str | None, verification: str, reference_source: str | None, max_chars: int) -> str | None:
    """Why an expert answer cannot be `chosen`, or None when it can."""
    if not response or not response.strip():
        return "chosen_missing"
    if verification != "pass":
        return "chosen_not_verified"
    if reference_source == "response":
        return "chosen_self_referenced"
    if answers.THINK_OPEN in response and answers.THINK_CLOSE not in response:
        return "chosen_truncated"
    if answers.extract_answer(answers.after_think(response)) is None:
        return "chosen_no_final_answer"
    if len(response) > max_chars:
        return "chosen_too_long"
    return None


@dataclass(frozen=True)
class Candidate:
    """A prompt that can make a pair."""

    id: str
    domain: str
    outcome: Outcome
    pass_rate: float


def select_challenges(
    candidates: Sequence[Candidate],
    target: int,
    *,
    max_pass_rate: float,
    include_all_wrong: bool,
    seed: int,
) -> tuple[list[str], dict[str, int]]:
    """Ids of the prompts kept for pairs, balanced across domains, and the drop counts.

    Order of preference: `mixed` prompts with a pass rate ≤ `max_pass_rate`, lowest pass rate first (the
    model errs most, yet can solve it); then `all_wrong` prompts when `include_all_wrong`. Domains take
    turns, so the kept set is as even across domains as the candidates allow.
    """
    dropped = {"dropped_pass_rate_above_max": 0, "dropped_all_wrong_excluded": 0, "dropped_over_target": 0}
    rng = random.Random(seed)
    eligible: list[Candidate] = []
    for c in candidates:
        if c.outcome == "mixed" and c.pass_rate <= max_pass_rate:
            eligible.append(c)
        elif c.outcome == "mixed":
            dropped["dropped_pass_rate_above_max"] += 1
        elif c.outcome == "all_wrong" and include_all_wrong:
            eligible.append(c)
        elif c.outcome == "all_wrong":
            dropped["dropped_all_wrong_excluded"] += 1
    by_domain: dict[str, list[Candidate]] = defaultdict(list)
    for c in eligible:
        by_domain[c.domain].append(c)
    for items in by_domain.values():
        rng.shuffle(items)  # ties in the sort below break at random, but reproducibly
        items.sort(key=lambda c: (c.outcome != "mixed", c.pass_rate))
    kept: list[str] = []
    domains = sorted(by_domain)
    cursor = {d: 0 for d in domains}
    while len(kept) < target and domains:
        for d in list(domains):
            if len(kept) >= target:
                break
            if cursor[d] >= len(by_domain[d]):
                domains.remove(d)
                continue
            kept.append(by_domain[d][cursor[d]].id)
            cursor[d] += 1
    dropped["dropped_over_target"] = len(eligible) - len(kept)
    return kept, dropped
