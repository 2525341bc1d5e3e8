"""What to generate and how to run the engine: two frozen models, and the pure choices made from them.

`Sampling` maps onto vLLM's `SamplingParams`; `EngineOptions` onto `vllm.LLM(...)`. The choices that
depend on the device (eager mode and fp32 on CPU, an explicit KV cache size there) are made in
`engine_plan`, a pure function, so they are tested without vLLM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Sampling", "EngineOptions", "EnginePlan", "engine_plan", "request_seed", "CPU_DEFAULT_KV_CACHE_GIB"]

CPU_DEFAULT_KV_CACHE_GIB: Final = 1.0
"""On CPU vLLM reserves `gpuMemoryUtilization` of *all* RAM unless told a KV cache size, and refuses to
start when that much is not free. 1 GiB holds 1M tokens of the tiny model (research/cpu-stack-feasibility.md)."""


class Sampling(BaseModel):
    """Sampling parameters of one generation call (vLLM `SamplingParams`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(ge=1, le=1024, description="Samples per prompt.")
    temperature: float = Field(ge=0, le=2, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(ge=1, le=1_048_576, description="Generation budget per sample; a sample that hits it is `length`-truncated.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Base seed; each prompt's seed is derived from it and the prompt id.")
    logprobs: bool = Field(
        default=False,
        description="Record each sample's cumulative log-prob (vLLM `logprobs=0`: only the sampled token's, no top-k). "
        "Costs a little detokenisation per token, so only callers that rank samples ask for it.",
    )


class EngineOptions(BaseModel):
    """How to start one vLLM engine (`vllm.LLM`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tensor_parallel: int = Field(default=1, ge=1, le=16, description="GPUs per engine (tensor parallelism).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weights dtype. `auto`: the checkpoint's dtype on GPUs, float32 on CPU (vLLM CPU would cast to bf16)."
    )
    max_model_len: int | None = Field(default=None, ge=16, le=1_048_576, description="Context length; empty uses the model's.")
    enforce_eager: bool | None = Field(
        default=None,
        description="Skip torch.compile/CUDA graphs. Empty: eager on CPU (engine start 3 s instead of 47 s), compiled on GPUs.",
    )
    prefix_caching: bool = Field(default=True, description="Share the KV cache of common prompt prefixes (the system prompt, n>1).")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1, description="Share of GPU memory vLLM may use.")
    kv_cache_gib: float | None = Field(
        default=None, gt=0, le=4096, description="KV cache size in GiB. Empty: vLLM's default on GPUs; on CPU VLLM_CPU_KVCACHE_SPACE or 1 GiB."
    )


@dataclass(frozen=True)
class EnginePlan:
    """The `vllm.LLM` keyword arguments and the environment they need (set before the engine starts)."""

    kwargs: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)


def engine_plan(model_dir: Path, options: EngineOptions, *, device: str, env: Mapping[str, str]) -> EnginePlan:
    """Decide the engine's arguments for `device` ("cpu", "cuda", …). Pure: `env` is passed in."""
    cpu = device == "cpu"
    kwargs: dict[str, Any] = {
        "model": str(model_dir),
        "tensor_parallel_size": options.tensor_parallel,
        "dtype": ("float32" if cpu else "auto") if options.dtype == "auto" else options.dtype,
        "enforce_eager": cpu if options.enforce_eager is None else options.enforce_eager,
        "enable_prefix_caching": options.prefix_caching,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "seed": 0,  # every request carries its own seed (request_seed); this only seeds the engine's own RNG
    }
    if options.max_model_len is not None:
        kwargs["max_model_len"] = options.max_model_len
    if options.kv_cache_gib is not None:
        kwargs["kv_cache_memory_bytes"] = int(options.kv_cache_gib * 2**30)
    elif cpu and not env.get("VLLM_CPU_KVCACHE_SPACE"):
        kwargs["kv_cache_memory_bytes"] = int(CPU_DEFAULT_KV_CACHE_GIB * 2**30)
    extra_env: dict[str, str] = {}
    if cpu and options.tensor_parallel == 1:
        # One process: the multiprocess engine spends ~20 s re-importing vLLM in two spawned processes
        # (research/cpu-stack-feasibility.md §2a). On GPUs the default multiprocess engine overlaps
        # scheduling with the forward pass, so it stays.
        kwargs["distributed_executor_backend"] = "uni"
        extra_env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if cpu:
        # Workaround: vllm-cpu 0.32 crashes ("CPU Generator does not use offset", gpu_model_runner
        # _bookkeeping_sync) when a *seeded* request's prefill is split across engine steps, which chunked
        # prefill does as soon as a batch's prompts exceed max_num_batched_tokens (measured: 64 prompts × 4
        # samples). Whole-prompt prefills avoid it. Exit: drop this when vLLM's CPU runner stops calling
        # torch.Generator.set_offset (CPU generators have no offset).
        kwargs["enable_chunked_prefill"] = False
    return EnginePlan(kwargs=kwargs, env=extra_env)


def request_seed(seed: int, prompt_id: str) -> int:
    """A prompt's sampling seed: the same prompt gets the same samples whichever shard or chunk it is in."""
    digest = hashlib.sha256(f"{seed}\x00{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
