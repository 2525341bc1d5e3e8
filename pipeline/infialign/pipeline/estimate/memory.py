"""Fit check: memory per GPU of a training or generation step, and what would make it fit. Pure arithmetic.

Training, per GPU, bf16 mixed precision with Adam (ZeRO paper, Rajbhandari et al. 2020, §3.1: 2 + 2 + 12
bytes per parameter: bf16 weights, bf16 gradients, fp32 master weights + momentum + variance), over D GPUs:

| ZeRO stage | weights | gradients | optimizer states |
|---|---|---|---|
| 0 (DDP)    | 2P      | 2P        | 12P    |
| 1          | 2P      | 2P        | 12P/D  |
| 2          | 2P      | 2P/D      | 12P/D  |
| 3          | 2P/D    | 2P/D      | 12P/D  |

ZeRO-3 also holds gathered full-size modules while it computes with them: 2 bytes × 2 × the largest module
(one layer, or the embedding table), the one in use and the one prefetched. `offloadOptimizer` moves the
optimizer states to CPU memory, `offloadParams` the ZeRO-3 weight shards. LoRA freezes the base weights
(2P, sharded under ZeRO-3) and keeps gradients and optimizer states only for the adapters: rank × (in + out)
parameters per adapted linear layer (all seven linears of a layer for `all-linear`).

Activations (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", §4):
s·b·h·(34 + 5·a·s/h) bytes per layer for a micro-batch of b sequences of s tokens, 16-bit activations, no
tensor parallelism. Flash attention never stores the a·s² score matrices, so the second term drops: 34·s·b·h
per layer. The 34 assumes a 4h GELU MLP; Qwen's SwiGLU MLP (≈5.3h) stores more, so this is on the low side.
With gradient checkpointing (per decoder layer, as transformers does it) only each layer's input is kept,
2·s·b·h per layer, plus one layer's full activations while it is recomputed. The output logits and their
gradient add s·b·V·4 bytes (bf16; TRL's chunked NLL avoids a full fp32 copy).

Generation (vLLM): bf16 weights 2P/TP per GPU plus the KV cache, 2 × layers × kv_heads × head_dim × 2 bytes
per token of context, split over the TP GPUs. vLLM takes 90 % of a GPU by default (`gpu_memory_utilization`).

A config *fits* when its total is at most USABLE (90 %) of the GPU's memory; the rest goes to the CUDA context,
NCCL buffers and allocator fragmentation [reconstruction]. It is a *sure OOM* when the total exceeds the whole
memory; `infialign validate` warns only then.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

from infialign.pipeline.estimate.hardware import Gpu
from infialign.pipeline.estimate.models import ModelShape

__all__ = [
    "USABLE",
    "VLLM_MEMORY_UTILIZATION",
    "VLLM_MAX_SEQS",
    "TrainSetup",
    "Memory",
    "Fix",
    "lora_params",
    "training_memory",
    "training_fixes",
    "GenSetup",
    "generation_memory",
    "generation_fixes",
    "max_sequences",
]

USABLE: Final = 0.9
VLLM_MEMORY_UTILIZATION: Final = 0.9  # vLLM's default gpu_memory_utilization
VLLM_MAX_SEQS: Final = 256  # vLLM's default max_num_seqs


@dataclass(frozen=True)
class Memory:
    """Bytes per GPU by part, against the GPU's memory."""

    parts: tuple[tuple[str, float], ...]
    capacity: float
    usable_share: float = USABLE

    @property
    def total(self) -> float:
        return sum(v for _, v in self.parts)

    @property
    def fits(self) -> bool:
        return self.total <= self.usable_share * self.capacity

    @property
    def sure_oom(self) -> bool:
        return self.total > self.capacity

    def to_dict(self) -> dict[str, float]:
        return {name: round(v / 1e9, 2) for name, v in self.parts} | {"total": round(self.total / 1e9, 2), "capacity": round(self.capacity / 1e9, 1)}


@dataclass(frozen=True)
class Fix:
    """One change and the memory per GPU it would give."""

    what: str  # "ZeRO-3", "gradient checkpointing"
    change: str  # the spec field and value to set
    memory_bytes: float
    fits: bool
    note: str = ""


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainSetup:
    devices: int
    zero_stage: int  # 0 = no ZeRO (plain data parallel)
    seq_len: int
    micro_batch: int = 1
    grad_ckpt: bool = True
    offload_optimizer: bool = False
    offload_params: bool = False
    lora_rank: int | None = None
    lora_targets: tuple[str, ...] = ("all-linear",)
    tensor_parallel: int = 1


_LINEAR_NAMES: Final = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_params(shape: ModelShape, rank: int, targets: tuple[str, ...] = ("all-linear",)) -> int:
    """Adapter parameters: rank × (in + out) per adapted linear, every layer. Unknown target names count as all-linear."""
    if not shape.complete or shape.layers is None:
        return 0
    chosen = set(_LINEAR_NAMES) if "all-linear" in targets or not set(targets) & set(_LINEAR_NAMES) else set(targets)
    per_layer = sum(rank * (i + o) for name, (i, o) in zip(_LINEAR_NAMES, shape.linear_shapes(), strict=True) if name in chosen)
    return per_layer * shape.layers


def _largest_module(shape: ModelShape) -> float:
    if not shape.complete or not shape.layers:
        return shape.params * 0.05  # unknown layout: assume a twentieth of the model
    per_layer = (shape.params - shape.embedding_params * (1 if shape.tied else 2)) / shape.layers
    return max(per_layer, float(shape.embedding_params))


def _activations(shape: ModelShape, setup: TrainSetup) -> list[tuple[str, float]]:
    if not shape.complete:
        return []
    assert shape.hidden and shape.layers and shape.vocab
    sbh = float(setup.seq_len) * setup.micro_batch * shape.hidden
    t = setup.tensor_parallel  # with sequence parallelism, every activation is split over the TP group
    if setup.grad_ckpt:
        acts = (2.0 * sbh * shape.layers + 34.0 * sbh) / t
    else:
        acts = 34.0 * sbh * shape.layers / t
    logits = 4.0 * setup.seq_len * setup.micro_batch * shape.vocab / t
    return [("activations", acts), ("logits", logits)]


def training_memory(shape: ModelShape, setup: TrainSetup, gpu: Gpu) -> Memory:
    p = float(shape.params) / setup.tensor_parallel
    d = max(setup.devices // setup.tensor_parallel, 1)  # data-parallel ranks that ZeRO shards over
    z = setup.zero_stage
    trainable = float(lora_params(shape, setup.lora_rank, setup.lora_targets)) / setup.tensor_parallel if setup.lora_rank else p
    weights = 2.0 * p / (d if z >= 3 else 1)
    if setup.offload_params and z >= 3:
        weights = 0.0
    grads = 2.0 * trainable / (d if z >= 2 else 1)
    optim = 12.0 * trainable / (d if z >= 1 else 1)
    if setup.offload_optimizer and z >= 1:
        optim = 0.0
    parts: list[tuple[str, float]] = [("weights", weights)]
    if setup.lora_rank:
        parts.append(("adapters", 2.0 * trainable))
    parts += [("gradients", grads), ("optimizer", optim)]
    if z >= 3:
        parts.append(("zero3 buffers", 2.0 * 2.0 * _largest_module(shape) / setup.tensor_parallel))
    parts += _activations(shape, setup)
    return Memory(tuple(parts), gpu.memory_bytes)


def training_fixes(shape: ModelShape, setup: TrainSetup, gpu: Gpu, *, settings_path: str, length_path: str, nodes_path: str,
                   gpus_per_node: int) -> list[Fix]:
    """Each change on its own, with the memory it gives. Empty when the setup fits already."""
    current = training_memory(shape, setup, gpu)
    if current.fits:
        return []
    fixes: list[Fix] = []

    def add(what: str, change: str, new: TrainSetup, note: str = "") -> None:
        m = training_memory(shape, new, gpu)
        if m.total < current.total:  # ZeRO-3 on a single GPU, say, only adds gather buffers
            fixes.append(Fix(what, change, m.total, m.fits, note))

    if not setup.grad_ckpt:
        add("gradient checkpointing", f"{settings_path}.gradientCheckpointing: true", dataclasses.replace(setup, grad_ckpt=True))
    if setup.zero_stage < 3:
        add("ZeRO-3", f"{settings_path}.deepspeed: {{mode: \"on\", zeroStage: 3}}", dataclasses.replace(setup, zero_stage=3))
    if not setup.offload_optimizer:
        add("ZeRO-3 + optimizer offload", f"{settings_path}.deepspeed.offloadOptimizer: true (with zeroStage: 3)",
            dataclasses.replace(setup, zero_stage=3, offload_optimizer=True), "slower: optimizer steps on the CPU")
    for factor in (2, 4, 8, 16):
        devices = setup.devices * factor
        new = dataclasses.replace(setup, devices=devices, zero_stage=3)
        if training_memory(shape, new, gpu).fits or factor == 16:
            nodes = max(devices // max(gpus_per_node, 1), 1)
            add(f"more GPUs ({devices}, ZeRO-3)", f"{nodes_path}: {nodes}", new)
            break
    length = setup.seq_len
    while length > 1024:
        length //= 2
        new = dataclasses.replace(setup, seq_len=length)
        if training_memory(shape, new, gpu).fits or length <= 1024:
            add(f"shorter maxLength ({length})", f"{length_path}: {length}", new, "longer examples are truncated")
            break
    if not setup.lora_rank:
        add("LoRA (rank 64)", f"{settings_path}.lora.enabled: true", dataclasses.replace(setup, lora_rank=64))
    tp = min(8, max(gpus_per_node, 1))
    if tp > 1 and setup.tensor_parallel == 1:
        add(f"tensor parallelism ×{tp}", "(not available in this stage)", dataclasses.replace(setup, tensor_parallel=tp),
            "the sft/dpo stages shard with DeepSpeed ZeRO only; TP needs Megatron-style training")
    return fixes


# ---------------------------------------------------------------- generation


@dataclass(frozen=True)
class GenSetup:
    tensor_parallel: int
    context: int  # tokens per sequence: prompt + generation budget (maxModelLen when set)
    batch: int = 1  # sequences that must fit at once


def _kv_per_sequence(shape: ModelShape, setup: GenSetup) -> float:
    return (shape.kv_bytes_per_token() or 0.0) * setup.context / setup.tensor_parallel


def generation_memory(shape: ModelShape, setup: GenSetup, gpu: Gpu) -> Memory:
    weights = 2.0 * shape.params / setup.tensor_parallel
    kv = setup.batch * _kv_per_sequence(shape, setup)
    return Memory((("weights", weights), ("kv cache", kv)), gpu.memory_bytes, VLLM_MEMORY_UTILIZATION)


def max_sequences(shape: ModelShape, setup: GenSetup, gpu: Gpu, tokens_per_sequence: int | None = None) -> int:
    """Sequences of `tokens_per_sequence` (default: the full context) whose KV cache fits next to the weights
    (vLLM's batch), at most VLLM_MAX_SEQS."""
    free = VLLM_MEMORY_UTILIZATION * gpu.memory_bytes - 2.0 * shape.params / setup.tensor_parallel
    per_seq = _kv_per_sequence(shape, dataclasses.replace(setup, context=tokens_per_sequence or setup.context))
    if free <= 0:
        return 0
    if per_seq <= 0:
        return VLLM_MAX_SEQS
    return max(0, min(VLLM_MAX_SEQS, int(free // per_seq)))


def generation_fixes(shape: ModelShape, setup: GenSetup, gpu: Gpu, *, settings_path: str, gpus_per_node: int) -> list[Fix]:
    if generation_memory(shape, setup, gpu).fits:
        return []
    fixes: list[Fix] = []
    tp = setup.tensor_parallel
    while tp * 2 <= max(gpus_per_node, 1):
        tp *= 2
        new = dataclasses.replace(setup, tensor_parallel=tp)
        m = generation_memory(shape, new, gpu)
        if m.fits or tp * 2 > gpus_per_node:
            fixes.append(Fix(f"tensor parallelism {tp}", f"{settings_path}.tensorParallel: {tp}", m.total, m.fits))
            break
    context = setup.context
    while context > 2048:
        context //= 2
        m = generation_memory(shape, dataclasses.replace(setup, context=context), gpu)
        if m.fits or context <= 2048:
            fixes.append(Fix(f"shorter context ({context})", f"{settings_path}.maxModelLen: {context} (and maxTokens below it)", m.total, m.fits))
            break
    return fixes
