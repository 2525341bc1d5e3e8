"""Response length in tokens, the difficulty proxy of seeds §1.5 and the bound of the length rule.

Two counters: ``regex`` counts word pieces (runs of letters/digits, and each other symbol), a
tokenizer-free proxy that runs as one Arrow kernel; a path to a Hugging Face ``tokenizer.json`` counts
real tokens with the ``tokenizers`` library (imported lazily). seeds §1.3 asks for the *student's*
tokenizer at cluster scale; the proxy is for the laptop tier and tests.
"""

from __future__ import annotations

import functools
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


def count_tokens(texts: pa.Array | pa.ChunkedArray | list[str | None], tokenizer: str = "regex", batch_rows: int = 2048) -> np.ndarray:
    """Token count per text (int64; 0 for null).

    Texts go to the tokenizer ``batch_rows`` at a time: one ``encode_batch`` over a whole table held every
    text as a Python string plus every encoding at once (3 GB of a 41 s curate at 20k long CoTs, issue 12);
    per batch, memory is bounded by the batch and the counts are the same.
    """
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
    n = len(arr)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    tok = None if tokenizer == "regex" else _hf_tokenizer(tokenizer)
    for start in range(0, n, batch_rows):
        part = arr.slice(start, batch_rows)
        if tok is None:
            counts = pc.count_substring_regex(part.fill_null(""), _PIECE)
            out[start : start + len(part)] = (counts.to_numpy() if isinstance(counts, pa.ChunkedArray) else counts.to_numpy(zero_copy_only=False))
        else:
            values = [t or "" for t in part.to_pylist()]
            # encode_batch_fast skips offsets, which only counting does not need (tokenizers >= 0.20).
            encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
            out[start : start + len(part)] = [len(e.ids) for e in encode(values, add_special_tokens=False)]
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
