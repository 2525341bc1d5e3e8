"""What a stage implementation gets: its settings, its inputs, a place for outputs, a heartbeat and tracking.

Stage code calls `ctx.read_records(...)`, `ctx.write_records(...)`, `ctx.beat(...)`; it never builds
URIs, opens MLflow or writes markers itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from infialign.pipeline import records
from infialign.pipeline.runtime import sources, storage
from infialign.pipeline.runtime.config import ModelRef, StageConfig, StageConfigError, output_uri
from infialign.pipeline.runtime.markers import Heartbeat, OutputRecord
from infialign.pipeline.runtime.tracking import StageTracker

__all__ = ["StageContext", "StageInputError"]

log = logging.getLogger(__name__)

S = TypeVar("S", bound=BaseModel)


class StageInputError(ValueError):
    """An input exists but is unusable (wrong schema, empty): permanent, like a config error."""


class StageContext:
    def __init__(
        self,
        config: StageConfig,
        tracker: StageTracker,
        heartbeat: Heartbeat,
        scratch: Path | None = None,
        input_digests: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.tracker = tracker
        self.heartbeat = heartbeat
        self.outputs: list[OutputRecord] = []
        self.metrics: dict[str, float] = {}
        self.results: list[dict[str, Any]] = []  # eval's model × benchmark entries, copied into _SUCCESS.json
        self.warnings: list[str] = []  # copied into _SUCCESS.json; the step's status message
        self.input_digests = dict(input_digests or {})
        self._scratch = scratch

    # ---- settings and identity

    def settings(self, model: type[S], key: str | None = None) -> S:
        """The stage's settings as a typed API model (re-validated: a hand-edited stage.json is caught here)."""
        data = self.config.settings if key is None else self.config.settings.get(key)
        try:
            return model.model_validate(data)
        except ValidationError as e:
            raise StageConfigError(f"{self.config.step}: settings do not match {model.__name__}: {e}") from e

    @property
    def scratch(self) -> Path:
        """A local working directory for this attempt (checkpoint staging, downloaded models)."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"infialign-{self.config.step}-"))
        self._scratch.mkdir(parents=True, exist_ok=True)
        return self._scratch

    def output_uri(self, name: str) -> str:
        return output_uri(self.config.output, name)

    # ---- inputs

    def read_table(self, uri: str) -> pa.Table:
        try:
            return sources.open_dataset(uri, self.config.storage)
        except sources.SourceError as e:
            raise StageInputError(str(e)) from e

    def read_batches(self, uri: str, batch_rows: int = 8192) -> Iterator[pa.Table]:
        """A dataset as tables of at most ``batch_rows`` rows (Parquet row batches, JSON Lines chunks)."""
        try:
            yield from sources.iter_dataset(uri, self.config.storage, batch_rows)
        except sources.SourceError as e:
            raise StageInputError(str(e)) from e

    def read_records(self, name: str) -> pa.Table:
        """An input dataset in the record schema, logged to MLflow as an input."""
        if name not in self.config.inputs:
            raise StageConfigError(f"{self.config.step}: no input named {name!r}; inputs are {sorted(self.config.inputs)}")
        uri = self.config.inputs[name]
        table = self.read_table(uri)
        try:
            table = records.validate_table(table)
        except records.RecordSchemaError as e:
            raise StageInputError(f"{uri}: {e}") from e
        digest = self.input_digests.get(name) or storage.table_digest(table)
        self.tracker.log_dataset(name, uri, digest, "training" if self.config.stage in ("sft", "dpo") else "input", rows=table.num_rows)
        return table

    def read_record_stream(self, name: str, batch_rows: int = 8192) -> Iterator[pa.Table]:
        """:meth:`read_records` batch by batch, for inputs larger than memory (each batch is validated;
        the dataset is logged with its producer's digest when known)."""
        if name not in self.config.inputs:
            raise StageConfigError(f"{self.config.step}: no input named {name!r}; inputs are {sorted(self.config.inputs)}")
        uri = self.config.inputs[name]
        rows = 0
        parts = hashlib.sha256()  # without the producer's digest: a digest of the batches' digests
        for t in self.read_batches(uri, batch_rows):
            try:
                t = records.validate_table(t)
            except records.RecordSchemaError as e:
                raise StageInputError(f"{uri}: {e}") from e
            rows += t.num_rows
            if name not in self.input_digests:
                parts.update(storage.table_digest(t).encode())
            yield t
        digest = self.input_digests.get(name) or "sha256:" + parts.hexdigest()
        self.tracker.log_dataset(name, uri, digest, "training" if self.config.stage in ("sft", "dpo") else "input", rows=rows)

    def model_path(self, which: str = "model") -> Path:
        ref = self.config.model if which == "model" else self.config.teacher
        if ref is None:
            raise StageConfigError(f"{self.config.step}: no {which} is configured")
        try:
            return self.download_model(ref)
        except sources.SourceError as e:
            raise StageInputError(str(e)) from e

    def download_model(self, ref: ModelRef) -> Path:
        """A model as a local directory; the heartbeat reports the bytes while a download makes progress."""

        def report(size: int) -> None:
            self.beat(message=f"downloading {ref.uri}: {size / 1e9:.2f} GB")

        return sources.materialize_model(ref, self.config.storage, on_progress=report)

    # ---- outputs

    def write_records(self, name: str, table: pa.Table) -> OutputRecord:
        """Validate against the record schema, write Parquet, record and log it."""
        table = records.validate_table(table)
        uri = self.output_uri(name)
        digest = storage.write_parquet(uri, table, self.config.storage)
        out = OutputRecord(name=name, uri=uri, digest=digest, rows=table.num_rows)
        self._add_output(out)
        self.tracker.log_dataset(name, uri, digest, "output", rows=table.num_rows)
        return out

    def write_record_stream(self, name: str, tables: Iterable[pa.Table]) -> OutputRecord:
        """:meth:`write_records` for data that does not fit in memory: each table is validated against the
        record schema as it passes (ids are checked unique across all of them) and written as row groups."""
        seen: set[bytes] = set()

        def checked() -> Iterator[pa.Table]:
            for t in tables:
                t = records.validate_table(t)
                ids = t.column("id").to_pylist()
                # 16 bytes of each id's hash: uniqueness across 1M ids in ~100 MB instead of the strings.
                keys = {hashlib.blake2b(i.encode(), digest_size=16).digest() for i in ids}
                if len(keys & seen):
                    raise records.RecordSchemaError(f"output {name!r}: column 'id' must be unique within a dataset")
                seen.update(keys)
                yield t

        uri = self.output_uri(name)
        digest, rows = storage.write_parquet_stream(uri, checked(), records.RECORD_SCHEMA, self.config.storage)
        out = OutputRecord(name=name, uri=uri, digest=digest, rows=rows)
        self._add_output(out)
        self.tracker.log_dataset(name, uri, digest, "output", rows=rows)
        return out

    def write_table(self, name: str, table: pa.Table) -> OutputRecord:
        """Write a table that is not in the record schema (per-sample eval outputs) as `<name>.parquet`."""
        uri = self.output_uri(name)
        digest = storage.write_parquet(uri, table, self.config.storage)
        out = OutputRecord(name=name, uri=uri, digest=digest, rows=table.num_rows)
        self._add_output(out)
        self.tracker.log_dataset(name, uri, digest, "output", rows=table.num_rows)
        return out

    def write_json(self, name: str, value: Any) -> OutputRecord:
        uri = self.config.output.rstrip("/") + f"/{name}.json"
        data = json.dumps(value, indent=2, sort_keys=True, default=str).encode()
        storage.write_bytes(uri, data, self.config.storage)
        out = OutputRecord(name=name, uri=uri, digest=storage.bytes_digest(data))
        self._add_output(out)
        return out

    def write_model(self, local_dir: Path, digest: str) -> OutputRecord:
        """Publish a model directory under `<output>/model/` (skipped when it was trained in place)."""
        uri = self.output_uri("model")
        target = storage.local_path(uri)
        if target is None or target.resolve() != local_dir.resolve():
            storage.put_dir(local_dir, uri, self.config.storage)
        out = OutputRecord(name="model", uri=uri, digest=digest)
        self._add_output(out)
        return out

    def _add_output(self, out: OutputRecord) -> None:
        self.outputs = [o for o in self.outputs if o.name != out.name] + [out]

    # ---- progress and metrics

    def beat(self, step: int | None = None, total: int | None = None, metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        self.heartbeat.beat(step=step, total=total, metrics=metrics, **kwargs)

    def warn(self, message: str) -> None:
        """A condition the stage succeeds with but the user must see: the log, the heartbeat, an MLflow tag,
        and `_SUCCESS.json`'s `warnings`, which become the step's status message."""
        log.warning("%s: %s", self.config.step, message)
        self.warnings.append(message)
        self.tracker.set_tags({"infialign.warnings": " | ".join(self.warnings)[:4000]})
        self.heartbeat.beat(message=f"warning: {message}", force=True)

    def add_metrics(self, metrics: dict[str, float], step: int | None = None, headline: bool = True) -> None:
        """Log metrics to MLflow; headline ones also go into `_SUCCESS.json` and the summary table."""
        self.tracker.log_metrics(metrics, step=step)
        if headline:
            self.metrics.update({k: float(v) for k, v in metrics.items()})
