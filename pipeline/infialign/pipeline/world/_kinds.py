"""The registry of every problem kind of the built-in world, easiest tier first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from infialign.pipeline.world import _problems, _short_chains

__all__ = ["KINDS", "KINDS_BY_NAME", "KINDS_BY_TIER", "TIERS"]

TIERS: Final = _problems.TIERS
KINDS: Final[tuple[_problems.Kind, ...]] = (*_short_chains.KINDS, *_problems.KINDS)
KINDS_BY_NAME: Final[Mapping[str, _problems.Kind]] = {k.name: k for k in KINDS}
KINDS_BY_TIER: Final[Mapping[int, tuple[_problems.Kind, ...]]] = {t: tuple(k for k in KINDS if k.tier == t) for t in TIERS}

if len(KINDS_BY_NAME) != len(KINDS):
    raise RuntimeError("two problem kinds share a name; kind names key the provenance and the prompts")
if any(not kinds for kinds in KINDS_BY_TIER.values()):
    raise RuntimeError("every tier needs at least one problem kind")
