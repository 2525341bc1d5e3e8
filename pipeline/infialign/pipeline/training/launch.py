"""The torchrun command for a training stage. Pure: builds argv and environment, starts nothing.

On Kubernetes each pod of the stage's Indexed Job is one node. The launcher (operator side) sets the
``PET_*`` variables torchrun reads (DESIGN.md §5): ``PET_NNODES``, ``PET_NPROC_PER_NODE``,
``PET_NODE_RANK`` (the Job completion index), ``PET_MASTER_ADDR=<job>-0.<svc>`` and ``PET_MASTER_PORT``.
The rendezvous is static (no ``--rdzv-backend``): torchrun then waits for all ``nnodes`` at the master,
and ``--max-restarts 0`` leaves restarts to the stage (any failure restarts the whole stage from its
checkpoint). Every rank runs ``python -m infialign.pipeline.training.worker --config <file>``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["LaunchError", "TorchrunSpec", "build_torchrun_argv", "build_worker_env", "WORKER_MODULE"]

WORKER_MODULE: Final = "infialign.pipeline.training.worker"
_MAX_PORT: Final = 65535


class LaunchError(ValueError):
    """The PET_* environment is missing or inconsistent. Names the variable. Permanent (a launcher bug)."""


@dataclass(frozen=True)
class TorchrunSpec:
    nnodes: int
    nproc_per_node: int
    node_rank: int
    master_addr: str
    master_port: int

    def __post_init__(self) -> None:
        if self.nnodes < 1:
            raise LaunchError(f"PET_NNODES={self.nnodes} must be at least 1")
        if self.nproc_per_node < 1:
            raise LaunchError(f"PET_NPROC_PER_NODE={self.nproc_per_node} must be at least 1")
        if not 0 <= self.node_rank < self.nnodes:
            raise LaunchError(f"PET_NODE_RANK={self.node_rank} must be in [0, PET_NNODES={self.nnodes})")
        if not self.master_addr:
            raise LaunchError("PET_MASTER_ADDR is empty; set it to the rank-0 pod's address (<job>-0.<service>)")
        if not 0 < self.master_port <= _MAX_PORT:
            raise LaunchError(f"PET_MASTER_PORT={self.master_port} is not a TCP port")

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, default_nproc: int | None = None) -> TorchrunSpec:
        """Read the PET_* variables. Single-node defaults: 1 node, rank 0, 127.0.0.1:29500."""

        def num(name: str, default: int | None) -> int:
            raw = env.get(name)
            if raw is None or raw == "":
                if default is None:
                    raise LaunchError(f"{name} is not set; the launcher must set it (DESIGN.md §5)")
                return default
            try:
                return int(raw)
            except ValueError:
                raise LaunchError(f"{name}={raw!r} is not an integer") from None

        return cls(
            nnodes=num("PET_NNODES", 1),
            nproc_per_node=num("PET_NPROC_PER_NODE", default_nproc),
            node_rank=num("PET_NODE_RANK", 0),
            master_addr=env.get("PET_MASTER_ADDR") or "127.0.0.1",
            master_port=num("PET_MASTER_PORT", 29500),
        )


def build_torchrun_argv(
    spec: TorchrunSpec,
    config_path: str,
    *,
    python: str = sys.executable,
    module: str = WORKER_MODULE,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """``python -m torch.distributed.run … -m <worker> --config <file>`` with a static rendezvous."""
    return [
        python,
        "-m",
        "torch.distributed.run",
        f"--nnodes={spec.nnodes}",
        f"--nproc-per-node={spec.nproc_per_node}",
        f"--node-rank={spec.node_rank}",
        f"--master-addr={spec.master_addr}",
        f"--master-port={spec.master_port}",
        "--max-restarts=0",
        "-m",
        module,
        "--config",
        config_path,
        *extra_args,
    ]


def build_worker_env(env: Mapping[str, str], *, device: str, threads_per_process: int | None = None) -> dict[str, str]:
    """The environment for torchrun and its workers: ``env`` plus defaults that matter for training.

    * ``OMP_NUM_THREADS``: torchrun would set 1 with a warning; on CPU we give each rank its share of cores
      (``threads_per_process``), on GPU 1 is right (the host threads only feed kernels).
    * ``PYTHONUNBUFFERED``: rank logs reach the pod log as they happen.
    * ``TORCH_NCCL_ASYNC_ERROR_HANDLING``: a dead peer fails the collective instead of hanging until the heartbeat
      timeout.
    * PET_* are removed: the argv carries them, and torchrun would otherwise read them as defaults twice.
    """
    out = {k: v for k, v in env.items() if not k.startswith("PET_")}
    out.setdefault("OMP_NUM_THREADS", str(threads_per_process or 1))
    out.setdefault("PYTHONUNBUFFERED", "1")
    if device == "cuda":
        out.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    return out
