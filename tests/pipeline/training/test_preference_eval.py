"""Held-out preference accuracy: the pure parts on plain arrays, and the curve callback in a few real DPO steps."""

from __future__ import annotations

import numpy as np
import pytest

from infialign.pipeline.training import preference_eval as pe


def logps(chosen, rejected) -> pe.PairLogps:
    return pe.PairLogps(np.array(chosen, dtype=float), np.array(rejected, dtype=float))


# ---- accuracy and margin from log-probs


def test_accuracy_and_margin_from_log_probs() -> None:
    reference = logps([-10.0, -10.0, -10.0, -10.0], [-12.0, -12.0, -12.0, -12.0])
    policy = logps([-9.0, -11.0, -10.0, -10.0], [-13.0, -11.0, -12.0, -12.5])
    result = pe.preference_from_logps(policy, reference, beta=0.5)
    # margins: 0.5·((+1) − (−1)) = 1, 0.5·((−1) − (+1)) = −1, 0, 0.5·(0 − (−0.5)) = 0.25
    assert result.margins.tolist() == pytest.approx([1.0, -1.0, 0.0, 0.25])
    assert result.accuracy == 0.5  # the tie counts wrong: at step 0 (policy = reference) the accuracy is 0
    assert result.mean_margin == pytest.approx(0.0625)


def test_the_policy_equal_to_its_reference_ranks_nothing() -> None:
    same = logps([-3.0, -7.0], [-4.0, -1.0])
    result = pe.preference_from_logps(same, same, beta=0.1)
    assert result.accuracy == 0.0 and result.mean_margin == 0.0


@pytest.mark.parametrize(
    ("policy", "reference", "match"),
    [
        (logps([-1.0], [-1.0]), logps([-1.0, -2.0], [-1.0, -2.0]), "differ in shape"),
        (logps([], []), logps([], []), "no pairs"),
    ],
)
def test_mismatched_or_empty_log_probs_are_refused(policy, reference, match) -> None:
    with pytest.raises(ValueError, match=match):
        pe.preference_from_logps(policy, reference, beta=0.1)


# ---- when a curve point is due


def test_curve_points_at_zero_every_k_and_at_the_last_step() -> None:
    assert [s for s in range(0, 24) if pe.curve_due(s, 5, max_steps=23)] == [0, 5, 10, 15, 20, 23]
    assert [s for s in range(0, 11) if pe.curve_due(s, 5)] == [0, 5, 10]
    assert all(pe.curve_due(s, 1) for s in range(5))


def test_curve_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every=0"):
        pe.curve_due(3, 0)


# ---- the callback in real training


@pytest.mark.slow
def test_curve_callback_records_held_out_points_during_training(tmp_path, tiny_model_path, world_pairs, dpo_settings) -> None:
    from transformers import AutoTokenizer

    from infialign.pipeline.training import train_dpo

    train, held_out = world_pairs(48, 3), world_pairs(24, 11)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_path))
    curve = pe.curve_callback(tokenizer, held_out, tiny_model_path, beta=0.1, every=3)
    result = train_dpo(dpo_settings(max_steps=7), str(tiny_model_path), train, tmp_path / "out", model_digest="tiny", callbacks=[curve])

    assert [p.step for p in curve.points] == [0, 3, 6, 7]
    first, last = curve.points[0], curve.points[-1]
    assert first.accuracy == 0.0 and first.mean_margin == 0.0  # the policy starts as the reference: every margin is 0
    assert last.mean_margin != 0.0
    assert all(p.train_s >= 0 and p.eval_s > 0 for p in curve.points)
    assert [p.train_s for p in curve.points] == sorted(p.train_s for p in curve.points)
    # the last point is the exported model: the same numbers as the one-off evaluation after training
    after = pe.implicit_preference(result.model_dir, tiny_model_path, held_out, beta=0.1)
    assert last.accuracy == pytest.approx(after.accuracy) and last.mean_margin == pytest.approx(after.mean_margin, abs=1e-5)
