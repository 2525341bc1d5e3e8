"""The torchrun argv and environment built from the PET_* variables."""

from __future__ import annotations

import sys

import pytest

from infialign.pipeline.training import launch

PET = {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "8", "PET_NODE_RANK": "1", "PET_MASTER_ADDR": "run-sft-a0-0.run-sft-a0", "PET_MASTER_PORT": "29400"}


def test_spec_from_pet_env() -> None:
    spec = launch.TorchrunSpec.from_env(PET)
    assert (spec.nnodes, spec.nproc_per_node, spec.node_rank, spec.master_addr, spec.master_port) == (2, 8, 1, "run-sft-a0-0.run-sft-a0", 29400)
    assert spec.world_size == 16


def test_single_node_defaults() -> None:
    spec = launch.TorchrunSpec.from_env({}, default_nproc=2)
    assert (spec.nnodes, spec.nproc_per_node, spec.node_rank, spec.master_addr, spec.master_port) == (1, 2, 0, "127.0.0.1", 29500)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({}, "PET_NPROC_PER_NODE is not set"),
        ({**PET, "PET_NODE_RANK": "2"}, "PET_NODE_RANK=2"),
        ({**PET, "PET_NNODES": "two"}, "PET_NNODES='two' is not an integer"),
        ({**PET, "PET_MASTER_PORT": "70000"}, "PET_MASTER_PORT=70000"),
        ({**PET, "PET_NPROC_PER_NODE": "0"}, "PET_NPROC_PER_NODE=0"),
    ],
)
def test_bad_env_names_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(launch.LaunchError, match=fragment):
        launch.TorchrunSpec.from_env(env)


def test_argv_is_a_static_rendezvous_running_the_worker() -> None:
    argv = launch.build_torchrun_argv(launch.TorchrunSpec.from_env(PET), "/cfg/worker.json")
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nnodes=2" in argv and "--nproc-per-node=8" in argv and "--node-rank=1" in argv
    assert "--master-addr=run-sft-a0-0.run-sft-a0" in argv and "--master-port=29400" in argv and "--max-restarts=0" in argv
    assert not any(a.startswith("--rdzv") or a == "--standalone" for a in argv)  # static: master addr/port only
    assert argv[argv.index("-m", 3) :] == ["-m", "infialign.pipeline.training.worker", "--config", "/cfg/worker.json"]


def test_worker_env() -> None:
    env = launch.build_worker_env({**PET, "PATH": "/bin"}, device="cuda")
    assert not any(k.startswith("PET_") for k in env) and env["PATH"] == "/bin"
    assert env["OMP_NUM_THREADS"] == "1" and env["PYTHONUNBUFFERED"] == "1" and env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    cpu = launch.build_worker_env({"OMP_NUM_THREADS": "4"}, device="cpu", threads_per_process=2)
    assert cpu["OMP_NUM_THREADS"] == "4" and "TORCH_NCCL_ASYNC_ERROR_HANDLING" not in cpu
