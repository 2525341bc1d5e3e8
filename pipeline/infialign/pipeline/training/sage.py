"""SAGE (arXiv 2602.01207): which DPO pairs deserve gradient. Pure functions and one small stateful selector.

The paper's text was not available; everything here follows the marked reconstruction in
research/seeds-algorithms.md §2 ([RECON]). Each formula is one small function, so a better reading of the
paper replaces one function, not the selector:

* margin (§2.1): u = β·(h(y_w) − h(y_l)), h = log π_θ − log π_ref, per token when ``length_normalised``;
* score (§2.2, Newton-decrement form): σ(−u)² / (σ(u)σ(−u) + δ'), monotone falling in u, bounded by 1/δ';
* stability (§2.3): unstable when |u| < τ_b (decision boundary), when the sign of u flipped ``max_flips`` times
  in the last ``flip_window`` refreshes, or when the variance of u over refreshes is above a quantile;
* curriculum (§2.4): K difficulty tiers (SFT pass rate, else length of `chosen`), a pool that starts with
  tier 1 plus an exploration slice of later tiers, retires mastered pairs (u > τ_m) and admits the next tier
  once competence (share of the pool with u > 0) reaches κ; every R steps (default: a third of an epoch,
  ``refresh_interval``); train on the top-ρ by score, never fewer pairs than one global batch (``top_up``).

No torch here: margins come in as numbers (the trainer computes them with forward passes, dpo.py), so every
decision is unit-tested on plain arrays and a fake step counter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np

from infialign.pipeline.api import spec as _spec

__all__ = [
    "SCORE_QUANTILES",
    "RefreshReport",
    "SageSelector",
    "assign_tiers",
    "boundary_unstable",
    "dpo_margins",
    "refresh_due",
    "refresh_interval",
    "sage_score",
    "select_pairs",
    "sigmoid",
    "sign_flips",
    "top_up",
]

SCORE_QUANTILES: Final = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
_ALL_MASTERED: Final = "every pair mastered: uniform over all pairs"


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) without overflow for large |x| (tanh form)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def dpo_margins(
    policy_chosen: np.ndarray,
    policy_rejected: np.ndarray,
    ref_chosen: np.ndarray,
    ref_rejected: np.ndarray,
    *,
    beta: float,
    chosen_tokens: np.ndarray | None = None,
    rejected_tokens: np.ndarray | None = None,
    length_scale: float = 1.0,
) -> np.ndarray:
    """u = β·(h_w − h_l) from summed sequence log-probs (§2.1).

    With token counts, each h is a per-token average (§2.2) times ``length_scale``. Our choice [RECON]: pass the
    mean response length as the scale, so long and short responses are compared per token while u keeps the units
    of the summed margin, and τ_b, τ_m and δ' mean the same with and without normalisation (a plain per-token u is
    ~|y| times smaller and would put every pair inside the boundary band).
    """
    h_w = np.asarray(policy_chosen, dtype=np.float64) - np.asarray(ref_chosen, dtype=np.float64)
    h_l = np.asarray(policy_rejected, dtype=np.float64) - np.asarray(ref_rejected, dtype=np.float64)
    if chosen_tokens is not None and rejected_tokens is not None:
        h_w = length_scale * h_w / np.maximum(np.asarray(chosen_tokens, dtype=np.float64), 1.0)
        h_l = length_scale * h_l / np.maximum(np.asarray(rejected_tokens, dtype=np.float64), 1.0)
    return beta * (h_w - h_l)


def sage_score(u: np.ndarray, delta: float) -> np.ndarray:
    """Signal²/(curvature + δ'): σ(−u)² / (σ(u)σ(−u) + δ'). High for confident errors (u ≪ 0), ≈ 0 for mastered pairs."""
    if delta <= 0:
        raise ValueError(f"sage.stabilityDelta={delta} must be positive: it bounds the score at 1/δ'")
    s_neg = sigmoid(-np.asarray(u, dtype=np.float64))
    s_pos = 1.0 - s_neg
    return s_neg**2 / (s_pos * s_neg + delta)


def boundary_unstable(u: np.ndarray, tau: float) -> np.ndarray:
    """True where the pair sits in the band |u| < τ_b around the decision boundary (§2.3, test 1)."""
    return np.abs(np.asarray(u, dtype=np.float64)) < tau


def sign_flips(recent: np.ndarray) -> np.ndarray:
    """Sign changes along the last axis of a (pairs × refreshes) array, ignoring NaN (not scored) entries."""
    recent = np.atleast_2d(np.asarray(recent, dtype=np.float64))
    out = np.zeros(recent.shape[0], dtype=np.int64)
    for i, row in enumerate(recent):
        signs = np.sign(row[~np.isnan(row)])
        signs = signs[signs != 0]
        out[i] = int(np.count_nonzero(signs[1:] != signs[:-1])) if signs.size > 1 else 0
    return out


def refresh_due(step: int, last_refresh_step: int | None, every: int) -> bool:
    """A refresh is due every ``every`` optimizer steps, the first at step ``every`` (§2.4).

    Not at step 0: DPO starts with the policy equal to the reference, so every margin is exactly 0 and a refresh
    could only call every pair unstable. Until the first refresh the selection is the initial pool.
    """
    if every < 1:
        raise ValueError(f"sage.refreshSteps={every} must be at least 1")
    return step - (last_refresh_step or 0) >= every


def refresh_interval(refresh_steps: int | None, pairs: int, global_batch_size: int) -> int:
    """R: the setting, or when empty a third of an epoch, ceil(pairs / (3 · global batch)), at least 1 (§2.4).

    Why a third of an epoch [RECON]: a refresh scores the pool with forward passes, about a third of the compute of
    training it once, so R sets the refresh overhead (≈ pool / (3·R·batch), 100% at a third of an epoch); and a
    selection kept for much longer than an epoch trains the same pairs over and over on stale scores. At the
    reconstruction's scale (10K pairs, batch 64) this is 53 steps, close to §2.5's R = 50. Measured on the built-in
    world (benchmarks/results/sage, 254 pairs, 80 steps, 3 seeds): R = 11 reached uniform DPO's final held-out accuracy
    at 0.25 of the steps on the seed-averaged curve against 0.38 with a fixed R = 50, for about +70% compute over the run.
    """
    if refresh_steps is not None:
        return refresh_steps
    if pairs < 1 or global_batch_size < 1:
        raise ValueError(f"cannot derive sage.refreshSteps from {pairs} pairs and a global batch of {global_batch_size}")
    return max(1, math.ceil(pairs / (3 * global_batch_size)))


def assign_tiers(
    difficulty: Sequence[float | None] | np.ndarray, chosen_length: Sequence[int] | np.ndarray, pass_rate_bounds: Sequence[float], tiers: int
) -> np.ndarray:
    """Tier 0 (easiest) … K−1 (hardest) per pair (§2.4).

    With a pass rate: tier k holds pass rates in [bound_k, bound_{k−1}), bounds descending (tier 0: ≥ bound_0).
    Without one (null or NaN): equal-count bins of the `chosen` length among those pairs, shortest first (the
    InfiAlign proxy: longer expert solutions are harder problems).
    """
    if len(pass_rate_bounds) != tiers - 1:
        raise ValueError(f"sage.tierPassRates has {len(pass_rate_bounds)} values; tiers={tiers} needs {tiers - 1}")
    d = np.array([np.nan if v is None else float(v) for v in difficulty], dtype=np.float64)
    lengths = np.asarray(chosen_length, dtype=np.float64)
    out = np.zeros(d.shape[0], dtype=np.int64)
    known = ~np.isnan(d)
    for bound in pass_rate_bounds:
        out[known] += (d[known] < bound).astype(np.int64)
    unknown = np.flatnonzero(~known)
    if unknown.size:
        order = unknown[np.lexsort((unknown, lengths[unknown]))]  # by length, ties by position: deterministic
        out[order] = (np.arange(order.size) * tiers) // order.size
    return out


def select_pairs(
    eligible: np.ndarray, scores: np.ndarray, fraction: float, *, sampling: str, gamma: float, rng: np.random.Generator
) -> np.ndarray:
    """ρ of the eligible pairs (at least one): the top by score (ties: lower index first), or drawn ∝ score^γ."""
    eligible = np.asarray(eligible, dtype=np.int64)
    if eligible.size == 0:
        return eligible
    k = max(1, math.ceil(fraction * eligible.size))
    s = np.asarray(scores, dtype=np.float64)[eligible]
    if sampling == "top":
        order = np.lexsort((eligible, -s))
        return np.sort(eligible[order[:k]])
    weights = np.power(np.maximum(s, 0.0), gamma)
    if weights.sum() <= 0 or np.count_nonzero(weights) < k:
        weights = weights + 1e-12  # every pair scored 0: fall back to uniform among them
    chosen = rng.choice(eligible.size, size=k, replace=False, p=weights / weights.sum())
    return np.sort(eligible[chosen])


def top_up(selection: np.ndarray, latest: np.ndarray, floor: int, delta: float, *, unstable: np.ndarray | None = None) -> np.ndarray:
    """``selection`` grown to ``floor`` pairs with the least-mastered others, by the SAGE score of their latest margin.

    Why: once most pairs are retired, top-ρ of the few left can be a single pair, and every batch until the next
    refresh would repeat it (measured: 198 of 200 pairs retired, one selected, eval below the SFT model). The floor
    keeps each optimizer step's batch made of distinct pairs, and the pairs added are the ones the policy is least
    sure of. ``latest`` holds each pair's last known margin (NaN: never scored, taken last); pairs flagged in
    ``unstable`` come after the stable ones; ties by index.
    """
    selection = np.asarray(selection, dtype=np.int64)
    need = min(floor, latest.size) - selection.size
    if need <= 0:
        return selection
    others = np.setdiff1d(np.arange(latest.size), selection)
    known = ~np.isnan(latest[others])
    score = sage_score(np.nan_to_num(latest[others], nan=0.0), delta)
    shaky = np.zeros(others.size, dtype=bool) if unstable is None else np.asarray(unstable, dtype=bool)[others]
    order = np.lexsort((others, -score, shaky, ~known))
    return np.sort(np.concatenate([selection, others[order[:need]]]))


@dataclass(frozen=True)
class RefreshReport:
    """What one refresh saw and decided; logged to MLflow and the heartbeat."""

    refresh: int
    step: int
    scored: int
    pool: int
    pool_by_tier: dict[str, int]
    admitted_tiers: int
    competence: float
    retired_total: int
    retired_now: int
    unstable: int
    unstable_fraction: float
    unstable_boundary: int
    unstable_flips: int
    unstable_variance: int
    selected: int
    fallback: str | None
    topped_up: int = 0
    """Pairs added to reach one global batch (``top_up``)."""
    score_quantiles: dict[str, float] = field(default_factory=dict)
    margin_mean: float = float("nan")

    def metrics(self) -> dict[str, float]:
        """Flat numeric metrics, prefixed ``sage.``."""
        out: dict[str, float] = {
            f"sage.{k}": float(v)
            for k, v in asdict(self).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("refresh", "step")
        }
        out["sage.refresh"] = float(self.refresh)
        out.update({f"sage.pool_tier{k}": float(v) for k, v in self.pool_by_tier.items()})
        out.update({f"sage.score_{k}": float(v) for k, v in self.score_quantiles.items()})
        return out


class SageSelector:
    """The SAGE state over refreshes: tiers, pool, retired pairs, margin history, and the current selection.

    Deterministic for a fixed seed. ``state_dict``/``load_state_dict`` round-trip through JSON, so a resumed run
    continues with the same pool and history.
    """

    def __init__(
        self,
        settings: _spec.SageSettings,
        *,
        tiers: np.ndarray,
        seed: int,
        global_batch_size: int | None = None,
    ) -> None:
        """``global_batch_size`` (pairs per optimizer step) resolves an empty ``refresh_steps`` (``refresh_interval``)
        and is the smallest selection (``top_up``)."""
        self.settings = settings
        self.tiers = np.asarray(tiers, dtype=np.int64)
        self.n = int(self.tiers.size)
        if self.n == 0:
            raise ValueError("SAGE needs at least one pair")
        self.seed = seed
        if settings.refresh_steps is None and global_batch_size is None:
            raise ValueError("sage.refreshSteps is empty (a third of an epoch): the selector needs the global batch size to derive it")
        self.refresh_steps = refresh_interval(settings.refresh_steps, self.n, global_batch_size or 1)
        self.min_selection = global_batch_size or 1
        self.refreshes = 0
        self.last_step: int | None = None
        self.admitted = 1  # tiers 0 .. admitted-1 are in the pool
        rng = np.random.default_rng([seed, 0])
        in_pool = self.tiers == 0
        for tier in range(1, settings.tiers):
            members = np.flatnonzero(self.tiers == tier)
            take = int(round(settings.explore_fraction * members.size))
            if take:
                in_pool[rng.choice(members, size=take, replace=False)] = True
        if not in_pool.any():  # tier 1 empty (e.g. every pass rate low): start from the easiest non-empty tier
            first = int(self.tiers.min())
            self.admitted = first + 1
            in_pool |= self.tiers <= first
        self.in_pool = in_pool
        self.retired = np.zeros(self.n, dtype=bool)
        window = settings.flip_window
        self.recent = np.full((self.n, window), np.nan)  # ring of the last `window` margins, oldest first
        self.ema = np.full(self.n, np.nan)
        self.count = np.zeros(self.n, dtype=np.int64)
        self.mean = np.zeros(self.n)
        self.m2 = np.zeros(self.n)
        self.selection = np.flatnonzero(self.in_pool & ~self.retired)  # before the first refresh: the pool

    # ---- what to score

    def due(self, step: int) -> bool:
        return refresh_due(step, self.last_step, self.refresh_steps)

    def to_score(self) -> np.ndarray:
        """The live pool and the next tier's candidates (§2.4: the next tier is scored to judge admission)."""
        mask = self.in_pool & ~self.retired
        if self.admitted < self.settings.tiers:
            mask |= (self.tiers == self.admitted) & ~self.retired
        return np.flatnonzero(mask)

    # ---- one refresh

    def _record(self, idx: np.ndarray, u: np.ndarray) -> None:
        alpha = self.settings.ema_alpha
        prev = self.ema[idx]
        self.ema[idx] = np.where(np.isnan(prev), u, alpha * u + (1 - alpha) * prev)
        self.recent[idx] = np.concatenate([self.recent[idx, 1:], u[:, None]], axis=1)
        # Welford's running variance over refreshes
        self.count[idx] += 1
        delta = u - self.mean[idx]
        self.mean[idx] += delta / self.count[idx]
        self.m2[idx] += delta * (u - self.mean[idx])

    def refresh(self, step: int, indices: np.ndarray, margins: np.ndarray) -> RefreshReport:
        """Take the margins of the pairs ``to_score()`` named, and decide the next selection."""
        s = self.settings
        idx = np.asarray(indices, dtype=np.int64)
        u_scored = np.asarray(margins, dtype=np.float64)
        if idx.shape != u_scored.shape:
            raise ValueError(f"{idx.size} indices but {u_scored.size} margins")
        self._record(idx, u_scored)
        u = np.full(self.n, np.nan)
        u[idx] = u_scored

        live = self.in_pool & ~self.retired & ~np.isnan(u)
        competence = float(np.mean(u[live] > 0)) if live.any() else 0.0
        # retire mastered pairs of the pool (§2.4)
        mastered = live & (u > s.margin_tau)
        self.retired |= mastered
        # admit the next tier once the pool is mastered enough (§2.4)
        if competence >= s.competence and self.admitted < s.tiers:
            self.in_pool |= self.tiers == self.admitted
            self.admitted += 1
        live = self.in_pool & ~self.retired & ~np.isnan(u)

        # stability filter (§2.3)
        boundary = live & boundary_unstable(np.nan_to_num(u, nan=np.inf), s.boundary_tau)
        flips = live & (sign_flips(self.recent) >= s.max_flips)
        variance = np.zeros(self.n, dtype=bool)
        have_var = live & (self.count >= 2)
        if s.variance_quantile < 1 and have_var.sum() >= 2:
            var = self.m2 / np.maximum(self.count - 1, 1)
            threshold = float(np.quantile(var[have_var], s.variance_quantile))
            variance = have_var & (var > threshold)
        unstable = boundary | flips | variance
        eligible = np.flatnonzero(live & ~unstable)
        fallback: str | None = None
        if eligible.size == 0:  # never stall training: fall back to the live pool, then to anything scored
            eligible, fallback = np.flatnonzero(live), "all live pairs unstable"
            if eligible.size == 0:
                eligible, fallback = np.flatnonzero(~np.isnan(u)), "pool empty (all mastered or unscored)"
            if eligible.size == 0:
                # Every pair retired as mastered and every tier admitted: nothing is left to score. Training goes on
                # over all pairs (uniform DPO) rather than stopping or crashing; the report says so.
                eligible, fallback = np.arange(self.n), _ALL_MASTERED

        scores = sage_score(np.nan_to_num(u, nan=0.0), s.stability_delta)
        rng = np.random.default_rng([self.seed, 1, self.refreshes])
        picked = eligible if fallback == _ALL_MASTERED else select_pairs(eligible, scores, s.select_fraction, sampling=s.sampling, gamma=s.gamma, rng=rng)
        self.selection = top_up(picked, np.where(np.isnan(u), self.ema, u), self.min_selection, s.stability_delta, unstable=unstable)

        pool_now = self.in_pool & ~self.retired
        report = RefreshReport(
            refresh=self.refreshes,
            step=step,
            scored=int(idx.size),
            pool=int(pool_now.sum()),
            pool_by_tier={str(t + 1): int((pool_now & (self.tiers == t)).sum()) for t in range(s.tiers)},
            admitted_tiers=self.admitted,
            competence=competence,
            retired_total=int(self.retired.sum()),
            retired_now=int(mastered.sum()),
            unstable=int(unstable.sum()),
            unstable_fraction=float(unstable.sum() / max(int(live.sum()), 1)),
            unstable_boundary=int(boundary.sum()),
            unstable_flips=int(flips.sum()),
            unstable_variance=int(variance.sum()),
            selected=int(self.selection.size),
            fallback=fallback,
            topped_up=int(self.selection.size - picked.size),
            score_quantiles=(
                {f"q{int(q * 100)}": float(v) for q, v in zip(SCORE_QUANTILES, np.quantile(scores[eligible], SCORE_QUANTILES), strict=True)}
                if eligible.size
                else {}
            ),
            margin_mean=float(np.nanmean(u_scored)) if u_scored.size else float("nan"),
        )
        self.refreshes += 1
        self.last_step = step
        return report

    # ---- persistence (checkpoints)

    def state_dict(self) -> dict[str, Any]:
        def arr(a: np.ndarray) -> list[Any]:
            return [None if isinstance(v, float) and math.isnan(v) else v for v in a.tolist()]

        return {
            "n": self.n,
            "seed": self.seed,
            "refreshes": self.refreshes,
            "last_step": self.last_step,
            "admitted": self.admitted,
            "in_pool": self.in_pool.tolist(),
            "retired": self.retired.tolist(),
            "recent": [arr(r) for r in self.recent],
            "ema": arr(self.ema),
            "count": self.count.tolist(),
            "mean": self.mean.tolist(),
            "m2": self.m2.tolist(),
            "selection": self.selection.tolist(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["n"] != self.n:
            raise ValueError(f"SAGE state is for {state['n']} pairs but this run has {self.n}; the pairs changed since the checkpoint")

        def arr(values: Sequence[Any]) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        self.refreshes = int(state["refreshes"])
        self.last_step = state["last_step"]
        self.admitted = int(state["admitted"])
        self.in_pool = np.array(state["in_pool"], dtype=bool)
        self.retired = np.array(state["retired"], dtype=bool)
        self.recent = np.array([arr(r) for r in state["recent"]], dtype=np.float64).reshape(self.n, -1)
        self.ema = arr(state["ema"])
        self.count = np.array(state["count"], dtype=np.int64)
        self.mean = np.array(state["mean"], dtype=np.float64)
        self.m2 = np.array(state["m2"], dtype=np.float64)
        self.selection = np.array(state["selection"], dtype=np.int64)
