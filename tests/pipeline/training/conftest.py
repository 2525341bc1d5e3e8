"""Fixtures for the SFT library tests: the built-in tiny model, clean reasoning records, small settings."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

# One torch thread per process (research/cpu-stack-feasibility.md, "Threads"); DeepSpeed's JIT-built op
# goes to one shared directory so it is compiled once per machine, not once per test run.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(__file__).resolve().parents[3] / ".cache" / "torch_extensions"))


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``builtin://tiny`` (Qwen2, hidden 128, 4 layers, ChatML training template), built once per session.

    ``$INFIALIGN_CACHE`` is reused when set, so a developer's machine builds it once.
    """
    from infialign.pipeline.world import tiny_model

    cache = Path(os.environ["INFIALIGN_CACHE"]) / "models" if os.environ.get("INFIALIGN_CACHE") else tmp_path_factory.mktemp("cache")
    return tiny_model.ensure_tiny_model(cache)


@pytest.fixture(scope="session")
def clean_records() -> list[dict[str, Any]]:
    """96 clean ``builtin://reasoning`` records (no planted defects), as dicts in the record schema."""
    from infialign.pipeline import records
    from infialign.pipeline.world import reasoning

    mix = reasoning.PlantMix(**{f.name: 0.0 for f in dataclasses.fields(reasoning.PlantMix)})
    return records.to_records(reasoning.generate(96, seed=3, mix=mix).table)


@pytest.fixture
def small_settings():
    """Settings for a few CPU steps on the tiny model; keyword overrides win."""
    from infialign.pipeline.training import SftSettings

    def make(**overrides: Any) -> SftSettings:
        values: dict[str, Any] = dict(
            max_length=512,
            global_batch_size=4,
            micro_batch_size=2,
            learning_rate=3e-3,
            min_learning_rate=3e-4,
            warmup_ratio=0.0,
            max_steps=6,
            save_steps=1000,
            logging_steps=1,
            heartbeat_interval_s=0,
        )
        values.update(overrides)
        return SftSettings(**values)

    return make
