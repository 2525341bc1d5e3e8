"""`curate`: sources → a filtered, deduplicated, decontaminated candidate pool with features.

The algorithms live in `infialign.pipeline.curation`; this module maps the spec onto their configs,
reads the sources, runs the steps (in one process, on processes, or on Ray Data) and writes
`pool.parquet` plus the funnel report. Order (the library's, `infialign.pipeline.curation`): domain
labels first (the "math must have \\boxed" rule needs them), token counts, rule filters [SRC], dedup,
decontamination before anything is kept, then the embeddings and clusters diversity sampling needs.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import shutil
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from infialign.pipeline import curation, records
from infialign.pipeline.api import Benchmark, CurateStage, DataSource
from infialign.pipeline.runtime import sources, storage
from infialign.pipeline.runtime.context import StageContext, StageInputError
from infialign.pipeline.stages import _cards, _report

__all__ = ["run", "build_steps", "executor_config", "PRESETS"]

log = logging.getLogger(__name__)

_READ_BATCH_ROWS = 8192  # source rows per batch: ~27 MB of long CoTs, and ingest's per-row dicts stay small

# Our API's preset names → the ingest library's column layouts.
PRESETS: dict[str, str] = {
    "auto": "auto",
    "messages": "chat",
    "sharegpt": "chat",
    "numina": "problem_solution",
    "alpaca": "instruction_output",
    "gsm8k": "question_answer",
    "aime": "problem_solution",
    "math500": "problem_solution",
    "humaneval": "humaneval",
    "apps": "apps",
    "taco": "apps",
    "livecodebench": "livecodebench",
    "gpqa": "gpqa",
}
# Presets whose answers are math whatever the columns say (the code and choice presets set their own).
_MATH_PRESETS = frozenset({"aime", "math500", "numina", "gsm8k"})


def _mapping(source: DataSource | Benchmark) -> curation.FieldMapping:
    fields = getattr(source, "fields", None)
    explicit: dict[str, Any] = fields.model_dump(exclude_none=True) if fields is not None else {}
    answer_type = source.answer_type
    if answer_type == "auto" and source.preset in _MATH_PRESETS:
        answer_type = "math"
    return curation.FieldMapping(
        preset=PRESETS[source.preset], default_domain=getattr(source, "domain", None), answer_type=answer_type, **explicit
    )


def manifest_path(source: DataSource | Benchmark, index: int | None = None) -> str:
    """How the manifest spells this entry: `spec.sources[2]`, `spec.benchmarks[0]` (by name when the index is unknown)."""
    key = "benchmarks" if isinstance(source, Benchmark) else "sources"
    return f"spec.{key}[{index}]" if index is not None else f"spec.{key}[name={source.name}]"


def to_records(
    table: pa.Table, source: DataSource | Benchmark, index: int | None = None, *, start_index: int = 0, seen_keys: set[str] | None = None
) -> pa.Table:
    """A source's own columns → the record schema (`records` sources are only checked). ``index`` is the
    entry's position in `spec.sources` (or `spec.benchmarks`), so errors name the manifest key to set. A source
    read in batches passes each batch's first row index and one ``seen_keys`` set for all of its batches."""
    if source.preset == "records":
        try:
            return records.validate_table(table)
        except records.RecordSchemaError as e:
            raise StageInputError(f"{source.uri}: preset 'records' but {e}") from e
    try:
        return curation.records_from_rows(
            table,
            _mapping(source),
            source.name,
            start_index=start_index,
            seen_keys=seen_keys,
            fields_path=f"{manifest_path(source, index)}.fields",
        )
    except ValueError as e:
        raise StageInputError(f"{source.uri}: {e}") from e


def executor_config(settings: CurateStage | Any) -> curation.ExecutorConfig:
    ray = settings.ray
    if ray.workers > 0:
        # A window fills every worker twice (shard_rows 5,000 each); the local default window is one shard.
        return curation.ExecutorConfig(backend="ray", workers=ray.workers, ray_address=ray.address, window_rows=10_000 * ray.workers)
    # No Ray: a run-long pool of worker processes (curation.RowPool) when more than one CPU is ours.
    workers = settings.local_workers or curation.available_cpus()
    if workers > 1:
        return curation.ExecutorConfig(backend="processes", workers=workers)
    return curation.ExecutorConfig(backend="local")


def build_steps(settings: CurateStage, benchmarks: dict[str, pa.Table], tokenizer: str) -> list[curation.Step]:
    """The curate pipeline as library steps, in order, from the stage settings. Pure."""
    f = settings.filters
    rules = curation.RuleFilterConfig.model_validate(
        {
            "language": {"enabled": f.language, "min_latin_ratio": f.min_english_ratio},
            "length": {"min_prompt_chars": f.min_prompt_chars, "max_prompt_chars": f.max_prompt_chars, "max_response_chars": f.max_response_chars},
            "truncation": {"enabled": f.truncated},
            "final_answer": {"enabled": f.require_answer},
            "repetition": {"enabled": f.repetition, "ngram": f.repetition_ngram, "max_repeats": f.repetition_max_repeats},
        }
    )
    domain = settings.domains
    if domain.labeller == "llm":
        labeller = curation.Step(
            curation.label_domains_llm,
            curation.OpenAIChatLabellerConfig(
                base_url=domain.endpoint or "",
                model=domain.model or "",
                concurrency=domain.concurrency,
                **({"labels": tuple(domain.labels)} if domain.labels else {}),
            ),
        )
    else:
        labeller = curation.Step(curation.label_domains_keyword, curation.KeywordLabellerConfig())
    # The labeller runs before the rule filters (the library's documented order): FinalAnswerRule
    # ("math must have \\boxed") keys on the domain, and sources without a domain column (NuminaMath,
    # GSM8K) only get one here. After the filters it would see domain=None and let every math row pass.
    # It still appears in the funnel as its own step. Cost: the LLM labeller also labels rows the
    # rules drop later.
    steps: list[curation.Step] = [
        labeller,
        curation.Step(curation.count_response_tokens, curation.TokenCountConfig(tokenizer=tokenizer)),
        *curation.rule_steps(rules),
    ]
    if settings.exact_dedup:
        steps.append(curation.Step(curation.dedup_exact, curation.ExactDedupConfig()))
    near = settings.near_dedup
    if near.enabled:
        steps.append(
            curation.Step(
                curation.dedup_near,
                curation.MinHashConfig(
                    ngram=near.ngram, num_perm=near.bands * near.rows, bands=near.bands, rows=near.rows, threshold=near.threshold, seed=near.seed
                ),
            )
        )
    decon = settings.decontamination
    if decon.enabled and benchmarks:
        # The embedding check uses the run's embedding model on whole prompts (clusters cut them to 128 tokens).
        emb_model = settings.embeddings.model
        check_embed = (
            curation.EmbedConfig(backend="hashing", seed=settings.embeddings.seed)
            if emb_model == "hashed"
            else curation.EmbedConfig(model_path=None if emb_model == "all-MiniLM-L6-v2" else emb_model, max_seq_length=None)
        )
        cfg = curation.DecontamConfig(
            prompt_ngram=decon.prompt_ngram,
            full_ngram=decon.full_ngram,
            fuzzy_ratio=decon.fuzzy_ratio * 100,  # the library takes rapidfuzz's 0-100 scale
            min_ngram_share=decon.min_ngram_share,
            word_overlap=decon.word_overlap,
            **({"embedding": check_embed, "embedding_threshold": decon.embedding_threshold} if decon.embedding_threshold else {}),
        )
        index = curation.DecontamIndex.build(benchmarks, cfg)
        steps += [curation.Step(curation.score_contamination, index), curation.Step(curation.filter_contamination, cfg)]
    elif decon.enabled:
        log.warning(
            "decontamination is enabled but no benchmark has decontaminate: true, so nothing is checked; add benchmarks "
            "to spec.benchmarks or set spec.stages.curate.decontamination.enabled: false"
        )
        steps.append(curation.Step(curation.decontam.decontamination_skipped, "no_benchmarks"))
    emb = settings.embeddings
    embed_cfg = curation.EmbedConfig(backend="hashing", seed=emb.seed) if emb.model == "hashed" else curation.EmbedConfig(
        model_path=None if emb.model == "all-MiniLM-L6-v2" else emb.model
    )
    steps.append(curation.Step(curation.cluster_prompts, curation.ClusterConfig(embed=embed_cfg, kmeans=curation.KMeansConfig(k=emb.clusters, seed=emb.seed))))
    return steps


def _benchmarks(ctx: StageContext) -> dict[str, pa.Table]:
    tables: dict[str, pa.Table] = {}
    for i, raw in enumerate(ctx.config.benchmarks):
        bench = Benchmark.model_validate(raw)
        if bench.decontaminate:
            tables[bench.name] = to_records(ctx.read_table(bench.uri), bench, i)
    return tables


def student_tokenizer(ctx: StageContext) -> str:
    """The student's `tokenizer.json`, so lengths count what SFT counts; the regex proxy without it."""
    try:
        return str(sources.tokenizer_file(ctx.config.model, ctx.config.storage))
    except Exception as e:  # noqa: BLE001  a missing tokenizer costs accuracy of a length proxy, not the stage
        log.warning("counting tokens with the regex proxy: the student's tokenizer is not available (%s)", e)
        return "regex"


def _source_tables(ctx: StageContext, counts: dict[str, int]) -> Iterator[pa.Table]:
    """Every source, batch by batch, in the record schema; ``counts[name]`` = rows read so far."""
    sources_ = [DataSource.model_validate(raw) for raw in ctx.config.sources]
    ids: set[bytes] = set()
    for i, source in enumerate(sources_):
        seen_keys: set[str] = set()
        digest = hashlib.sha256()
        read = 0
        for raw_table in ctx.read_batches(source.uri, _READ_BATCH_ROWS):
            if source.max_rows is not None:
                raw_table = raw_table.slice(0, source.max_rows - read)
            if raw_table.num_rows == 0:
                break
            part = to_records(raw_table, source, i, start_index=read, seen_keys=seen_keys)
            read += raw_table.num_rows
            keys = {hashlib.blake2b(x.encode(), digest_size=16).digest() for x in part.column("id").to_pylist()}
            if not keys.isdisjoint(ids):
                raise StageInputError("records share an id across sources; give every source a distinct name")
            ids |= keys
            digest.update(storage.table_digest(part).encode())
            counts[source.name] = read
            yield part
        ctx.beat(step=i + 1, total=len(sources_) + 1, message=f"read {source.name}: {read} rows")
        ctx.tracker.log_dataset(f"source:{source.name}", source.uri, "sha256:" + digest.hexdigest(), "input", rows=read)


# The columns a dataset card reads (everything but the text).
_CARD_COLUMNS = ("id", "source", "domain", "verification", "response_tokens", "cluster", "scores")


def run(ctx: StageContext) -> None:
    settings = ctx.settings(CurateStage)
    if not ctx.config.sources:
        raise StageInputError("curate has no sources; add spec.sources")
    steps = build_steps(settings, _benchmarks(ctx), student_tokenizer(ctx))
    ctx.beat(message=f"running {len(steps)} steps on {len(ctx.config.sources)} sources, streaming")
    counts: dict[str, int] = {}
    spill = ctx.scratch / "curate-spill"
    spill.mkdir(parents=True, exist_ok=True)
    try:
        # Streaming: sources are read, ingested and row-filtered batch by batch; global steps see only
        # the columns they declare (curation.stream). The pool is written row group by row group.
        tables = itertools.chain(_source_tables(ctx, counts), [records.empty_table()])  # a schema even when every source is empty
        out, funnel = curation.run_steps_streaming(tables, steps, executor_config(settings), scratch=spill)
        ctx.write_record_stream("pool", out.batches())
        cards = _cards.log_cards(ctx, {"pool": out.table(_CARD_COLUMNS)})
        _report.write_funnel(ctx, funnel, "curate", rows_in=sum(counts.values()), rows_out=out.num_rows, cards=cards)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
