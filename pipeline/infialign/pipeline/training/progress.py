"""Heartbeats and training metrics (tokens/s, learning rate, grad norm, loss, MFU) as plain callables.

The stage runtime passes plain functions: ``heartbeat(step, total_steps, metrics, last_checkpoint)`` for hang
detection and progress, and ``sink(metrics, step)`` for MLflow. Nothing here knows about MLflow.

MFU convention. FLOPs per trained token:

* ``6N`` (Kaplan et al. 2020): N = parameters that take part in matrix multiplies, i.e. every parameter
  except the input embedding table (a lookup), with the output head counted once even when tied. Attention
  score FLOPs are *not* included. This is the ``mfu`` metric.
* ``6N + 12·L·H·Q·T`` (PaLM, Chowdhery et al. 2022, appendix B): adds the attention scores and weighted sum
  for L layers, H heads of size Q, context T, counted as full (non-causal) attention, the convention
  torchtitan's 33–39% MFU uses (research/training-anchors.md §3). T is the token-weighted mean example length
  Σl²/Σl (packed examples attend only within themselves). This is the ``mfu_attn`` metric.

Both count a forward and a backward pass; activation recomputation (gradient checkpointing) is not counted,
so they are model FLOPs, not hardware FLOPs. With LoRA the frozen weights get no weight gradients, so 6N
over-counts (≈4N is closer); the metric is still labelled 6N.

Peak FLOP/s per device: dense (no 2:4 sparsity) bf16 tensor-core numbers from vendor data sheets. On CPU, and
on an unknown GPU, MFU is None unless ``peak_flops`` is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from transformers import TrainerCallback

if TYPE_CHECKING:
    import torch
    from transformers import TrainerControl, TrainerState, TrainingArguments

__all__ = [
    "PEAK_BF16_FLOPS",
    "FlopsModel",
    "Heartbeat",
    "MetricsSink",
    "HeartbeatCallback",
    "MetricsCallback",
    "peak_flops_for",
    "flops_model_for",
    "calibration_metrics",
]

log = logging.getLogger(__name__)


class Heartbeat(Protocol):
    def __call__(self, step: int, total_steps: int, metrics: dict[str, float], last_checkpoint: str | None) -> None: ...


class MetricsSink(Protocol):
    def __call__(self, metrics: dict[str, float], step: int) -> None: ...


# Dense bf16 tensor-core peak, FLOP/s, matched by substring of torch.cuda.get_device_name() (first match wins,
# so the more specific names come first).
PEAK_BF16_FLOPS: Final[tuple[tuple[str, float], ...]] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM5
    ("H200", 989e12),
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
)


def peak_flops_for(device_name: str | None) -> float | None:
    """Peak dense bf16 FLOP/s of a known GPU, else None (CPU, unknown GPU)."""
    if not device_name:
        return None
    for key, flops in PEAK_BF16_FLOPS:
        if key.lower() in device_name.lower():
            return flops
    return None


@dataclass(frozen=True)
class FlopsModel:
    """Inputs to the FLOPs-per-token formulas; see the module docstring."""

    matmul_params: int  # N
    layers: int  # L
    attn_width: int  # H·Q (heads × head dim)
    context: float  # T

    @property
    def per_token_6n(self) -> float:
        return 6.0 * self.matmul_params

    @property
    def per_token_with_attention(self) -> float:
        return self.per_token_6n + 12.0 * self.layers * self.attn_width * self.context


def flops_model_for(model: torch.nn.Module, context: float) -> FlopsModel:
    """Count N from a (base) model: all parameters except the input embedding; a tied head counts once."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    seen: set[int] = set()
    total = 0
    for p in base.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            # Under ZeRO-3 parameters are partitioned; ds_numel is the full size.
            total += int(getattr(p, "ds_numel", p.numel()))
    embed = base.get_input_embeddings().weight
    embed_n = int(getattr(embed, "ds_numel", embed.numel()))
    head = base.get_output_embeddings()
    tied = head is not None and head.weight is embed
    n = total - embed_n + (embed_n if tied else 0)
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return FlopsModel(matmul_params=n, layers=cfg.num_hidden_layers, attn_width=heads * head_dim, context=context)


def calibration_metrics(
    trained_tokens: float | None,
    runtime_s: float | None,
    matmul_params: int | None,
    *,
    world_size: int,
    peak_flops_per_device: float | None,
) -> dict[str, float]:
    """What a finished training run measured, for `infialign plan` to calibrate against (names fixed by its reader).

    ``tokens_per_second`` = trained tokens / train runtime, over all devices. ``train_flops`` = 6·N·tokens (model
    FLOPs, the ``mfu`` convention of this module). ``mfu`` = (train_flops / runtime) / (peak per device × devices),
    only when a peak is known: a made-up peak on CPU would calibrate the plan to fiction. Empty when nothing was
    trained in this process (a resumed run that found its last checkpoint complete).
    """
    if not trained_tokens or not runtime_s or runtime_s <= 0:
        return {}
    out = {"tokens_per_second": trained_tokens / runtime_s}
    if matmul_params:
        out["train_flops"] = 6.0 * matmul_params * trained_tokens
        if peak_flops_per_device:
            out["mfu"] = out["train_flops"] / runtime_s / (peak_flops_per_device * max(world_size, 1))
    return out


class HeartbeatCallback(TrainerCallback):
    """Call ``heartbeat`` at most every ``interval_s`` seconds of steps, and once at the end.

    Called on each node's local rank 0 (each pod reports for itself). ``last_checkpoint`` reports the newest
    *published* checkpoint when a publisher is wired in, else the newest local save.
    """

    def __init__(
        self,
        heartbeat: Heartbeat,
        *,
        interval_s: float = 30.0,
        last_checkpoint: Callable[[], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.heartbeat = heartbeat
        self.interval_s = interval_s
        self.clock = clock
        self._last_checkpoint_fn = last_checkpoint
        self._local_checkpoint: str | None = None
        self._metrics: dict[str, float] = {}
        self._last_beat: float | None = None

    def _checkpoint(self) -> str | None:
        return self._last_checkpoint_fn() if self._last_checkpoint_fn else self._local_checkpoint

    def add_metrics(self, metrics: Mapping[str, float]) -> None:
        """Metrics that do not come through the Trainer's log (e.g. a SAGE refresh); sent with the next heartbeat."""
        self._metrics.update({k: float(v) for k, v in metrics.items()})

    def _beat(self, state: TrainerState, *, force: bool) -> None:
        if not state.is_local_process_zero:
            return
        now = self.clock()
        if not force and self._last_beat is not None and now - self._last_beat < self.interval_s:
            return
        self._last_beat = now
        try:
            self.heartbeat(state.global_step, state.max_steps, dict(self._metrics), self._checkpoint())
        except Exception:  # a broken heartbeat sink must not kill a multi-hour run; the hang detector will notice
            log.exception("heartbeat callable failed at step %d", state.global_step)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._beat(state, force=True)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._beat(state, force=False)

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        self._metrics.update({k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)})

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._local_checkpoint = f"{args.output_dir}/checkpoint-{state.global_step}"

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._beat(state, force=True)


class MetricsCallback(TrainerCallback):
    """Turn the Trainer's logs into our metrics and hand them to ``sink`` on world rank 0.

    tokens/s counts real input tokens (prompt and response, no padding): TRL logs the running total of
    non-padding tokens over all ranks as ``num_tokens``; the rate is its change over wall time between two logs.
    """

    def __init__(
        self,
        sink: MetricsSink | None,
        *,
        world_size: int,
        flops: FlopsModel | None = None,
        peak_flops: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.sink = sink
        self.world_size = world_size
        self.flops = flops
        self.peak_flops = peak_flops
        self.clock = clock
        self.last: dict[str, float] = {}
        self._t0: float | None = None
        self._tokens0: float = 0.0
        self._total_tokens = 0.0

    @property
    def trained_tokens(self) -> float | None:
        """TRL's running token count at the latest log of this process; None before the first."""
        return self._total_tokens or None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        # TRL's `num_tokens` restarts from 0 in a resumed process, so the rate is measured within this process.
        self._t0, self._tokens0 = self.clock(), 0.0

    def compute(self, logs: Mapping[str, Any], now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for src, dst in (("loss", "loss"), ("learning_rate", "learning_rate"), ("grad_norm", "grad_norm"), ("epoch", "epoch"),
                         ("mean_token_accuracy", "token_accuracy"), ("entropy", "entropy"),
                         # DPO (TRL DPOTrainer): implicit-reward accuracy and margin of the batch
                         ("rewards/accuracies", "reward_accuracy"), ("rewards/margins", "reward_margin"),
                         ("rewards/chosen", "reward_chosen"), ("rewards/rejected", "reward_rejected")):
            if isinstance(logs.get(src), int | float):
                out[dst] = float(logs[src])
        tokens = logs.get("num_tokens")
        if isinstance(tokens, int | float) and self._t0 is not None and now > self._t0:
            rate = (float(tokens) - self._tokens0) / (now - self._t0)
            self._total_tokens = float(tokens)
            self._t0, self._tokens0 = now, float(tokens)
            out["tokens_per_s"] = rate
            out["tokens_per_s_per_device"] = rate / self.world_size
            if self.flops is not None and self.peak_flops:
                per_device = rate / self.world_size
                out["mfu"] = per_device * self.flops.per_token_6n / self.peak_flops
                out["mfu_attn"] = per_device * self.flops.per_token_with_attention / self.peak_flops
        return out

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        metrics = self.compute(logs or {}, self.clock())
        if not metrics.keys() - {"epoch"}:  # the Trainer's end-of-training summary carries no step metrics
            return
        self.last.update(metrics)
        if self.sink is not None and state.is_world_process_zero:
            try:
                self.sink(metrics, state.global_step)
            except Exception:  # tracking outages must not end training
                log.exception("metrics sink failed at step %d", state.global_step)
