"""FLOPs of training and generation, and the time they take on a GPU. Pure arithmetic.

Training, per trained token (forward + backward; recomputation under gradient checkpointing not counted, so
these are *model* FLOPs, the MFU convention):

* 6N (Kaplan et al. 2020, "Scaling Laws", §2.1; Chinchilla's C ≈ 6ND): N = matmul parameters, i.e. all but
  the input embedding, a tied head counted once.
* + 12·L·H·Q·T (PaLM, Chowdhery et al. 2022, appendix B; torchtitan's MFU): attention scores and the weighted
  sum, L layers, H heads of size Q, context T counted as full (non-causal) attention. For packed rows T is
  the token-weighted mean example length Σl²/Σl, since examples attend only within themselves
  (benchmarks/gpu_estimate.md; training/progress.py logs `mfu_attn` with the same T).

Generation (vLLM), forward only, with the causal work that is actually done:

* prefill of p prompt tokens: 2N·p + 2·L·H·Q·p² (QKᵀ and AV, 2 FLOPs per multiply-add, half the square);
* decode of g tokens after p: 2N·g + 4·L·H·Q·(p·g + g²/2).

Decode is usually memory-bound: each step reads every weight once for the whole batch, plus the batch's KV
cache, so a step takes (weight bytes + batch × context × KV bytes/token) / bandwidth. `decode_seconds`
takes the larger of that and the compute time.
"""

from __future__ import annotations

from dataclasses import dataclass

from infialign.pipeline.estimate.hardware import Gpu
from infialign.pipeline.estimate.models import ModelShape

__all__ = [
    "train_flops_per_token",
    "attention_flops_per_token",
    "chinchilla_flops",
    "prefill_flops",
    "decode_flops",
    "compute_seconds",
    "DecodeTime",
    "decode_seconds",
]


def attention_flops_per_token(layers: int, attn_width: int, context: float) -> float:
    """12·L·H·Q·T: forward + backward attention FLOPs per token (PaLM appendix B)."""
    return 12.0 * layers * attn_width * context


def train_flops_per_token(shape: ModelShape, context: float) -> tuple[float, float]:
    """(6N, 6N + 12·L·H·Q·T). Without layer sizes (a `--params`-only shape) the attention term is 0."""
    six_n = 6.0 * shape.matmul_params
    if shape.layers is None or shape.attn_width is None:
        return six_n, six_n
    return six_n, six_n + attention_flops_per_token(shape.layers, shape.attn_width, context)


def chinchilla_flops(params: float, tokens: float) -> float:
    """C ≈ 6·N·D (Hoffmann et al. 2022, eq. in §3 / Kaplan et al. 2020)."""
    return 6.0 * params * tokens


def _attn(shape: ModelShape) -> float:
    return float(shape.layers * shape.attn_width) if shape.layers and shape.attn_width else 0.0


def prefill_flops(shape: ModelShape, prompt_tokens: float) -> float:
    """Forward FLOPs to read one prompt of p tokens: 2N·p + 2·L·H·Q·p²."""
    return 2.0 * shape.matmul_params * prompt_tokens + 2.0 * _attn(shape) * prompt_tokens**2


def decode_flops(shape: ModelShape, prompt_tokens: float, generated_tokens: float) -> float:
    """Forward FLOPs to generate g tokens after p: 2N·g + 4·L·H·Q·(p·g + g²/2)."""
    g, p = generated_tokens, prompt_tokens
    return 2.0 * shape.matmul_params * g + 4.0 * _attn(shape) * (p * g + g * g / 2.0)


def compute_seconds(flops: float, gpus: int, gpu: Gpu, mfu: float) -> float:
    """Wall seconds for `flops` on `gpus` GPUs at model-FLOPs utilisation `mfu`."""
    return flops / (gpus * gpu.peak_bf16_flops * mfu)


@dataclass(frozen=True)
class DecodeTime:
    seconds: float
    bound: str  # "memory bandwidth" or "compute"
    batch: int  # sequences decoded together per engine


def decode_seconds(
    shape: ModelShape,
    *,
    generated_tokens: float,
    decode_flops_total: float,
    context: float,
    batch: int,
    engines: int,
    tensor_parallel: int,
    gpu: Gpu,
    mfu: float,
    weight_bytes: float,
) -> DecodeTime:
    """Decode time of `generated_tokens` spread over `engines` engines of `tensor_parallel` GPUs, `batch`
    sequences each, at mean context `context`: the larger of the bandwidth bound and the compute bound."""
    kv = shape.kv_bytes_per_token() or 0.0
    per_engine_tokens = generated_tokens / engines
    steps = per_engine_tokens / max(batch, 1)
    step_bytes = weight_bytes + batch * context * kv
    memory_s = steps * step_bytes / (gpu.bandwidth_bytes_per_s * tensor_parallel)
    compute_s = compute_seconds(decode_flops_total / engines, tensor_parallel, gpu, mfu)
    if memory_s >= compute_s:
        return DecodeTime(memory_s, "memory bandwidth", batch)
    return DecodeTime(compute_s, "compute", batch)
