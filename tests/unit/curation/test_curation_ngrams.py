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
