"""Artifact storage through fsspec: `file://` and `s3://` (MinIO or any S3 endpoint).

S3 credentials come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, put there by the
pod's `secretKeyRef`); the endpoint and region come from the stage config. Writes go to a temporary
name first and are moved into place, so a reader never sees half a file on a local disk; on S3 a
single PUT is already atomic.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from infialign.pipeline.runtime.config import StorageConfig

__all__ = [
    "filesystem",
    "split",
    "exists",
    "read_bytes",
    "write_bytes",
    "read_json",
    "write_json",
    "read_parquet",
    "write_parquet",
    "write_parquet_stream",
    "table_digest",
    "bytes_digest",
    "put_dir",
    "get_dir",
    "remove",
    "local_path",
]


def split(uri: str) -> tuple[str, str]:
    """(protocol, path) with `file://` and bare paths both meaning the local disk."""
    if "://" not in uri:
        return "file", str(Path(uri).absolute())
    protocol, rest = uri.split("://", 1)
    if protocol == "file":
        return "file", "/" + rest.lstrip("/")
    return protocol, rest


def filesystem(uri: str, storage: StorageConfig | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    protocol, path = split(uri)
    if protocol == "s3":
        options: dict[str, Any] = {"client_kwargs": {}}
        endpoint = (storage.endpoint if storage else None) or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT_URL")
        if endpoint:
            options["client_kwargs"]["endpoint_url"] = endpoint
        region = (storage.region if storage else None) or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            options["client_kwargs"]["region_name"] = region
        # listings must not be cached: markers are polled while another process writes them
        return fsspec.filesystem("s3", use_listings_cache=False, skip_instance_cache=True, **options), path
    if protocol == "file":
        return fsspec.filesystem("file"), path
    raise ValueError(f"unsupported storage scheme {protocol!r} in {uri!r}; use file:// or s3://")


def local_path(uri: str) -> Path | None:
    protocol, path = split(uri)
    return Path(path) if protocol == "file" else None


def exists(uri: str, storage: StorageConfig | None = None) -> bool:
    fs, path = filesystem(uri, storage)
    return bool(fs.exists(path))


def read_bytes(uri: str, storage: StorageConfig | None = None) -> bytes:
    fs, path = filesystem(uri, storage)
    with fs.open(path, "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes, storage: StorageConfig | None = None) -> None:
    target = local_path(uri)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return
    fs, path = filesystem(uri, storage)
    with fs.open(path, "wb") as f:
        f.write(data)


def read_json(uri: str, storage: StorageConfig | None = None) -> Any:
    return json.loads(read_bytes(uri, storage))


def write_json(uri: str, value: Any, storage: StorageConfig | None = None) -> None:
    write_bytes(uri, json.dumps(value, indent=2, sort_keys=True, default=str).encode(), storage)


def bytes_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# Rows per record batch of a table digest: one batch up to this size, as before (same digests for small
# tables); beyond it, windows, so a column past 2 GiB is never combined into one array (offset overflow)
# and the stream is hashed as it is written, never held whole.
_DIGEST_ROWS = 8192


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass


def table_digest(table: pa.Table) -> str:
    """A digest of an in-memory table (inputs that come without a marker): the Arrow IPC stream of its rows,
    in batches of ``_DIGEST_ROWS`` rows, so it depends on the rows and not on how the table is chunked."""
    sink = _HashingFile(_Discard())
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for start in range(0, max(table.num_rows, 1), _DIGEST_ROWS):
            window = table.slice(start, _DIGEST_ROWS)
            # A copy: the IPC bytes of a sliced array carry its parent's buffers, so slices would hash differently.
            writer.write_table(window.take(pa.array(range(window.num_rows), pa.int64())).combine_chunks())
    return sink.digest()


def write_parquet(uri: str, table: pa.Table, storage: StorageConfig | None = None) -> str:
    """Write `table` to `uri`; return the digest of the bytes written (what a reader of the file gets)."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    data = buffer.getvalue()
    write_bytes(uri, data, storage)
    return bytes_digest(data)


class _HashingFile:
    """A write-only file that hashes what passes through it (the digest of the bytes a reader gets)."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self._h = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        self._h.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self.closed = True  # the owner closes the real file

    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


def write_parquet_stream(uri: str, tables: Iterable[pa.Table], schema: pa.Schema, storage: StorageConfig | None = None) -> tuple[str, int]:
    """Write tables one row group at a time, never the whole dataset in memory; returns (digest, rows).

    Locally the file is written beside its target and renamed into place (a reader never sees half a
    file); for object stores it is staged in a local temporary file and uploaded once complete.
    """
    target = local_path(uri)
    staging = Path(tempfile.mkdtemp(prefix="parquet-")) if target is None else target.parent
    staging.mkdir(parents=True, exist_ok=True)
    name = target.name if target is not None else "data.parquet"
    tmp = staging / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    rows = 0
    try:
        with open(tmp, "wb") as raw:
            sink = _HashingFile(raw)
            with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
                for t in tables:
                    writer.write_table(t.cast(schema))
                    rows += t.num_rows
        digest = sink.digest()
        if target is not None:
            os.replace(tmp, target)
        else:
            fs, path = filesystem(uri, storage)
            fs.put_file(str(tmp), path)
    finally:
        tmp.unlink(missing_ok=True)
        if target is None:
            shutil.rmtree(staging, ignore_errors=True)
    return digest, rows


def read_parquet(uri: str, storage: StorageConfig | None = None) -> pa.Table:
    return pq.read_table(io.BytesIO(read_bytes(uri, storage)))


def put_dir(local: Path, uri: str, storage: StorageConfig | None = None) -> None:
    """Upload a directory tree (checkpoints, models)."""
    fs, path = filesystem(uri, storage)
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        rel = file.relative_to(local).as_posix()
        target = posixpath.join(path.rstrip("/"), rel)
        if local_path(uri) is not None:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        fs.put_file(str(file), target)


def get_dir(uri: str, local: Path, storage: StorageConfig | None = None) -> Path:
    """Download a directory tree; returns `local`."""
    fs, path = filesystem(uri, storage)
    local.mkdir(parents=True, exist_ok=True)
    root = path.rstrip("/")
    for remote in fs.find(root):
        rel = posixpath.relpath(remote, root)
        target = local / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(remote, str(target))
    return local


def remove(uri: str, storage: StorageConfig | None = None, recursive: bool = False) -> None:
    fs, path = filesystem(uri, storage)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)
