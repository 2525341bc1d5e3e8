"""Curation and selection algorithms over record-schema Arrow tables (DESIGN.md §4, seeds §1.1-1.7).

A step is ``fn(table, cfg) -> (table, StepStats)``, declared with :func:`steps.step` (what it reads and
writes, filter or transform, row or global scope) and bound to its config with :class:`Step`. The stage
glue builds a list of steps and hands it to :func:`run_steps`, which runs row steps shard-wise (locally,
on processes, or on Ray Data) and global steps on the gathered table, and returns the table and the
:class:`Funnel`.

Pipeline order for ``curate``::

    records_from_rows            (per source)          ingest
    label_domains_keyword | label_domains_llm          domains
    count_response_tokens                              tokens
    score_rules -> filter_rules                        filters
    dedup_exact -> dedup_near                          dedup (global)
    score_contamination -> filter_contamination        decontam
    cluster_prompts                                    embed (global)

and for ``select``: :func:`select` (score_difficulty -> select_sft -> curriculum_split -> challenge_pool).

Answer verification is not a curation step: it lives in ``infialign.pipeline.verifiers`` (math, choice,
code sandbox, judge), which builds on this package, and runs in ``select`` (``verifiers.verify_records``).
Dedup runs before it, so its choice of representative uses only what is known at dedup time (see
``_arrow.representative_rank``: a response with an independent reference answer first). After distillation,
run ``rule_steps`` again with ``FinalAnswerRule(require_boxed_response=True)`` and ``EmptyRule(
require_response=True)``.

The ``processes`` executor (and the streaming path's run-long ``RowPool``, which the curate stage uses
when it has more than one CPU and no Ray) starts worker processes with ``spawn``: a script that calls them needs the ``if __name__ == "__main__":`` guard (console-script entry points have it).

This package imports only pyarrow, numpy, pydantic and the standard library at import time; torch,
sentence-transformers, scikit-learn, faiss, rapidfuzz and Ray load inside the functions
that need them, so the CPU image imports it without torch (house rule 13).
"""

from infialign.pipeline.curation import (
    answers,
    decontam,
    dedup,
    domains,
    embed,
    executor,
    filters,
    ingest,
    normalize,
    selection,
    stats,
    steps,
    presets,
    stream,
    tokens,
)
from infialign.pipeline.curation.decontam import DecontamConfig, DecontamIndex, filter_contamination, score_contamination
from infialign.pipeline.curation.dedup import ExactDedupConfig, MinHashConfig, dedup_exact, dedup_near, find_near_duplicates
from infialign.pipeline.curation.domains import (
    KeywordLabellerConfig,
    OpenAIChatLabeller,
    OpenAIChatLabellerConfig,
    label_domains_keyword,
    label_domains_llm,
)
from infialign.pipeline.curation.embed import ClusterConfig, EmbedConfig, KMeansConfig, cluster_prompts, embed_texts
from infialign.pipeline.curation.executor import ExecutorConfig, RowPool, available_cpus, run_steps
from infialign.pipeline.curation.filters import RuleFilterConfig, filter_rules, rule_steps, score_rules
from infialign.pipeline.curation.ingest import FieldMapping, records_from_rows
from infialign.pipeline.curation.normalize import normalize_array, normalize_text
from infialign.pipeline.curation.selection import (
    Selection,
    SelectionConfig,
    challenge_pool,
    curriculum_split,
    score_difficulty,
    select,
    select_sft,
)
from infialign.pipeline.curation.stats import Funnel, StepStats
from infialign.pipeline.curation.steps import Step
from infialign.pipeline.curation.stream import Rows, run_steps_streaming
from infialign.pipeline.curation.tokens import TokenCountConfig, count_response_tokens

__all__ = [
    "ClusterConfig",
    "DecontamConfig",
    "DecontamIndex",
    "EmbedConfig",
    "ExactDedupConfig",
    "ExecutorConfig",
    # ingest + normalisation
    "FieldMapping",
    "Funnel",
    "KMeansConfig",
    # steps and their configs, in pipeline order
    "KeywordLabellerConfig",
    "MinHashConfig",
    "OpenAIChatLabeller",
    "OpenAIChatLabellerConfig",
    "RowPool",
    "Rows",
    "RuleFilterConfig",
    "Selection",
    "SelectionConfig",
    # step plumbing
    "Step",
    "StepStats",
    "TokenCountConfig",
    # modules
    "answers",
    "available_cpus",
    "challenge_pool",
    "cluster_prompts",
    "count_response_tokens",
    "curriculum_split",
    "decontam",
    "dedup",
    "dedup_exact",
    "dedup_near",
    "domains",
    "embed",
    "embed_texts",
    "executor",
    "filter_contamination",
    "filter_rules",
    "filters",
    "find_near_duplicates",
    "ingest",
    "label_domains_keyword",
    "label_domains_llm",
    "normalize",
    "normalize_array",
    "normalize_text",
    "records_from_rows",
    "rule_steps",
    "run_steps",
    "run_steps_streaming",
    "score_contamination",
    "score_difficulty",
    "score_rules",
    "select",
    "select_sft",
    "selection",
    "stats",
    "steps",
    "stream",
    "presets",
    "tokens",
]
