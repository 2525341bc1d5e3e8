"""`prefs`: preference pairs from the SFT model's own errors against verified expert answers (seeds §1.9).

challenge prompts (from `select`) → cleaning (duplicate prompts; overlap with the SFT data and the
benchmarks) → quality check of the expert answers → the SFT model samples `samples` answers per prompt
(vLLM) → every answer is verified → outcome per prompt (all right, all wrong, mixed, undecided) →
challenge selection (mixed prompts the model gets wrong often, then all-wrong ones, domain-balanced) →
one pair per prompt: chosen = the verified expert answer, rejected = the model's most confident error.

Output `pairs.parquet` in the pair schema (`pairs.PAIR_SCHEMA`) with provenance, and a funnel.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa

from infialign.pipeline import curation, generation, pairs, preferences, records, verifiers
from infialign.pipeline.api import Benchmark, PrefsStage
from infialign.pipeline.curation import Funnel, StepStats
from infialign.pipeline.runtime.context import StageContext, StageInputError
from infialign.pipeline.stages import _report
from infialign.pipeline.stages.curate import executor_config

__all__ = ["run"]

log = logging.getLogger(__name__)

_MAX_CHOSEN_CHARS_PER_TOKEN = 8  # a generous chars/token bound: the quality check's length limit from maxTokens


def _clean(ctx: StageContext, prompts: pa.Table, settings: PrefsStage) -> tuple[pa.Table, list[StepStats]]:
    """Drop duplicate prompts, and prompts that overlap the SFT data or a benchmark ([SRC] 'Data Detox')."""
    steps = [curation.Step(curation.dedup_exact, curation.ExactDedupConfig())]
    references: dict[str, pa.Table] = {}
    if "sft" in ctx.config.inputs:
        references["sft-data"] = ctx.read_records("sft")
    for raw in ctx.config.benchmarks:
        bench = Benchmark.model_validate(raw)
        if bench.decontaminate:
            references[bench.name] = ctx.read_table(bench.uri)
    if references and settings.decontaminate:
        index = curation.DecontamIndex.build(references, curation.DecontamConfig(full_ngram=None))
        scored, score_stats = curation.score_contamination(prompts, index)
        prompts = scored
        steps.append(curation.Step(curation.filter_contamination, curation.DecontamConfig(full_ngram=None)))
        cleaned, funnel = curation.run_steps(prompts, steps, executor_config(settings))
        return cleaned, [score_stats, *funnel.steps]
    cleaned, funnel = curation.run_steps(prompts, steps, executor_config(settings))
    return cleaned, list(funnel.steps)


def _check_chosen(rows: list[dict[str, Any]], settings: PrefsStage) -> tuple[list[dict[str, Any]], StepStats]:
    max_chars = settings.max_tokens * _MAX_CHOSEN_CHARS_PER_TOKEN
    kept, reasons = [], []
    for row in rows:
        problem = preferences.chosen_problem(
            row.get("response"), row.get("verification") or "unknown", (row.get("provenance") or {}).get("answer_source"), max_chars
        )
        reasons.append(problem)
        if problem is None:
            kept.append(row)
    return kept, StepStats.from_reasons("chosen_quality", reasons)


def run(ctx: StageContext) -> None:
    settings = ctx.settings(PrefsStage)
    prompts = ctx.read_records("prompts")
    if prompts.num_rows == 0:
        raise StageInputError(f"{ctx.config.inputs['prompts']} has no challenge prompts; raise spec.stages.select.challengeSize or set spec.stages.prefs.promptsUri")
    funnel = Funnel()
    cleaned, stats = _clean(ctx, prompts, settings)
    funnel = funnel.extend(stats)
    rows, quality = _check_chosen(records.to_records(cleaned), settings)
    funnel = funnel.add(quality)
    if not rows:
        raise StageInputError("no challenge prompt has a usable expert answer (see the prefs funnel); check select's verification")
    by_id = {r["id"]: r for r in rows}

    shard = generation.Shard.from_env()
    ids = sorted(by_id)
    mine = [ids[k] for k in generation.shard_rows(ids, shard)]
    sampling = generation.Sampling(n=settings.samples, temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_tokens, seed=settings.seed)
    model_dir = ctx.model_path()
    with generation.open_engine(model_dir, _engine_options(settings)) as engine:
        table = generation.generate(
            engine,
            pa.table({"id": mine, "messages": [by_id[i]["messages"] for i in mine]}),
            sampling,
            out=f"{ctx.config.output.rstrip('/')}/samples/{shard.index}-of-{shard.count}",
            storage=ctx.config.storage,
            system_prompt=settings.system_prompt,
            on_progress=lambda p: ctx.beat(step=p.prompts_done, total=p.prompts_total, metrics={"tokens_per_s": p.tokens_per_second}),
        )
    outputs = defaultdict(list)
    for out in table.to_pylist():
        outputs[out["id"]].append(out)
    for items in outputs.values():
        items.sort(key=lambda o: o["sample"])

    keys = [(rid, k) for rid in mine for k in range(len(outputs[rid]))]
    tasks = [verifiers.task_from_record(by_id[rid], response=outputs[rid][k]["text"]) for rid, k in keys]
    verdicts = verifiers.verify_all(tasks, settings.verification) if tasks else []
    status = {key: v.status for key, v in zip(keys, verdicts, strict=True)}
    samples = {
        rid: [
            preferences.ModelSample(text=o["text"], status=status[(rid, k)], finish_reason=o["finish_reason"], logprob_per_token=generation.logprob_per_token(o))
            for k, o in enumerate(outputs[rid])
        ]
        for rid in mine
    }
    outcomes = {rid: preferences.outcome(s) for rid, s in samples.items()}
    counts = Counter(outcomes.values())
    funnel = funnel.add(
        StepStats.from_reasons(
            "model_outcome",
            [None if outcomes[rid] in ("mixed", "all_wrong") else outcomes[rid] for rid in mine],
            counters={f"prompts_{o}": counts.get(o, 0) for o in preferences.OUTCOMES},
        )
    )
    candidates = [
        preferences.Candidate(rid, by_id[rid].get("domain") or "unknown", outcomes[rid], preferences.pass_rate(samples[rid]) or 0.0)
        for rid in mine
        if outcomes[rid] in ("mixed", "all_wrong")
    ]
    kept_ids, dropped = preferences.select_challenges(
        candidates, settings.pairs, max_pass_rate=settings.max_pass_rate, include_all_wrong=settings.include_all_wrong, seed=settings.seed
    )
    funnel = funnel.add(StepStats.passthrough("challenge_selection", len(candidates), dropped | {"kept": len(kept_ids)}))
    rng = random.Random(settings.seed)
    pair_rows = []
    for rid in kept_ids:
        row = by_id[rid]
        k = preferences.choose_rejected(samples[rid], settings.rejected, rng)
        assert k is not None  # mixed and all_wrong prompts have a wrong sample
        pair_rows.append(
            {
                "id": rid,
                "source": row["source"],
                "domain": row.get("domain"),
                "prompt": row["messages"],
                "chosen": row["response"],
                "rejected": samples[rid][k].text,
                "answer": row.get("answer"),
                "difficulty": preferences.pass_rate(samples[rid]),
                "scores": {"pass_rate": preferences.pass_rate(samples[rid]) or 0.0, "rejected_logprob_per_token": samples[rid][k].logprob_per_token or float("nan")},
                "provenance": {
                    **{key: str(v) for key, v in (row.get("provenance") or {}).items()},
                    "pair_model": ctx.config.model.uri,
                    "pair_outcome": outcomes[rid],
                    "rejected_sample": str(k),
                    "rejected_rule": settings.rejected,
                    "prefs_temperature": str(settings.temperature),
                    "prefs_top_p": str(settings.top_p),
                    "prefs_seed": str(settings.seed),
                    "chosen_source": "expert",
                },
            }
        )
    table = pairs.validate_pairs(pa.Table.from_pylist(pair_rows, schema=pairs.PAIR_SCHEMA))
    ctx.write_table("pairs", table)
    if table.num_rows < settings.pairs:
        log.warning("prefs: %d pairs made, %d asked for (spec.stages.prefs.pairs); the funnel shows where prompts went", table.num_rows, settings.pairs)
    ctx.add_metrics({f"prompts.{o}": counts.get(o, 0) for o in preferences.OUTCOMES} | {"pairs": table.num_rows, "pairs_asked": settings.pairs})
    _report.write_funnel(ctx, funnel, "prefs", rows_in=prompts.num_rows, rows_out=table.num_rows)


def _engine_options(settings: PrefsStage) -> generation.EngineOptions:
    return generation.EngineOptions(**settings.engine.model_dump())
