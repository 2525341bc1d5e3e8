"""Response length in tokens, the difficulty proxy of seeds §1.5 and the bound of the length rule.

Two counters: ``regex`` counts word pieces (runs of letters/digits, and each other symbol), a
tokenizer-free proxy that runs as one Arrow kernel; a path to a Hugging Face ``tokenizer.json`` counts
real tokens with the ``tokenizers`` library (imported lazily). seeds §1.3 asks for the *student's*
tokenizer at cluster scale; the proxy is for the laptop tier and tests.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from infialign.pipeline.curation import _arrow, _config, _ngrams, stats, steps
from pydantic import Field

__all__ = ["TokenCountConfig", "count_response_tokens", "count_tokens"]

_PIECE: Final = r"[\p{L}\p{N}_]+|[^\p{L}\p{N}_\s\p{Z}]"


class TokenCountConfig(_config.CurationConfig):
    tokenizer: str = Field("regex", description="'regex' (word-piece proxy) or the path of a tokenizer.json (the student's tokenizer).")
    overwrite: bool = Field(False, description="Recount rows that already have response_tokens.")


@functools.lru_cache(maxsize=2)
def _hf_tokenizer(path: str) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise ImportError(f"TokenCountConfig.tokenizer={path!r} needs `pip install tokenizers`; or use 'regex'") from e
    return Tokenizer.from_file(path)


# A single space between two characters that are not whitespace: GPT-2-style byte-level pre-tokenizers
# (GPT-2, Llama 3, Qwen) always end a piece before such a space and start the next at it (only whitespace
# pieces hold a space anywhere but at their start), and BPE never merges across pieces. So a text cut
# there counts as the sum of its parts, and the parts (" word", " 7", " =") repeat across texts.
# Whitespace here is Unicode's (what the tokenizers' regex means by \s), not RE2's ASCII \s.
_NOT_WS: Final = r"[^\t\n\x{0B}\f\r\x{85}\p{Z}]"
_WORD_GAP: Final = f"({_NOT_WS}) ({_NOT_WS})"
_CUT: Final = "\x00"
_CHECK_ROWS: Final = 16


def _splittable(tok: Any) -> bool:
    """Whether the tokenizer is a byte-level BPE whose count is additive over :data:`_WORD_GAP` cuts."""
    spec = json.loads(tok.to_str())
    pre = json.dumps(spec.get("pre_tokenizer"))
    normalizer = (spec.get("normalizer") or {}).get("type")
    return spec.get("model", {}).get("type") == "BPE" and '"ByteLevel"' in pre and normalizer in (None, "NFC")


class _SegmentCounter:
    """Exact token counts of long texts from the counts of their word-gap segments, each tokenized once.

    Tokenizing 3.3 KB CoTs runs at ~1 MB/s on a shared core, nearly all of it in the pre-tokenizer's
    regex (issue 12: 27 s of a 41 s curate at 20k). Here the cuts are one Arrow regex kernel, the
    segments are deduplicated by Arrow, and only segments never seen before reach the tokenizer. The
    first texts are also counted directly; any difference turns this path off for the run.
    """

    def __init__(self, tok: Any, max_cache: int = 2_000_000) -> None:
        self.tok = tok
        self.enabled = _splittable(tok)
        self.checked = False
        self.cache: dict[str, int] = {}
        self.max_cache = max_cache

    def _encode(self, values: list[str]) -> list[int]:
        encode = getattr(self.tok, "encode_batch_fast", self.tok.encode_batch)
        return [len(e.ids) for e in encode(values, add_special_tokens=False)]

    def count(self, part: pa.Array) -> np.ndarray:
        texts = part.fill_null("")
        if not self.enabled:
            return np.asarray(self._encode(texts.to_pylist()), dtype=np.int64)
        flat, parents = _word_gap_pieces(texts)
        encoded = pc.dictionary_encode(flat)
        distinct = encoded.dictionary.to_pylist()
        missing = [d for d in distinct if d not in self.cache]
        if missing:
            if len(self.cache) + len(missing) > self.max_cache:
                # Start over, and count every segment of this batch: the ones found above are gone too
                # (a 1M-row select died here with a KeyError before, issue 12).
                self.cache.clear()
                missing = distinct
            self.cache.update(zip(missing, self._encode(missing)))
        per_distinct = np.fromiter((self.cache[d] for d in distinct), dtype=np.int64, count=len(distinct))
        per_piece = per_distinct[encoded.indices.to_numpy(zero_copy_only=False)]
        # Pieces come in text order: integer sums per run of one text (a weighted bincount sums in float).
        out = np.zeros(len(texts), dtype=np.int64)
        first = np.searchsorted(parents, np.arange(len(texts)))
        has = first < np.r_[first[1:], len(parents)]
        if has.any():
            out[has] = np.add.reduceat(per_piece, first[has])
        if not self.checked:
            k = min(_CHECK_ROWS, len(texts))
            direct = np.asarray(self._encode(texts.slice(0, k).to_pylist()), dtype=np.int64)
            self.checked = True
            if not np.array_equal(direct, out[:k]):
                self.enabled = False
                return np.asarray(self._encode(texts.to_pylist()), dtype=np.int64)
        return out


_ASCII_WS: Final = np.zeros(256, dtype=bool)
_ASCII_WS[[9, 10, 11, 12, 13, 32]] = True


def _ws_multibyte(b0: np.ndarray, b1: np.ndarray, b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether the bytes ``b0 b1 (b2)`` begin a 2-byte / a 3-byte UTF-8 whitespace character: U+0085, U+00A0;
    U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000."""
    two = (b0 == 0xC2) & ((b1 == 0x85) | (b1 == 0xA0))
    e2 = (b0 == 0xE2) & (((b1 == 0x80) & (((b2 >= 0x80) & (b2 <= 0x8A)) | (b2 == 0xA8) | (b2 == 0xA9) | (b2 == 0xAF))) | ((b1 == 0x81) & (b2 == 0x9F)))
    three = e2 | ((b0 == 0xE1) & (b1 == 0x9A) & (b2 == 0x80)) | ((b0 == 0xE3) & (b1 == 0x80) & (b2 == 0x80))
    return two, three


def _byte_at(body: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``body[pos]``, 0 past either end (the bytes around a text buffer read as 0)."""
    inside = (pos >= 0) & (pos < len(body))
    return np.where(inside, body[np.clip(pos, 0, max(len(body) - 1, 0))] if len(body) else 0, 0).astype(np.uint8)


def _whitespace_around(body: np.ndarray, before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(byte ``before[k]`` is the last byte of a whitespace character, byte ``after[k]`` is the first byte
    of one) over UTF-8 bytes. Whitespace is :data:`_NOT_WS`'s complement: ``\\t \\n \\v \\f \\r``, U+0085
    and the separators ``\\p{Z}``. Only the neighbours of spaces are asked, and the multi-byte test only
    where they are not ASCII: classifying every byte of the texts cost ~10 passes over them (0.04 s of
    0.09 s per 2k long CoTs, measured)."""
    first = _ASCII_WS[body[after]]
    last = _ASCII_WS[body[before]]
    lead = np.flatnonzero(body[after] >= 0xC2)  # a character of two bytes or more starts here
    if len(lead):
        at = after[lead]
        two, three = _ws_multibyte(_byte_at(body, at), _byte_at(body, at + 1), _byte_at(body, at + 2))
        first[lead] |= two | three
    tail = np.flatnonzero(body[before] >= 0x80)  # a continuation byte: a multi-byte character ends here
    if len(tail):
        at = before[tail]
        two_back, _ = _ws_multibyte(_byte_at(body, at - 1), _byte_at(body, at), _byte_at(body, at + 1))
        _, three_back = _ws_multibyte(_byte_at(body, at - 2), _byte_at(body, at - 1), _byte_at(body, at))
        last[tail] |= (two_back & (at >= 1)) | (three_back & (at >= 2))
    return last, first


def _word_gap_pieces(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The texts cut before every :data:`_WORD_GAP` space (a single space between two characters that are
    not whitespace, inside one text): the pieces, zero-copy over the texts' bytes, and each piece's text.

    The same cuts as the regex ``(X) (X)`` -> ``\\1<cut> \\2`` would make at every gap, found with NumPy
    over the UTF-8 bytes (two Unicode regex passes over every text cost ~5 s per 20k long CoTs)."""
    offsets, data = _ngrams._string_buffers(texts)
    lo, hi = int(offsets[0]), int(offsets[-1])
    doc_start = offsets[:-1]
    body = data[lo:hi]
    # Both neighbours exist in the same text: not at a text's first or last byte.
    nonempty = offsets[1:] > doc_start
    edge = np.zeros(len(body) + 1, dtype=bool)
    edge[doc_start[nonempty] - lo] = True
    edge[offsets[1:][nonempty] - 1 - lo] = True
    space = np.flatnonzero(body == 32)
    space = space[~edge[space]]
    last, first = _whitespace_around(body, space - 1, space + 1)
    space = space[~last & ~first] + lo  # absolute positions in ``data``
    # A piece starts at every non-empty text's first byte and at every gap.
    starts = np.concatenate([doc_start[nonempty], space])
    starts.sort(kind="stable")
    piece_off = np.empty(len(starts) + 1, dtype=np.int64)
    piece_off[:-1] = starts
    piece_off[-1] = hi if len(starts) else lo
    # Pieces tile [lo, hi) without holes: a piece ends where the next starts.
    pieces = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(piece_off), texts.buffers()[2])
    # Pieces per text, in text order: one for its start and one per gap (no searchsorted per piece).
    per_text = nonempty + np.diff(np.searchsorted(space, offsets))
    parents = np.repeat(np.arange(len(doc_start)), per_text)
    return pieces, parents


@functools.lru_cache(maxsize=2)
def _segment_counter(path: str) -> _SegmentCounter:
    return _SegmentCounter(_hf_tokenizer(path))


def count_tokens(texts: pa.Array | pa.ChunkedArray | list[str | None], tokenizer: str = "regex", batch_rows: int = 2048) -> np.ndarray:
    """Token count per text (int64; 0 for null).

    Texts go to the tokenizer ``batch_rows`` at a time: one ``encode_batch`` over a whole table held every
    text as a Python string plus every encoding at once (3 GB of a 41 s curate at 20k long CoTs, issue 12);
    per batch, memory is bounded by the batch and the counts are the same. Byte-level BPE tokenizers count
    through :class:`_SegmentCounter` (same numbers, checked at the start).
    """
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
    n = len(arr)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    counter = None if tokenizer == "regex" else _segment_counter(tokenizer)
    for start in range(0, n, batch_rows):
        part = _arrow.combine(arr.slice(start, batch_rows))
        if counter is None:
            out[start : start + len(part)] = pc.count_substring_regex(part.fill_null(""), _PIECE).to_numpy(zero_copy_only=False)
        else:
            out[start : start + len(part)] = counter.count(part)
    return out


@steps.step(
    "count_response_tokens",
    kind="transform",
    scope="row",
    reads=("response", "response_tokens"),
    writes=("response_tokens",),
)
def count_response_tokens(table: pa.Table, cfg: TokenCountConfig) -> tuple[pa.Table, stats.StepStats]:
    """Fill ``response_tokens`` (null when there is no response)."""
    n = table.num_rows
    current = _arrow.column(table, "response_tokens")
    response = _arrow.column(table, "response")
    todo = np.ones(n, dtype=bool) if cfg.overwrite else current.is_null().to_numpy(zero_copy_only=False)
    todo &= response.is_valid().to_numpy(zero_copy_only=False)
    if not todo.any():
        return table, stats.StepStats.passthrough("count_response_tokens", n, {"counted": 0})
    counts = count_tokens(response.filter(pa.array(todo)), cfg.tokenizer)
    values = current.to_numpy(zero_copy_only=False).astype(np.float64)
    values[todo] = counts
    new = pa.array(values, pa.float64(), mask=np.isnan(values)).cast(pa.int32())
    return _arrow.replace_column(table, "response_tokens", new), stats.StepStats.passthrough(
        "count_response_tokens", n, {"counted": int(todo.sum())}
    )
