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
from infialign.pipeline.curation import _arrow, _config, stats, steps
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
        has_cut = pc.match_substring(texts, _CUT).to_numpy(zero_copy_only=False)
        if not self.enabled or has_cut.any():
            return np.asarray(self._encode(texts.to_pylist()), dtype=np.int64)
        cut = pc.replace_substring_regex(texts, _WORD_GAP, "\\1" + _CUT + " \\2")
        cut = pc.replace_substring_regex(cut, _WORD_GAP, "\\1" + _CUT + " \\2")  # gaps the first pass overlapped
        pieces = pc.split_pattern(cut, _CUT)
        flat = pc.list_flatten(pieces)
        parents = pc.list_parent_indices(pieces).to_numpy(zero_copy_only=False)
        encoded = pc.dictionary_encode(flat)
        distinct = encoded.dictionary.to_pylist()
        missing = [d for d in distinct if d not in self.cache]
        if missing:
            if len(self.cache) + len(missing) > self.max_cache:
                self.cache.clear()
            self.cache.update(zip(missing, self._encode(missing)))
        per_distinct = np.fromiter((self.cache[d] for d in distinct), dtype=np.int64, count=len(distinct))
        per_piece = per_distinct[encoded.indices.to_numpy(zero_copy_only=False)]
        out = np.bincount(parents, weights=per_piece, minlength=len(texts)).astype(np.int64)
        if not self.checked:
            k = min(_CHECK_ROWS, len(texts))
            direct = np.asarray(self._encode(texts.slice(0, k).to_pylist()), dtype=np.int64)
            self.checked = True
            if not np.array_equal(direct, out[:k]):
                self.enabled = False
                return np.asarray(self._encode(texts.to_pylist()), dtype=np.int64)
        return out


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
