"""Vectorised n-gram hashing: tokens → 64-bit token hashes → 64-bit hashes of every n-gram window.

Shared by near-dup (MinHash shingles), decontamination (benchmark n-gram index) and the repetition filter.
A batch of documents is represented as a flat ``uint64`` array plus ``offsets`` (document ``d`` owns
``values[offsets[d]:offsets[d+1]]``), the same layout as an Arrow list array, so no step loops over
tokens in Python:

1. Tokens come from Arrow (``utf8_split_whitespace`` of the normalised text), are dictionary-encoded in
   C++, and only the *distinct* token strings are hashed, with a byte-polynomial hash computed in NumPy
   over the dictionary's data buffer.
2. The hash of window ``j`` is ``mix(sum_i t[j+i] * P^i)`` (wrapping uint64 arithmetic), computed for all
   windows of all documents at once by a few vectorised passes (see :func:`ngram_hashes`).

Hashes depend only on the text, never on the batch, process or ``PYTHONHASHSEED``, so shards hashed by
different workers agree. Documents shorter than ``n`` units give one "whole" shingle (their full token
sequence), which matches only an identical short document.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__: list[str] = []  # private module

_U64 = np.uint64
_P: Final = _U64(0x100000001B3)  # FNV-64 prime, odd
_GOLDEN: Final = _U64(0x9E3779B97F4A7C15)
_M1: Final = _U64(0xBF58476D1CE4E5B9)
_M2: Final = _U64(0x94D049BB133111EB)
_CHAR_SALT: Final = _U64(0xD6E8FEB86659FD93)
_SHIFTED_MAX_N: Final = 8  # measured crossover of the two window algorithms in ngram_hashes

_powers = np.ones(1, dtype=np.uint64)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised: spreads every input bit over the 64 output bits (returns a copy)."""
    x = np.array(x, dtype=np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> _U64(30)
        x *= _M1
        x ^= x >> _U64(27)
        x *= _M2
        x ^= x >> _U64(31)
    return x


def _pow_table(n: int) -> np.ndarray:
    global _powers
    if len(_powers) < n:
        table = np.full(max(n, 2 * len(_powers)), _P, dtype=np.uint64)
        table[0] = 1
        with np.errstate(over="ignore"):
            _powers = np.cumprod(table, dtype=np.uint64)
    return _powers


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets of the slice, uint8 data) of a string array, zero-copy where possible."""
    if pa.types.is_large_string(arr.type):
        off_dtype = np.int64
    elif pa.types.is_string(arr.type) or pa.types.is_binary(arr.type):
        off_dtype = np.int32
    else:
        raise TypeError(f"expected a string array, got {arr.type}")
    bufs = arr.buffers()
    n = len(arr)
    offsets = np.frombuffer(bufs[1], dtype=off_dtype, count=arr.offset + n + 1)[arr.offset :].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


# Text bytes hashed at once. Hashing costs ~40 bytes of temporaries per byte of text (positions, the
# repeated starts, the widened bytes, their powers, the products), so one pass over a whole column held
# ~10 KB per normalised prompt: 0.43 GB of the dedup_exact peak at 50k rows, ~10 GB at 1M (issue 12).
# Per block it stays ~40 x 4 MiB = 160 MiB whatever the row count; every string is hashed alone, so the
# hashes do not depend on the blocks.
_HASH_BLOCK_BYTES: Final = 1 << 22


def row_blocks(offsets: np.ndarray, block_bytes: int) -> Iterator[tuple[int, int]]:
    """Consecutive row ranges ``[row, end)`` of strings at byte ``offsets`` (length rows + 1), each holding at
    most ``block_bytes`` bytes; a longer string goes alone. Byte-level passes run block by block, so their
    per-byte temporaries stay bounded whatever the column's size."""
    n = len(offsets) - 1
    row = 0
    while row < n:
        end = min(n, max(row + 1, int(np.searchsorted(offsets, offsets[row] + block_bytes, side="right")) - 1))
        yield row, end
        row = end


def hash_strings(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit hash of every string (null hashes like ``""``): ``mix(len * G xor sum_k (byte_k+1) * P^k)``."""
    if isinstance(arr, pa.ChunkedArray):
        # Chunk by chunk: combining would copy the whole column first.
        parts = [hash_strings(c) for c in arr.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    offsets, data = _string_buffers(arr)
    lens = np.diff(offsets)
    h = np.zeros(n, dtype=np.uint64)
    if offsets[-1] > offsets[0]:
        pw = _pow_table(int(lens.max()))
        for row, end in row_blocks(offsets, _HASH_BLOCK_BYTES):
            _hash_rows(offsets[row : end + 1], lens[row:end], data, pw, h[row:end])
    if arr.null_count:
        h[arr.is_null().to_numpy(zero_copy_only=False)] = 0
    with np.errstate(over="ignore"):
        h ^= lens.astype(np.uint64) * _GOLDEN
    return mix64(h)


def _hash_rows(offsets: np.ndarray, lens: np.ndarray, data: np.ndarray, pw: np.ndarray, out: np.ndarray) -> None:
    """``out[d] = sum_k (byte_k+1) * P^k`` over the bytes of string ``d`` (``offsets`` absolute into ``data``;
    ``out`` is a view of the caller's array and stays 0 for an empty string)."""
    lo, hi = int(offsets[0]), int(offsets[-1])
    if hi == lo:
        return
    starts = offsets[:-1] - lo
    pos = np.arange(hi - lo, dtype=np.int64) - np.repeat(starts, lens)
    with np.errstate(over="ignore"):
        contrib = (data[lo:hi].astype(np.uint64) + _U64(1)) * pw[pos]
    nonempty = lens > 0
    out[nonempty] = np.add.reduceat(contrib, starts[nonempty])


def token_dictionary(tokens: pa.ListArray | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(distinct tokens, every token's index into them, offsets per document) of a list<string> column."""
    if isinstance(tokens, pa.ChunkedArray):
        tokens = tokens.combine_chunks()
    n = len(tokens)
    raw = tokens.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = raw - raw[0] if n else np.zeros(1, dtype=np.int64)
    flat = tokens.flatten()
    if len(flat) == 0:
        return pa.array([], pa.string()), np.zeros(0, dtype=np.int64), offsets
    enc = pc.dictionary_encode(flat)
    return enc.dictionary, enc.indices.to_numpy(zero_copy_only=False), offsets


def token_units(tokens: pa.ListArray | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every token, offsets per document) of a list<string> column of tokens."""
    dictionary, idx, offsets = token_dictionary(tokens)
    if idx.size == 0:
        return np.zeros(0, dtype=np.uint64), offsets
    return hash_strings(dictionary)[idx], offsets


def char_units(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every character, offsets per document): the units of character n-grams."""
    lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    if offsets[-1] == 0:
        return np.zeros(0, dtype=np.uint64), offsets
    cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return mix64(cps ^ _CHAR_SALT), offsets


def sorted_unique(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, their counts). ``np.sort`` + a mask: NumPy 2's hash-based ``np.unique``
    is ~100x slower on a million uint64 (0.53 s vs 5 ms measured here)."""
    s = np.sort(x)
    if s.size == 0:
        return s, np.zeros(0, dtype=np.int64)
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return s[first], np.diff(np.r_[first, s.size])


def ragged_arange(counts: np.ndarray) -> np.ndarray:
    """``concat(arange(c) for c in counts)`` without a Python loop."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def ngram_hashes(units: np.ndarray, offsets: np.ndarray, n: int, *, whole_if_short: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every window of ``n`` consecutive units inside each document, and their offsets.

    A document with ``0 < len < n`` units gives one shingle of all its units when ``whole_if_short``
    (else none); an empty document gives none.

    The window hash is the polynomial ``sum_i t[j+i] * P^i (mod 2^64)``: n shifted multiply-adds for small n,
    by doubling (:func:`_doubling_windows`, ~2 log2(n) passes) for larger n.
    """
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    n_docs = len(offsets) - 1
    total = len(units)
    lens = np.diff(offsets)
    long = lens >= n
    short = (lens > 0) & ~long if whole_if_short else np.zeros(n_docs, dtype=bool)
    counts = np.where(long, lens - n + 1, 0) + short
    out_offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(counts, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), dtype=np.uint64)
    if out.size == 0:
        return out, out_offsets
    with np.errstate(over="ignore"):
        if total < n:
            windows = None  # no long document; short ones are summed below
        elif n <= _SHIFTED_MAX_N:
            # Small n: n shifted slices of the zero-padded units (contiguous, vectorised passes).
            pw = _pow_table(n)
            padded = np.concatenate([units, np.zeros(n - 1, dtype=np.uint64)])
            windows = padded[: total + 1 - n] * pw[0]
            tmp = np.empty_like(windows)
            for i in range(1, n):
                np.multiply(padded[i : i + total + 1 - n], pw[i], out=tmp)
                windows += tmp
        else:
            # Large n: windows of 1, 2, 4, ... units by doubling, joined over the binary digits of n.
            windows = _doubling_windows(units, n)
        if long.any():
            # Every position's window at once, then keep those inside a long document: all but the last
            # n - 1 positions of each document (marking those few, not every kept one: 0.38 of 1.7 CPU s).
            valid = np.ones(total, dtype=bool)
            tail = np.minimum(lens, n - 1)
            valid[np.repeat(offsets[1:], tail) - ragged_arange(tail) - 1] = False
            long_windows = windows[valid[: total + 1 - n]]
        else:
            long_windows = np.zeros(0, dtype=np.uint64)
        if short.any():
            starts = offsets[:-1][short]
            slens = lens[short]
            within = ragged_arange(slens)
            whole = np.add.reduceat(units[np.repeat(starts, slens) + within] * _pow_table(n)[within], np.cumsum(slens) - slens)
            slot = np.zeros(out.size, dtype=bool)
            slot[out_offsets[:-1][short]] = True
            out[slot] = whole
            out[~slot] = long_windows
        else:
            out[:] = long_windows
        out ^= _U64(n) * _GOLDEN
    return mix64(out), out_offsets


def _doubling_windows(units: np.ndarray, n: int) -> np.ndarray:
    """``sum_i units[j+i] * P^i`` over ``i < n`` for every ``j`` with a full window (wrapping uint64).

    Windows of ``k`` units give those of ``2k`` in one multiply-add, and the windows of the powers of two in
    n's binary digits join into n: ~2 log2(n) vectorised passes. The former prefix-sum form
    ``(S[j+n] - S[j]) * P^-j`` (the same values) ran two sequential cumprods of powers and a cumsum over every
    unit: 0.59 -> 0.18 CPU s for n=13 on 15M units (measured)."""
    pw = _pow_table(n)
    m = len(units) + 1 - n
    out = np.zeros(m, dtype=np.uint64)
    span, k, done = units, 1, 0  # span[j] = the window of k units at j; done = units of n already in out
    with np.errstate(over="ignore"):
        while True:
            if n & k:
                out += span[done : done + m] * pw[done]
                done += k
            if 2 * k > n:
                return out
            span = span[: len(span) - k] + span[k:] * pw[k]
            k *= 2


def window_any(flags: np.ndarray, offsets: np.ndarray, n: int, *, whole_if_short: bool = True) -> np.ndarray:
    """For every window :func:`ngram_hashes` produces (same order), whether any of its units is flagged."""
    return window_count(flags, offsets, n, whole_if_short=whole_if_short) > 0


def window_count(flags: np.ndarray, offsets: np.ndarray, n: int, *, whole_if_short: bool = True) -> np.ndarray:
    """For every window :func:`ngram_hashes` produces (same order), how many of its units are flagged."""
    lens = np.diff(offsets)
    long = lens >= n
    short = (lens > 0) & ~long if whole_if_short else np.zeros(len(lens), dtype=bool)
    counts = np.where(long, lens - n + 1, 0) + short
    starts = np.repeat(offsets[:-1], counts) + ragged_arange(counts)
    widths = np.where(np.repeat(short, counts), np.repeat(lens, counts), n)
    prefix = np.concatenate([[0], np.cumsum(flags.astype(np.int64))])
    return prefix[starts + widths] - prefix[starts]


def word_ngrams(normalized: pa.Array, n: int, *, whole_if_short: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Word n-gram hashes of already-normalised texts (see ``normalize.normalize_array``)."""
    from infialign.pipeline.curation import normalize

    return token_ngrams(normalize.tokenize_array(normalized), n, whole_if_short=whole_if_short)


def token_ngrams(tokens: pa.ListArray, n: int, *, whole_if_short: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`word_ngrams` of texts already split into tokens (a list<string> array)."""
    units, offsets = token_units(tokens)
    return ngram_hashes(units, offsets, n, whole_if_short=whole_if_short)


def word_ngrams_digits(normalized: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`word_ngrams` plus, per n-gram, whether it contains a token with a digit."""
    from infialign.pipeline.curation import normalize

    tokens = normalize.tokenize_array(normalized)
    units, offsets = token_units(tokens)
    flat = tokens.flatten()
    flags = pc.match_substring_regex(flat, r"\p{Nd}").to_numpy(zero_copy_only=False)
    hashes, out_offsets = ngram_hashes(units, offsets, n)
    return hashes, out_offsets, window_any(flags, offsets, n)


def word_ngrams_informative(normalized: pa.Array, n: int, placeholder: str = "_") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`word_ngrams_digits` plus, per n-gram, the share of its tokens that are not ``placeholder``."""
    from infialign.pipeline.curation import normalize

    tokens = normalize.tokenize_array(normalized)
    units, offsets = token_units(tokens)
    flat = tokens.flatten()
    digit = pc.match_substring_regex(flat, r"\p{Nd}").to_numpy(zero_copy_only=False)
    real = pc.not_equal(flat, placeholder).to_numpy(zero_copy_only=False)
    hashes, out_offsets = ngram_hashes(units, offsets, n)
    width = np.repeat(np.minimum(np.diff(offsets), n), np.diff(out_offsets))
    return hashes, out_offsets, window_any(digit, offsets, n), window_count(real, offsets, n) / np.maximum(width, 1)


def digit_keys(texts: pa.Array | Sequence[str | None], *, brackets_subtract: bool = False) -> list[str]:
    """The numbers of each text (after NFKC) as ``",3,-14,"`` (``",,"`` when there are none), so that
    ``key_a in key_b`` means a's number sequence occurs contiguously in b's. A minus sign written right
    before a digit is kept: ``x - y = -39`` and ``x - y = 39`` are different problems."""
    from infialign.pipeline.curation import normalize

    arr = texts if isinstance(texts, pa.Array) else pa.array(list(texts), pa.string())
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    runs = normalize.by_ascii(
        arr.fill_null(""), lambda a: _digit_runs_ascii(a, brackets_subtract), lambda a: _digit_runs(a, brackets_subtract)
    )
    return ["," + k.strip(",").replace("~", "-") + "," for k in runs.to_pylist()]


def _digit_runs(arr: pa.Array, brackets_subtract: bool) -> pa.Array:
    """Each text's digit runs (a sign minus as ``~``, ``~`` kept) with ``,`` for everything between."""
    arr = pc.utf8_normalize(arr, "NFKC")
    # A sign, not a subtraction: ASCII or Unicode minus after a non-alphanumeric (or at the start).
    # With brackets_subtract, not after a closing bracket either: in "x^{3}-6x" the minus subtracts.
    before = r"[^\p{Nd}\p{L})\]}]" if brackets_subtract else r"[^\p{Nd}\p{L}]"
    arr = pc.replace_substring_regex(arr, r"(^|" + before + r")[-\x{2212}](\p{Nd})", r"\1~\2")
    return pc.replace_substring_regex(arr, r"[^\p{Nd}~]+", ",")


_ALNUM_BYTE = np.zeros(256, dtype=bool)
_ALNUM_BYTE[ord("0") : ord("9") + 1] = True
_ALNUM_BYTE[ord("a") : ord("z") + 1] = True
_ALNUM_BYTE[ord("A") : ord("Z") + 1] = True
_ALNUM_BRACKET_BYTE = _ALNUM_BYTE.copy()
_ALNUM_BRACKET_BYTE[[ord(")"), ord("]"), ord("}")]] = True


def _digit_runs_ascii(arr: pa.Array, brackets_subtract: bool) -> pa.Array:
    """:func:`_digit_runs` of ASCII texts from their bytes, as ``",run,run,"`` with signs already ``-`` (the
    same keys after :func:`digit_keys`' clean-up; 0.6-1.0 -> 0.25-0.3 CPU s on 20k long-CoT texts, measured).

    NFKC is the identity on ASCII. A ``-`` is a sign when a digit follows it in the same text and it starts
    the text or follows a byte that is not a letter, a digit (or, with ``brackets_subtract``, a closing
    bracket); the regex's matches never overlap a sign: each ends on a digit, never the byte before one.
    Digits, signs and ``~`` are kept and each run of other bytes becomes one ``,``. Blocks of
    ~``_HASH_BLOCK_BYTES`` keep the per-byte temporaries bounded."""
    offsets, data = _string_buffers(arr)
    blocks = row_blocks(offsets, _HASH_BLOCK_BYTES)
    parts = [_digit_runs_block(offsets[row : end + 1], data, brackets_subtract) for row, end in blocks]
    return pa.concat_arrays(parts) if parts else pa.array([], pa.string())


def _digit_runs_block(offsets: np.ndarray, data: np.ndarray, brackets_subtract: bool) -> pa.Array:
    """:func:`_digit_runs_ascii` of the texts at absolute byte ``offsets`` of ``data``."""
    lo, hi = int(offsets[0]), int(offsets[-1])
    rel = offsets - lo
    n = len(rel) - 1
    text = data[lo:hi]
    size = hi - lo
    first = np.zeros(size + 1, dtype=bool)  # a text starts here (or the block ends)
    first[rel] = True
    keep = np.less(text - np.uint8(ord("0")), 10)  # digits (uint8 wraps below "0")
    keep |= text == ord("~")
    # Signs: judged at the few "-" bytes only.
    minus = np.flatnonzero(text == ord("-"))
    minus = minus[minus + 1 < size]
    minus = minus[keep[minus + 1] & (text[minus + 1] != ord("~")) & ~first[minus + 1]]
    before = text[np.maximum(minus - 1, 0)]
    excluded = (_ALNUM_BRACKET_BYTE if brackets_subtract else _ALNUM_BYTE)[before]
    keep[minus[first[minus] | ~excluded]] = True
    kept = np.flatnonzero(keep)
    run_start = first[kept] | ~keep[np.maximum(kept - 1, 0)] | (kept == 0)
    row = np.searchsorted(rel, kept, side="right") - 1
    kept_in_row = np.bincount(row, minlength=n)
    runs_in_row = np.bincount(row[run_start], minlength=n)
    # A text's output: "," and the bytes of each run, then "," (",," when it has no run).
    row_len = np.maximum(kept_in_row + runs_in_row + 1, 2)
    out_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(row_len, out=out_off[1:])
    kept_before = np.r_[0, np.cumsum(kept_in_row)[:-1]]
    runs_before = np.r_[0, np.cumsum(runs_in_row)[:-1]]
    within = np.arange(len(kept)) - kept_before[row] + np.cumsum(run_start) - runs_before[row]
    out = np.full(int(out_off[-1]), ord(","), dtype=np.uint8)
    out[out_off[row] + within] = np.where(text[kept] == ord("~"), ord("-"), text[kept])
    return pa.StringArray.from_buffers(n, pa.py_buffer(out_off.astype(np.int32)), pa.py_buffer(out))


def word_counts(normalized: pa.Array) -> np.ndarray:
    """Number of word tokens per normalised text."""
    from infialign.pipeline.curation import normalize

    return pc.list_value_length(normalize.tokenize_array(normalized)).to_numpy(zero_copy_only=False).astype(np.int64)


def assemble(n_docs: int, parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-subset ``(doc_indices, hashes, offsets)`` back into one document-ordered layout."""
    counts = np.zeros(n_docs, dtype=np.int64)
    for docs, _, offs in parts:
        counts[docs] = np.diff(offs)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    out = np.zeros(int(offsets[-1]), dtype=np.uint64)
    for docs, hashes, offs in parts:
        lens = np.diff(offs)
        if hashes.size == 0:
            continue
        within = np.arange(hashes.size, dtype=np.int64) - np.repeat(offs[:-1], lens)
        out[np.repeat(offsets[:-1][docs], lens) + within] = hashes
    return out, offsets


def doc_ids(offsets: np.ndarray) -> np.ndarray:
    """Document index of every element of a flat offsets layout."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
