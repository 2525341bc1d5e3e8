"""Reference log-probabilities stored beside the pairs: computed once, reused on resume, never trusted blindly.

DPO needs log π_ref(y|x) of both responses of every pair under the frozen start (SFT) model. TRL computes them
with ``precompute_ref_log_probs=True`` but has no way to save and reload them (huggingface/trl#3985), so a
restarted attempt would pay a full forward pass over the pairs again. We keep them in
``<output>/pairs-ref.parquet``: columns ``id``, ``ref_chosen_logps``, ``ref_rejected_logps``, and in the schema
metadata a fingerprint of everything they depend on (the model's digest, the pairs' content, the chat format,
``max_length`` and the precision). A file whose fingerprint differs, or that misses a pair, is ignored and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["REF_COLUMNS", "FORMAT", "RefLogps", "fingerprint", "load", "save"]

log = logging.getLogger(__name__)

REF_COLUMNS: Final = ("ref_chosen_logps", "ref_rejected_logps")
FORMAT: Final = "infialign-ref-logps-v1"  # bump when the computation changes (e.g. a different length treatment)
_META_KEY: Final = b"infialign.fingerprint"


@dataclass(frozen=True)
class RefLogps:
    """Reference log-probs aligned with a list of pair ids."""

    ids: list[str]
    chosen: np.ndarray
    rejected: np.ndarray


def fingerprint(
    *, model_digest: str, pairs: pa.Table, chat_template: str | None, system_prompt: str | None, max_length: int,
    precision: str = "fp32",
) -> str:
    """sha256 over what the reference log-probs depend on. ``pairs`` needs id, prompt, chosen, rejected.

    ``precision`` is in it because bf16 and fp32 forwards give different values for the same model.
    """
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, model_digest, chat_template, system_prompt, max_length, precision]).encode())
    for name in ("id", "prompt", "chosen", "rejected"):
        h.update(name.encode())
        h.update(json.dumps(pairs.column(name).to_pylist(), ensure_ascii=False).encode())
    return h.hexdigest()


def _fs(uri: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(uri, **(storage_options or {}))


def load(uri: str, expected: str, ids: Sequence[str], *, storage_options: dict[str, Any] | None = None) -> RefLogps | None:
    """The stored values for ``ids`` (in that order), or None when absent, stale or incomplete (logged)."""
    fs, path = _fs(uri, storage_options)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        table = pq.read_table(f)
    found = (table.schema.metadata or {}).get(_META_KEY, b"").decode()
    if found != expected:
        log.warning("%s was computed for other pairs, another model or another chat format (fingerprint %s, expected %s); "
                    "recomputing", uri, found[:12] or "none", expected[:12])
        return None
    if any(c not in table.column_names for c in ("id", *REF_COLUMNS)):
        log.warning("%s lacks columns %s; recomputing", uri, [c for c in ("id", *REF_COLUMNS) if c not in table.column_names])
        return None
    position = {pid: i for i, pid in enumerate(table.column("id").to_pylist())}
    missing = [pid for pid in ids if pid not in position]
    if missing:
        log.warning("%s has no reference log-probs for %d pairs (e.g. %r); recomputing", uri, len(missing), missing[0])
        return None
    take = np.array([position[pid] for pid in ids], dtype=np.int64)
    chosen = table.column(REF_COLUMNS[0]).to_numpy()[take]
    rejected = table.column(REF_COLUMNS[1]).to_numpy()[take]
    if not (np.isfinite(chosen).all() and np.isfinite(rejected).all()):
        log.warning("%s holds non-finite reference log-probs; recomputing", uri)
        return None
    return RefLogps(list(ids), chosen.astype(np.float64), rejected.astype(np.float64))


def save(uri: str, fp: str, values: RefLogps, *, storage_options: dict[str, Any] | None = None) -> None:
    """Write the file atomically: a rename on local disks, a single PUT on object stores."""
    table = pa.table(
        {"id": pa.array(values.ids, pa.string()), REF_COLUMNS[0]: pa.array(values.chosen, pa.float64()),
         REF_COLUMNS[1]: pa.array(values.rejected, pa.float64())}
    ).replace_schema_metadata({_META_KEY: fp.encode()})
    fs, path = _fs(uri, storage_options)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        tmp = f"{parent}/.{path.rsplit('/', 1)[-1]}.{os.getpid()}.tmp" if parent else f".{path}.{os.getpid()}.tmp"
        with fs.open(tmp, "wb") as f:
            pq.write_table(table, f)
        fs.mv(tmp, path)
    else:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        fs.pipe_file(path, sink.getvalue().to_pybytes())
