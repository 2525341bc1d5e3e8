"""`eval`: every model the run produced × every evaluated benchmark → avg@k and pass@k.

    load benchmarks (reject ones without usable answers) → for each model: one vLLM engine, this
    process's shards of every benchmark (resumable, idempotent) → [leader] wait for the other shards →
    merge → score (evaluation.scoring) → avg@k / pass@k per benchmark and per tier → four places:
    MLflow (metrics, table, PNG), `_SUCCESS.json` results (→ status.results), `results.json`, and the
    executor's summary.

In a cluster each pod of the Indexed Job generates one shard (`INFIALIGN_SHARD_INDEX`); shard 0 also
merges and scores. On the local executor one process generates every shard in turn. A finished shard
(its `_DONE.json` matches) is never generated again, so a retried attempt redoes only the failed shard.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from infialign.pipeline import generation, records
from infialign.pipeline.api import Benchmark, EvalStage, VerificationSettings
from infialign.pipeline.evaluation import metrics, presets, report, scoring
from infialign.pipeline.runtime import sources, storage
from infialign.pipeline.runtime.config import ModelRef
from infialign.pipeline.runtime.context import StageContext, StageInputError
from infialign.pipeline.stages import _sharded
from infialign.pipeline.stages.curate import to_records

__all__ = ["run", "LoadedBenchmark", "usable_questions", "model_inputs", "subset_of"]

log = logging.getLogger(__name__)

CHUNK_PROMPTS: Final = int(os.environ.get("INFIALIGN_GENERATION_CHUNK_PROMPTS", str(generation.DEFAULT_CHUNK_PROMPTS)))
SAMPLE_COLUMNS: Final = pa.schema(
    [
        ("model", pa.string()),
        ("benchmark", pa.string()),
        ("subset", pa.string()),
        ("id", pa.string()),
        ("sample", pa.int32()),
        ("text", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("correct", pa.bool_()),
        ("status", pa.string()),
        ("reason", pa.string()),
    ]
)


@dataclass(frozen=True, eq=False)
class LoadedBenchmark:
    index: int  # position in spec.benchmarks, for error messages
    spec: Benchmark
    questions: pa.Table  # record schema, only questions with a usable reference
    dropped_no_reference: int
    samples: int
    max_tokens: int


@dataclass(frozen=True, eq=False)
class ShardJob:
    """One (model, benchmark, shard) unit of generation and where it lives."""

    model: str
    benchmark: LoadedBenchmark
    shard: generation.Shard
    prompts: pa.Table
    out: str
    sampling: generation.Sampling
    fingerprint: str


# ---------------------------------------------------------------- pure helpers


def _provenance(row: dict[str, Any]) -> dict[str, str]:
    value = row.get("provenance") or {}
    return dict(value) if isinstance(value, list) else dict(value)


def usable_questions(table: pa.Table) -> tuple[pa.Table, int]:
    """Questions with something to check against: a reference answer, or tests (code). Returns (kept, dropped)."""
    rows = records.to_records(table)
    keep = [i for i, r in enumerate(rows) if (r.get("answer") or "").strip() or _provenance(r).get("tests")]
    return table.take(pa.array(keep, pa.int64())), table.num_rows - len(keep)


def model_inputs(inputs: dict[str, str]) -> list[tuple[str, str]]:
    """(label, input name) of each model to evaluate, in pipeline order: base, the SFT phases, dpo."""
    return [(name.split(":", 1)[1], name) for name in inputs if name.startswith("model:")]


def subset_of(row: dict[str, Any]) -> str | None:
    """The difficulty tier of a benchmark record (`provenance.tier`, set by the built-in world) as a subset name."""
    tier = _provenance(row).get("tier")
    if tier is None or str(tier) == "":
        return None
    tier = str(tier)
    return f"tier{tier}" if tier.isdigit() else tier[:63]


def _model_field(label: str) -> str:
    if label == "base":
        return "spec.model.uri"
    if label == "dpo":
        return "spec.stages.dpo (the dpo step's model output)"
    return f"spec.stages.sft.phases (the {label} step's model output)"


# ---------------------------------------------------------------- inputs


def _load_benchmarks(ctx: StageContext, settings: EvalStage) -> list[LoadedBenchmark]:
    chosen = set(settings.benchmarks) if settings.benchmarks else None
    loaded: list[LoadedBenchmark] = []
    for i, raw in enumerate(ctx.config.benchmarks):
        bench = Benchmark.model_validate(raw)
        if not bench.evaluate or (chosen is not None and bench.name not in chosen):
            continue
        try:
            table = sources.open_dataset(bench.uri, ctx.config.storage)
        except sources.SourceError as e:
            raise StageInputError(f"spec.benchmarks[{i}].uri: cannot load benchmark {bench.name!r}: {e}") from e
        try:
            questions = to_records(table, bench)
        except StageInputError as e:
            raise StageInputError(f"spec.benchmarks[{i}] ({bench.name}): {e}; set spec.benchmarks[{i}].preset or .fields") from e
        kept, dropped = usable_questions(questions)
        if kept.num_rows == 0:
            raise StageInputError(
                f"spec.benchmarks[{i}] ({bench.name}): none of its {questions.num_rows} questions has a reference answer or tests "
                f"to score against; set spec.benchmarks[{i}].fields.answer to the column holding the answer (columns: {table.column_names})"
            )
        if dropped:
            log.warning("%s: %d of %d questions have no reference answer and are not evaluated", bench.name, dropped, questions.num_rows)
        samples, max_tokens, _ = presets.resolve(bench)
        loaded.append(LoadedBenchmark(i, bench, kept, dropped, samples, max_tokens))
        ctx.tracker.log_dataset(f"benchmark:{bench.name}", bench.uri, storage.table_digest(kept), "evaluation", rows=kept.num_rows)
    if not loaded:
        raise StageInputError("no benchmark to evaluate: set evaluate: true on one of spec.benchmarks (or fix spec.stages.eval.benchmarks)")
    return loaded


def _model_dir(ctx: StageContext, label: str, input_name: str) -> Path:
    try:
        if label == "base":
            return ctx.model_path()
        return ctx.download_model(ModelRef(uri=ctx.config.inputs[input_name]))
    except (StageInputError, sources.SourceError) as e:
        raise StageInputError(f"{_model_field(label)}: cannot load the {label} model: {e}") from e


def _jobs(ctx: StageContext, settings: EvalStage, label: str, identity: str, benches: list[LoadedBenchmark], shards: list[generation.Shard]) -> list[ShardJob]:
    jobs: list[ShardJob] = []
    system_prompt = settings.system_prompt or None
    for bench in benches:
        sampling = generation.Sampling(
            n=bench.samples, temperature=settings.temperature, top_p=settings.top_p, max_tokens=bench.max_tokens, seed=settings.seed
        )
        ids = bench.questions.column("id").to_pylist()
        base = f"{ctx.config.output.rstrip('/')}/generations/{label}/{bench.spec.name}"
        for shard in shards:
            rows = generation.shard_rows(ids, shard)
            prompts = bench.questions.take(pa.array(rows, pa.int64())).select(["id", "messages"])
            fp = generation.fingerprint(identity, prompts, sampling, system_prompt)
            jobs.append(ShardJob(label, bench, shard, prompts, generation.shard_uri(base, shard), sampling, fp))
    return jobs


def _done(job: ShardJob, ctx: StageContext) -> bool:
    done = generation.read_done(job.out, ctx.config.storage)
    return done is not None and done.fingerprint == job.fingerprint


# ---------------------------------------------------------------- generation


class _Beat:
    """Folds each job's progress into one heartbeat: prompts done of all this process generates, tokens/s."""

    def __init__(self, ctx: StageContext, total: int) -> None:
        self.ctx, self.total, self.offset = ctx, total, 0

    def job(self, job: ShardJob) -> Callable[[generation.GenProgress], None]:
        def on_progress(p: generation.GenProgress) -> None:
            self.ctx.beat(
                step=self.offset + p.prompts_done,
                total=self.total,
                metrics={"prompts_done": self.offset + p.prompts_done, "tokens_per_second": p.tokens_per_second, "generated_tokens": p.generated_tokens},
                message=f"{job.model} on {job.benchmark.spec.name} ({job.shard.name})",
            )

        return on_progress

    def finished(self, job: ShardJob) -> None:
        self.offset += job.prompts.num_rows


def _generate(ctx: StageContext, settings: EvalStage, benches: list[LoadedBenchmark], shards: list[generation.Shard]) -> dict[str, list[ShardJob]]:
    """Generate this process's shards for every model; return every model's jobs of *all* shards (for merging)."""
    every_shard = [generation.Shard(i, shards[0].count) for i in range(shards[0].count)]
    plans: dict[str, list[ShardJob]] = {}
    mine: list[tuple[str, Path, str, list[ShardJob]]] = []
    for label, input_name in model_inputs(ctx.config.inputs):
        model_dir = _model_dir(ctx, label, input_name)
        # a produced model's content digest (from its step's marker) is cheaper and exact; the base model's files identify it
        identity = ctx.input_digests.get(input_name) or generation.model_identity(model_dir)
        plans[label] = _jobs(ctx, settings, label, identity, benches, every_shard)
        mine.append((label, model_dir, identity, [j for j in plans[label] if j.shard in shards]))
    beat = _Beat(ctx, sum(j.prompts.num_rows for *_, jobs in mine for j in jobs))
    options = generation.EngineOptions(tensor_parallel=settings.tensor_parallel, max_model_len=settings.max_model_len)
    for label, model_dir, identity, jobs in mine:
        todo = [j for j in jobs if not _done(j, ctx)]
        for job in jobs:
            if job not in todo:
                beat.finished(job)
        if not todo:
            log.info("eval: %s: every shard of this process is done; no engine needed", label)
            continue
        try:
            with generation.open_engine(model_dir, options, identity=identity) as engine:
                for job in todo:
                    generation.generate(
                        engine,
                        job.prompts,
                        job.sampling,
                        out=job.out,
                        storage=ctx.config.storage,
                        system_prompt=settings.system_prompt or None,
                        on_progress=beat.job(job),
                        chunk_prompts=CHUNK_PROMPTS,
                    )
                    beat.finished(job)
        except generation.EngineError as e:
            raise StageInputError(f"{_model_field(label)}: {e}") from e
    return plans


# ---------------------------------------------------------------- scoring and report


def _merge(ctx: StageContext, jobs: list[ShardJob]) -> pa.Table:
    tables = []
    for job in jobs:
        table = generation.read_parts(job.out, ctx.config.storage, job.fingerprint)
        expected = job.prompts.num_rows * job.sampling.n
        if table.num_rows != expected:
            raise RuntimeError(f"{job.out}: {table.num_rows} samples, expected {expected}; the shard is incomplete")
        tables.append(table)
    return pa.concat_tables(tables) if tables else generation.GENERATION_SCHEMA.empty_table()


def _score_all(ctx: StageContext, plans: dict[str, list[ShardJob]], benches: list[LoadedBenchmark], verification: VerificationSettings) -> pa.Table:
    """Every sample of every model and benchmark, scored in one verification pass."""
    by_bench = {b.spec.name: {r["id"]: r for r in records.to_records(b.questions)} for b in benches}
    columns: dict[str, list[Any]] = {name: [] for name in SAMPLE_COLUMNS.names}
    refs: list[dict[str, Any]] = []
    samples: list[scoring.Sample] = []
    for label, jobs in plans.items():
        for bench in benches:
            merged = _merge(ctx, [j for j in jobs if j.benchmark.spec.name == bench.spec.name])
            for row in merged.to_pylist():
                record = by_bench[bench.spec.name][row["id"]]
                refs.append(record)
                samples.append(scoring.Sample(row["text"], row["finish_reason"]))
                for key in ("id", "sample", "text", "finish_reason", "prompt_tokens", "completion_tokens"):
                    columns[key].append(row[key])
                columns["model"].append(label)
                columns["benchmark"].append(bench.spec.name)
                columns["subset"].append(subset_of(record))
    scores = scoring.score(samples, refs, verification)
    columns["correct"] = [s.passed for s in scores]
    columns["status"] = [s.status for s in scores]
    columns["reason"] = [s.reason for s in scores]
    return pa.Table.from_pydict(columns, schema=SAMPLE_COLUMNS)


def results_from_samples(scored: pa.Table, benches: list[LoadedBenchmark], models: list[str]) -> list[dict[str, Any]]:
    """The model × benchmark entries (whole benchmark, then tiers) from scored samples. Pure."""
    rows = scored.select(["model", "benchmark", "subset", "id", "correct"]).to_pylist()
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        grouped.setdefault((r["model"], r["benchmark"], r["id"]), []).append(r)
    entries: list[dict[str, Any]] = []
    for model in models:
        for bench in benches:
            questions = [
                metrics.QuestionScore(qid, len(rs), sum(bool(r["correct"]) for r in rs), rs[0]["subset"])
                for (m, b, qid), rs in grouped.items()
                if m == model and b == bench.spec.name
            ]
            entries += metrics.metric_entries(model, bench.spec.name, questions, bench.samples)
    return entries


def _report(ctx: StageContext, scored: pa.Table, entries: list[dict[str, Any]], benches: list[LoadedBenchmark], models: list[str]) -> None:
    ctx.write_table("samples", scored)
    ctx.write_json(
        "results",
        {
            "results": entries,
            "models": models,
            "benchmarks": [
                {"name": b.spec.name, "samples": b.samples, "maxTokens": b.max_tokens, "questions": b.questions.num_rows,
                 "droppedNoReference": b.dropped_no_reference}
                for b in benches
            ],
        },
    )
    ctx.results = entries
    headline = report.mlflow_metrics([e for e in entries if not e.get("subset")])
    ctx.add_metrics(headline)
    ctx.add_metrics(report.mlflow_metrics([e for e in entries if e.get("subset")]), headline=False)
    status = scored.select(["model", "benchmark", "status"]).to_pylist()
    counts: dict[str, float] = {}
    for r in status:
        key = f"eval.{r['model']}.{r['benchmark']}.samples_{r['status']}"
        counts[key] = counts.get(key, 0) + 1
    ctx.add_metrics(counts, headline=False)
    ctx.tracker.log_table(report.table_columns(entries), "eval-results.json")
    ctx.tracker.log_on_parent(headline, report.table_columns(entries), "eval-results.json")
    png = report.plot_png(entries, ctx.scratch / "eval-results.png")
    if png is not None:
        ctx.tracker.log_artifact(png)
    local = ctx.scratch / "eval-samples.parquet"
    pq.write_table(scored, local)
    ctx.tracker.log_artifact(local)
    for e in entries:
        log.info("eval %s", e)


# ---------------------------------------------------------------- the stage


def run(ctx: StageContext) -> None:
    settings = ctx.settings(EvalStage)
    if not model_inputs(ctx.config.inputs):
        raise StageInputError("eval has no model to evaluate; set spec.stages.eval.models")
    benches = _load_benchmarks(ctx, settings)
    shards, leader = generation.local_shards(os.environ, settings.shards)
    ctx.tracker.log_params({"eval.benchmarks": {b.spec.name: {"samples": b.samples, "max_tokens": b.max_tokens} for b in benches}})
    plans = _generate(ctx, settings, benches, shards)
    if not leader:
        return
    every_job = [j for jobs in plans.values() for j in jobs]
    _sharded.wait_for_shards(ctx, every_job, lambda j: _done(j, ctx))
    ctx.add_metrics(_sharded.generation_metrics(ctx, every_job))
    ctx.beat(message="scoring")
    scored = _score_all(ctx, plans, benches, settings.verification)
    models = list(plans)
    entries = results_from_samples(scored, benches, models)
    _report(ctx, scored, entries, benches, models)
