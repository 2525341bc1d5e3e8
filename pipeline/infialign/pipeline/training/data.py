"""The training dataset TRL's SFTTrainer consumes as is, and the packing decision.

The dataset is pre-tokenised by us (chat.py) and handed to ``SFTTrainer`` with
``dataset_kwargs={"skip_prepare_dataset": True}``. TRL 1.16 then applies no tokenisation, label building,
truncation or packing of its own (trl/trainer/sft_trainer.py ``_prepare_dataset``); it requires a
``labels`` column with -100 on tokens outside the loss when preparation is skipped
(``_reject_skip_prepare_without_labels``). Columns:

* ``input_ids``: token ids, at most ``max_length`` per row.
* ``labels``: ``input_ids`` with -100 outside the assistant response (the loss mask).
* packed rows only: ``seq_lengths``, the lengths of the examples in the row; TRL's collator turns them into
  ``position_ids`` resets and ``cu_seq_lens`` for the varlen attention.
* padded rows only: ``length``, read by transformers' ``LengthGroupedSampler`` (``group_by_length``).

Packing is done here with TRL's own ``pack_dataset`` (best-fit decreasing), so the rows we count are the
rows that are trained.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "PackingMode",
    "PackingDecision",
    "PackingError",
    "DatasetStats",
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
# A packed batch is many rows flattened into one; TRL's `bfd` strategy truncates overflow, which we never
# hit because rows are already cut to `max_length` by chat.apply_max_length.
PACKING_STRATEGY: Final = "bfd"
# Examples per BFD bin-packing call. TRL packs per `map` batch (default 1000); a larger window fills rows better.
PACKING_WINDOW: Final = 20_000


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
) -> tuple[Dataset, DatasetStats]:
    """Turn tokenised examples into the columns TRL trains on (see the module docstring).

    ``tokenised`` has the columns of ``chat.tokenise_batch`` (``input_ids``, ``assistant_masks``, ``num_tokens``,
    ``loss_tokens``) and every example is at most ``max_length`` tokens (``chat.apply_max_length``).
    """
    import numpy as np
    from trl.data_utils import pack_dataset

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
    if mode.packed:
        ds = ds.select_columns(["input_ids", "labels"])
        ds = pack_dataset(ds, max_length, PACKING_STRATEGY, map_kwargs={"batch_size": PACKING_WINDOW})
        computed = real  # padding-free: a flattened batch has no pad tokens
    else:
        ds = ds.rename_column("num_tokens", "length").select_columns(["input_ids", "labels", "length"])
        _, computed = padded_token_efficiency(lengths, micro_batch_size, group_by_length=True, seed=seed)
    stats = DatasetStats(
        mode=mode.value,
        examples=len(tokenised),
        rows=len(ds),
        real_tokens=real,
        loss_tokens=loss_tokens,
        computed_tokens=computed,
        attention_context=context,
    )
    return ds, stats
