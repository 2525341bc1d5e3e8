"""The base class of every curation config: frozen, strict, JSON-ready, with a stable digest.

A stage writes ``cfg.digest()`` into ``_SUCCESS.json`` (DESIGN.md §3). A multi-pass algorithm (MinHash,
k-means) takes one shared config object, so every shard and worker provably ran with the same settings
(house rule 11). The digest covers the config's class name and every field, including defaults, so
changing a default in code also changes the digest and re-runs the stage.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict

__all__ = ["CurationConfig"]


class CurationConfig(BaseModel):
    """Frozen pydantic model with ``digest()``. Unknown keys are errors, so a typo in stage.json fails early."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def digest(self) -> str:
        """``sha256:<hex>`` of the class name and the JSON dump of all fields (sorted keys)."""
        payload = json.dumps(
            {"config": type(self).__name__, "fields": self.model_dump(mode="json")},
            sort_keys=True,
            separators=(",", ":"),
        )
        return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()
