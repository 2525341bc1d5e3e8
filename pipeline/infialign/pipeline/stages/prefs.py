"""`prefs`: preference pairs from the SFT model's own errors against verified expert answers (seeds §1.9).

    challenge prompts (select's `dpo-prompts`) → cleaning: duplicate prompts, overlap with the SFT data
    and the benchmarks → quality check of the expert answers (`chosen`) → the SFT model samples
    `samples` answers per prompt (vLLM, this process's shards; resumable) → [leader] wait for every
    shard, merge → verify every answer → outcome per prompt (all right, all wrong, mixed, undecided) →
    challenge selection (wrong often but not always, domain-balanced) → one pair per prompt: chosen =
    the verified expert answer, rejected = the model's most confident verified error.

Output `pairs.parquet` in the pair schema (`pairs.PAIR_SCHEMA`) with provenance, and a funnel whose
`model_outcome` row counts the prompts per outcome. Fewer pairs than `spec.stages.prefs.pairs` is a
warning (`ctx.warn`): the funnel's `pairs_shortfall`, the log, MLflow (metric and tag) and the step's status
message; no pair at all is a permanent error (an empty pairs file is never written).

Sharding follows `eval`: in a cluster each pod of the Indexed Job generates one shard
(`INFIALIGN_SHARD_INDEX`) and shard 0 merges; the local executor generates every shard in turn. A
shard whose `_DONE.json` matches is not generated again, and a killed shard resumes from its parts.
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa

from infialign.pipeline import curation, generation, pairs, preferences, records, verifiers
from infialign.pipeline.api import Benchmark, PrefsStage
from infialign.pipeline.curation import Funnel, StepStats
from infialign.pipeline.runtime.context import StageContext, StageInputError
from infialign.pipeline.stages import _sharded
from infialign.pipeline.stages import _cards, _report
from infialign.pipeline.stages.curate import to_records

__all__ = ["run", "logprob_per_token", "build_pairs", "outcome_stats", "selection_stats", "shortfall_message"]

log = logging.getLogger(__name__)

CHUNK_PROMPTS: Final = int(os.environ.get("INFIALIGN_GENERATION_CHUNK_PROMPTS", str(generation.DEFAULT_CHUNK_PROMPTS)))
_MAX_CHOSEN_CHARS_PER_TOKEN: Final = 8
"""A generous chars/token bound: the quality check's length limit for `chosen` is `maxTokens` × this."""
_SAMPLES_DIR: Final = "samples"


# ---------------------------------------------------------------- pure decisions


def logprob_per_token(row: Mapping[str, Any]) -> float | None:
    """The mean token log-prob of one generated sample (None when it was not recorded: then
    `preferences.choose_rejected` falls back to generation order)."""
    return generation.logprob_per_token(row)


def outcome_stats(ids: Sequence[str], outcomes: Mapping[str, preferences.Outcome]) -> StepStats:
    """The funnel row of the model's outcomes: `mixed` and `all_wrong` prompts go on, the others are counted out."""
    counts = Counter(outcomes[i] for i in ids)
    reasons = [None if outcomes[i] in ("mixed", "all_wrong") else outcomes[i] for i in ids]
    return StepStats.from_reasons("model_outcome", ids, reasons, counters={f"prompts_{o}": counts.get(o, 0) for o in preferences.OUTCOMES})


def selection_stats(candidates: int, kept: int, dropped: Mapping[str, int], asked: int) -> StepStats:
    """The funnel row of challenge selection, with the shortfall against the spec's target as a counter."""
    reasons = {k.removeprefix("dropped_"): v for k, v in dropped.items() if v}
    return StepStats(
        step="challenge_selection",
        total=candidates,
        kept=kept,
        dropped=reasons,
        counters={"pairs_asked": asked, "pairs_shortfall": max(asked - kept, 0)},
    )


def shortfall_message(made: int, asked: int) -> str | None:
    if made >= asked:
        return None
    return (
        f"prefs made {made} pairs of the {asked} asked for (spec.stages.prefs.pairs); the funnel shows where the prompts went — "
        "raise spec.stages.select.challengeSize, spec.stages.prefs.samples or maxPassRate, or lower pairs"
    )


@dataclass(frozen=True)
class PairContext:
    """What every pair's provenance names: the policy and how it was sampled."""

    model_uri: str
    settings: PrefsStage


def build_pairs(
    kept_ids: Sequence[str],
    prompts: Mapping[str, Mapping[str, Any]],
    samples: Mapping[str, Sequence[preferences.ModelSample]],
    outcomes: Mapping[str, preferences.Outcome],
    context: PairContext,
) -> list[dict[str, Any]]:
    """One pair per kept prompt: its verified expert answer against the chosen verified-wrong sample."""
    s = context.settings
    rng = random.Random(s.seed)
    out: list[dict[str, Any]] = []
    for rid in kept_ids:
        row = prompts[rid]
        k = preferences.choose_rejected(samples[rid], s.rejected, rng)
        if k is None:  # select_challenges keeps only mixed / all_wrong prompts, which have a wrong sample
            raise AssertionError(f"prompt {rid!r} was selected without a verified-wrong sample")
        rejected = samples[rid][k]
        rate = preferences.pass_rate(samples[rid])
        scores = {"pass_rate": rate if rate is not None else float("nan")}
        if rejected.logprob_per_token is not None:
            scores["rejected_logprob_per_token"] = rejected.logprob_per_token
        provenance = {key: str(v) for key, v in dict(row.get("provenance") or {}).items()}
        provenance.update(
            {
                "chosen_source": "expert",
                "pair_model": context.model_uri,
                "pair_outcome": outcomes[rid],
                "rejected_sample": str(k),
                "rejected_rule": s.rejected if rejected.logprob_per_token is not None or s.rejected == "random" else "first_wrong",
                "rejected_verdict": rejected.status,
                "prefs_samples": str(len(samples[rid])),
                "prefs_temperature": str(s.temperature),
                "prefs_top_p": str(s.top_p),
                "prefs_seed": str(s.seed),
            }
        )
        out.append(
            {
                "id": rid,
                "source": row["source"],
                "domain": row.get("domain"),
                "prompt": [m for m in row["messages"] if m["role"] != "assistant"],
                "chosen": row["response"],
                "rejected": rejected.text,
                "answer": row.get("answer"),
                "difficulty": rate,
                "scores": scores,
                "provenance": provenance,
            }
        )
    return out


# ---------------------------------------------------------------- inputs and cleaning


def _reference_sets(ctx: StageContext) -> dict[str, pa.Table]:
    """What challenge prompts must not overlap: the SFT data (optional input `sft`) and the benchmarks."""
    refs: dict[str, pa.Table] = {}
    if "sft" in ctx.config.inputs:
        refs["sft-data"] = ctx.read_records("sft")
    for i, raw in enumerate(ctx.config.benchmarks):
        bench = Benchmark.model_validate(raw)
        if bench.decontaminate:
            try:
                refs[bench.name] = to_records(ctx.read_table(bench.uri), bench)
            except StageInputError as e:
                raise StageInputError(f"spec.benchmarks[{i}] ({bench.name}): {e}; fix its uri/fields or set decontaminate: false") from e
    return refs


def _clean(ctx: StageContext, prompts: pa.Table, settings: PrefsStage) -> tuple[pa.Table, list[StepStats]]:
    """Drop duplicate prompts, and prompts that overlap the SFT data or a benchmark ([SRC] 'Data Detox')."""
    steps: list[curation.Step] = [curation.Step(curation.dedup_exact, curation.ExactDedupConfig())]
    refs = _reference_sets(ctx) if settings.decontaminate else {}
    if refs:
        # Prompts only: a challenge prompt's expert answer is not what could leak, the question is.
        cfg = curation.DecontamConfig(full_ngram=None)
        index = curation.DecontamIndex.build(refs, cfg)
        steps += [curation.Step(curation.score_contamination, index), curation.Step(curation.filter_contamination, cfg)]
    cleaned, funnel = curation.run_steps(prompts, steps, curation.ExecutorConfig())
    return cleaned, list(funnel.steps)


def _check_chosen(rows: list[dict[str, Any]], settings: PrefsStage) -> tuple[list[dict[str, Any]], StepStats]:
    """The quality check of the expert answers: verified against a real reference, complete, within budget."""
    max_chars = settings.max_tokens * _MAX_CHOSEN_CHARS_PER_TOKEN
    reasons = [
        preferences.chosen_problem(
            row.get("response"),
            row.get("verification") or "unknown",
            dict(row.get("provenance") or {}).get("answer_source"),
            max_chars,
        )
        for row in rows
    ]
    kept = [row for row, why in zip(rows, reasons, strict=True) if why is None]
    return kept, StepStats.from_reasons("chosen_quality", [r["id"] for r in rows], reasons)


# ---------------------------------------------------------------- generation (sharded, resumable)


@dataclass(frozen=True, eq=False)
class _ShardJob:
    shard: generation.Shard
    prompts: pa.Table  # id, messages
    out: str
    fingerprint: str


def _jobs(ctx: StageContext, ids: list[str], messages: Mapping[str, Any], sampling: generation.Sampling, identity: str, system_prompt: str | None, count: int) -> list[_ShardJob]:
    base = f"{ctx.config.output.rstrip('/')}/{_SAMPLES_DIR}"
    jobs: list[_ShardJob] = []
    for index in range(count):
        shard = generation.Shard(index, count)
        mine = [ids[k] for k in generation.shard_rows(ids, shard)]
        table = pa.table({"id": mine, "messages": pa.array([messages[i] for i in mine], pa.list_(records.MESSAGE_TYPE))})
        jobs.append(_ShardJob(shard, table, generation.shard_uri(base, shard), generation.fingerprint(identity, table, sampling, system_prompt)))
    return jobs


def _done(ctx: StageContext, job: _ShardJob) -> bool:
    done = generation.read_done(job.out, ctx.config.storage)
    return done is not None and done.fingerprint == job.fingerprint


def _generate(ctx: StageContext, settings: PrefsStage, jobs: list[_ShardJob], sampling: generation.Sampling, identity: str) -> None:
    todo = [j for j in jobs if not _done(ctx, j)]
    if not todo:
        log.info("prefs: every shard of this process is done; no engine needed")
        return
    total = sum(j.prompts.num_rows for j in jobs)
    offset = sum(j.prompts.num_rows for j in jobs if j not in todo)
    options = generation.EngineOptions(tensor_parallel=settings.tensor_parallel, max_model_len=settings.max_model_len)
    try:
        with generation.open_engine(ctx.model_path(), options, identity=identity) as engine:
            for job in todo:
                start = offset

                def on_progress(p: generation.GenProgress, start: int = start, job: _ShardJob = job) -> None:
                    ctx.beat(
                        step=start + p.prompts_done,
                        total=total,
                        metrics={"prompts_done": start + p.prompts_done, "tokens_per_second": p.tokens_per_second, "generated_tokens": p.generated_tokens},
                        message=f"sampling the SFT model ({job.shard.name})",
                    )

                generation.generate(
                    engine, job.prompts, sampling, out=job.out, storage=ctx.config.storage, system_prompt=settings.system_prompt or None,
                    on_progress=on_progress, chunk_prompts=CHUNK_PROMPTS,
                )
                offset += job.prompts.num_rows
    except generation.EngineError as e:
        raise StageInputError(f"spec.stages.prefs: cannot sample the SFT model {ctx.config.model.uri}: {e}") from e


def _merge(ctx: StageContext, jobs: list[_ShardJob], n: int) -> dict[str, list[dict[str, Any]]]:
    """Every prompt's samples in sample order, from every shard's parts."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        table = generation.read_parts(job.out, ctx.config.storage, job.fingerprint)
        if table.num_rows != job.prompts.num_rows * n:
            raise RuntimeError(f"{job.out}: {table.num_rows} samples, expected {job.prompts.num_rows * n}; the shard is incomplete")
        for row in table.to_pylist():
            by_id[row["id"]].append(row)
    for items in by_id.values():
        items.sort(key=lambda r: r["sample"])
    return by_id


def _verify(prompts: Mapping[str, Mapping[str, Any]], generated: Mapping[str, list[dict[str, Any]]], settings: PrefsStage) -> dict[str, list[preferences.ModelSample]]:
    """Verify every sample against its prompt's reference in one pass. Truncated samples are not checked:
    they are undecided whatever they say."""
    keys: list[tuple[str, int]] = []
    tasks: list[verifiers.Task] = []
    for rid, outs in generated.items():
        for k, out in enumerate(outs):
            if out["finish_reason"] != "length":
                keys.append((rid, k))
                tasks.append(verifiers.task_from_record(prompts[rid], response=out["text"]))
    verdicts = verifiers.verify_all(tasks, settings.verification) if tasks else []
    status = {key: v.status for key, v in zip(keys, verdicts, strict=True)}
    return {
        rid: [
            preferences.ModelSample(
                text=out["text"], status=status.get((rid, k), "unverified"), finish_reason=out["finish_reason"] or "", logprob_per_token=logprob_per_token(out)
            )
            for k, out in enumerate(outs)
        ]
        for rid, outs in generated.items()
    }


# ---------------------------------------------------------------- the stage


def run(ctx: StageContext) -> None:
    settings = ctx.settings(PrefsStage)
    if not settings.verification.enabled:
        raise StageInputError("spec.stages.prefs.verification.enabled is false; prefs needs verified-wrong answers, set it to true")
    source = ctx.config.inputs.get("prompts", "spec.stages.prefs.promptsUri")
    prompts = ctx.read_records("prompts")
    if prompts.num_rows == 0:
        raise StageInputError(f"{source} has no challenge prompts; raise spec.stages.select.challengeSize or set spec.stages.prefs.promptsUri")
    funnel = Funnel()
    cleaned, stats = _clean(ctx, prompts, settings)
    funnel.extend(stats)
    rows, quality = _check_chosen(records.to_records(cleaned), settings)
    funnel.add(quality)
    if not rows:
        _report.write_funnel(ctx, funnel, "prefs", rows_in=prompts.num_rows, rows_out=0)
        raise StageInputError(
            f"none of the {prompts.num_rows} challenge prompts in {source} is left with a usable expert answer (cleaning and "
            f"quality check: {_dropped_summary(funnel)}); check select's verification or spec.stages.prefs.decontaminate"
        )
    by_id = {r["id"]: r for r in rows}
    ids = sorted(by_id)

    sampling = generation.Sampling(
        n=settings.samples,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_tokens=settings.max_tokens,
        seed=settings.seed,
        logprobs=settings.rejected == "confident",  # the most confident error needs each sample's log-prob
    )
    shards, leader = generation.local_shards(os.environ, settings.shards)
    model_dir = ctx.model_path()
    # a produced model's content digest (its step's marker) is exact and cheap; a base model's files identify it
    identity = ctx.input_digests.get("model") or generation.model_identity(model_dir)
    system_prompt = settings.system_prompt or None
    jobs = _jobs(ctx, ids, {i: by_id[i]["messages"] for i in ids}, sampling, identity, system_prompt, shards[0].count)
    _generate(ctx, settings, [j for j in jobs if j.shard in shards], sampling, identity)
    if not leader:
        return
    _sharded.wait_for_shards(ctx, jobs, lambda j: _done(ctx, j))
    ctx.add_metrics(_sharded.generation_metrics(ctx, jobs))
    ctx.beat(message=f"verifying {len(ids) * settings.samples} samples", force=True)
    samples = _verify(by_id, _merge(ctx, jobs, settings.samples), settings)

    outcomes = {rid: preferences.outcome(samples[rid]) for rid in ids}
    funnel.add(outcome_stats(ids, outcomes))
    candidates = [
        preferences.Candidate(rid, by_id[rid].get("domain") or "unknown", outcomes[rid], preferences.pass_rate(samples[rid]) or 0.0)
        for rid in ids
        if outcomes[rid] in ("mixed", "all_wrong")
    ]
    kept_ids, dropped = preferences.select_challenges(
        candidates, settings.pairs, max_pass_rate=settings.max_pass_rate, include_all_wrong=settings.include_all_wrong, seed=settings.seed
    )
    funnel.add(selection_stats(len(candidates), len(kept_ids), dropped, settings.pairs))
    counts = Counter(outcomes.values())
    outcome_metrics = {f"prompts_{o}": float(counts.get(o, 0)) for o in preferences.OUTCOMES}
    if not kept_ids:
        _report.write_funnel(ctx, funnel, "prefs", rows_in=prompts.num_rows, rows_out=0)
        ctx.add_metrics(outcome_metrics)
        raise StageInputError(_no_pairs_message(len(ids), counts, dropped))

    table = pairs.to_pairs_table(build_pairs(kept_ids, by_id, samples, outcomes, PairContext(ctx.config.model.uri, settings)))
    ctx.write_table("pairs", table)
    cards = _cards.log_cards(ctx, {"pairs": table})
    _report.write_funnel(ctx, funnel, "prefs", rows_in=prompts.num_rows, rows_out=table.num_rows, cards=cards)
    ctx.add_metrics(outcome_metrics | {"pairs": table.num_rows, "pairs_asked": settings.pairs, "pairs_shortfall": max(settings.pairs - table.num_rows, 0)})
    confident = sum(1 for r in table.column("scores").to_pylist() if dict(r).get("rejected_logprob_per_token") is not None)
    if settings.rejected == "confident" and confident < table.num_rows:
        log.warning("prefs: %d of %d rejected answers were chosen by generation order: the generation layer recorded no log-probs",
                    table.num_rows - confident, table.num_rows)
    warning = shortfall_message(table.num_rows, settings.pairs)
    if warning is not None:
        ctx.warn(warning)


def _dropped_summary(funnel: Funnel) -> str:
    parts = [f"{s.step}: {dict(s.dropped)}" for s in funnel.steps if s.dropped]
    return "; ".join(parts) or "nothing dropped"


def _no_pairs_message(prompts: int, counts: Mapping[str, int], dropped: Mapping[str, int]) -> str:
    """The permanent error when no pair can be made, naming why and the setting to change."""
    head = (
        f"no preference pair: of {prompts} challenge prompts the SFT model got {counts.get('all_right', 0)} all right, "
        f"{counts.get('all_wrong', 0)} all wrong, {counts.get('mixed', 0)} mixed and {counts.get('undecided', 0)} undecided"
    )
    if counts.get("mixed", 0) + counts.get("all_wrong", 0) == 0:
        if counts.get("undecided", 0) and not counts.get("all_right", 0):
            return f"{head}; no sample could be verified (truncated or unverifiable): raise spec.stages.prefs.maxTokens or check the references"
        return f"{head}; the model makes no error on them: use harder prompts (spec.stages.select.challengeSize) or raise spec.stages.prefs.samples / temperature"
    return (
        f"{head}; challenge selection dropped them all ({dict(dropped)}): raise spec.stages.prefs.maxPassRate "
        "or set includeAllWrong: true"
    )
