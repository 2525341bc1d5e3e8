"""train_dpo on the built-in tiny model and world pairs, on CPU: learning, stored reference log-probs, resume, SAGE, LoRA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from transformers import TrainerCallback

from infialign.pipeline.training import CheckpointStore, train_dpo
from infialign.pipeline.training import reflogps as ref

pytestmark = pytest.mark.slow


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def _changed(a: Path, b: Path) -> float:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)


class Killed(Exception):
    pass


class KillAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise Killed


@pytest.fixture
def no_reference_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRL builds a reference model with create_model_from_path; with stored log-probs it must never be called."""
    import trl.trainer.dpo_trainer as dpo_trainer

    def refuse(*args, **kwargs):
        raise AssertionError("a reference model was loaded; precomputed reference log-probs should make it unnecessary")

    monkeypatch.setattr(dpo_trainer, "create_model_from_path", refuse)


def test_dpo_learns_the_preference_on_held_out_pairs(tmp_path, tiny_model_path, world_pairs, dpo_settings, no_reference_model) -> None:
    from infialign.pipeline.training.preference_eval import implicit_preference

    train, held_out = world_pairs(128, 3), world_pairs(96, 11)
    assert not set(train.column("id").to_pylist()) & set(held_out.column("id").to_pylist())
    before = implicit_preference(tiny_model_path, tiny_model_path, held_out, beta=0.1)
    beats: list[tuple[int, int]] = []
    logged: list[dict[str, float]] = []
    result = train_dpo(
        dpo_settings(max_steps=30), str(tiny_model_path), train, tmp_path / "out", model_digest="tiny",
        heartbeat=lambda step, total, metrics, ckpt: beats.append((step, total)), metrics_sink=lambda m, s: logged.append(m),
    )
    after = implicit_preference(result.model_dir, tiny_model_path, held_out, beta=0.1)

    assert result.global_step == 30 and result.engine == "torch" and result.pairs == train.num_rows
    assert result.ref_logps == "computed" and (tmp_path / "out" / "pairs-ref.parquet").is_file()
    assert _changed(result.model_dir, tiny_model_path) > 1e-3
    assert before.mean_margin == 0.0  # the policy starts as the reference
    # a random-init tiny model generalises the slip only weakly; what matters is the direction on unseen pairs
    assert after.mean_margin > 0.02 and after.accuracy > 0.52, (after.accuracy, after.mean_margin)
    assert beats[-1] == (30, 30)
    assert {"loss", "reward_accuracy", "reward_margin", "tokens_per_s"} <= logged[-1].keys()


def test_over_long_pairs_are_dropped_and_counted(tmp_path, tiny_model_path, world_pairs, dpo_settings) -> None:
    pairs = world_pairs(24, 5)
    long = pairs.slice(0, 1).to_pylist()[0]
    long.update(id="long", chosen=long["chosen"] + " padding" * 600)
    from infialign.pipeline import pairs as pairs_mod

    table = pa.concat_tables([pairs, pairs_mod.to_pairs_table([long])])
    result = train_dpo(dpo_settings(max_steps=1), str(tiny_model_path), table, tmp_path / "out", model_digest="tiny")
    assert result.dropped_overlong == 1 and result.pairs == pairs.num_rows
    # calibration for `infialign plan`: chosen and rejected tokens trained per second, 6N·tokens; CPU: no MFU
    assert result.metrics["tokens_per_second"] > 0 and result.metrics["train_flops"] > 0 and "mfu" not in result.metrics


def test_kill_and_resume_reuses_the_stored_reference_log_probs(
    tmp_path, tiny_model_path, world_pairs, dpo_settings, monkeypatch, no_reference_model
) -> None:
    """Attempt 1 computes the reference log-probs once and dies after a checkpoint; attempt 2 resumes and never recomputes."""
    from trl import DPOTrainer

    pairs = world_pairs(64, 4)
    settings = dpo_settings(max_steps=6, save_steps=3, sage={"enabled": True, "refresh_steps": 2})
    store = CheckpointStore.from_uri((tmp_path / "remote").as_uri())
    ref_uri = (tmp_path / "stage-output" / "pairs-ref.parquet").as_uri()
    with pytest.raises(Killed):
        train_dpo(settings, str(tiny_model_path), pairs, tmp_path / "a1", model_digest="tiny", ref_logps_uri=ref_uri,
                  checkpoint_store=store, callbacks=[KillAfterSave()])
    assert (tmp_path / "stage-output" / "pairs-ref.parquet").is_file()
    assert (tmp_path / "remote" / "checkpoint-3" / "sage_state.json").is_file()

    def refuse(self, model, inputs):
        raise AssertionError("reference log-probs were recomputed on resume")

    monkeypatch.setattr(DPOTrainer, "compute_ref_log_probs", refuse)
    resumed = train_dpo(settings, str(tiny_model_path), pairs, tmp_path / "a2", model_digest="tiny", ref_logps_uri=ref_uri,
                        resume=True, checkpoint_store=store)
    assert resumed.ref_logps == "stored"
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-3") and resumed.global_step == 6
    # refresh 0 (step 2) came back with the checkpoint; refresh 1 at step 4; none after the last step
    assert [(r["refresh"], r["step"]) for r in resumed.sage_refreshes] == [(1, 4)]


def test_sage_on_and_off_both_train_select_differently_and_are_deterministic(
    tmp_path, tiny_model_path, world_pairs, dpo_settings
) -> None:
    pairs = world_pairs(96, 6, difficulty=True)
    sage = {"enabled": True, "refresh_steps": 2, "select_fraction": 0.25}
    uniform = train_dpo(dpo_settings(max_steps=6), str(tiny_model_path), pairs, tmp_path / "off", model_digest="tiny")
    on = [train_dpo(dpo_settings(max_steps=6, sage=sage), str(tiny_model_path), pairs, tmp_path / f"on{i}", model_digest="tiny")
          for i in range(2)]
    assert uniform.sage_refreshes == [] and uniform.global_step == on[0].global_step == 6
    reports = on[0].sage_refreshes
    assert [r["step"] for r in reports] == [2, 4]
    first = reports[0]
    assert first["pool"] < pairs.num_rows  # the curriculum starts from tier 1 (+ an exploration slice)
    assert first["selected"] <= int(np.ceil(0.25 * first["pool"]))
    assert {"pool_by_tier", "competence", "unstable_fraction", "retired_total", "score_quantiles"} <= first.keys()
    assert _changed(uniform.model_dir, on[0].model_dir) > 1e-4  # different batches, different weights
    # deterministic for a fixed seed: same selections, same weights
    strip = [{k: v for k, v in r.items() if k != "refresh_s"} for r in reports]
    assert strip == [{k: v for k, v in r.items() if k != "refresh_s"} for r in on[1].sage_refreshes]
    assert _changed(on[0].model_dir, on[1].model_dir) == 0.0


def test_lora_with_the_rpo_loss_mix(tmp_path, tiny_model_path, world_pairs, dpo_settings, no_reference_model) -> None:
    from peft import PeftModel  # noqa: F401  (LoRA needs peft; the merged export must be a plain model)

    pairs = world_pairs(32, 8)
    result = train_dpo(
        dpo_settings(max_steps=3, loss_type=("sigmoid", "sft"), loss_weights=(1.0, 0.2), lora={"enabled": True, "rank": 4, "alpha": 8}),
        str(tiny_model_path), pairs, tmp_path / "out", model_digest="tiny",
    )
    assert result.global_step == 3 and (tmp_path / "out" / "adapter").is_dir()
    assert _changed(result.model_dir, tiny_model_path) > 0  # merged adapters changed the exported weights
    assert not any("lora" in k for k in _weights(result.model_dir))


def test_stored_values_are_not_trusted_for_other_inputs(tmp_path, world_pairs) -> None:
    pairs = world_pairs(12, 9)
    ids = pairs.column("id").to_pylist()
    uri = (tmp_path / "pairs-ref.parquet").as_uri()
    fp = ref.fingerprint(model_digest="m1", pairs=pairs, chat_template="t", system_prompt=None, max_length=512)
    ref.save(uri, fp, ref.RefLogps(ids, -np.arange(12.0), -np.arange(12.0) - 1))
    assert ref.load(uri, fp, ids[::-1]).chosen.tolist() == (-np.arange(12.0))[::-1].tolist()  # aligned by id
    other_model = ref.fingerprint(model_digest="m2", pairs=pairs, chat_template="t", system_prompt=None, max_length=512)
    other_length = ref.fingerprint(model_digest="m1", pairs=pairs, chat_template="t", system_prompt=None, max_length=1024)
    edited = pairs.set_column(pairs.schema.get_field_index("rejected"), "rejected", pa.array(["x"] * 12))
    other_pairs = ref.fingerprint(model_digest="m1", pairs=edited, chat_template="t", system_prompt=None, max_length=512)
    other_precision = ref.fingerprint(model_digest="m1", pairs=pairs, chat_template="t", system_prompt=None, max_length=512, precision="bf16")
    assert len({fp, other_model, other_length, other_pairs, other_precision}) == 5
    assert ref.load(uri, other_model, ids) is None
    assert ref.load(uri, fp, [*ids, "new-pair"]) is None
    assert ref.load((tmp_path / "absent.parquet").as_uri(), fp, ids) is None
