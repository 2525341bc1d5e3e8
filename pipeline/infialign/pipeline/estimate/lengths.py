"""Token lengths of a dataset's records, and where the numbers come from.

Two models of a length distribution answer the same questions (mean prompt, mean response and mean record
length when cut at a maximum, and the attention context T = Σl²/Σl of packed rows):

* `Empirical`: measured lengths of a sample (the run's own outputs, or a sample of the sources).
* `Lognormal`: record lengths lognormal with σ 0.8, cut at the maximum. The default prior is the long-CoT
  shape of benchmarks/gpu_estimate.md (median 6,000 tokens); `--tokens-per-row` keeps σ and moves the
  median so the mean (cut at 32,768) is the given one. Its moments are closed-form: for X ~ LN(μ, σ) cut at c,
  E[min(X,c)^k] = e^{kμ + k²σ²/2} Φ((ln c − μ − kσ²)/σ) + c^k (1 − Φ((ln c − μ)/σ)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

__all__ = [
    "Source",
    "Figure",
    "Lengths",
    "Empirical",
    "Lognormal",
    "LONG_COT_PRIOR",
    "with_mean",
    "chars_to_tokens",
    "CHARS_PER_TOKEN",
    "sample_lengths",
]

Source = Literal["run outputs", "source sample", "flag", "spec", "measured", "known size", "default", "unknown"]
"""Where a figure comes from: a finished step's `_SUCCESS.json`/parquet (`run outputs`); a sample of the spec's
sources (`source sample`); `--rows`/`--tokens-per-row` (`flag`); a number in the spec such as targetSize (`spec`);
a metric a finished step measured (`measured`); the published size of a known benchmark (`known size`); the
documented prior (`default`); nothing (`unknown`)."""

CHARS_PER_TOKEN: Final = 4.0
"""Heuristic for text nobody tokenised: ~4 characters per token for English BPE vocabularies (OpenAI's rule of
thumb). Math with many digits tokenises denser in Qwen's vocabulary (one token per digit), so counts from
characters are on the low side there."""

_SIGMA: Final = 0.8
_PROMPT_DEFAULT: Final = 256  # prompt tokens when only a record length is known [reconstruction]


def chars_to_tokens(chars: int) -> int:
    return int(math.ceil(chars / CHARS_PER_TOKEN))


@dataclass(frozen=True)
class Figure:
    """A number and where it came from."""

    value: float | None
    source: Source
    note: str = ""

    @property
    def known(self) -> bool:
        return self.value is not None


class Lengths(Protocol):
    source: Source
    note: str

    def mean_prompt(self) -> float: ...
    def mean_response(self, cap: int) -> float: ...
    def mean_total(self, cap: int) -> float: ...
    def context(self, cap: int) -> float: ...


@dataclass(frozen=True)
class Empirical:
    """Measured prompt and response lengths (tokens) of a sample of records."""

    prompt: tuple[int, ...]
    response: tuple[int, ...]
    source: Source
    note: str = ""

    def _totals(self, cap: int) -> list[int]:
        return [min(p + r, cap) for p, r in zip(self.prompt, self.response, strict=True)]

    def mean_prompt(self) -> float:
        return sum(self.prompt) / len(self.prompt) if self.prompt else 0.0

    def mean_response(self, cap: int) -> float:
        return sum(min(r, cap) for r in self.response) / len(self.response) if self.response else 0.0

    def mean_total(self, cap: int) -> float:
        totals = self._totals(cap)
        return sum(totals) / len(totals) if totals else 0.0

    def context(self, cap: int) -> float:
        totals = self._totals(cap)
        s = sum(totals)
        return sum(t * t for t in totals) / s if s else 0.0


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass(frozen=True)
class Lognormal:
    """Record lengths lognormal(ln median, σ), cut at the maximum length; prompts a fixed share."""

    median: float
    sigma: float = _SIGMA
    prompt_tokens: float = _PROMPT_DEFAULT
    source: Source = "default"
    note: str = ""

    def _moment(self, k: int, cap: int) -> float:
        mu, s, c = math.log(self.median), self.sigma, float(cap)
        below = math.exp(k * mu + k * k * s * s / 2.0) * _phi((math.log(c) - mu - k * s * s) / s)
        return below + c**k * (1.0 - _phi((math.log(c) - mu) / s))

    def mean_prompt(self) -> float:
        return self.prompt_tokens

    def mean_total(self, cap: int) -> float:
        return self._moment(1, cap)

    def mean_response(self, cap: int) -> float:
        return max(self.mean_total(cap + int(self.prompt_tokens)) - self.prompt_tokens, 0.0)

    def context(self, cap: int) -> float:
        return self._moment(2, cap) / self._moment(1, cap)


LONG_COT_PRIOR: Final = Lognormal(
    median=6000.0, source="default", note="long-CoT prior of benchmarks/gpu_estimate.md: lognormal median 6,000, σ 0.8"
)

_FLAG_CAP: Final = 32768


def with_mean(mean: float, source: Source = "flag", note: str = "") -> Lognormal:
    """The prior's shape with the median moved so that the mean cut at 32,768 tokens is `mean` (bisection)."""
    lo, hi = 1.0, 1e7
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if Lognormal(mid).mean_total(_FLAG_CAP) < mean:
            lo = mid
        else:
            hi = mid
    return Lognormal(median=math.sqrt(lo * hi), prompt_tokens=min(_PROMPT_DEFAULT, mean / 4), source=source, note=note)


def sample_lengths(prompt_chars: Sequence[int], response_chars: Sequence[int], source: Source, note: str = "") -> Empirical:
    """Lengths from character counts with the CHARS_PER_TOKEN heuristic."""
    return Empirical(tuple(chars_to_tokens(c) for c in prompt_chars), tuple(chars_to_tokens(c) for c in response_chars), source, note)
