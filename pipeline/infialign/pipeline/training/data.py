"""The training dataset TRL's SFTTrainer consumes as is, and the packing decision.

The dataset is pre-tokenised by us (chat.py) and handed to ``SFTTrainer`` with
``dataset_kwargs={"skip_prepare_dataset": True}``. TRL 1.16 then applies no tokenisation, label building,
truncation or packing of its own (trl/trainer/sft_trainer.py ``_prepare_dataset``); it requires a
``labels`` column with -100 on tokens outside the loss when preparation is skipped
(``_reject_skip_prepare_without_labels``). Columns:

* ``input_ids``: token ids of one example, at most ``max_length``.
* ``labels``: ``input_ids`` with -100 outside the assistant response (the loss mask).
* ``length``: tokens of the example, read by transformers' ``LengthGroupedSampler`` (padded) and by
  ``plan_step_batches`` (packed).

Batch semantics: ``global_batch_size`` counts *samples* per optimizer step in both modes, as InfiAlign/InfiR2 do
(64 samples, dynamic batching up to 32,768 tokens per GPU). TRL's own packing (``pack_dataset`` before training)
would make a packed row of up to ``max_length`` tokens the unit, so a step would take ~5× the samples at 32K and
there would be ~5× fewer optimizer steps. Here packing happens *within* a step instead:

* ``plan_step_batches`` deals each step's ``global_batch_size`` samples (a per-epoch shuffle) into
  ``world_size × grad_accum`` micro-batches of at most ``micro_batch_size × max_length`` tokens, longest first into
  the least-loaded micro-batch so the devices get similar work, and picks the smallest ``grad_accum`` under which
  every step of every epoch fits;
* ``StepBatchSampler`` yields those micro-batches in the order accelerate deals them to ranks; TRL's padding-free
  collator flattens each into one sequence with ``position_ids`` resets (``cu_seq_lens`` for the varlen attention);
* a step with fewer samples than micro-batches (the last one of an epoch) fills the rest with a one-token example
  outside the loss, so every rank runs the same number of forwards (ZeRO-3 collectives).

So the same data takes ``ceil(examples / global_batch_size)`` optimizer steps per epoch, packed or padded, and the
loss of a step is the mean over its samples' loss tokens either way (transformers' ``num_items_in_batch``).
Upstream's ``BatchRebalanceSampler`` (transformers 5.19) has the same fixed-samples-per-step idea but balances a
padded cost and has no token cap, so a step of long samples could exceed a device's memory.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "PackingMode",
    "PackingDecision",
    "PackingError",
    "DatasetStats",
    "StepBatching",
    "StepBatchSampler",
    "plan_step_batches",
    "step_micro_batches",
    "decide_packing",
    "build_train_dataset",
    "padded_token_efficiency",
]

IGNORE_INDEX: Final = -100
FLASH_VARLEN: Final = frozenset(
    {
        "flash_attention_2",
        "flash_attention_3",
        "flash_attention_4",
        "kernels-community/flash-attn2",
        "kernels-community/flash-attn3",
        "kernels-community/vllm-flash-attn3",
    }
)
# What SFTConfig is told so TRL builds its padding-free collator (with `skip_prepare_dataset` TRL packs nothing
# itself: the micro-batches come from StepBatchSampler).
PACKING_STRATEGY: Final = "bfd"


class PackingError(ValueError):
    """Packing was requested where it would let packed examples attend to each other. Permanent."""


class PackingMode(str, enum.Enum):
    """How sequences become batches."""

    PACKED_VARLEN_FLASH = "packed-varlen-flash"
    """BFD rows, flattened; flash-attention's varlen kernel reads ``cu_seq_lens`` (GPU)."""
    PACKED_VARLEN_SDPA = "packed-varlen-sdpa"
    """BFD rows, flattened; segment-wise SDPA (attention.py) runs each example alone (CPU, or GPU without flash)."""
    PADDED_GROUPED = "padded-length-grouped"
    """One example per row, padded to the longest in the batch, batches grouped by length."""

    @property
    def packed(self) -> bool:
        return self is not PackingMode.PADDED_GROUPED


@dataclass(frozen=True)
class PackingDecision:
    mode: PackingMode
    attn_implementation: str  # what to load the model with
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"mode": self.mode.value, "attn_implementation": self.attn_implementation, "reason": self.reason}


def decide_packing(
    attn_implementation: str, device: Literal["cpu", "cuda"], requested: Literal["auto", "on", "off"]
) -> PackingDecision:
    """Pick the batching mode. Pure: a function of the attention implementation, the device and the setting.

    Packing is chosen only with a path that keeps packed examples from attending to each other *and* spends no
    FLOPs on masked-out pairs: flash-attention varlen, or our segment-wise SDPA in place of ``sdpa``. ``eager``
    and ``flex_attention`` do isolate examples in transformers 5.19 through a dense block-diagonal mask built
    from ``position_ids`` (only with ``use_cache=False``, see attention.py), which costs O(rows²); they pad.
    """
    from infialign.pipeline.training.attention import SDPA_VARLEN

    if requested not in ("auto", "on", "off"):
        raise PackingError(f"packing={requested!r} is not one of 'auto', 'on', 'off'")
    if attn_implementation in FLASH_VARLEN and device != "cuda":
        raise PackingError(
            f"attn_implementation={attn_implementation!r} needs a CUDA device, and this run is on {device}. "
            "Set attn_implementation to 'auto' or 'sdpa'."
        )
    if requested == "off":
        return PackingDecision(PackingMode.PADDED_GROUPED, attn_implementation, "packing=off")
    if attn_implementation in FLASH_VARLEN:
        return PackingDecision(
            PackingMode.PACKED_VARLEN_FLASH, attn_implementation, f"{attn_implementation} varlen kernel reads cu_seq_lens"
        )
    if attn_implementation in ("sdpa", SDPA_VARLEN):
        return PackingDecision(
            PackingMode.PACKED_VARLEN_SDPA,
            SDPA_VARLEN,
            f"segment-wise SDPA per packed example on {device} (no cross-example attention, no masked FLOPs)",
        )
    if requested == "on":
        raise PackingError(
            f"packing='on' with attn_implementation={attn_implementation!r}: it has no varlen path, so packed rows "
            "would pay a dense block-diagonal mask (or attend across examples). Use attn_implementation 'sdpa' or "
            "'flash_attention_2', or set packing to 'auto' or 'off'."
        )
    return PackingDecision(
        PackingMode.PADDED_GROUPED, attn_implementation, f"{attn_implementation} has no varlen path; padded, length-grouped"
    )


@dataclass(frozen=True)
class DatasetStats:
    """What the trainer will see per epoch. ``computed_tokens`` for padded mode is an estimate (random batches)."""

    mode: str
    examples: int
    rows: int
    real_tokens: int  # prompt + response tokens, no padding
    loss_tokens: int  # tokens under the loss mask
    computed_tokens: int  # tokens the model runs over per epoch, padding included
    attention_context: float  # token-weighted mean example length: Σl²/Σl (the T of the attention FLOPs term)

    @property
    def token_efficiency(self) -> float:
        return self.real_tokens / self.computed_tokens if self.computed_tokens else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "token_efficiency": self.token_efficiency}


def padded_token_efficiency(lengths: Sequence[int], batch_size: int, *, group_by_length: bool, seed: int = 0) -> tuple[int, int]:
    """(real, computed) tokens when batches of ``batch_size`` are padded to their longest example.

    ``group_by_length=False`` is TRL's default (random order); ``True`` approximates transformers'
    ``LengthGroupedSampler`` (megabatches of 50 batches sorted by length).
    """
    import numpy as np

    arr = np.asarray(lengths, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(arr))
    if group_by_length:
        mega = batch_size * 50
        order = np.concatenate([sorted(order[i : i + mega], key=lambda k: -arr[k]) for i in range(0, len(order), mega)]) if len(order) else order
    computed = 0
    for i in range(0, len(order), batch_size):
        batch = arr[order[i : i + batch_size]]
        computed += int(batch.max()) * len(batch)
    return int(arr.sum()), computed


def _to_labels(batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    import numpy as np

    labels = []
    for ids, mask in zip(batch["input_ids"], batch["assistant_masks"], strict=True):
        ids_arr = np.asarray(ids, dtype=np.int64)
        labels.append(np.where(np.asarray(mask, dtype=bool), ids_arr, IGNORE_INDEX).tolist())
    return {"labels": labels}


def build_train_dataset(
    tokenised: Dataset,
    mode: PackingMode,
    *,
    max_length: int,
    micro_batch_size: int = 1,
    seed: int = 0,
    num_proc: int | None = None,
    pad_token_id: int = 0,
) -> tuple[Dataset, DatasetStats]:
    """Turn tokenised examples into the columns TRL trains on (see the module docstring).

    ``tokenised`` has the columns of ``chat.tokenise_batch`` (``input_ids``, ``assistant_masks``, ``num_tokens``,
    ``loss_tokens``) and every example is at most ``max_length`` tokens (``chat.apply_max_length``). In packed mode
    the last row is the filler example of ``StepBatchSampler`` (index ``len(ds) - 1``); ``stats.rows`` is then set
    from the step layout (``with_layout``).
    """
    import numpy as np
    from datasets import concatenate_datasets

    if len(tokenised) == 0:
        raise ValueError("no training examples left: every record was dropped (see the truncation report)")
    lengths = np.asarray(tokenised["num_tokens"], dtype=np.int64)
    if int(lengths.max()) > max_length:
        raise ValueError(
            f"an example has {int(lengths.max())} tokens, above max_length={max_length}; cut them with chat.apply_max_length first"
        )
    real = int(lengths.sum())
    loss_tokens = int(np.asarray(tokenised["loss_tokens"], dtype=np.int64).sum())
    context = float((lengths.astype(np.float64) ** 2).sum() / max(real, 1))

    ds = tokenised.map(_to_labels, batched=True, num_proc=num_proc, desc="Building labels")
    ds = ds.rename_column("num_tokens", "length").select_columns(["input_ids", "labels", "length"])
    if mode.packed:
        filler = ds.from_dict({"input_ids": [[pad_token_id]], "labels": [[IGNORE_INDEX]], "length": [1]}, features=ds.features)
        ds = concatenate_datasets([ds, filler])
        computed = real  # padding-free: a flattened batch has no pad tokens
    else:
        _, computed = padded_token_efficiency(lengths, micro_batch_size, group_by_length=True, seed=seed)
    stats = DatasetStats(
        mode=mode.value,
        examples=len(tokenised),
        rows=len(tokenised),
        real_tokens=real,
        loss_tokens=loss_tokens,
        computed_tokens=computed,
        attention_context=context,
    )
    return ds, stats


# ---------------------------------------------------------------------------------------------- packed steps


@dataclass(frozen=True)
class StepBatching:
    """How packed training steps are laid out: ``samples_per_step`` samples in ``world_size × grad_accum``
    micro-batches of at most ``token_budget`` tokens each."""

    samples_per_step: int
    world_size: int
    grad_accum: int
    token_budget: int
    examples: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.examples / self.samples_per_step)

    @property
    def micro_batches_per_step(self) -> int:
        return self.world_size * self.grad_accum

    @property
    def micro_batches_per_epoch(self) -> int:
        return self.steps_per_epoch * self.micro_batches_per_step

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "steps_per_epoch": self.steps_per_epoch}


def _epoch_order(examples: int, seed: int, epoch: int) -> Any:
    import numpy as np

    # one shuffle per epoch, the same on every rank (no communication): a function of seed and epoch only
    return np.random.default_rng([seed, epoch]).permutation(examples)


def _deal(indices: Sequence[int], lengths: Any, bins: int, budget: int) -> list[list[int]] | None:
    """Longest first into the least-loaded bin (balanced); best-fit decreasing when that leaves one over the
    budget; None when neither fits. Bins come back heaviest first (slot 0 of every rank gets the heaviest ones)."""
    order = sorted(indices, key=lambda i: (-int(lengths[i]), i))
    heap = [(0, b) for b in range(bins)]
    out: list[list[int]] = [[] for _ in range(bins)]
    loads = [0] * bins
    for i in order:
        load, b = heapq.heappop(heap)
        if load + int(lengths[i]) > budget:
            break
        out[b].append(i)
        loads[b] = load + int(lengths[i])
        heapq.heappush(heap, (loads[b], b))
    else:
        return [out[b] for b in sorted(range(bins), key=lambda b: -loads[b])]
    out, loads = [[] for _ in range(bins)], [0] * bins
    for i in order:
        room = [(budget - loads[b] - int(lengths[i]), b) for b in range(bins) if loads[b] + int(lengths[i]) <= budget]
        if not room:
            return None
        _, b = min(room)
        out[b].append(i)
        loads[b] += int(lengths[i])
    return [out[b] for b in sorted(range(bins), key=lambda b: -loads[b])]


def step_micro_batches(lengths: Sequence[int], layout: StepBatching, epoch: int, filler: int) -> list[list[int]]:
    """Every micro-batch of one epoch in accelerate's dealing order: step s, accumulation slot k, rank r is element
    ``(s × grad_accum + k) × world_size + r`` (accelerate gives rank r the batches with index ≡ r mod world_size).
    An empty micro-batch holds ``filler``. Raises ValueError when a step does not fit the layout."""
    order = _epoch_order(layout.examples, layout.seed, epoch)
    out: list[list[int]] = []
    for s in range(layout.steps_per_epoch):
        chunk = [int(i) for i in order[s * layout.samples_per_step : (s + 1) * layout.samples_per_step]]
        bins = _deal(chunk, lengths, layout.micro_batches_per_step, layout.token_budget)
        if bins is None:
            raise ValueError(f"step {s} of epoch {epoch} does not fit {layout}; plan_step_batches picks a layout that does")
        for k in range(layout.grad_accum):
            for r in range(layout.world_size):
                out.append(bins[k * layout.world_size + r] or [filler])
    return out


def plan_step_batches(
    lengths: Sequence[int],
    *,
    samples_per_step: int,
    world_size: int,
    micro_batch_size: int,
    max_length: int,
    epochs: int,
    seed: int,
) -> StepBatching:
    """The packed layout with the fewest micro-batches per step under which every step of ``epochs`` epochs fits.

    Pure. ``grad_accum`` ranges from what the heaviest step's tokens need to one sample per micro-batch, which
    always fits because no example is longer than ``max_length``.
    """
    import numpy as np

    arr = np.asarray(lengths, dtype=np.int64)
    budget = micro_batch_size * max_length
    if len(arr) == 0:
        raise ValueError("no examples to lay out")
    if int(arr.max()) > budget:
        raise ValueError(f"an example has {int(arr.max())} tokens, above the micro-batch budget {budget}")
    most = math.ceil(min(samples_per_step, len(arr)) / world_size)
    heaviest = 0
    for epoch in range(epochs):
        order = _epoch_order(len(arr), seed, epoch)
        sums = np.add.reduceat(arr[order], np.arange(0, len(arr), samples_per_step))
        heaviest = max(heaviest, int(sums.max()))
    grad_accum = min(max(1, math.ceil(math.ceil(heaviest / budget) / world_size)), most)
    while True:
        layout = StepBatching(samples_per_step, world_size, grad_accum, budget, len(arr), seed)
        if grad_accum >= most or _fits(arr, layout, epochs):
            return layout
        grad_accum += 1


def _fits(lengths: Any, layout: StepBatching, epochs: int) -> bool:
    for epoch in range(epochs):
        order = _epoch_order(layout.examples, layout.seed, epoch)
        for s in range(layout.steps_per_epoch):
            chunk = [int(i) for i in order[s * layout.samples_per_step : (s + 1) * layout.samples_per_step]]
            if _deal(chunk, lengths, layout.micro_batches_per_step, layout.token_budget) is None:
                return False
    return True


class StepBatchSampler:
    """A batch sampler over the packed dataset: ``step_micro_batches`` of the current epoch.

    Give it to a ``DataLoader`` as ``batch_sampler``; accelerate shards it across ranks (round-robin, which the
    order accounts for). The epoch comes from ``set_epoch``, which the Trainer calls before each epoch.
    """

    def __init__(self, lengths: Sequence[int], layout: StepBatching, filler: int) -> None:
        self.lengths = list(lengths)
        self.layout = layout
        self.filler = filler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.layout.micro_batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        return iter(step_micro_batches(self.lengths, self.layout, self.epoch, self.filler))
