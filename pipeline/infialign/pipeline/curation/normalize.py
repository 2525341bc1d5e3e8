"""Prompt normalisation for dedup and decontamination, and the word tokeniser for n-grams.

The normal form is: Unicode NFKC (full-width digits and letters become ASCII, ligatures split), lowercase,
the common instruction boilerplate removed ("Please reason step by step, and put your final answer within
\\boxed{}." and its variants), every symbol that is not a letter, digit or combining mark split off as its
own token, whitespace collapsed to single spaces.

Unlike datatrove's default ``TextNormConfig`` it KEEPS digits, operators and LaTeX: "Compute 3 + 5" and
"Compute 7 + 2" are different problems, and mapping digits to 0 merges them (curation-anchors.md §3.1,
pitfall 2). Splitting symbols off makes "x^2+3x=5" and "x^2 + 3x = 5" the same token sequence, so
spacing differences do not hide duplicates.

Everything runs as Arrow compute kernels over a whole column; :func:`normalize_text` is the same code
on a one-element array, so the scalar and vectorised forms can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "INSTRUCTION_PREFIXES",
    "INSTRUCTION_SUFFIXES",
    "by_ascii",
    "lower_ascii",
    "normalize_array",
    "normalize_text",
    "normalize_tokens",
    "tokenize_array",
    "word_tokens",
]

# RE2 syntax (Arrow's regex engine), applied to NFKC-lowercased text. Anchored at the end (suffixes) or
# start (prefixes) so a sentence of the same words inside a problem is left alone.
_PUT: Final = r"(?:put|return|write|present|give|output)"
INSTRUCTION_SUFFIXES: Final[tuple[str, ...]] = (
    # "Please reason step by step, and put your final answer within \boxed{}." (DeepSeek-R1 / Open-R1 /
    # InfiR2 eval prompts, seeds-algorithms.md §1.3) and "Let's think step by step." (zero-shot CoT).
    r"(?:\s|^)(?:please\s+)?(?:let'?s\s+)?(?:reason|think)\s+step[\s-]+by[\s-]+step\s*"
    r"(?:[,;]?\s*(?:and\s+)?" + _PUT + r"\s[^\n]{0,60}\\boxed\s*\{\s*\}\s*\.?|[.!])?\s*$",
    # "Put/Return/Write your final answer within/in \boxed{}."
    r"(?:\s|^)(?:please\s+)?" + _PUT + r"\s+(?:your\s+|the\s+)?final\s+(?:answer|response)\s+(?:with)?in\s+"
    r"\\boxed\s*\{\s*\}\s*\.?\s*$",
)
INSTRUCTION_PREFIXES: Final[tuple[str, ...]] = (
    # OpenThoughts prepends "Return your final response within \boxed{}. " to every problem.
    r"^\s*(?:please\s+)?" + _PUT + r"\s+(?:your\s+|the\s+)?final\s+(?:answer|response)\s+(?:with)?in\s+"
    r"\\boxed\s*\{\s*\}\s*\.?\s*",
)

_SYMBOL: Final = r"([^\p{L}\p{N}\p{M}\s\p{Z}])"
_SYMBOL_ASCII: Final = r"([^A-Za-z0-9\s])"


def _as_string_array(values: pa.Array | pa.ChunkedArray | Iterable[str | None]) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(list(values), pa.string())
    if pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    return values


# Which rows the instruction patterns can match, judged on a bounded head and tail (exact, see below).
_EDGE_CHARS: Final = 64
# Every suffix ends "step" or "\\boxed" followed only by whitespace and ".!{}": a tail whose text before
# its trailing run of those characters does not end so cannot match. A tail with fewer than 6 characters
# before that run cannot tell (the "^.{0,5}" branch), so it counts as a maybe.
_SUFFIX_TAIL: Final = r"(?s)(?:^.{0,5}|step|\\boxed)[\s.!{}]*$"
# The prefix starts, after whitespace, with "please" or a _PUT verb (at most 7 letters); a head with fewer
# than 8 characters after its leading whitespace cannot tell.
_PREFIX_HEAD: Final = r"(?s)^\s*(?:please|" + _PUT[3:-1] + r"|.{0,7}$)"


def _instruction_rows(arr: pa.Array) -> pa.Array:
    """Rows the instruction patterns can match: a necessary condition checked on the first and last
    ``_EDGE_CHARS`` code points only. A row whose tail (head) has more characters than the condition looks
    at is decided by that tail (head) exactly as by the whole text, and a shorter one is the whole text; no
    pattern matches a row outside, so the suffix passes leave it unchanged and the prefix pass sees the
    same text."""
    tail = pc.match_substring_regex(pc.utf8_slice_codeunits(arr, -_EDGE_CHARS), _SUFFIX_TAIL)
    head = pc.match_substring_regex(pc.utf8_slice_codeunits(arr, 0, _EDGE_CHARS), _PREFIX_HEAD)
    return pc.or_(tail, head)


def _strip_instructions(arr: pa.Array) -> pa.Array:
    # The regexes are anchored but RE2 still scans every row, and every long-CoT row has "boxed" (2.6 of
    # 33 CPU s of decontamination on 100k rows); run them only on rows whose head or tail can match.
    maybe = _instruction_rows(arr)
    if not pc.any(maybe).as_py():
        return arr
    subset = arr.filter(maybe)
    # Twice: "Let's think step by step. Put your final answer in \boxed{}." has both suffixes.
    for _ in range(2):
        for pattern in INSTRUCTION_SUFFIXES:
            subset = pc.replace_substring_regex(subset, pattern, "")
    for pattern in INSTRUCTION_PREFIXES:
        subset = pc.replace_substring_regex(subset, pattern, "")
    return pc.replace_with_mask(arr, maybe, subset)


def _tokens_unicode(arr: pa.Array, strip_instructions: bool) -> pa.ListArray:
    arr = pc.utf8_lower(pc.utf8_normalize(arr, "NFKC"))
    if strip_instructions:
        arr = _strip_instructions(arr)
    return tokenize_array(pc.replace_substring_regex(arr, _SYMBOL, r" \1 "))


def lower_ascii(arr: pa.Array, *, strip_instructions: bool = True) -> pa.Array:
    """ASCII texts lowercased and (``strip_instructions``) without the boilerplate: the text whose symbols
    and whitespace :func:`normalize_tokens` splits on, for a tokeniser over its bytes."""
    arr = pc.ascii_lower(arr)
    return _strip_instructions(arr) if strip_instructions else arr


def by_ascii(
    arr: pa.Array, ascii_fn: Callable[[pa.Array], pa.Array], other_fn: Callable[[pa.Array], pa.Array]
) -> pa.Array:
    """``ascii_fn`` of the ASCII rows and ``other_fn`` of the others (both give one value per row), in row order."""
    ascii_rows = pc.string_is_ascii(arr)
    n_ascii = pc.sum(ascii_rows).as_py() or 0
    if n_ascii == len(arr):
        return ascii_fn(arr)
    if n_ascii == 0:
        return other_fn(arr)
    # Mixed: each part with its kernels, then back into row order.
    parts = pa.concat_arrays([ascii_fn(arr.filter(ascii_rows)), other_fn(arr.filter(pc.invert(ascii_rows)))])
    mask = ascii_rows.to_numpy(zero_copy_only=False)
    order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return parts.take(pa.array(inverse))


def _tokens_ascii(arr: pa.Array, strip_instructions: bool) -> pa.ListArray:
    # The same result as _tokens_unicode on ASCII text (NFKC is the identity there), with the cheaper
    # ASCII kernels: about twice as fast, and most English math text is ASCII.
    arr = lower_ascii(arr, strip_instructions=strip_instructions)
    arr = pc.ascii_trim_whitespace(pc.replace_substring_regex(arr, _SYMBOL_ASCII, r" \1 "))
    arr = pc.if_else(pc.equal(pc.binary_length(arr), 0), pa.scalar(None, pa.string()), arr)
    return pc.ascii_split_whitespace(arr).fill_null(pa.scalar([], pa.list_(pa.string())))


def normalize_tokens(
    values: pa.Array | pa.ChunkedArray | Iterable[str | None],
    *,
    strip_instructions: bool = True,
) -> pa.ListArray:
    """Normalised word tokens of a column of texts (nulls give no tokens). See the module docstring."""
    arr = _as_string_array(values).fill_null("")
    return by_ascii(arr, lambda a: _tokens_ascii(a, strip_instructions), lambda a: _tokens_unicode(a, strip_instructions))


def normalize_array(
    values: pa.Array | pa.ChunkedArray | Iterable[str | None],
    *,
    strip_instructions: bool = True,
) -> pa.Array:
    """Normalised texts: :func:`normalize_tokens` joined by single spaces (nulls become ``""``)."""
    return pc.binary_join(normalize_tokens(values, strip_instructions=strip_instructions), " ")


def normalize_text(text: str | None, *, strip_instructions: bool = True) -> str:
    """:func:`normalize_array` of one string."""
    return normalize_array([text], strip_instructions=strip_instructions)[0].as_py()


def tokenize_array(normalized: pa.Array | pa.ChunkedArray | Iterable[str | None]) -> pa.ListArray:
    """Split texts on runs of Unicode whitespace; ``""`` and null have no tokens."""
    arr = pc.utf8_trim_whitespace(_as_string_array(normalized))
    # utf8_split_whitespace("") gives [""]; make empty strings null first so they give no token.
    arr = pc.if_else(pc.equal(pc.utf8_length(arr), 0), pa.scalar(None, pa.string()), arr)
    return pc.utf8_split_whitespace(arr).fill_null(pa.scalar([], pa.list_(pa.string())))


def word_tokens(text: str | None, *, normalized: bool = False) -> list[str]:
    """Word tokens of one text (normalising it first unless ``normalized``)."""
    norm = (text or "") if normalized else normalize_text(text)
    return norm.split()
