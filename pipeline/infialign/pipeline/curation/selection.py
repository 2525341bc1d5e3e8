"""Selection: difficulty, diversity quotas, the curriculum split and the DPO challenge pool (seeds §1.4-1.5, §1.9).

- **Difficulty** (:func:`score_difficulty`): response length is the difficulty proxy ("longer = more
  complex" [SRC]); ``scores["difficulty"]`` is the row's length quantile within its domain, in [0, 1], so
  "easy" means short *for its domain*.
- **Diversity quotas** (:func:`allocate_quotas`, :func:`select_sft`): the budget is split over domains,
  then each domain's share over its k-means clusters ("balanced sampling" by domain and "uniform
  sampling" by cluster [SRC]). At each level every group gets ``min(size, budget // groups)``, and what
  small groups leave is given to the groups with members left, in proportion to how many they have left
  [RECON seeds §1.4 D1]. Within a group the longest responses go first ("prioritize marathon-length
  responses within each cluster" [SRC]).
- **Curriculum** (:func:`curriculum_split`): phase 2 is the full selection; phase 1 is a subset of
  ``phase1_fraction`` of it (72k of 165k in InfiR2 [SRC-2]) of which ``phase1_easy_share`` = 70 % are the
  easiest rows ("Stage 1: 70% Easy" [SRC]) and the rest a seeded sample of the harder ones.
- **Challenge pool** (:func:`challenge_pool`): prompts with verified answers that are not in the SFT
  selection (by id and by normalised prompt), longest first per domain ("pick the longest solutions" [SRC]),
  balanced over domains like SFT.
- **Fits SFT** (:func:`score_sft_tokens`, with ``max_length``): the selection counts what SFT will train on,
  prompt + chat template + response, not the response alone. ``scores["sft_tokens"]`` = every message's
  tokens + ``response_tokens`` + per turn its role's tokens and ``template_tokens`` (ChatML: ``<|im_start|>``,
  newline, ``<|im_end|>``, newline = 4), so rows SFT would drop as over-long are dropped here as
  ``over_max_length`` and the quotas are filled from rows that fit. With the student's tokenizer this is
  within a token per turn of what SFT counts (tests/pipeline/stages/test_select_lengths.py).
- **Shortfalls** (:func:`shortfall_warnings`): fewer rows than ``target_size`` is never silent; the counters
  ``requested`` and ``shortfall`` of ``select_sft`` and :attr:`Selection.warnings` say how many and why.
- **Random baseline** (``strategy="random"``): the same number of rows as a seeded uniform sample of the
  eligible ones, and a uniform phase-1 subset; the paper's `random` ablation arm.

Everything is deterministic: ties break by id, and the one random choice (phase 1's hard part) orders rows
by a seeded hash of their id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
from infialign.pipeline import records
import pyarrow.compute as pc
from infialign.pipeline.curation import _arrow, _config, normalize, stats, steps, tokens
from pydantic import Field, model_validator

__all__ = [
    "Selection",
    "SelectionConfig",
    "allocate_quotas",
    "challenge_pool",
    "curriculum_split",
    "score_difficulty",
    "score_sft_tokens",
    "select",
    "shortfall_warnings",
    "select_sft",
]


class SelectionConfig(_config.CurationConfig):
    """One config for the select stage."""

    target_size: int | None = Field(None, ge=1, description="Rows in the SFT selection (phase 2). Set this or target_fraction.")
    target_fraction: float | None = Field(None, gt=0, le=1, description="SFT selection as a fraction of eligible rows.")
    group_levels: tuple[Literal["domain", "cluster"], ...] = Field(
        ("domain", "cluster"), max_length=2, description="Quota levels, outermost first. [SRC] domain + semantic."
    )
    eligible_verification: tuple[Literal["pass", "fail", "error", "timeout", "unknown", "unverified"], ...] = Field(
        ("pass", "unknown", "unverified"),
        min_length=1,
        description="Verdicts a row may have to be selected. [RECON] seeds §1.6: failed samples are re-generated or dropped.",
    )
    phase1_fraction: float = Field(72 / 165, gt=0, le=1, description="Phase-1 size / phase-2 size. [SRC-2] InfiR2: 72k of 165k.")
    phase1_easy_share: float = Field(0.7, ge=0, le=1, description="Share of phase 1 taken from the easiest rows. [SRC]")
    seed: int = Field(0, ge=0, description="Seed of the phase-1 sample of harder rows.")
    dpo_size: int | None = Field(
        None, ge=1, description="Challenge prompts to keep; None = all eligible. [RECON] the paper keeps 10K *pairs*, not prompts."
    )
    max_length: int | None = Field(
        None,
        ge=1,
        description="SFT's tokens per example; rows whose prompt + template + response exceed it are dropped as "
        "over_max_length (SFT would drop them). None skips the check.",
    )
    template_tokens: int = Field(
        4, ge=0, le=64, description="Chat-template tokens around each turn besides its role: ChatML's <|im_start|>, newline, <|im_end|>, newline."
    )
    tokenizer: str = Field(
        "regex", description="Counts prompt tokens (and responses without response_tokens): 'regex' or a tokenizer.json path."
    )
    strategy: Literal["infialign", "random"] = Field(
        "infialign",
        description="infialign: quotas, longest first, an easy-heavy phase 1. random: a seeded uniform sample of the eligible "
        "rows and a uniform phase-1 subset (the ablation baseline of the paper's table).",
    )

    @model_validator(mode="after")
    def _one_target(self) -> SelectionConfig:
        if (self.target_size is None) == (self.target_fraction is None):
            raise ValueError("set exactly one of target_size and target_fraction")
        return self


# ---------------------------------------------------------------------------------------------------------
# quotas


def allocate_quotas(sizes: Mapping[Hashable, int], budget: int) -> dict[Hashable, int]:
    """Split ``budget`` over groups: ``min(size, budget // n)`` each, the rest proportional to what is left.

    Deterministic (groups are processed in sorted order of their ``repr``); the result never exceeds a
    group's size and sums to ``min(budget, sum(sizes))``.
    """
    keys = sorted(sizes, key=repr)
    total = sum(sizes[k] for k in keys)
    if budget >= total:
        return {k: sizes[k] for k in keys}
    if budget <= 0 or not keys:
        return {k: 0 for k in keys}
    base = budget // len(keys)
    take = {k: min(sizes[k], base) for k in keys}
    left = budget - sum(take.values())
    cap = {k: sizes[k] - take[k] for k in keys}
    total_cap = sum(cap.values())
    if left > 0 and total_cap > 0:
        exact = {k: left * cap[k] / total_cap for k in keys}
        extra = {k: min(cap[k], int(exact[k])) for k in keys}
        rest = left - sum(extra.values())
        by_remainder = sorted(keys, key=lambda k: (-(exact[k] - int(exact[k])), repr(k)))
        while rest > 0:
            progressed = False
            for k in by_remainder:
                if rest > 0 and extra[k] < cap[k]:
                    extra[k] += 1
                    rest -= 1
                    progressed = True
            if not progressed:
                break
        for k in keys:
            take[k] += extra[k]
    return take


def _group_keys(table: pa.Table, level: str) -> list[Hashable]:
    return [v if v is not None else "" for v in _arrow.column(table, level).to_pylist()]


def _pick(table: pa.Table, rows: np.ndarray, budget: int, levels: Sequence[str], length: np.ndarray, ids: np.ndarray) -> list[int]:
    """Rows chosen from ``rows`` under hierarchical quotas; longest first inside the innermost groups."""
    if not levels:
        order = np.lexsort((ids[rows], -length[rows]))
        return rows[order][:budget].tolist()
    keys = _group_keys(table, levels[0])
    groups: dict[Hashable, list[int]] = {}
    for r in rows.tolist():
        groups.setdefault(keys[r], []).append(r)
    quotas = allocate_quotas({k: len(v) for k, v in groups.items()}, budget)
    chosen: list[int] = []
    for k in sorted(groups, key=repr):
        chosen += _pick(table, np.asarray(groups[k]), quotas[k], levels[1:], length, ids)
    return chosen


def _lengths(table: pa.Table) -> np.ndarray:
    return np.nan_to_num(_arrow.response_lengths(table), nan=-1.0)


# ---------------------------------------------------------------------------------------------------------
# steps


@steps.step(
    "score_difficulty",
    kind="transform",
    scope="global",
    reads=("domain", "response", "response_tokens"),
    writes=("scores",),
    score_keys=("difficulty",),
)
def score_difficulty(table: pa.Table, cfg: SelectionConfig | None = None) -> tuple[pa.Table, stats.StepStats]:
    """``scores["difficulty"]``: the response length's quantile within the row's domain (ties averaged);
    absent for rows without a response."""
    n = table.num_rows
    length = _arrow.response_lengths(table)
    doms = np.array([d or "" for d in _arrow.strings(table, "domain")], dtype=object)
    out = np.full(n, np.nan)
    for d in sorted(set(doms.tolist())):
        rows = np.flatnonzero((doms == d) & ~np.isnan(length))
        if len(rows) == 0:
            continue
        if len(rows) == 1:
            out[rows] = 0.5
            continue
        vals = length[rows]
        order = np.argsort(vals, kind="stable")
        ranks = np.empty(len(rows))
        ranks[order] = np.arange(len(rows))
        # average ranks of ties, so equal lengths get equal difficulty
        _uniq, inverse = np.unique(vals, return_inverse=True)
        mean_rank = np.bincount(inverse, weights=ranks) / np.bincount(inverse)
        out[rows] = mean_rank[inverse] / (len(rows) - 1)
    return _arrow.set_scores(table, {"difficulty": out}), stats.StepStats.passthrough("score_difficulty", n)


@steps.step(
    "score_sft_tokens",
    kind="transform",
    scope="row",
    reads=("messages", "response", "response_tokens"),
    writes=("scores",),
    score_keys=("sft_tokens",),
)
def score_sft_tokens(table: pa.Table, cfg: SelectionConfig) -> tuple[pa.Table, stats.StepStats]:
    """``scores["sft_tokens"]``: the tokens SFT trains on, every message + the response + the template around each
    turn; absent for rows without a response."""
    n = table.num_rows
    msgs = _arrow.column(table, "messages")
    flat = msgs.flatten()
    parents = pc.list_parent_indices(msgs).to_numpy(zero_copy_only=False)
    roles = flat.field("role").fill_null("")
    per_message = tokens.count_tokens(flat.field("content").fill_null(""), cfg.tokenizer) + cfg.template_tokens
    enc = pc.dictionary_encode(roles)  # a handful of distinct roles: count each once
    per_message += tokens.count_tokens(enc.dictionary, cfg.tokenizer)[enc.indices.to_numpy(zero_copy_only=False)]
    prompt = np.bincount(parents, weights=per_message, minlength=n)
    # The column as it is, not combined: combining copied every CoT onto the heap (and mapped all of a
    # memory-mapped pool) for its validity bits, 0.6 GB at 150k rows (issue 12).
    response = table.column("response")
    counted = _arrow.column(table, "response_tokens").to_numpy(zero_copy_only=False).astype(np.float64)
    missing = np.isnan(counted) & response.is_valid().to_numpy(zero_copy_only=False)
    if missing.any():
        counted[missing] = tokens.count_tokens(response.filter(pa.array(missing)), cfg.tokenizer)
    assistant = cfg.template_tokens + int(tokens.count_tokens(["assistant"], cfg.tokenizer)[0])
    total = prompt + counted + assistant  # NaN stays NaN: no response, nothing to train
    return _arrow.set_scores(table, {"sft_tokens": total}), stats.StepStats.passthrough("score_sft_tokens", n)


def _target(cfg: SelectionConfig, eligible: int) -> int:
    if cfg.target_size is not None:
        return min(cfg.target_size, eligible)
    return round(eligible * (cfg.target_fraction or 0.0))


@steps.step(
    "select_sft",
    kind="filter",
    scope="global",
    reads=("id", "domain", "cluster", "response", "response_tokens", "verification"),
)
def select_sft(table: pa.Table, cfg: SelectionConfig) -> tuple[pa.Table, stats.StepStats]:
    """The SFT selection (phase 2) under the domain x cluster quotas; drops ``no_response``,
    ``failed_verification`` (fail/error/timeout not eligible), ``unverified`` (unknown/unverified not
    eligible), ``over_max_length`` (``scores["sft_tokens"]`` above ``max_length``: SFT would drop it) and
    ``over_quota``. Counters ``requested`` (``target_size``, when set) and ``shortfall`` (rows missing)."""
    n = table.num_rows
    verif = _arrow.strings(table, "verification")
    # Not the responses as Python strings: at 1M long CoTs that was 3.4 GB (issue 12).
    has_response = _arrow.text_has_text(table, "response")
    sft_tokens = _arrow.get_score(table, "sft_tokens") if cfg.max_length is not None else np.full(n, np.nan)
    too_long = sft_tokens > (cfg.max_length or 0)  # NaN (not scored) compares False
    reasons: list[str | None] = [None] * n
    for i in range(n):
        if not has_response[i]:
            reasons[i] = "no_response"
        elif verif[i] not in cfg.eligible_verification:
            reasons[i] = "unverified" if verif[i] in ("unknown", "unverified") else "failed_verification"
        elif too_long[i]:
            reasons[i] = "over_max_length"
    eligible = np.asarray([i for i in range(n) if reasons[i] is None], dtype=np.int64)
    ids = np.array(_arrow.strings(table, "id"), dtype=object).astype(str)
    budget = _target(cfg, len(eligible))
    if cfg.strategy == "random":
        chosen = set(eligible[_seeded_order(ids[eligible].tolist(), cfg.seed)][:budget].tolist())
    else:
        chosen = set(_pick(table, eligible, budget, cfg.group_levels, _lengths(table), ids))
    for i in eligible.tolist():
        if i not in chosen:
            reasons[i] = "over_quota"
    doms = _arrow.strings(table, "domain")
    counters: dict[str, float] = {}
    if cfg.target_size is not None:
        counters["requested"] = cfg.target_size
        counters["shortfall"] = max(0, cfg.target_size - len(chosen))
    for i in chosen:
        key = f"selected_{doms[i] or 'none'}"
        counters[key] = counters.get(key, 0) + 1
    return _arrow.filter_rows(table, reasons, "select_sft", counters=counters)


def _seeded_order(ids: Sequence[str], seed: int) -> np.ndarray:
    keys = [hashlib.blake2b(f"{seed}\x1f{i}".encode(), digest_size=8).hexdigest() for i in ids]
    return np.lexsort((np.asarray(ids, dtype=object).astype(str), np.asarray(keys)))


def curriculum_split(selected: pa.Table, cfg: SelectionConfig) -> tuple[pa.Table, pa.Table]:
    """``(phase1, phase2)``: phase 2 is ``selected``; phase 1 is a subset (rows in their original order)."""
    n = selected.num_rows
    p1 = round(cfg.phase1_fraction * n)
    n_easy = round(cfg.phase1_easy_share * p1) if cfg.strategy == "infialign" else 0
    ids = _arrow.strings(selected, "id")
    difficulty = _arrow.get_score(selected, "difficulty")
    ease = np.where(np.isnan(difficulty), _lengths(selected), difficulty)
    by_ease = np.lexsort((np.asarray(ids, dtype=object).astype(str), ease))
    easy = by_ease[:n_easy]
    rest = by_ease[n_easy:]
    hard = rest[_seeded_order([ids[i] for i in rest], cfg.seed)][: p1 - n_easy] if len(rest) else rest
    mask = np.zeros(n, dtype=bool)
    mask[easy] = True
    mask[hard] = True
    return selected.filter(pa.array(mask)), selected


def challenge_pool(pool: pa.Table, sft: pa.Table, cfg: SelectionConfig) -> tuple[pa.Table, stats.StepStats]:
    """DPO challenge prompts: verified (``pass``) rows with a reference answer, not in the SFT selection,
    longest first per domain, balanced over domains. Drops ``in_sft``, ``not_verified``, ``no_answer``,
    ``over_quota``."""
    n = pool.num_rows
    sft_ids = set(_arrow.strings(sft, "id"))
    sft_prompts = set(normalize.normalize_array(_arrow.prompt_texts(sft)).to_pylist())
    prompts = normalize.normalize_array(_arrow.prompt_texts(pool)).to_pylist()
    ids_list = _arrow.strings(pool, "id")
    verif = _arrow.strings(pool, "verification")
    ans = _arrow.strings(pool, "answer")
    reasons: list[str | None] = [None] * n
    for i in range(n):
        if ids_list[i] in sft_ids or prompts[i] in sft_prompts:
            reasons[i] = "in_sft"
        elif verif[i] != "pass":
            reasons[i] = "not_verified"
        elif not ans[i] or not ans[i].strip():
            reasons[i] = "no_answer"
    eligible = np.asarray([i for i in range(n) if reasons[i] is None], dtype=np.int64)
    budget = len(eligible) if cfg.dpo_size is None else min(cfg.dpo_size, len(eligible))
    ids = np.array(ids_list, dtype=object).astype(str)
    chosen = set(_pick(pool, eligible, budget, ("domain",), _lengths(pool), ids))
    for i in eligible.tolist():
        if i not in chosen:
            reasons[i] = "over_quota"
    return _arrow.filter_rows(pool, reasons, "challenge_pool")


def shortfall_warnings(st: stats.StepStats, cfg: SelectionConfig) -> tuple[str, ...]:
    """Why ``select_sft`` returned fewer rows than ``target_size`` asked for (empty when it did not), with the
    drop counts that explain it and what to change."""
    short = int(st.counters.get("shortfall", 0))
    if cfg.target_size is None or short <= 0:
        return ()
    drops = {k: v for k, v in sorted(st.dropped.items()) if k != "over_quota" and v}
    why = ", ".join(f"{v} {k}" for k, v in drops.items()) or "the pool is smaller"
    out = [
        f"targetSize asks for {cfg.target_size} rows but only {st.kept} are eligible ({why}); training on {st.kept}. "
        "Add sources, relax spec.stages.select.verification, or lower spec.stages.select.targetSize"
    ]
    if drops.get("over_max_length"):
        out.append(
            f"{drops['over_max_length']} rows are longer than SFT's maxLength {cfg.max_length} (prompt + template + response, "
            "measured with the student's tokenizer where available) and were not selected; raise "
            "spec.stages.sft.phases[*].maxLength to train on them"
        )
    return tuple(out)


@dataclass(frozen=True)
class Selection:
    """The select stage's outputs, their funnel, and the warnings the run must show (a shortfall)."""

    phase1: pa.Table
    phase2: pa.Table
    dpo: pa.Table
    funnel: stats.Funnel
    warnings: tuple[str, ...] = ()


def select(pool: pa.Table, cfg: SelectionConfig) -> Selection:
    """difficulty → SFT selection → curriculum split → challenge pool, in one call (for the stage glue)."""
    # The response's summary columns (_arrow.text_summary), when the caller computed them from a pool it
    # holds memory-mapped, stand in for reading the text; the outputs leave them out.
    summary = [c for c in _arrow.summary_columns("response") if c in pool.column_names]
    checked = records.validate_table(pool.drop_columns(summary))
    pool = pa.Table.from_arrays([*checked.columns, *(pool.column(c) for c in summary)], names=[*checked.column_names, *summary])
    funnel = stats.Funnel()
    scored, st = steps.Step(score_difficulty, cfg)(pool)
    funnel.add(st)
    if cfg.max_length is not None:
        scored, st = steps.Step(score_sft_tokens, cfg)(scored)
        funnel.add(st)
    phase2, st = steps.Step(select_sft, cfg)(scored)
    funnel.add(st)
    warnings = shortfall_warnings(st, cfg)
    phase1, _ = curriculum_split(phase2, cfg)
    in_phase1 = set(_arrow.strings(phase1, "id"))
    phase2_ids = _arrow.strings(phase2, "id")
    funnel.add(
        stats.StepStats.from_reasons("curriculum_phase1", phase2_ids, [None if i in in_phase1 else "phase2_only" for i in phase2_ids])
    )
    dpo, st = challenge_pool(scored, phase2, cfg)
    funnel.add(st)
    phase1, phase2, dpo = (t.drop_columns(summary) for t in (phase1, phase2, dpo))
    return Selection(phase1=phase1, phase2=phase2, dpo=dpo, funnel=funnel, warnings=warnings)
