"""`select`: pool → one SFT dataset per curriculum phase, and the DPO challenge prompts.

verification (`verifiers.verify_records`: math-verify in killable worker processes, option letters, a
code sandbox, an LLM judge; only `pass` counts as verified) → difficulty (response length
quantile per domain) → diversity quotas (domain × cluster, longest responses first [SRC]) →
curriculum: a phase's `fraction` is its share of the whole selection (1.0 = all of it); a phase below
1.0 is a subset drawn `easyShare` from the easiest records ([SRC] "Stage 1: 70% Easy"), and smaller
phases are subsets of larger ones → challenge pool.
"""

from __future__ import annotations

import itertools
import logging
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from infialign.pipeline import curation, records, verifiers
from infialign.pipeline.api import SelectStage, VerificationSettings
from infialign.pipeline.runtime.context import StageContext, StageInputError
from infialign.pipeline.stages import _cards, _report
from infialign.pipeline.stages.curate import student_tokenizer

__all__ = ["run", "selection_config", "phase_tables", "eligible_verdicts", "selection_view", "with_responses"]

log = logging.getLogger(__name__)


def eligible_verdicts(verification: VerificationSettings) -> tuple[str, ...]:
    """Verdicts a record may have to enter the SFT selection. ``pass`` always; ``unknown`` and
    ``unverified`` (nothing independent to check against) unless ``keepUnverified`` is off; ``fail``,
    ``error`` and ``timeout`` only when ``dropFailed`` is off."""
    eligible: tuple[str, ...] = ("pass",)
    if verification.keep_unverified or not verification.drop_failed:
        eligible += ("unknown", "unverified")
    if not verification.drop_failed:
        eligible += ("fail", "error", "timeout")
    return eligible


def selection_config(settings: SelectStage, curriculum: list[dict] | None = None, tokenizer: str = "regex") -> curation.SelectionConfig:
    """The selection's config; with the run's `curriculum`, its first phase sets the split the funnel reports and
    its smallest `maxLength` bounds the rows selected (SFT drops longer ones); `tokenizer` counts prompt tokens."""
    target = {"target_size": settings.target_size} if settings.target_size else {"target_fraction": settings.target_fraction}
    eligible = eligible_verdicts(settings.verification)
    split = {"phase1_fraction": first_phase_share(curriculum)} if curriculum else {}
    lengths = [p["max_length"] for p in curriculum or [] if p.get("max_length")]
    return curation.SelectionConfig(
        **target,
        **split,
        max_length=min(lengths) if lengths else None,
        tokenizer=tokenizer,
        group_levels=tuple(settings.group_levels),
        eligible_verification=eligible,
        phase1_easy_share=settings.easy_share,
        seed=settings.seed,
        dpo_size=settings.challenge_size or None,
        strategy=settings.strategy,
    )


def first_phase_share(curriculum: list[dict]) -> float:
    """The first curriculum phase's share of the full selection (its `fraction`, as the field says)."""
    return float(curriculum[0]["fraction"])


def phase_tables(full: pa.Table, phases: list[dict], cfg: curation.SelectionConfig) -> dict[str, pa.Table]:
    """Each phase's dataset: ``fraction`` × the full selection (a share of the whole, not of the largest phase)."""
    out: dict[str, pa.Table] = {}
    for phase in phases:
        share = float(phase["fraction"])
        if share >= 1.0:
            out[phase["name"]] = full
        else:
            subset, _ = curation.curriculum_split(full, cfg.model_copy(update={"phase1_fraction": share}))
            out[phase["name"]] = subset
    return out


# Pool rows verified at once: a pool of math-verify processes starts per window, so windows are large;
# 50k long CoTs are ~170 MB of text.
_VERIFY_WINDOW_ROWS = 50_000


def run(ctx: StageContext) -> None:
    settings = ctx.settings(SelectStage)
    funnel = curation.Funnel()
    verify = settings.verification
    spill_dir = ctx.scratch / "select-spill"
    spill_dir.mkdir(parents=True, exist_ok=True)
    try:
        # The pool streams through verification (its verdicts are per row) into a memory-mapped spill, so
        # a pool larger than memory is never held on the heap; the selection reads the columns it needs.
        tables = itertools.chain(ctx.read_record_stream("pool"), [records.empty_table()])
        if verify.enabled:
            ctx.beat(step=0, total=3, message="verifying answers")
            verifier = curation.Step(verifiers.verify_records, verify)
            tables = curation.stream.run_windowed(verifier, tables, _VERIFY_WINDOW_ROWS, funnel)
        spilled = curation.stream.spill(tables, spill_dir, records.RECORD_SCHEMA)
        _select(ctx, settings, spilled, funnel)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)


def selection_view(spilled: curation.stream.Rows) -> pa.Table:
    """The spilled pool as the selection reads it, without mapping or copying the CoTs.

    The selection needs of a response only two numbers (characters, has text: the summary columns, computed
    from plain reads of the spill) and its text only to count the tokens of rows that have no count. So the
    view is the memory-mapped pool whose response is an empty string of the same validity, except in those
    rows. Mapping the real column made the mapped CoTs part of the stage's RSS wherever a kernel touched
    them (the filters of the selection: 3.4 GB at 1M rows); :func:`with_responses` puts the text back into
    the rows selected."""
    pool = curation.stream.with_text_summary(spilled.table(), spilled, "response")
    response = pool.column("response")
    valid = response.is_valid().to_numpy(zero_copy_only=False)
    tokens = pool.column("response_tokens").is_null().to_numpy(zero_copy_only=False)
    stand_in = pc.if_else(pa.array(valid), pa.scalar("", pa.string()), pa.scalar(None, pa.string()))
    need = valid & tokens
    if need.any():
        texts = response.take(pa.array(np.flatnonzero(need))).combine_chunks().cast(pa.string())
        stand_in = pc.replace_with_mask(stand_in, pa.array(need), texts)
    return pool.set_column(pool.schema.get_field_index("response"), "response", stand_in)


def with_responses(table: pa.Table, spilled: curation.stream.Rows, pool_ids: pa.Array) -> pa.Table:
    """``table`` (rows of the pool, in pool order, with stand-in responses) with the real responses, taken
    from the spill with plain reads of only its rows."""
    rows = pc.index_in(table.column("id"), value_set=pool_ids).to_numpy(zero_copy_only=False).astype(np.int64)
    if len(rows) > 1 and not (np.diff(rows) > 0).all():
        raise RuntimeError("select: a selection output is not in the pool's row order, so its responses cannot be taken from the spill")
    picked = curation.stream.Rows(spilled.path, spilled.schema, spilled.spill_rows, rows if len(rows) else None)
    parts = list(picked.batches(["response"])) if len(rows) else []
    texts = pa.chunked_array([c for t in parts for c in t.column("response").chunks], pa.string())
    return table.set_column(table.schema.get_field_index("response"), "response", texts)


def _select(ctx: StageContext, settings: SelectStage, spilled: curation.stream.Rows, funnel: curation.Funnel) -> None:
    pool = selection_view(spilled)
    if pool.num_rows == 0:
        raise StageInputError("the pool is empty; check the curate funnel (every record was dropped)")
    config = selection_config(settings, ctx.config.curriculum, student_tokenizer(ctx) if ctx.config.curriculum else "regex")
    ctx.beat(step=1, total=3, message="selecting")
    selection = curation.select(pool, config)
    funnel = funnel + selection.funnel
    for warning in selection.warnings:
        ctx.warn(warning)
    pool_ids = pool.column("id").combine_chunks()
    phase2 = with_responses(selection.phase2, spilled, pool_ids)
    phases = phase_tables(phase2, ctx.config.curriculum, config)
    for name, table in phases.items():
        ctx.write_records(f"sft-{name}", table)
    dpo = selection.dpo if settings.challenge_size else selection.dpo.slice(0, 0)  # 0 asks for no challenge pool
    dpo = with_responses(dpo, spilled, pool_ids)
    ctx.write_records("dpo-prompts", dpo)
    verdicts = pool.column("verification").value_counts().to_pylist()
    ctx.add_metrics({f"verification.{v['values']}": v["counts"] for v in verdicts}, headline=False)
    ctx.add_metrics({f"rows.sft-{name}": t.num_rows for name, t in phases.items()} | {"rows.dpo-prompts": dpo.num_rows})
    cards = _cards.log_cards(ctx, {f"sft-{name}": t for name, t in phases.items()} | {"dpo-prompts": dpo})
    _report.write_funnel(
        ctx, funnel, "select", rows_in=pool.num_rows, rows_out=phase2.num_rows, cards=cards, warnings=selection.warnings
    )
