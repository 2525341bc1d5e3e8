"""Fixtures for the SFT library tests: the built-in tiny model, clean reasoning records, small settings."""

from __future__ import annotations

import dataclasses
import os
import random
import re
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


def _wrong_response(response: str, answer: str, rng: random.Random) -> str:
    """A slip in the last step, as world/reasoning.py plants it: the last results and the boxed answer become wrong."""
    delta = rng.choice((-10, -2, -1, 1, 2, 10))
    wrong = str(int(answer) + delta if int(answer) + delta >= 0 else int(answer) + abs(delta))
    head, _, tail = response.partition("</think>")
    lines = head.split("\n")
    pattern = re.compile(rf"(?<![\d^]){re.escape(answer)}(?!\d)")
    for i in range(len(lines) - 1, max(len(lines) - 4, -1), -1):
        lines[i] = pattern.sub(wrong, lines[i])
    return "\n".join(lines) + "</think>" + tail.replace("\\boxed{" + answer + "}", "\\boxed{" + wrong + "}")


@pytest.fixture(scope="session")
def world_pairs():
    """Pairs from ``builtin://reasoning``: chosen = a record's correct response, rejected = it with a wrong last step."""
    from infialign.pipeline import pairs, records
    from infialign.pipeline.world import reasoning

    def make(n: int, seed: int, *, difficulty: bool = False) -> Any:
        mix = reasoning.PlantMix(**{f.name: 0.0 for f in dataclasses.fields(reasoning.PlantMix)})
        rng = random.Random(seed)
        rows = []
        for r in records.to_records(reasoning.generate(n, seed=seed, mix=mix).table):
            if not r["answer"] or not re.fullmatch(r"\d+", r["answer"]):
                continue
            rejected = _wrong_response(r["response"], r["answer"], rng)
            rows.append({
                "id": r["id"], "source": "builtin://reasoning", "domain": r["domain"], "prompt": r["messages"], "chosen": r["response"],
                "rejected": rejected, "answer": r["answer"], "difficulty": rng.choice((0.0, 0.25, 0.75)) if difficulty else None,
            })
        return pairs.to_pairs_table(rows)

    return make


@pytest.fixture
def dpo_settings():
    """DPO settings for a few CPU steps on the tiny model; keyword overrides win."""
    from infialign.pipeline.training import DpoSettings

    def make(**overrides: Any) -> DpoSettings:
        values: dict[str, Any] = dict(
            max_length=512,
            global_batch_size=8,
            micro_batch_size=4,
            learning_rate=3e-3,
            warmup_ratio=0.0,
            max_steps=6,
            save_steps=1000,
            logging_steps=1,
            heartbeat_interval_s=0,
        )
        values.update(overrides)
        return DpoSettings(**values)

    return make
