"""Open dataset and model URIs: `builtin://`, `hf://`, `s3://`, `file://` and local paths.

Datasets come back as Arrow tables of the source's own columns (mapping onto the record schema is
the curate stage's job). Models come back as a local directory in Hugging Face format, so training
and generation load a real checkpoint and the built-in tiny model through the same code path.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from infialign.pipeline.runtime import storage
from infialign.pipeline.runtime.config import ModelRef, StorageConfig

__all__ = ["SourceError", "open_dataset", "iter_dataset", "materialize_model", "tokenizer_file", "cache_dir", "reporting_growth"]

DownloadProgress = Callable[[int], None]  # called with the bytes on disk so far


class SourceError(ValueError):
    """A URI that cannot be opened as asked; the message names the URI and the fix."""


def cache_dir() -> Path:
    root = Path(os.environ.get("INFIALIGN_CACHE") or Path.home() / ".cache" / "infialign")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _read_file(uri: str, data: bytes) -> pa.Table:
    name = uri.lower()
    if name.endswith(".parquet"):
        return pq.read_table(io.BytesIO(data))
    if name.endswith((".jsonl", ".ndjson", ".json")):
        if name.endswith(".json") and data.lstrip()[:1] == b"[":
            return pa.Table.from_pylist(json.loads(data))
        return pajson.read_json(io.BytesIO(data))
    raise SourceError(f"{uri}: unknown file type; use .parquet, .jsonl or .json")


_DATA_SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".json")


def _data_files(uri: str, store: StorageConfig | None) -> tuple[Any, list[str]]:
    """The filesystem and the files a dataset URI names: a glob, a folder's data files, or one file."""
    fs, path = storage.filesystem(uri, store)
    if any(ch in path for ch in "*?["):
        paths = sorted(fs.glob(path))
    elif fs.isdir(path):
        paths = sorted(p for p in fs.find(path) if p.lower().endswith(_DATA_SUFFIXES))
    else:
        paths = [path]
    if not paths:
        raise SourceError(f"{uri}: no files found")
    return fs, paths


def _open_files(uri: str, store: StorageConfig | None) -> pa.Table:
    fs, paths = _data_files(uri, store)
    tables = []
    for p in paths:
        with fs.open(p, "rb") as f:
            tables.append(_read_file(p, f.read()))
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def _open_hf(uri: str) -> pa.Table:
    """`hf://org/name?split=train&name=config`, or a builder with local files: `hf://json?data_files=/x.jsonl`."""
    parts = urlsplit(uri)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    repo = (parts.netloc + parts.path).strip("/")
    split = query.pop("split", "train")
    config_name = query.pop("name", None)
    data_files = query.pop("data_files", None)
    if query:
        raise SourceError(f"{uri}: unknown parameters {sorted(query)}; allowed: split, name, data_files")
    import datasets

    try:
        ds = datasets.load_dataset(repo, name=config_name, split=split, data_files=data_files)
    except Exception as e:  # noqa: BLE001  the hub raises many types; they all mean "cannot open this source"
        raise SourceError(f"{uri}: datasets.load_dataset failed: {type(e).__name__}: {e}") from e
    return ds.data.table if hasattr(ds.data, "table") else ds.with_format("arrow")[:]


def open_dataset(uri: str, store: StorageConfig | None = None) -> pa.Table:
    """Read a whole dataset into memory as Arrow. Raises SourceError with the URI in the message."""
    if uri.startswith("builtin://"):
        from infialign.pipeline.world import reasoning

        try:
            return reasoning.open_builtin(uri)
        except ValueError as e:
            raise SourceError(f"{uri}: {e}") from e
    if uri.startswith("hf://"):
        return _open_hf(uri)
    try:
        return _open_files(uri, store)
    except SourceError:
        raise
    except (OSError, pa.ArrowInvalid) as e:
        raise SourceError(f"{uri}: cannot read: {e}") from e


_JSONL_CHUNK_BYTES = 64 * 2**20


def _parse_jsonl_chunk(data: bytes, schema: pa.Schema | None, path: str) -> pa.Table:
    """One chunk of JSON Lines, typed like the chunks before it.

    Each chunk would otherwise infer its own types: a column that is null or absent in a whole chunk
    would come out as ``null`` or be missing there, and its batches would map differently from the
    rest of the file. The columns seen so far keep their type (null where a chunk lacks them), unless a
    chunk needs a wider one (floats after integers); a new column is inferred and kept from then on; a
    column first seen only as null takes the type of its first values.
    """
    if schema is None:
        return pajson.read_json(io.BytesIO(data))
    known = pa.schema([f for f in schema if not pa.types.is_null(f.type)])
    options = pajson.ParseOptions(explicit_schema=known, unexpected_field_behavior="infer")
    try:
        table = pajson.read_json(io.BytesIO(data), parse_options=options)
    except pa.ArrowInvalid:
        # A wider type here (2.5 after integers): promote this chunk's column, as one read of the file would.
        table = pajson.read_json(io.BytesIO(data))
        try:
            pa.unify_schemas([known, table.schema], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise SourceError(
                f"{path}: a column changes type partway through the file ({e}); "
                "write that column with one JSON type throughout (for example always a string)"
            ) from e
    # The columns of earlier chunks first, in their order, then the new ones.
    names = list(schema.names) + [n for n in table.column_names if n not in schema.names]
    columns = [table.column(n) if n in table.column_names else pa.nulls(table.num_rows, schema.field(n).type) for n in names]
    return pa.Table.from_arrays(columns, names=names)


def _iter_file(fs: object, path: str, batch_rows: int) -> Iterator[pa.Table]:
    """One file as tables of at most ``batch_rows`` rows, reading only what each table needs."""
    name = path.lower()
    if name.endswith(".parquet"):
        with fs.open(path, "rb") as f:  # type: ignore[attr-defined]
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows):
                yield pa.Table.from_batches([batch])
        return
    if name.endswith((".jsonl", ".ndjson")):
        # Whole lines, ~64 MiB at a time: memory follows the chunk, not the file.
        with fs.open(path, "rb") as f:  # type: ignore[attr-defined]
            tail = b""
            schema: pa.Schema | None = None
            while True:
                block = f.read(_JSONL_CHUNK_BYTES)
                data = tail + block
                if block:
                    cut = data.rfind(b"\n") + 1
                    data, tail = data[:cut], data[cut:]
                if data.strip():
                    table = _parse_jsonl_chunk(data, schema, path)
                    schema = table.schema
                    for batch in table.to_batches(max_chunksize=batch_rows):
                        yield pa.Table.from_batches([batch])
                if not block:
                    return
    with fs.open(path, "rb") as f:  # type: ignore[attr-defined]
        table = _read_file(path, f.read())
    for batch in table.to_batches(max_chunksize=batch_rows):
        yield pa.Table.from_batches([batch])


def iter_dataset(uri: str, store: StorageConfig | None = None, batch_rows: int = 8192) -> Iterator[pa.Table]:
    """A dataset as a stream of tables of at most ``batch_rows`` rows, in file and row order.

    Parquet is read by row batches and JSON Lines by line-aligned chunks, so a source far larger than
    memory streams; ``builtin://`` and ``hf://`` sources (and ``.json`` arrays) are read whole, then cut.
    Each table carries only its own columns' types (a JSON Lines chunk is inferred on its own).
    """
    if uri.startswith(("builtin://", "hf://")):
        for batch in open_dataset(uri, store).to_batches(max_chunksize=batch_rows):
            yield pa.Table.from_batches([batch])
        return
    try:
        fs, paths = _data_files(uri, store)
        for p in paths:
            if not p.lower().endswith(_DATA_SUFFIXES):
                raise SourceError(f"{uri}: unknown file type; use .parquet, .jsonl or .json")
            yield from _iter_file(fs, p, batch_rows)
    except SourceError:
        raise
    except (OSError, pa.ArrowInvalid) as e:
        raise SourceError(f"{uri}: cannot read: {e}") from e


def _bytes_under(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a partial file renamed away while we walk
                total += os.stat(os.path.join(root, name)).st_size
    return total


@contextlib.contextmanager
def reporting_growth(path: Path, on_progress: DownloadProgress | None, every: float = 5.0) -> Iterator[None]:
    """While a download fills `path`, call `on_progress(bytes)` each time it has grown since the last look.

    A 60 GB teacher takes longer than a stall timeout to download, so the stage must beat meanwhile; but only
    while bytes arrive: a download that is stuck stops reporting, and the hang detector still sees it.
    """
    if on_progress is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        seen = _bytes_under(path) if path.exists() else 0
        while not done.wait(every):
            size = _bytes_under(path) if path.exists() else 0
            if size != seen:
                seen = size
                on_progress(size)

    watcher = threading.Thread(target=watch, name="download-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _hf_repo_cache(repo: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"


def materialize_model(ref: ModelRef, store: StorageConfig | None = None, on_progress: DownloadProgress | None = None) -> Path:
    """A local directory with the model's config, weights and tokenizer; `on_progress` hears of a download."""
    uri = ref.uri
    if uri.startswith("builtin://"):
        from infialign.pipeline.world import tiny_model

        return Path(tiny_model.resolve_model_uri(uri))
    if uri.startswith("hf://"):
        from huggingface_hub import snapshot_download

        repo = uri.removeprefix("hf://").strip("/")
        with reporting_growth(_hf_repo_cache(repo), on_progress):
            return Path(snapshot_download(repo_id=repo, revision=ref.revision))
    local = storage.local_path(uri)
    if local is not None:
        if not (local / "config.json").exists():
            raise SourceError(f"{uri}: no config.json; expected a Hugging Face model directory")
        return local
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    target = cache_dir() / "models" / f"{posixpath.basename(uri.rstrip('/')) or 'model'}-{key}"
    if not (target / ".complete").exists():
        with reporting_growth(target, on_progress):
            storage.get_dir(uri, target, store)
        if not (target / "config.json").exists():
            raise SourceError(f"{uri}: no config.json after download; expected a Hugging Face model directory")
        (target / ".complete").touch()
    return target


def tokenizer_file(ref: ModelRef, store: StorageConfig | None = None) -> Path:
    """Only the model's `tokenizer.json` (curation counts tokens with the student's tokenizer without its weights)."""
    uri = ref.tokenizer_uri or ref.uri
    if uri.startswith("builtin://"):
        return materialize_model(ModelRef(uri=uri), store) / "tokenizer.json"
    if uri.startswith("hf://"):
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=uri.removeprefix("hf://").strip("/"), filename="tokenizer.json", revision=ref.revision))
    local = storage.local_path(uri)
    if local is not None:
        path = local / "tokenizer.json"
    else:
        key = hashlib.sha256(uri.encode()).hexdigest()[:16]
        path = cache_dir() / "tokenizers" / key / "tokenizer.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            storage.write_bytes(path.as_uri(), storage.read_bytes(uri.rstrip("/") + "/tokenizer.json", store))
    if not path.exists():
        raise SourceError(f"{uri}: no tokenizer.json; set spec.model.tokenizerUri to a model directory that has one")
    return path
