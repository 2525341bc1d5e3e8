"""The on-disk (or S3) layout of one shard's generations, which makes them resumable and idempotent.

    <out>/part-00000.parquet   finished prompts, all n samples each; written whole (temp + rename
    <out>/part-00001.parquet   locally, one PUT on S3), so a part is complete or absent
    <out>/_PROGRESS.json       prompts done / total and tokens/s, rewritten at every part
    <out>/_DONE.json           written last: the shard is finished

Every part and the done marker carry a *fingerprint* of what was asked (model, prompts, sampling,
system prompt). A re-run with the same fingerprint skips the prompts already in parts, and a
finished shard is not redone; parts with another fingerprint are stale and removed first.
"""

from __future__ import annotations

import math

import datetime as dt
import hashlib
import io
import json
import logging
import posixpath
import re
from collections.abc import Sequence
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from infialign.pipeline.generation.settings import Sampling
from infialign.pipeline.runtime import storage
from infialign.pipeline.runtime.config import StorageConfig

__all__ = [
    "GENERATION_SCHEMA",
    "DONE_FILE",
    "PROGRESS_FILE",
    "ShardDone",
    "ShardProgress",
    "fingerprint",
    "read_done",
    "write_done",
    "read_progress",
    "write_progress",
    "read_parts",
    "write_part",
    "next_part_index",
    "remove_stale",
    "empty_table",
    "done_ids",
    "logprob_per_token",
    "rows_to_table",
]

GENERATION_SCHEMA: Final = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # the prompt's (record's) id
        pa.field("sample", pa.int32(), nullable=False),  # 0..n-1
        pa.field("text", pa.string(), nullable=False),
        pa.field("finish_reason", pa.string()),  # "stop", "length" (truncated: unusable), "abort"
        pa.field("prompt_tokens", pa.int32()),
        pa.field("completion_tokens", pa.int32()),
        # sum of the sampled tokens' log-probs; null unless Sampling.logprobs asked vLLM for it
        pa.field("cumulative_logprob", pa.float64()),
    ]
)

DONE_FILE: Final = "_DONE.json"
PROGRESS_FILE: Final = "_PROGRESS.json"
_FINGERPRINT_KEY: Final = b"infialign.fingerprint"
_PART = re.compile(r"^part-(\d{5,})\.parquet$")


class _Marker(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ShardProgress(_Marker):
    prompts_done: int = Field(ge=0)
    prompts_total: int = Field(ge=0)
    samples: int = Field(default=0, ge=0)
    generated_tokens: int = Field(default=0, ge=0)
    tokens_per_second: float | None = None
    time: dt.datetime


class ShardDone(_Marker):
    fingerprint: str
    prompts: int = Field(ge=0)
    samples: int = Field(ge=0)
    truncated: int = Field(ge=0, description="Samples that hit max_tokens (finish_reason=length).")
    generated_tokens: int = Field(ge=0)
    seconds: float = Field(ge=0, description="Generation time of the attempt that finished the shard.")
    tokens_per_second: float | None = None
    finished_at: dt.datetime


def empty_table() -> pa.Table:
    return GENERATION_SCHEMA.empty_table()


def fingerprint(model_identity: str, prompts: pa.Table, sampling: Sampling, system_prompt: str | None) -> str:
    """sha256 over what decides the generations: model, sampling, system prompt, and every (id, messages)."""
    h = hashlib.sha256()
    head = {"model": model_identity, "sampling": sampling.model_dump(mode="json"), "system_prompt": system_prompt}
    h.update(json.dumps(head, sort_keys=True).encode())
    for pid, messages in zip(prompts.column("id").to_pylist(), prompts.column("messages").to_pylist(), strict=True):
        h.update(b"\x00" + json.dumps([pid, messages], sort_keys=True, ensure_ascii=False).encode())
    return "sha256:" + h.hexdigest()


def _join(out: str, name: str) -> str:
    return out.rstrip("/") + "/" + name


def _json_or_none(uri: str, store: StorageConfig | None) -> Any:
    try:
        if not storage.exists(uri, store):
            return None
        return storage.read_json(uri, store)
    except (OSError, ValueError) as e:
        logging.getLogger(__name__).warning("cannot read %s: %s", uri, e)
        return None


def read_done(out: str, store: StorageConfig | None = None) -> ShardDone | None:
    raw = _json_or_none(_join(out, DONE_FILE), store)
    try:
        return ShardDone.model_validate(raw) if raw is not None else None
    except ValueError:
        return None


def write_done(out: str, done: ShardDone, store: StorageConfig | None = None) -> None:
    storage.write_json(_join(out, DONE_FILE), done.model_dump(mode="json"), store)


def read_progress(out: str, store: StorageConfig | None = None) -> ShardProgress | None:
    raw = _json_or_none(_join(out, PROGRESS_FILE), store)
    try:
        return ShardProgress.model_validate(raw) if raw is not None else None
    except ValueError:
        return None


def write_progress(out: str, progress: ShardProgress, store: StorageConfig | None = None) -> None:
    storage.write_json(_join(out, PROGRESS_FILE), progress.model_dump(mode="json"), store)


def _part_uris(out: str, store: StorageConfig | None) -> list[tuple[int, str]]:
    """(index, uri) of the parts under `out`, by index; temp files of an interrupted write are not parts."""
    fs, path = storage.filesystem(out, store)
    if not fs.exists(path):
        return []
    protocol, _ = storage.split(out)
    found: list[tuple[int, str]] = []
    for entry in fs.ls(path, detail=False):
        name = posixpath.basename(str(entry).rstrip("/"))
        match = _PART.match(name)
        if match:
            found.append((int(match.group(1)), _join(out, name) if protocol != "file" else str(entry)))
    return sorted(found)


def next_part_index(out: str, store: StorageConfig | None = None) -> int:
    parts = _part_uris(out, store)
    return parts[-1][0] + 1 if parts else 0


def write_part(out: str, index: int, table: pa.Table, fp: str, store: StorageConfig | None = None) -> str:
    table = table.cast(GENERATION_SCHEMA).replace_schema_metadata({_FINGERPRINT_KEY: fp.encode()})
    uri = _join(out, f"part-{index:05d}.parquet")
    storage.write_parquet(uri, table, store)
    return uri


def _read_part(uri: str, store: StorageConfig | None) -> tuple[str | None, pa.Table]:
    table = pq.read_table(io.BytesIO(storage.read_bytes(uri, store)))
    meta = table.schema.metadata or {}
    fp = meta.get(_FINGERPRINT_KEY)
    table = table.replace_schema_metadata(None)
    for field in GENERATION_SCHEMA:
        if field.name not in table.column_names and field.nullable:  # a part written before the column existed
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return (fp.decode() if fp else None), table.select(GENERATION_SCHEMA.names).cast(GENERATION_SCHEMA)


def read_parts(out: str, store: StorageConfig | None, fp: str) -> pa.Table:
    """Every row of the parts made for `fp`, each (id, sample) once (a duplicate pod's part is ignored)."""
    tables = [t for got, t in (_read_part(uri, store) for _, uri in _part_uris(out, store)) if got == fp]
    if not tables:
        return empty_table()
    table = pa.concat_tables(tables)
    keys = list(zip(table.column("id").to_pylist(), table.column("sample").to_pylist(), strict=True))
    if len(set(keys)) == len(keys):
        return table
    seen: set[tuple[str, int]] = set()
    keep: list[int] = []
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return table.take(pa.array(keep, pa.int64()))


def _part_fingerprint(uri: str, store: StorageConfig | None) -> str | None:
    """Only the Parquet footer is read (a ranged read on S3), not the samples."""
    fs, path = storage.filesystem(uri, store)
    with fs.open(path, "rb") as f:
        meta = pq.read_schema(f).metadata or {}
    fp = meta.get(_FINGERPRINT_KEY)
    return fp.decode() if fp else None


def remove_stale(out: str, store: StorageConfig | None, fp: str) -> int:
    """Delete parts and markers made for another fingerprint (an earlier config); returns parts removed."""
    removed = 0
    for _, uri in _part_uris(out, store):
        got = _part_fingerprint(uri, store)
        if got != fp:
            storage.remove(uri, store)
            removed += 1
    done = read_done(out, store)
    if done is not None and done.fingerprint != fp:
        storage.remove(_join(out, DONE_FILE), store)
    return removed


def done_ids(table: pa.Table) -> set[str]:
    return set(table.column("id").to_pylist())


def logprob_per_token(row: dict[str, Any]) -> float | None:
    """A sample's mean token log-prob (the model's confidence in it), or None when it was not recorded."""
    total, tokens = row.get("cumulative_logprob"), row.get("completion_tokens")
    if total is None or not tokens or math.isnan(float(total)):
        return None
    return float(total) / int(tokens)


def rows_to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=GENERATION_SCHEMA)
