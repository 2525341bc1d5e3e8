"""`infialign plan`'s arithmetic against published references and benchmarks/gpu_estimate.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from infialign.pipeline import validation
from infialign.pipeline.estimate import Evidence, Options, StepRecord, estimate_run, flops, hardware, lengths, memory, models, render

from .conftest import EXAMPLE_7B, QUICKSTART, example_spec

QWEN7B = models.known_shape("hf://Qwen/Qwen2.5-7B")
H100 = hardware.gpu("h100")


def _spec(edit=None):
    return example_spec(EXAMPLE_7B, edit)


# ---------------------------------------------------------------- FLOPs formulas


def test_six_n_rule_reproduces_chinchilla_compute() -> None:
    # Hoffmann et al. 2022, Table 3: Chinchilla, 70 B parameters on 1.4 T tokens, 5.76e23 FLOPs (C ≈ 6ND)
    assert flops.chinchilla_flops(70e9, 1.4e12) == pytest.approx(5.76e23, rel=0.05)
    assert flops.chinchilla_flops(70e9, 1.4e12) == pytest.approx(5.88e23)


def test_attention_term_follows_palm_appendix_b() -> None:
    # 12·L·H·Q·T for Llama-3.1-8B at T = 8192 (torchtitan's benchmark setting): 32 layers, 32 heads × 128
    assert flops.attention_flops_per_token(32, 32 * 128, 8192) == 12 * 32 * 4096 * 8192
    six_n, with_attn = flops.train_flops_per_token(models.known_shape("hf://meta-llama/Llama-3.1-8B"), 8192)
    assert with_attn - six_n == pytest.approx(12.88e9, rel=1e-3)  # 12.9 GFLOP/token on top of 6N = 45.0


def test_parameter_counts_match_published_model_cards() -> None:
    assert QWEN7B.params == 7_615_616_512
    assert QWEN7B.matmul_params == 7_615_616_512 - 152_064 * 3584
    assert models.known_shape("hf://meta-llama/Llama-3.1-8B").params == 8_030_261_248
    assert models.known_shape("hf://Qwen/Qwen2.5-32B").params == 32_763_876_352


# ---------------------------------------------------------------- gpu_estimate.md


def test_sft_flops_per_token_agree_with_gpu_estimate() -> None:
    # gpu_estimate.md: 6N = 42.4, 6N + attention at T = 13,465: 58.6, at T = 32,768: 81.9 GFLOP/token
    six_n, packed = flops.train_flops_per_token(QWEN7B, 13_465)
    _, full = flops.train_flops_per_token(QWEN7B, 32_768)
    assert round(six_n / 1e9, 1) == 42.4
    assert round(packed / 1e9, 1) == 58.6
    assert round(full / 1e9, 1) == 81.9


def test_long_cot_prior_matches_the_sampled_distribution_of_gpu_estimate() -> None:
    # the bench samples 20k lognormal lengths: mean 8,063, Σl²/Σl 13,465; the closed form is within sampling noise
    assert lengths.LONG_COT_PRIOR.mean_total(32768) == pytest.approx(8063, rel=0.005)
    assert lengths.LONG_COT_PRIOR.context(32768) == pytest.approx(13_465, rel=0.005)


@pytest.mark.parametrize(("mfu", "tok_s", "epoch_h"), [(0.25, 4216, 11.0), (0.30, 5060, 9.1), (0.35, 5903, 7.8), (0.39, 6578, 7.0)])
def test_sft_throughput_table_of_gpu_estimate(mfu: float, tok_s: float, epoch_h: float) -> None:
    # 8×H100, 165k examples of the long-CoT prior: the table's tokens/s per GPU and hours per epoch, within 1 %
    # (the document samples the lengths; the estimate uses the closed form: 0.3 % apart)
    spec = _spec(lambda s: s["stages"]["sft"]["resources"].update(numNodes=1))
    est = estimate_run(spec, options=Options(gpu="h100", mfu=mfu))
    phase2 = next(s for s in est.steps if s.step == "sft-phase2")
    assert phase2.rows.value == 165_000 and phase2.rows.source == "spec"
    tokens_per_epoch = phase2.tokens.value / 5
    assert tokens_per_epoch / (phase2.wall_hours / 5 * 3600) / 8 == pytest.approx(tok_s, rel=0.01)
    assert phase2.wall_hours / 5 == pytest.approx(epoch_h, rel=0.01, abs=0.05)


# ---------------------------------------------------------------- fit check


def test_fit_check_flags_7b_full_finetuning_at_32k_on_one_gpu_without_zero() -> None:
    setup = memory.TrainSetup(devices=1, zero_stage=0, seq_len=32768, grad_ckpt=True)
    m = memory.training_memory(QWEN7B, setup, H100)
    assert m.sure_oom and not m.fits
    assert dict(m.parts)["optimizer"] == 12 * QWEN7B.params  # 2 + 2 + 12 bytes per parameter
    fixes = memory.training_fixes(QWEN7B, setup, H100, settings_path="spec.stages.sft", length_path="spec.stages.sft.phases[0].maxLength",
                                  nodes_path="spec.stages.sft.resources.numNodes", gpus_per_node=8)
    by_name = {f.what.split(" (")[0]: f for f in fixes}
    assert by_name["more GPUs"].fits and "numNodes" in by_name["more GPUs"].change
    # LoRA on the one GPU: 15.2 GB frozen weights + checkpointed activations and logits at 32K ≈ 48 GB
    assert by_name["LoRA"].fits and by_name["LoRA"].memory_bytes == pytest.approx(48.3e9, rel=0.01)
    assert all(f.memory_bytes < m.total for f in fixes)


def test_fit_check_accepts_known_good_configs() -> None:
    lora = memory.TrainSetup(devices=1, zero_stage=0, seq_len=4096, grad_ckpt=True, lora_rank=64)
    assert memory.training_memory(QWEN7B, lora, H100).fits
    zero3 = memory.TrainSetup(devices=8, zero_stage=3, seq_len=32768, grad_ckpt=True)
    assert memory.training_memory(QWEN7B, zero3, H100).fits


def test_gradient_checkpointing_is_what_makes_32k_fit() -> None:
    no_ckpt = memory.TrainSetup(devices=16, zero_stage=3, seq_len=32768, grad_ckpt=False)
    assert not memory.training_memory(QWEN7B, no_ckpt, H100).fits
    # Korthikanti et al. 2022 with flash attention: 34·s·h bytes per layer
    assert dict(memory.training_memory(QWEN7B, no_ckpt, H100).parts)["activations"] == 34 * 32768 * 3584 * 28


def test_kv_cache_per_token_of_qwen_7b() -> None:
    # 2 × 28 layers × 4 KV heads × 128 × 2 bytes = 57,344 bytes per token
    assert QWEN7B.kv_bytes_per_token() == 57_344
    m = memory.generation_memory(QWEN7B, memory.GenSetup(tensor_parallel=1, context=32768, batch=1), H100)
    assert m.fits and dict(m.parts)["kv cache"] == 57_344 * 32768


def test_generation_of_a_72b_model_on_one_l40s_does_not_fit_and_tp_is_suggested() -> None:
    shape = models.known_shape("hf://Qwen/Qwen2.5-72B")
    l40s = hardware.gpu("l40s")
    setup = memory.GenSetup(tensor_parallel=1, context=8192)
    assert memory.generation_memory(shape, setup, l40s).sure_oom
    fixes = memory.generation_fixes(shape, setup, l40s, settings_path="spec.stages.eval", gpus_per_node=8)
    # 145 GB of bf16 weights: TP 4 puts 36 GB on each 48 GB GPU, under vLLM's 90 %
    assert fixes[0].change == "spec.stages.eval.tensorParallel: 4" and fixes[0].fits


# ---------------------------------------------------------------- the plan


def test_plan_of_the_7b_example_lays_out_steps_as_the_operator_builders_do() -> None:
    from infialign.operator import builders
    from infialign.pipeline.runtime.config import RunIdentity, TrackingConfig, artifacts_root, build_stage_config

    spec = _spec()
    run = RunIdentity(namespace="ml-team", name="qwen-7b-infialign")
    for s in estimate_run(spec).steps:
        config = build_stage_config(spec, run, s.step, 1, artifacts_root(spec), TrackingConfig(enabled=False))
        job = builders.build_job(spec, run, s.step, 1, config)
        container = job["spec"]["template"]["spec"]["containers"][0]
        gpus = int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
        assert (job["spec"]["parallelism"], gpus, container["image"]) == (s.pods, s.gpus_per_pod, s.image), s.step
        assert job["metadata"]["labels"].get(builders.KUEUE_QUEUE_LABEL) == s.queue


def test_sources_of_figures_follow_the_order_of_trust() -> None:
    spec = _spec()
    flag = estimate_run(spec, options=Options(rows=1_000_000, tokens_per_row=4000))
    sft = next(s for s in flag.steps if s.step == "sft-phase2")
    assert sft.tokens.source == "flag" and sft.tokens.value == pytest.approx(165_000 * 4000 * 5, rel=0.01)
    assert next(s for s in flag.steps if s.step == "curate").rows == lengths.Figure(1_000_000, "flag", flag.steps[0].rows.note)
    sample = lengths.Empirical((100,) * 10, (900,) * 10, "source sample")
    measured = lengths.Empirical((50,) * 10, (1950,) * 10, "run outputs")
    ev = Evidence(sources={"openr1-math": (500, sample)}, datasets={"sft-phase2": measured},
                  steps={"select": StepRecord(rows={"sft-phase1": 40, "sft-phase2": 90, "dpo-prompts": 7})})
    est = estimate_run(spec, ev, Options(rows=1_000_000, tokens_per_row=4000))
    sft = next(s for s in est.steps if s.step == "sft-phase2")
    assert (sft.rows.value, sft.rows.source) == (90, "run outputs")
    assert sft.tokens.source == "run outputs" and sft.tokens.value == 90 * 2000 * 5
    assert next(s for s in est.steps if s.step == "prefs").rows.value == 7


def test_sft_optimizer_steps_count_samples_as_the_trainer_does() -> None:
    # 165,000 samples of phase 2, 64 samples per step ([SRC-2]), 5 epochs: the same with packing on or off
    est = estimate_run(_spec(), options=Options(rows=1_000_000, tokens_per_row=4000))
    sft = next(s for s in est.steps if s.step == "sft-phase2")
    assert any("= 12,895, packed or padded" in n and "≤ 32,768 tokens per GPU" in n for n in sft.notes), sft.notes


def test_measured_metrics_calibrate_the_step_and_say_so() -> None:
    spec = _spec()
    ev = Evidence(steps={"sft-phase1": StepRecord(metrics={"tokens_per_second": 50_000.0}),
                         "sft-phase2": StepRecord(metrics={"mfu": 0.2})})
    est = estimate_run(spec, ev)
    p1, p2 = (next(s for s in est.steps if s.step == n) for n in ("sft-phase1", "sft-phase2"))
    assert p1.wall_hours == pytest.approx(p1.tokens.value / 50_000 / 3600) and "measured tokens_per_second" in p1.basis
    assert "measured mfu 0.20" in p2.basis
    six_n, with_attn = flops.train_flops_per_token(QWEN7B, lengths.LONG_COT_PRIOR.context(32768))
    assert p2.wall_hours == pytest.approx(p2.flops / (16 * H100.peak_bf16_flops * 0.2 * with_attn / six_n) / 3600)


def test_measured_generation_rate_is_per_engine_and_scales_with_the_shards() -> None:
    evidence = Evidence(steps={"prefs": StepRecord(metrics={"generated_tokens_per_second": 1_000.0})})

    def prefs_hours(shards: int) -> float:
        est = estimate_run(_spec(lambda s: s["stages"]["prefs"].update(shards=shards)), evidence)
        step = next(s for s in est.steps if s.step == "prefs")
        assert "per engine" in step.basis
        return step.wall_hours

    assert prefs_hours(1) == pytest.approx(4 * prefs_hours(4))


def test_unknown_model_names_the_field_and_the_flag() -> None:
    spec = _spec(lambda s: s["model"].update(uri="hf://someone/unknown-model"))
    with pytest.raises(models.UnknownModelError, match=r"spec.model.uri.*hf://someone/unknown-model.*--params"):
        estimate_run(spec)
    est = estimate_run(spec, options=Options(params=7e9))
    assert est.model.params == 7_000_000_000 and est.model.source == "--params"


def test_to_status_is_compact() -> None:
    status = estimate_run(_spec()).to_status()
    assert set(status) == {"gpu", "mfu", "gpuHours", "complete", "cost", "steps"}
    assert status["complete"] is False  # distill: the sources are not readable, no --rows
    json.dumps(status)


def test_render_table_and_json() -> None:
    est = estimate_run(_spec(), options=Options(price_per_gpu_hour=2.5, rows=1_000_000))
    table = render.to_table(est, {"sft-phase1": ["Job x"]})
    assert "sft-phase2" in table and "creates: Job x" in table and "$" in table
    doc = json.loads(render.to_json(est))
    assert doc["complete"] is True and doc["cost"] == pytest.approx(doc["gpuHours"] * 2.5)
    assert [s["step"] for s in doc["steps"]] == ["curate", "distill", "select", "sft-phase1", "sft-phase2", "prefs", "dpo", "eval"]


# ---------------------------------------------------------------- validate and the CLI


def test_validate_warns_on_a_sure_oom_and_names_the_field() -> None:
    def full_ft_on_one_gpu(s: dict) -> None:
        s["stages"]["sft"]["deepspeed"] = {"mode": "off"}
        s["stages"]["sft"]["resources"] = {"gpusPerNode": 1}

    problems = validation.semantic_problems(_spec(full_ft_on_one_gpu))
    oom = [p for p in problems if "more than an 80 GB GPU holds" in p.message]
    assert {p.path for p in oom} == {"spec.stages.sft.phases[0]", "spec.stages.sft.phases[1]"}
    assert all(p.severity == "warning" and "LoRA" in p.message for p in oom)
    assert not [p for p in validation.semantic_problems(_spec()) if "GB GPU holds" in p.message]


def test_cli_plan_prints_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    from infialign.pipeline import cli

    assert cli.main(["plan", str(EXAMPLE_7B), "--gpu", "h100"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "Job qwen-7b-infialign-sft-phase2-a1 (Indexed, 2 pods)" in out and "(spec)" in out
    assert cli.main(["plan", str(EXAMPLE_7B), "--output", "json", "--rows", "1000000", "--price-per-gpu-hour", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["gpu"] == "h100" and doc["complete"] and doc["cost"] > 0
    assert doc["steps"][0]["rows"] == {"value": 1_000_000, "source": "flag", "note": "sources not readable here: openr1-math, numina, gsm8k, inhouse"}


def test_cli_plan_missing_params_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from infialign.pipeline import cli

    doc = yaml.safe_load(EXAMPLE_7B.read_text())
    doc["spec"]["model"]["uri"] = "hf://someone/unknown-7b"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert cli.main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert "spec.model.uri" in err and "--params" in err


def test_cli_plan_reads_the_source_sample_of_builtin_data(capsys: pytest.CaptureFixture[str]) -> None:
    from infialign.pipeline import cli

    assert cli.main(["plan", str(QUICKSTART), "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    curate = doc["steps"][0]
    assert curate["rows"]["value"] == 3000 and curate["rows"]["source"] == "source sample"
    assert doc["model"]["params"] == 919_680
