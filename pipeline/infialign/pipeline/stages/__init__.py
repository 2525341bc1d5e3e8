"""Stage implementations. Each module has `run(ctx: StageContext) -> None`.

The registry maps a stage kind to its module, imported only when that stage runs, so the CPU image
can run `curate` without torch and the trainer image never imports the curation stack.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

__all__ = ["REGISTRY", "StageNotAvailable", "load"]

REGISTRY: Final = {
    "curate": "infialign.pipeline.stages.curate",
    "select": "infialign.pipeline.stages.select",
    "sft": "infialign.pipeline.stages.sft",
    "prefs": "infialign.pipeline.stages.prefs",
    "dpo": "infialign.pipeline.stages.dpo",
    "distill": "infialign.pipeline.stages.distill",
    "eval": "infialign.pipeline.stages.eval",
}


class StageNotAvailable(LookupError):
    """The stage is part of the API but not of this release (permanent: exit code 2)."""


def load(stage: str) -> ModuleType:
    module = REGISTRY.get(stage)
    if module is None:
        raise StageNotAvailable(
            f"the {stage!r} stage is not available in this release (available: {sorted(REGISTRY)}); "
            f"set spec.stages.{stage}.enabled: false"
        )
    return importlib.import_module(module)
