"""`curate`: sources → a filtered, deduplicated, decontaminated candidate pool with features.

The algorithms live in `infialign.pipeline.curation`; this module maps the spec onto their configs,
reads the sources, runs the steps (in one process, on processes, or on Ray Data) and writes
`pool.parquet` plus the funnel report. Order (the library's, `infialign.pipeline.curation`): domain
labels first (the "math must have \\boxed" rule needs them), token counts, rule filters [SRC], dedup,
decontamination before anything is kept, then the embeddings and clusters diversity sampling needs.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from infialign.pipeline import curation, records
from infialign.pipeline.api import Benchmark, CurateStage, DataSource
from infialign.pipeline.runtime import sources
from infialign.pipeline.runtime.context import StageContext, StageInputError
from infialign.pipeline.stages import _cards, _report

__all__ = ["run", "build_steps", "executor_config", "PRESETS"]

log = logging.getLogger(__name__)

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


def to_records(table: pa.Table, source: DataSource | Benchmark, index: int | None = None) -> pa.Table:
    """A source's own columns → the record schema (`records` sources are only checked). ``index`` is the
    entry's position in `spec.sources` (or `spec.benchmarks`), so errors name the manifest key to set."""
    if source.preset == "records":
        try:
            return records.validate_table(table)
        except records.RecordSchemaError as e:
            raise StageInputError(f"{source.uri}: preset 'records' but {e}") from e
    try:
        return curation.records_from_rows(table, _mapping(source), source.name, fields_path=f"{manifest_path(source, index)}.fields")
    except ValueError as e:
        raise StageInputError(f"{source.uri}: {e}") from e


def executor_config(settings: CurateStage | Any) -> curation.ExecutorConfig:
    ray = settings.ray
    if ray.workers > 0:
        return curation.ExecutorConfig(backend="ray", workers=ray.workers, ray_address=ray.address)
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


def run(ctx: StageContext) -> None:
    settings = ctx.settings(CurateStage)
    parts: list[pa.Table] = []
    for i, raw in enumerate(ctx.config.sources):
        source = DataSource.model_validate(raw)
        table = ctx.read_table(source.uri)
        if source.max_rows is not None:
            table = table.slice(0, source.max_rows)
        parts.append(to_records(table, source))
        ctx.beat(step=i + 1, total=len(ctx.config.sources) + 1, message=f"read {source.name}: {table.num_rows} rows")
        ctx.tracker.log_dataset(f"source:{source.name}", source.uri, _report.digest_of(parts[-1]), "input", rows=parts[-1].num_rows)
    if not parts:
        raise StageInputError("curate has no sources; add spec.sources")
    pool = pa.concat_tables(parts)
    duplicate_ids = pool.num_rows - len(set(pool.column("id").to_pylist()))
    if duplicate_ids:
        raise StageInputError(f"{duplicate_ids} records share an id across sources; give every source a distinct name")
    steps = build_steps(settings, _benchmarks(ctx), student_tokenizer(ctx))
    ctx.beat(message=f"running {len(steps)} steps on {pool.num_rows} records")
    out, funnel = curation.run_steps(pool, steps, executor_config(settings))
    ctx.write_records("pool", out)
    cards = _cards.log_cards(ctx, {"pool": out})
    _report.write_funnel(ctx, funnel, "curate", rows_in=pool.num_rows, rows_out=out.num_rows, cards=cards)
