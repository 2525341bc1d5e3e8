"""The built-in tiny world: seeded reasoning data (``builtin://reasoning``, ``builtin://reasoning-bench``)
and a tiny Qwen2 model with its tokenizer (``builtin://tiny``).

Everything here runs offline and is deterministic, so every stage and test has data and a model
without a network or a model hub. Importing this package does not import torch: ``tiny_model``
loads its heavy dependencies only when a model is built or resolved, so the CPU curation image can
use the generator alone.
"""

from infialign.pipeline.world.reasoning import (
    BENCH_URI,
    DEFAULT_BENCH_N,
    DEFAULT_BENCH_SEED,
    DEFECT_CLASSES,
    GENERATOR_VERSION,
    INSTRUCTION_SUFFIX,
    NEAR_DUP_MIN_JACCARD,
    REASONING_URI,
    TIERS,
    URI_PARAMETERS,
    GeneratedWorld,
    PlantMix,
    TierMix,
    benchmark,
    generate,
    normalise_prompt,
    numbers_in,
    open_builtin,
    shingle_jaccard,
)
from infialign.pipeline.world.tiny_model import (
    TINY_URI,
    TinyModelSpec,
    ensure_tiny_model,
    resolve_model_uri,
    tiny_model_dir,
)

# Re-exported names are the package's public surface; `_problems` and the modules' private helpers
# may change without notice.
__all__ = [
    "BENCH_URI",
    "DEFAULT_BENCH_N",
    "DEFAULT_BENCH_SEED",
    "DEFECT_CLASSES",
    "GENERATOR_VERSION",
    "INSTRUCTION_SUFFIX",
    "NEAR_DUP_MIN_JACCARD",
    "REASONING_URI",
    "TIERS",
    "TINY_URI",
    "URI_PARAMETERS",
    "GeneratedWorld",
    "PlantMix",
    "TierMix",
    "TinyModelSpec",
    "benchmark",
    "ensure_tiny_model",
    "generate",
    "normalise_prompt",
    "numbers_in",
    "open_builtin",
    "resolve_model_uri",
    "shingle_jaccard",
    "tiny_model_dir",
]
