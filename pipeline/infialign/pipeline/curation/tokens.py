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


def count_tokens(texts: pa.Array | list[str | None], tokenizer: str = "regex") -> np.ndarray:
    """Token count per text (int64; 0 for null)."""
    arr = texts if isinstance(texts, pa.Array) else pa.array(texts, pa.string())
    if tokenizer == "regex":
        return pc.count_substring_regex(arr.fill_null(""), _PIECE).to_numpy(zero_copy_only=False).astype(np.int64)
    tok = _hf_tokenizer(tokenizer)
    values = [t or "" for t in arr.to_pylist()]
    return np.array([len(e.ids) for e in tok.encode_batch(values, add_special_tokens=False)], dtype=np.int64)


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
