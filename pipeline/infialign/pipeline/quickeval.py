"""A small test-time check after each training phase: greedy exact match on benchmark questions.

This is a health metric for the training steps (did this phase learn, did it forget the last one),
not the `eval` stage: it decodes greedily with Hugging Face `generate` in the training process, on a
few hundred questions at most. Answers are scored by the eval stage's scoring (`evaluation.scoring`).
Items may carry a group (the built-in bench's ``provenance["tier"]``), and the result then breaks the
accuracy down by group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infialign.pipeline.api import VerificationSettings
from infialign.pipeline.curation import answers
from infialign.pipeline.evaluation import scoring

__all__ = ["GroupScore", "QuickEvalResult", "exact_match"]


@dataclass(frozen=True)
class GroupScore:
    """Exact match within one group of items (e.g. one difficulty tier)."""

    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


@dataclass(frozen=True)
class QuickEvalResult:
    accuracy: float
    correct: int
    total: int
    answered: int = 0  # outputs with a closed </think> block and a boxed answer: the format was learned
    samples: list[dict[str, Any]] = field(default_factory=list)  # a few (prompt, output, answer) for the run page
    by_group: Mapping[str, GroupScore] = field(default_factory=dict)  # group → score, for items that had a group


def exact_match(
    model_dir: Path,
    items: Sequence[tuple[list[dict[str, str]], str]],
    *,
    max_new_tokens: int = 320,
    batch_size: int = 32,
    keep_samples: int = 5,
    groups: Sequence[str | None] | None = None,
) -> QuickEvalResult:
    """Greedy-decode each (messages, reference answer) and score the boxed answer.

    ``groups``, when given, has one label per item (None: no group); ``by_group`` scores each label.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if groups is not None and len(groups) != len(items):
        raise ValueError(f"groups has {len(groups)} labels for {len(items)} items; give one label per item")
    if not items:
        return QuickEvalResult(accuracy=0.0, correct=0, total=0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    correct = answered = 0
    samples: list[dict[str, Any]] = []
    group_hits: dict[str, list[bool]] = {}
    outputs: list[str] = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        prompts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m, _ in batch]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for text in texts:
            answered += "</think>" in text and answers.last_boxed(text) is not None
        outputs += texts
    # the eval stage's scoring, in one pass over every output (verification workers start once)
    verdicts = scoring.score([scoring.Sample(t) for t in outputs], [{"answer": ref} for _, ref in items], VerificationSettings())
    labels = list(groups) if groups is not None else [None] * len(items)
    for (messages, reference), text, verdict, label in zip(items, outputs, verdicts, labels, strict=True):
        ok = verdict.passed
        correct += ok
        if label is not None:
            group_hits.setdefault(label, []).append(ok)
        if len(samples) < keep_samples:
            samples.append({"prompt": messages[-1]["content"], "output": text, "answer": reference, "correct": ok})
    by_group = {label: GroupScore(correct=sum(hits), total=len(hits)) for label, hits in sorted(group_hits.items())}
    return QuickEvalResult(
        accuracy=correct / len(items), correct=correct, total=len(items), answered=answered, samples=samples, by_group=by_group
    )
