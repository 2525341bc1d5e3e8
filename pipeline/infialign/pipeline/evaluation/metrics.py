"""avg@k and pass@k over per-sample correctness, per benchmark and per subset (difficulty tier). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import comb

__all__ = ["QuestionScore", "pass_at_k", "summarize", "metric_entries"]


@dataclass(frozen=True)
class QuestionScore:
    """One question's samples: how many there were and how many were correct."""

    id: str
    n: int
    correct: int
    subset: str | None = None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), for n samples of which c are correct."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 < k ≤ n and 0 ≤ c ≤ n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def summarize(questions: Sequence[QuestionScore], k: int) -> dict[str, float]:
    """{avg@k, pass@k} over questions: the mean accuracy of the k samples, and the chance one of k is right."""
    if not questions:
        return {}
    avg = sum(q.correct / q.n for q in questions) / len(questions)
    passed = sum(pass_at_k(q.n, q.correct, k) for q in questions) / len(questions)
    return {f"avg@{k}": avg, f"pass@{k}": passed}


def metric_entries(model: str, benchmark: str, questions: Sequence[QuestionScore], k: int) -> list[dict[str, object]]:
    """The result entries of one model × benchmark: the whole benchmark, then each subset (sorted)."""
    subsets = sorted({q.subset for q in questions if q.subset is not None})
    groups: Mapping[str | None, list[QuestionScore]] = {None: list(questions), **{s: [q for q in questions if q.subset == s] for s in subsets}}
    entries: list[dict[str, object]] = []
    for subset, group in groups.items():
        for metric, value in summarize(group, k).items():
            entry: dict[str, object] = {"model": model, "benchmark": benchmark, "metric": metric, "value": value, "samples": k, "questions": len(group)}
            if subset is not None:
                entry["subset"] = subset
            entries.append(entry)
    return entries
