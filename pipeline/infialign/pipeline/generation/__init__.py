"""The vLLM generation layer shared by `distill`, `prefs` and `eval` (DESIGN.md §4).

    with open_engine(model_dir, EngineOptions()) as engine:
        table = generate(engine, prompts, Sampling(n=4, temperature=0.6, top_p=0.95, max_tokens=4096),
                         out=shard_uri(base, shard), storage=storage, system_prompt=..., on_progress=...)

`prompts` has `id` and `messages`; the result has GENERATION_SCHEMA. Output under `out` is written in
parts as prompts finish and is idempotent (see `store`); `shard_rows` splits prompts across the pods
of an Indexed Job and `local_shards` says which shards this process runs.
"""

from infialign.pipeline.generation.engine import Engine, EngineError, current_device, model_identity, open_engine
from infialign.pipeline.generation.runner import DEFAULT_CHUNK_PROMPTS, GenerationInputError, GenProgress, generate, with_system_prompt
from infialign.pipeline.generation.settings import EngineOptions, Sampling, engine_plan, request_seed
from infialign.pipeline.generation.sharding import Shard, ShardError, local_shards, shard_rows, shard_uri
from infialign.pipeline.generation.store import GENERATION_SCHEMA, ShardDone, ShardProgress, fingerprint, logprob_per_token, read_done, read_parts, read_progress

__all__ = [
    "DEFAULT_CHUNK_PROMPTS",
    "GENERATION_SCHEMA",
    "Engine",
    "EngineError",
    "EngineOptions",
    "GenProgress",
    "GenerationInputError",
    "Sampling",
    "Shard",
    "ShardDone",
    "ShardError",
    "ShardProgress",
    "current_device",
    "engine_plan",
    "fingerprint",
    "generate",
    "local_shards",
    "logprob_per_token",
    "model_identity",
    "open_engine",
    "read_done",
    "read_parts",
    "read_progress",
    "request_seed",
    "shard_rows",
    "shard_uri",
    "with_system_prompt",
]
