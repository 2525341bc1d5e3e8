"""Segment-wise SDPA: a variable-length attention path for packed rows where flash-attention is absent (CPU).

TRL packs with best-fit decreasing into one flattened row per batch (``padding_free``) and passes
``position_ids`` plus ``cu_seq_lens_q/k``. Flash-attention uses ``cu_seq_lens`` natively. With stock
``sdpa``/``eager`` in transformers 5.19, isolation of packed examples depends on a side path:
``masking_utils.find_packed_sequence_indices`` builds a block-diagonal mask from ``position_ids`` resets, but
only when ``attention_mask`` is None *and* no KV cache is passed. TRL's ``compute_loss`` sets
``use_cache=False``, so it holds inside SFTTrainer; a plain ``model(...)`` call with the default
``config.use_cache=True`` lets examples attend to each other (tests/pipeline/training/test_packing.py shows
both). Even when it holds, the mask is dense: a row of N tokens costs N² attention FLOPs and memory, and a
batch of B rows is flattened to one (B·N)² problem.

This module registers ``infialign_sdpa_varlen``: it runs ``scaled_dot_product_attention`` with
``is_causal=True`` once per packed example, read from ``cu_seq_lens_q``. Examples cannot see each other by
construction and no masked FLOPs are spent. With a padding mask (padded batches) or no boundaries it is
exactly transformers' ``sdpa``. Measured on the tiny model on CPU: 2–3.5× the tokens/s of padded batches
(benchmarks/bench_sft_packing.py).

Workaround exit: drop this once transformers routes ``sdpa`` + ``cu_seq_lens`` to a varlen kernel on CPU
(``torch.nn.attention.varlen.varlen_attn`` is flash-attention/CUDA only in torch 2.13).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # torch is imported where it is used, so the packing decision stays importable without it
    import torch

__all__ = ["SDPA_VARLEN", "register_sdpa_varlen", "sdpa_varlen_attention"]

SDPA_VARLEN: Final = "infialign_sdpa_varlen"


def _segments(cu_seq_lens: torch.Tensor | None, position_ids: torch.Tensor | None, length: int) -> list[tuple[int, int]]:
    if cu_seq_lens is not None:
        bounds = [int(b) for b in cu_seq_lens.tolist()]
    elif position_ids is not None and position_ids.shape[0] == 1:
        starts = (position_ids[0] == 0).nonzero().flatten().tolist()
        bounds = sorted(set([0, *starts, length]))
    else:
        bounds = [0, length]
    return [(s, e) for s, e in zip(bounds[:-1], bounds[1:], strict=True) if e > s]


def sdpa_varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over (batch, heads, seq, dim) tensors; returns (batch, seq, heads, dim) like transformers' sdpa."""
    import torch
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu_seq_lens = kwargs.get("cu_seq_lens_q")
    packed = attention_mask is None and query.shape[0] == 1 and query.shape[2] == key.shape[2]
    if not packed or (cu_seq_lens is None and kwargs.get("position_ids") is None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    segments = _segments(cu_seq_lens, kwargs.get("position_ids"), query.shape[2])
    if len(segments) == 1:
        return sdpa_attention_forward(module, query, key, value, None, dropout=dropout, scaling=scaling, **kwargs)
    gqa = query.shape[1] != key.shape[1]
    out = torch.cat(
        [
            F.scaled_dot_product_attention(
                query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa
            )
            for s, e in segments
        ],
        dim=2,
    )
    return out.transpose(1, 2).contiguous(), None


def _varlen_mask(*args: Any, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    # No padding mask: the batch is packed (or unpadded) and the attention function derives the segments itself,
    # so skip building the dense block-diagonal mask. With a padding mask, behave exactly like sdpa.
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register_sdpa_varlen() -> str:
    """Register the implementation with transformers (idempotent) and return its name for ``attn_implementation``."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(SDPA_VARLEN, sdpa_varlen_attention)
    AttentionMaskInterface.register(SDPA_VARLEN, _varlen_mask)
    return SDPA_VARLEN
