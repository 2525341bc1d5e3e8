"""GPUs `infialign plan` knows: peak dense bf16 FLOP/s, memory and memory bandwidth, from vendor data sheets.

Peak FLOP/s are *dense* tensor-core bf16 numbers: data sheets print the 2:4-sparsity figure first, which is
twice the dense one and which training never reaches. The SXM (HGX) form factor is assumed, as the one
multi-node training runs on. The training runtime has its own name-matching table for measured MFU
(training/progress.py); the numbers agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["Gpu", "GPUS", "gpu"]


@dataclass(frozen=True)
class Gpu:
    name: str  # the `--gpu` value
    product: str
    peak_bf16_flops: float  # dense, FLOP/s
    memory_bytes: float
    bandwidth_bytes_per_s: float
    source: str  # the data sheet the row comes from

    @property
    def memory_gb(self) -> float:
        return self.memory_bytes / 1e9


_GB: Final = 1e9
_TB: Final = 1e12

GPUS: Final[dict[str, Gpu]] = {
    g.name: g
    for g in (
        # 989.4 TFLOP/s bf16 dense (1,979 with sparsity), 80 GB HBM3, 3.35 TB/s
        Gpu("h100", "NVIDIA H100 SXM5 80GB", 989e12, 80 * _GB, 3.35 * _TB, "https://www.nvidia.com/en-us/data-center/h100/"),
        # same compute as H100 SXM, 141 GB HBM3e at 4.8 TB/s
        Gpu("h200", "NVIDIA H200 SXM 141GB", 989e12, 141 * _GB, 4.8 * _TB, "https://www.nvidia.com/en-us/data-center/h200/"),
        # 312 TFLOP/s bf16 dense (624 with sparsity), 80 GB HBM2e, 2.039 TB/s
        Gpu("a100", "NVIDIA A100 SXM4 80GB", 312e12, 80 * _GB, 2.039 * _TB, "https://www.nvidia.com/en-us/data-center/a100/"),
        # 362.05 TFLOP/s bf16 dense (733 with sparsity), 48 GB GDDR6, 864 GB/s
        Gpu("l40s", "NVIDIA L40S 48GB", 362e12, 48 * _GB, 0.864 * _TB, "https://www.nvidia.com/en-us/data-center/l40s/"),
        # HGX B200: 4.5 PFLOP/s bf16 with sparsity → 2.25 dense; 180 GB HBM3e, 8 TB/s
        Gpu("b200", "NVIDIA B200 (HGX) 180GB", 2.25e15, 180 * _GB, 8.0 * _TB, "https://www.nvidia.com/en-us/data-center/hgx/"),
    )
}


def gpu(name: str) -> Gpu:
    """The table row for `--gpu NAME`; the error lists the known names."""
    try:
        return GPUS[name.lower()]
    except KeyError:
        raise ValueError(f"--gpu {name!r} is not a known GPU; use one of {', '.join(GPUS)}") from None
