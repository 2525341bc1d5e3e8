"""Before spending GPU hours: what a run will launch, whether it fits in GPU memory, and what it costs.

Pure functions only (no I/O): `estimate_run(spec, evidence, options) -> RunEstimate`. The edge that reads
finished steps, source samples and config.json is `infialign.pipeline.evidence`; `infialign plan` prints
the result with `render`. The operator and the local executor publish it as `status.estimate` and MLflow params with `publish`.
"""

from infialign.pipeline.estimate import flops, hardware, lengths, memory, models, publish, render
from infialign.pipeline.estimate.plan import Evidence, Options, RunEstimate, StepEstimate, StepRecord, estimate_run

__all__ = [
    "flops",
    "hardware",
    "lengths",
    "memory",
    "models",
    "publish",
    "render",
    "Evidence",
    "Options",
    "RunEstimate",
    "StepEstimate",
    "StepRecord",
    "estimate_run",
]
