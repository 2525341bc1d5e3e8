"""Heartbeat throttling, tokens/s and MFU arithmetic (no training: fake clocks and log dicts)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infialign.pipeline.training import progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def state(step: int, *, local_zero: bool = True, world_zero: bool = True) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=100, is_local_process_zero=local_zero, is_world_process_zero=world_zero)


ARGS = SimpleNamespace(output_dir="/out/checkpoints")


def test_heartbeat_is_throttled_and_always_sent_at_the_end() -> None:
    beats: list[tuple[Any, ...]] = []
    clock = Clock()
    cb = progress.HeartbeatCallback(lambda *a: beats.append(a), interval_s=30, clock=clock)
    cb.on_train_begin(ARGS, state(0), None)
    for step in range(1, 10):
        clock.now = step * 10.0  # a step every 10 s: a beat every third step
        cb.on_log(ARGS, state(step), None, logs={"loss": 1.0 / step, "epoch": 0.1})
        cb.on_step_end(ARGS, state(step), None)
    cb.on_save(ARGS, state(9), None)
    cb.on_train_end(ARGS, state(9), None)
    assert [b[0] for b in beats] == [0, 3, 6, 9, 9]
    step, total, metrics, ckpt = beats[-1]
    assert total == 100 and metrics["loss"] == pytest.approx(1 / 9) and ckpt == "/out/checkpoints/checkpoint-9"


def test_heartbeat_reports_the_published_checkpoint_and_survives_a_broken_sink() -> None:
    def broken(*a: Any) -> None:
        raise OSError("disk full")

    cb = progress.HeartbeatCallback(broken, interval_s=0, last_checkpoint=lambda: "s3://b/run/checkpoint-4")
    cb.on_step_end(ARGS, state(1), None)  # logs the error, does not raise
    seen: list[Any] = []
    cb = progress.HeartbeatCallback(lambda *a: seen.append(a[3]), interval_s=0, last_checkpoint=lambda: "s3://b/run/checkpoint-4")
    cb.on_step_end(ARGS, state(1), None)
    cb.on_step_end(ARGS, state(2, local_zero=False), None)  # other local ranks stay quiet
    assert seen == ["s3://b/run/checkpoint-4"]


def test_tokens_per_second_and_mfu() -> None:
    clock = Clock()
    sunk: list[tuple[dict[str, float], int]] = []
    flops = progress.FlopsModel(matmul_params=7_000_000_000, layers=28, attn_width=3584, context=8192.0)
    cb = progress.MetricsCallback(lambda m, s: sunk.append((m, s)), world_size=8, flops=flops, peak_flops=989e12, clock=clock)
    cb.on_train_begin(ARGS, state(0), None)
    clock.now = 10.0
    cb.on_log(ARGS, state(10), None, logs={"loss": 0.5, "learning_rate": 2e-5, "grad_norm": 0.3, "num_tokens": 4_000_000})
    metrics, step = sunk[-1]
    assert step == 10 and metrics["tokens_per_s"] == 400_000 and metrics["tokens_per_s_per_device"] == 50_000
    assert metrics["mfu"] == pytest.approx(50_000 * 6 * 7e9 / 989e12)
    assert metrics["mfu_attn"] == pytest.approx(50_000 * (6 * 7e9 + 12 * 28 * 3584 * 8192) / 989e12)
    assert (metrics["loss"], metrics["learning_rate"], metrics["grad_norm"]) == (0.5, 2e-5, 0.3)
    clock.now = 20.0  # the rate is over the interval since the last log, not since the start
    cb.on_log(ARGS, state(20), None, logs={"num_tokens": 5_000_000})
    assert sunk[-1][0]["tokens_per_s"] == 100_000
    cb.on_log(ARGS, state(20), None, logs={"epoch": 1.0, "train_runtime": 20.0})  # end-of-training summary
    assert len(sunk) == 2
    cb.on_log(ARGS, state(30, world_zero=False), None, logs={"loss": 0.1})  # only world rank 0 sinks
    assert len(sunk) == 2 and cb.last["loss"] == 0.1


def test_no_mfu_without_a_peak() -> None:
    clock = Clock()
    cb = progress.MetricsCallback(None, world_size=1, flops=progress.FlopsModel(10, 1, 4, 2.0), peak_flops=None, clock=clock)
    cb.on_train_begin(ARGS, state(0), None)
    clock.now = 1.0
    out = cb.compute({"num_tokens": 100}, clock.now)
    assert out["tokens_per_s"] == 100 and "mfu" not in out


@pytest.mark.parametrize(
    ("name", "peak"),
    [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA L4", 121e12),
     ("NVIDIA L40S", 362e12), ("Quadro RTX 6000", None), (None, None)],
)
def test_peak_flops_table(name: str | None, peak: float | None) -> None:
    assert progress.peak_flops_for(name) == peak


def test_flops_model_counts_the_tied_head_once_and_not_the_lookup(tiny_model_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    fm = progress.flops_model_for(model, context=100.0)
    total = sum(p.numel() for p in model.parameters())  # unique parameters; the tied head is the embedding
    assert model.config.tie_word_embeddings and fm.matmul_params == total
    assert (fm.layers, fm.attn_width) == (model.config.num_hidden_layers, model.config.hidden_size)


def test_calibration_of_a_whole_run_worked_example() -> None:
    # 1,000 tokens in 10 s on 2 devices of 1 TFLOP/s, N = 1M: 100 tok/s; 6·1M·1000 = 6 GFLOP; 0.6 GFLOP/s of 2 TFLOP/s
    out = progress.calibration_metrics(1000, 10.0, 1_000_000, world_size=2, peak_flops_per_device=1e12)
    assert out == pytest.approx({"tokens_per_second": 100.0, "train_flops": 6e9, "mfu": 3e-4})


def test_calibration_has_no_mfu_without_a_peak_and_nothing_when_nothing_trained() -> None:
    out = progress.calibration_metrics(1000, 10.0, 1_000_000, world_size=1, peak_flops_per_device=None)
    assert out == pytest.approx({"tokens_per_second": 100.0, "train_flops": 6e9})
    assert progress.calibration_metrics(None, 10.0, 1_000_000, world_size=1, peak_flops_per_device=1e12) == {}
    assert progress.calibration_metrics(1000, 0.0, 1_000_000, world_size=1, peak_flops_per_device=1e12) == {}
    assert progress.calibration_metrics(1000, 10.0, None, world_size=1, peak_flops_per_device=1e12) == {"tokens_per_second": 100.0}


def test_metrics_callback_remembers_the_trained_tokens() -> None:
    clock = Clock()
    cb = progress.MetricsCallback(None, world_size=1, clock=clock)
    assert cb.trained_tokens is None
    cb.on_train_begin(ARGS, state(0), None)
    clock.now = 2.0
    cb.compute({"num_tokens": 640}, clock.now)
    assert cb.trained_tokens == 640


@pytest.mark.parametrize(
    ("setting", "env", "device", "peak"),
    [
        (None, {}, None, None),  # CPU: unknown, no MFU
        (None, {"INFIALIGN_PEAK_FLOPS": "2.5e14"}, None, 2.5e14),  # the environment names the hardware
        (None, {"INFIALIGN_PEAK_FLOPS": "fast"}, "NVIDIA A100-SXM4-80GB", 312e12),  # unusable: warned, the table decides
        (None, {}, "NVIDIA H100 80GB HBM3", 989e12),
        (100.0, {"INFIALIGN_PEAK_FLOPS": "2.5e14"}, "NVIDIA H100 80GB HBM3", 100e12),  # the setting wins
    ],
)
def test_peak_flops_setting_then_environment_then_table(setting: float | None, env: dict[str, str], device: str | None, peak: float | None) -> None:
    from infialign.pipeline.training import runner

    settings = SimpleNamespace(peak_tflops_per_device=setting)
    facts = SimpleNamespace(device_name=device)
    assert runner.peak_flops(settings, facts, env) == peak  # type: ignore[arg-type]
