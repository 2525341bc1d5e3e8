"""_ngrams.ngram_hashes equals its definition window by window, for every n and document shape."""

from __future__ import annotations

import numpy as np
import pytest
from infialign.pipeline.curation import _ngrams

_MASK = (1 << 64) - 1


def _naive(units: list[int], offsets: list[int], n: int, whole_if_short: bool) -> list[int]:
    """``mix(sum_i t[j+i] * P^i xor n * G)`` per window, in Python integers."""
    p, golden = int(_ngrams._P), int(_ngrams._GOLDEN)
    raw = []
    for d in range(len(offsets) - 1):
        doc = units[offsets[d] : offsets[d + 1]]
        spans = [doc[j : j + n] for j in range(len(doc) - n + 1)] if len(doc) >= n else ([doc] if doc and whole_if_short else [])
        raw += [sum(t * pow(p, i, 1 << 64) for i, t in enumerate(w)) & _MASK ^ (n * golden) & _MASK for w in spans]
    return _ngrams.mix64(np.array(raw, dtype=np.uint64)).tolist()


@pytest.mark.parametrize("n", [1, 2, 5, 8, 9, 13, 15, 16, 17, 31, 64])
@pytest.mark.parametrize("whole_if_short", [True, False])
def test_ngram_hashes_equal_the_definition(n, whole_if_short):
    rng = np.random.default_rng(n)
    lens = [0, 3, n - 1, n, n + 1, 0, 2 * n + 5, 1, 70, n]
    offsets = np.r_[0, np.cumsum(lens)].astype(np.int64)
    units = rng.integers(0, 2**64 - 1, int(offsets[-1]), dtype=np.uint64, endpoint=True)
    h, o = _ngrams.ngram_hashes(units, offsets, n, whole_if_short=whole_if_short)
    assert h.tolist() == _naive(units.tolist(), offsets.tolist(), n, whole_if_short)
    assert np.diff(o).tolist() == [max(k - n + 1, 0) + (whole_if_short and 0 < k < n) for k in lens]


def test_ngram_hashes_of_only_short_or_empty_documents():
    units = np.array([5, 6, 7], dtype=np.uint64)
    for offsets in ([0, 1, 3], [0, 0, 3], [0, 3, 3]):
        off = np.array(offsets, dtype=np.int64)
        assert _ngrams.ngram_hashes(units, off, 13)[0].tolist() == _naive(units.tolist(), offsets, 13, True)
    assert _ngrams.ngram_hashes(np.zeros(0, np.uint64), np.zeros(3, np.int64), 13)[0].size == 0


def _unicode_digit_keys(texts: list[str | None], brackets_subtract: bool) -> list[str]:
    """digit_keys by the regex path alone (the reference for ASCII rows)."""
    import pyarrow as pa

    runs = _ngrams._digit_runs(pa.array([t or "" for t in texts], pa.string()), brackets_subtract)
    return ["," + k.strip(",").replace("~", "-") + "," for k in runs.to_pylist()]


@pytest.mark.parametrize("brackets_subtract", [False, True])
def test_ascii_digit_keys_equal_the_regex_path(brackets_subtract, monkeypatch):
    import random

    rng = random.Random(3)
    pieces = list("-~09aZ )]}({[ \n,.") + ["--1", "x-3", "}-4", "12", "~~", "-\n1", "a--2"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    texts += ["", None, "-", "-1", "1-", "~", "a-1", ")-1", "]-1", "}-1", "\n-1", "x^{3}-6x", "x - y = -39", "1-", "-2"]
    texts += ["é-5 and −3", "Ｆｕｌｌ １２-３"]  # non-ASCII rows go the regex way, in their place
    want = _unicode_digit_keys(texts, brackets_subtract)
    assert _ngrams.digit_keys(texts, brackets_subtract=brackets_subtract) == want
    for block in (1, 5, 100):  # a text ending in "-" before one starting with a digit: no sign across texts
        monkeypatch.setattr(_ngrams, "_HASH_BLOCK_BYTES", block)
        assert _ngrams.digit_keys(texts, brackets_subtract=brackets_subtract) == want
