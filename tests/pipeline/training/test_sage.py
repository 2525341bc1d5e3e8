"""SAGE's pure functions and selector on plain arrays and a fake step counter (no torch)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from infialign.pipeline.api import spec
from infialign.pipeline.training import sage


def settings(**overrides) -> spec.SageSettings:
    return spec.SageSettings(enabled=True, **{"refresh_steps": 10, **overrides})


# ---- score


def test_score_falls_monotonically_as_the_margin_rises() -> None:
    u = np.linspace(-30, 30, 601)
    score = sage.sage_score(u, 0.05)
    assert np.all(np.diff(score) <= 0)
    assert score[0] > 10 * score[300] > 0  # a confident error outweighs a boundary pair
    assert score[-1] < 1e-6  # a mastered pair carries no signal


@pytest.mark.parametrize("delta", [0.01, 0.05, 0.5, 2.0])
def test_score_is_bounded_by_one_over_delta(delta: float) -> None:
    u = np.array([-1e4, -100.0, -10.0, -1.0, 0.0, 1.0])
    score = sage.sage_score(u, delta)
    assert np.all(score <= 1 / delta + 1e-12)
    assert score[0] == pytest.approx(1 / delta, rel=1e-6)  # the bound is reached for very confident errors
    assert np.all(np.isfinite(score))


def test_score_without_damping_is_exp_minus_u() -> None:
    u = np.array([-3.0, -1.0, 0.0, 2.0])
    assert sage.sage_score(u, 1e-12) == pytest.approx(np.exp(-u), rel=1e-6)


def test_score_needs_positive_damping() -> None:
    with pytest.raises(ValueError, match="stabilityDelta"):
        sage.sage_score(np.zeros(2), 0.0)


def test_margins_sum_and_length_normalised() -> None:
    u = sage.dpo_margins(np.array([-10.0]), np.array([-20.0]), np.array([-12.0]), np.array([-19.0]), beta=0.5)
    assert u == pytest.approx([0.5 * ((-10 + 12) - (-20 + 19))])
    per_token = sage.dpo_margins(
        np.array([-10.0]), np.array([-20.0]), np.array([-12.0]), np.array([-19.0]), beta=0.5,
        chosen_tokens=np.array([4]), rejected_tokens=np.array([2]), length_scale=3.0,
    )
    assert per_token == pytest.approx([0.5 * 3.0 * (2 / 4 - (-1) / 2)])


# ---- stability filter


def test_boundary_band() -> None:
    assert sage.boundary_unstable(np.array([-0.2, -0.05, 0.0, 0.09, 0.1, 3.0]), 0.1).tolist() == [False, True, True, True, False, False]


def test_sign_flips_ignore_unscored_refreshes() -> None:
    recent = np.array([[1.0, -1.0, 1.0], [1.0, 2.0, 3.0], [np.nan, -1.0, 1.0], [np.nan, np.nan, np.nan], [-1.0, 0.0, 1.0]])
    assert sage.sign_flips(recent).tolist() == [2, 0, 1, 0, 1]


# ---- tiers


def test_tiers_from_pass_rates() -> None:
    tiers = sage.assign_tiers([1.0, 0.5, 0.49, 0.125, 0.1, 0.0], [1] * 6, [0.5, 0.125], 3)
    assert tiers.tolist() == [0, 0, 1, 1, 2, 2]


def test_tiers_from_length_when_pass_rate_is_missing() -> None:
    lengths = [900, 100, 500, 300, 700, 200]
    tiers = sage.assign_tiers([None] * 6, lengths, [0.5, 0.125], 3)
    assert tiers.tolist() == [2, 0, 1, 1, 2, 0]  # tertiles of the chosen length, shortest (easiest) first


def test_tiers_mixed_known_and_unknown() -> None:
    tiers = sage.assign_tiers([0.9, None, 0.0, None], [10, 50, 10, 5], [0.5], 2)
    assert tiers.tolist() == [0, 1, 1, 0]


# ---- selection and schedule


def test_top_selection_takes_rho_of_the_eligible_by_score() -> None:
    scores = np.array([0.1, 5.0, 3.0, 4.0, 0.2, 9.0])
    picked = sage.select_pairs(np.array([0, 1, 2, 3, 4]), scores, 0.5, sampling="top", gamma=1.0, rng=np.random.default_rng(0))
    assert picked.tolist() == [1, 2, 3]  # 5 is not eligible, ceil(0.5 × 5) = 3


def test_weighted_selection_is_deterministic_for_a_seed() -> None:
    scores = np.arange(1.0, 21.0)
    draw = [sage.select_pairs(np.arange(20), scores, 0.25, sampling="weighted", gamma=1.0, rng=np.random.default_rng(7)).tolist() for _ in range(2)]
    assert draw[0] == draw[1] and len(draw[0]) == 5 and len(set(draw[0])) == 5


def test_refresh_schedule_on_a_fake_step_counter() -> None:
    fired, last = [], None
    for step in range(0, 26):
        if sage.refresh_due(step, last, 10):
            fired.append(step)
            last = step
    assert fired == [10, 20]  # not at step 0: the policy equals the reference there, every margin is 0


def test_refresh_interval_is_the_setting_or_a_third_of_an_epoch() -> None:
    assert sage.refresh_interval(7, 10_000, 64) == 7
    assert sage.refresh_interval(None, 10_000, 64) == 53  # the reconstruction's scale: close to §2.5's R = 50
    assert sage.refresh_interval(None, 254, 8) == 11
    assert sage.refresh_interval(None, 5, 64) == 1  # never 0: a refresh at least every step


def test_an_empty_refresh_interval_needs_the_batch_size() -> None:
    with pytest.raises(ValueError, match="global batch size"):
        sage.SageSelector(spec.SageSettings(enabled=True), tiers=np.zeros(30, dtype=np.int64), seed=1)
    sel = sage.SageSelector(spec.SageSettings(enabled=True), tiers=np.zeros(30, dtype=np.int64), seed=1, global_batch_size=2)
    assert sel.refresh_steps == 5 and not sel.due(4) and sel.due(5)


# ---- the selector


def selector(**overrides) -> sage.SageSelector:
    tiers = np.array([0] * 10 + [1] * 10 + [2] * 10)
    return sage.SageSelector(settings(explore_fraction=0.0, variance_quantile=1.0, **overrides), tiers=tiers, seed=1)


def test_pool_starts_with_tier_one_plus_an_exploration_slice() -> None:
    sel = sage.SageSelector(settings(explore_fraction=0.2), tiers=np.array([0] * 10 + [1] * 10 + [2] * 10), seed=1)
    assert sel.in_pool[:10].all() and sel.in_pool[10:20].sum() == 2 and sel.in_pool[20:].sum() == 2
    assert set(sel.to_score().tolist()) >= set(range(10, 20))  # the next tier is scored to judge admission


def test_competence_admits_the_next_tier_and_mastered_pairs_retire() -> None:
    sel = selector(competence=0.7, margin_tau=2.0)
    idx = sel.to_score()
    u = np.where(idx < 10, 3.0, -1.0)  # tier 1 mastered, tier 2 a confident error
    report = sel.refresh(10, idx, u)
    assert report.competence == 1.0 and report.admitted_tiers == 2
    assert report.retired_now == 10 and sel.retired[:10].all()
    assert set(sel.selection.tolist()) <= set(range(10, 20))  # the new tier's errors are what is left to learn
    assert report.pool_by_tier == {"1": 0, "2": 10, "3": 0}


def test_low_competence_keeps_the_tier_closed() -> None:
    sel = selector(competence=0.7)
    idx = sel.to_score()
    report = sel.refresh(10, idx, np.full(idx.size, -1.0))
    assert report.competence == 0.0 and report.admitted_tiers == 1
    assert set(sel.selection.tolist()) <= set(range(10))


def test_unstable_pairs_are_filtered_and_counted() -> None:
    sel = selector(boundary_tau=0.1, max_flips=2, flip_window=3)
    idx = sel.to_score()
    base = np.where(idx < 10, -1.0, -2.0)
    base[idx == 0] = 0.05  # on the boundary
    sel.refresh(10, idx, base)
    flip = base.copy()
    flip[idx == 1] = 1.0
    sel.refresh(20, idx, flip)
    report = sel.refresh(30, idx, base)  # pair 1: -1 → 1 → -1, two flips in three refreshes
    assert report.unstable_boundary == 1 and report.unstable_flips == 1
    assert 0 not in sel.selection and 1 not in sel.selection
    assert report.unstable_fraction == pytest.approx(2 / 10)


def test_all_unstable_falls_back_to_the_live_pool() -> None:
    sel = selector(boundary_tau=10.0)
    idx = sel.to_score()
    report = sel.refresh(10, idx, np.full(idx.size, 0.5))
    assert report.fallback == "all live pairs unstable" and sel.selection.size > 0


def test_when_every_pair_is_mastered_training_goes_on_over_all_pairs() -> None:
    """Found on the quickstart at lr 5e-4 for 3 epochs: every pair retired, every tier admitted, to_score() empty."""
    sel = selector(competence=0.5, margin_tau=1.0)
    for step in (10, 20, 30):  # each refresh masters the pool and admits the next tier
        idx = sel.to_score()
        sel.refresh(step, idx, np.full(idx.size, 5.0))
    assert sel.retired.all() and sel.to_score().size == 0
    report = sel.refresh(40, np.empty(0, dtype=np.int64), np.empty(0))
    assert report.fallback == "every pair mastered: uniform over all pairs"
    assert sel.selection.tolist() == list(range(30)) and report.scored == 0


def test_nothing_to_score_runs_no_forward_pass() -> None:
    from infialign.pipeline.training import dpo

    margins = dpo.pair_margins(object(), np.empty(0, dtype=np.int64), beta=0.1, length_scale=None, batch_size=4)
    assert margins.shape == (0,)


def test_top_rho_prefers_confident_errors() -> None:
    sel = selector(select_fraction=0.3)
    idx = sel.to_score()
    u = np.where(idx < 10, np.linspace(-5, 1.5, idx.size), -1.0)
    sel.refresh(10, idx, u)
    assert sel.selection.tolist() == [0, 1, 2]  # the three most negative margins of the pool


def test_state_round_trips_through_json() -> None:
    sel = selector()
    idx = sel.to_score()
    sel.refresh(10, idx, np.linspace(-3, 3, idx.size))
    state = json.loads(json.dumps(sel.state_dict()))
    other = selector()
    other.load_state_dict(state)
    assert other.selection.tolist() == sel.selection.tolist() and other.refreshes == 1 and other.last_step == 10
    assert np.array_equal(np.isnan(other.ema), np.isnan(sel.ema))
    nxt = np.linspace(-1, 2, idx.size)
    assert other.refresh(20, idx, nxt) == sel.refresh(20, idx, nxt)


def test_state_for_other_pairs_is_refused() -> None:
    with pytest.raises(ValueError, match="pairs changed"):
        selector().load_state_dict({**selector().state_dict(), "n": 5})


def test_report_metrics_are_flat_numbers() -> None:
    sel = selector()
    idx = sel.to_score()
    metrics = sel.refresh(10, idx, np.linspace(-3, 3, idx.size)).metrics()
    assert {"sage.pool", "sage.competence", "sage.unstable_fraction", "sage.retired_total", "sage.score_q50", "sage.pool_tier1"} <= metrics.keys()
    assert all(isinstance(v, float) for v in metrics.values())


def test_top_up_fills_one_batch_with_the_least_mastered_stable_pairs() -> None:
    latest = np.array([5.0, -2.0, 0.0, 3.0, np.nan, -0.5])
    unstable = np.array([False, False, True, False, False, False])
    # pair 1 is selected; the others by score of the latest margin, lowest margin first: the stable known pairs
    # 5 (-0.5), 3 (3.0), 0 (5.0), then the unstable pair 2, the never-scored pair 4 last
    got = sage.top_up(np.array([1]), latest, 4, 0.1, unstable=unstable).tolist()
    assert got == [0, 1, 3, 5]
    assert sage.top_up(np.array([1]), latest, 6, 0.1, unstable=unstable).tolist() == [0, 1, 2, 3, 4, 5]
    assert sage.top_up(np.array([1, 2, 3]), latest, 2, 0.1).tolist() == [1, 2, 3]  # already a batch: unchanged
    assert sage.top_up(np.array([1]), latest, 99, 0.1).tolist() == [0, 1, 2, 3, 4, 5]  # never more than every pair


def test_a_nearly_mastered_pool_still_fills_a_global_batch() -> None:
    """Found on the quickstart at lr 3e-4 for 3 epochs: 198 of 200 pairs retired, one pair selected, and every
    batch until the next refresh repeated it (eval avg@8 7.3 against 8.1 for the SFT model)."""
    tiers = np.zeros(30, dtype=np.int64)
    sel = sage.SageSelector(settings(explore_fraction=0.0, variance_quantile=1.0, margin_tau=1.0), tiers=tiers, seed=1, global_batch_size=8)
    idx = sel.to_score()
    u = np.full(idx.size, 5.0)
    u[[3, 4]] = [-1.0, -3.0]  # two errors left; everything else mastered
    report = sel.refresh(10, idx, u)
    assert report.retired_total == 28 and report.selected == 8 and report.topped_up == 7  # top-ρ of the two errors is one
    assert {3, 4} <= set(sel.selection.tolist()) and len(set(sel.selection.tolist())) == 8
    again = sage.SageSelector(settings(explore_fraction=0.0, variance_quantile=1.0, margin_tau=1.0), tiers=tiers, seed=1, global_batch_size=8)
    again.refresh(10, idx, u)
    assert again.selection.tolist() == sel.selection.tolist()  # deterministic
