"""Two CPU processes through torchrun with the PET_* environment: DDP over gloo, rank 0 exports the model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from infialign.pipeline.training import WorkerConfig, build_torchrun_argv, build_worker_env
from infialign.pipeline.training.launch import TorchrunSpec

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_process_gloo_training_through_torchrun(tmp_path: Path, tiny_model_path: Path, clean_records, small_settings) -> None:
    import pyarrow.parquet as pq

    from infialign.pipeline import records

    data = tmp_path / "sft-phase1.parquet"
    pq.write_table(records.to_table(clean_records), data)
    out = tmp_path / "out"
    config = WorkerConfig(
        settings=small_settings(global_batch_size=4, micro_batch_size=1, max_steps=3, save_steps=2),
        model_path=str(tiny_model_path),
        train_data=str(data),
        output_dir=str(out),
        checkpoint_uri=(tmp_path / "remote").as_uri(),
        heartbeat_file=str(tmp_path / "heartbeat.json"),
        metrics_file=str(tmp_path / "metrics.jsonl"),
    )
    config_path = tmp_path / "worker.json"
    config_path.write_text(config.model_dump_json())

    pet = {"PET_NNODES": "1", "PET_NPROC_PER_NODE": "2", "PET_NODE_RANK": "0", "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(_free_port())}
    spec = TorchrunSpec.from_env(pet)
    env = build_worker_env({**os.environ, **pet}, device="cpu")
    proc = subprocess.run(build_torchrun_argv(spec, str(config_path)), env=env, capture_output=True, text=True, timeout=600)
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0, logs[-4000:]
    assert "rank 0 of 2 finished at step 3 (torch-ddp)" in logs and "rank 1 of 2 finished at step 3 (torch-ddp)" in logs
    assert "torch.distributed: backend=gloo world_size=2" in logs

    result = json.loads((out / "sft_result.json").read_text())
    assert result["world_size"] == 2 and result["engine"] == "torch-ddp" and result["global_step"] == 3
    # packed: each step's 4 samples are dealt to 2 ranks in micro-batches of ≤ 512 tokens; one forward each suffices
    layout = result["step_batching"]
    assert (layout["samples_per_step"], layout["world_size"], layout["grad_accum"]) == (4, 2, 1)
    assert result["plan"]["distributed_backend"] == "gloo" and result["plan"]["gradient_accumulation_steps"] == 1
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "chat_template.jinja").is_file()
    marker = json.loads((tmp_path / "remote" / "latest.json").read_text())
    assert marker["step"] == 3 and {"rng_state_0.pth", "rng_state_1.pth"} <= marker["files"].keys()  # both ranks' RNG states
    beat = json.loads((tmp_path / "heartbeat.json").read_text())
    assert beat["step"] == 3 and beat["total_steps"] == 3
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # world rank 0 only: one line per log step


def test_two_process_gloo_dpo_through_torchrun(tmp_path: Path, tiny_model_path: Path, world_pairs, dpo_settings) -> None:
    """DPO over DDP/gloo: the reference pass is sharded and gathered, SAGE margins are exchanged, rank 0 exports."""
    import pyarrow.parquet as pq

    data = tmp_path / "pairs.parquet"
    pq.write_table(world_pairs(40, 2), data)
    out = tmp_path / "out"
    config = WorkerConfig(
        settings=dpo_settings(global_batch_size=4, micro_batch_size=1, max_steps=4, save_steps=2, sage={"enabled": True, "refresh_steps": 2}),
        model_path=str(tiny_model_path),
        train_data=str(data),
        output_dir=str(out),
        model_digest="tiny",
        checkpoint_uri=(tmp_path / "remote").as_uri(),
        heartbeat_file=str(tmp_path / "heartbeat.json"),
        metrics_file=str(tmp_path / "metrics.jsonl"),
    )
    config_path = tmp_path / "worker.json"
    config_path.write_text(config.model_dump_json())

    pet = {"PET_NNODES": "1", "PET_NPROC_PER_NODE": "2", "PET_NODE_RANK": "0", "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(_free_port())}
    spec = TorchrunSpec.from_env(pet)
    env = build_worker_env({**os.environ, **pet}, device="cpu")
    proc = subprocess.run(build_torchrun_argv(spec, str(config_path)), env=env, capture_output=True, text=True, timeout=900)
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0, logs[-4000:]
    assert "rank 0 of 2 finished at step 4 (torch-ddp)" in logs and "rank 1 of 2 finished at step 4 (torch-ddp)" in logs

    result = json.loads((out / "dpo_result.json").read_text())
    assert result["world_size"] == 2 and result["engine"] == "torch-ddp" and result["ref_logps"] == "computed"
    assert result["pairs"] == pq.read_metadata(data).num_rows
    (refresh,) = result["sage_refreshes"]  # step 2 (none after the last step)
    assert refresh["step"] == 2 and refresh["scored"] > 0
    import pyarrow.parquet as pq2

    stored = pq2.read_table(out / "pairs-ref.parquet")
    assert stored.num_rows == result["pairs"] and stored.column("id").to_pylist() == pq.read_table(data).column("id").to_pylist()
    assert (out / "model" / "model.safetensors").is_file()
    marker = json.loads((tmp_path / "remote" / "latest.json").read_text())
    assert marker["step"] == 4 and "sage_state.json" in marker["files"]
