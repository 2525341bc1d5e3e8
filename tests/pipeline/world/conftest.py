"""Fixtures for the built-in world: the tiny model is built once per session into a temporary cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One thread per process: on 2 shared cores a second torch thread makes tiny models slower, not faster
# (research/cpu-stack-feasibility.md, "Threads").
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh ``$INFIALIGN_CACHE``; models go under ``<root>/models``."""
    return tmp_path_factory.mktemp("infialign-cache")


@pytest.fixture(scope="session")
def tiny_model_path(tiny_cache_root: Path) -> Path:
    from infialign.pipeline.world import tiny_model

    return tiny_model.ensure_tiny_model(tiny_cache_root / "models")
