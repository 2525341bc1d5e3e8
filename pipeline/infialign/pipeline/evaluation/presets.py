"""The eval-side defaults of well-known benchmarks: samples per question, generation budget, answer type.

Column mappings are ingest's job (the `preset` of a benchmark); this table only says how to evaluate.
A benchmark's own `samples`/`maxTokens` win; then its preset's row; then the row its name matches
(`aime24`, `gpqa-diamond`, …); then the generic default.

| preset          | samples | maxTokens | answer | source |
|-----------------|---------|-----------|--------|--------|
| `aime`          | 32      | 31000     | math   | [SRC-2] InfiR2 eval scripts (AIME24 and AIME25) |
| `math500`       | 4       | 32768     | math   | open-r1 (n=4), lighteval generation size 32768 |
| `gpqa`          | 8       | 26000     | choice | [SRC-2] InfiR2 |
| `livecodebench` | 8       | 27000     | code   | [SRC-2] InfiR2 (v5, 2024-08-01 … 2025-02-01) |
| `humaneval`     | 8       | 32768     | code   | [RECON] |
| (other)         | 8       | 32768     | math   | [RECON] |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from infialign.pipeline.api import Benchmark

__all__ = ["EvalDefaults", "EVAL_PRESETS", "GENERIC", "defaults_for", "resolve"]

AnswerType = Literal["math", "code", "choice", "open"]


@dataclass(frozen=True)
class EvalDefaults:
    samples: int
    max_tokens: int
    answer_type: AnswerType


EVAL_PRESETS: Final[dict[str, EvalDefaults]] = {
    "aime": EvalDefaults(32, 31000, "math"),
    "math500": EvalDefaults(4, 32768, "math"),
    "gpqa": EvalDefaults(8, 26000, "choice"),
    "livecodebench": EvalDefaults(8, 27000, "code"),
    "humaneval": EvalDefaults(8, 32768, "code"),
}
GENERIC: Final = EvalDefaults(8, 32768, "math")

_NAME_PATTERNS: Final = (
    (re.compile(r"^aime(-?\d{2,4})?$"), "aime"),
    (re.compile(r"^math-?500$"), "math500"),
    (re.compile(r"^gpqa(-diamond)?$"), "gpqa"),
    (re.compile(r"^(livecodebench|lcb)(-v\d+)?$"), "livecodebench"),
    (re.compile(r"^humaneval$"), "humaneval"),
)


def defaults_for(preset: str, name: str) -> EvalDefaults:
    """The row for a preset, else for a well-known benchmark name, else the generic one. Pure."""
    if preset in EVAL_PRESETS:
        return EVAL_PRESETS[preset]
    for pattern, key in _NAME_PATTERNS:
        if pattern.match(name):
            return EVAL_PRESETS[key]
    return GENERIC


def resolve(bench: Benchmark) -> tuple[int, int, AnswerType]:
    """(samples, max_tokens, answer type) of a benchmark: its own settings first, then the table."""
    row = defaults_for(bench.preset, bench.name)
    return bench.samples or row.samples, bench.max_tokens or row.max_tokens, row.answer_type
