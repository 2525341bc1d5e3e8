"""The I/O edge of `infialign plan`: read what is known locally into an `estimate.Evidence`.

Reads, in the issue's order of trust: the run's own finished steps (`_SUCCESS.json` row counts and metrics,
and a sample of their parquet outputs) when the storage is a local path; a sample of the sources and
benchmarks that are readable without network (`builtin://`, local files); the models' `config.json` from a
local path or the Hugging Face cache (never downloaded). S3 storage and `hf://` datasets are not read: a
dry run must not need credentials or network. Whatever fails to read is left out and said in `notes`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from infialign.pipeline.api import AlignmentRunSpec, Benchmark, DataSource
from infialign.pipeline.estimate import lengths, models
from infialign.pipeline.estimate.plan import Evidence, StepRecord
from infialign.pipeline.runtime import markers, storage
from infialign.pipeline.runtime.config import RunIdentity, artifacts_root, output_uri, step_prefix

__all__ = ["gather", "finished_steps", "reference_run", "without_run_outputs", "SAMPLE_ROWS", "SPEC_FILE"]

SPEC_FILE: Final = "spec.json"  # the local executor keeps each run's spec here, beside status.json, for --calibrate-from
SAMPLE_ROWS: Final = 2000  # records sampled per dataset for lengths: enough for a stable mean and Σl²/Σl

log = logging.getLogger(__name__)


def _local_readable(uri: str) -> bool:
    return uri.startswith("builtin://") or storage.local_path(uri) is not None


def _chars(messages: Any) -> int:
    return sum(len(m.get("content") or "") for m in (messages or []))


def _record_lengths(table: pa.Table, source: lengths.Source, note: str) -> lengths.Empirical:
    """Prompt tokens from characters; response tokens as counted by curate when present, else from characters."""
    table = table.slice(0, SAMPLE_ROWS)
    cols = set(table.column_names)
    if "chosen" in cols:  # a pairs table: the mean of the two responses
        prompts = [_chars(m) for m in table.column("prompt").to_pylist()]
        responses = [(len(c or "") + len(r or "")) // 2 for c, r in zip(table.column("chosen").to_pylist(), table.column("rejected").to_pylist(), strict=True)]
        return lengths.sample_lengths(prompts, responses, source, note)
    prompts = [lengths.chars_to_tokens(_chars(m)) for m in table.column("messages").to_pylist()] if "messages" in cols else [0] * table.num_rows
    texts = table.column("response").to_pylist() if "response" in cols else [None] * table.num_rows
    counted = table.column("response_tokens").to_pylist() if "response_tokens" in cols else [None] * table.num_rows
    responses = [n if n is not None else lengths.chars_to_tokens(len(t or "")) for n, t in zip(counted, texts, strict=True)]
    return lengths.Empirical(tuple(prompts), tuple(responses), source, note)


def _open(item: DataSource | Benchmark) -> pa.Table:
    from infialign.pipeline.runtime import sources

    return sources.open_dataset(item.uri)


def _as_records(table: pa.Table, item: DataSource | Benchmark) -> pa.Table:
    from infialign.pipeline.stages import curate  # the preset mapping the curate stage uses

    if item.preset == "records" and "messages" in table.column_names:
        return table
    return curate.to_records(table.slice(0, SAMPLE_ROWS), item)


def _sources(spec: AlignmentRunSpec, notes: list[str]) -> dict[str, tuple[int, lengths.Empirical]]:
    out: dict[str, tuple[int, lengths.Empirical]] = {}
    for s in spec.sources:
        if not _local_readable(s.uri):
            continue
        try:
            table = _open(s)
            out[s.name] = (table.num_rows, _record_lengths(_as_records(table, s), "source sample", f"sample of {s.name}"))
        except Exception as e:  # noqa: BLE001  a dry run reports what it could not read and goes on
            notes.append(f"source {s.name} ({s.uri}) not sampled: {str(e)[:160]}")
    return out


def _benchmarks(spec: AlignmentRunSpec, notes: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for b in spec.benchmarks:
        if _local_readable(b.uri):
            try:
                out[b.name] = _open(b).num_rows
            except Exception as e:  # noqa: BLE001
                notes.append(f"benchmark {b.name} ({b.uri}) not read: {str(e)[:160]}")
    return out


def _config_json(uri: str, revision: str | None) -> dict[str, Any] | None:
    """A model's config.json from a local directory or the Hugging Face cache; None otherwise (no download)."""
    if uri.startswith("hf://"):
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(uri.removeprefix("hf://").split("?", 1)[0].strip("/"), "config.json", revision=revision)
        except Exception:  # noqa: BLE001
            return None
        path = Path(found) if isinstance(found, str) else None
    else:
        local = storage.local_path(uri) if not uri.startswith("builtin://") else None
        path = local / "config.json" if local is not None else None
    if path is None or not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def _shape(uri: str | None, revision: str | None, notes: list[str]) -> models.ModelShape | None:
    if uri is None:
        return None
    try:
        config = _config_json(uri, revision)
        return models.shape_from_config(config, uri) if config is not None else None
    except (OSError, ValueError) as e:
        notes.append(f"{uri}: config.json not usable: {str(e)[:160]}")
        return None


def finished_steps(spec: AlignmentRunSpec, run: RunIdentity, workdir: Path | None) -> dict[str, StepRecord]:
    """The run's finished steps (row counts, metrics, durations) from their `_SUCCESS.json`; the notes are dropped."""
    return _steps(spec, run, workdir, [], datasets=False)[0]


def _steps(
    spec: AlignmentRunSpec, run: RunIdentity, workdir: Path | None, notes: list[str], datasets: bool = True
) -> tuple[dict[str, StepRecord], dict[str, lengths.Empirical]]:
    from infialign.pipeline import graph

    if spec.storage.local is None:
        notes.append("artifacts are on S3: finished steps are not read by a dry run")
        return {}, {}
    store = artifacts_root(spec, workdir)
    steps: dict[str, StepRecord] = {}
    samples: dict[str, lengths.Empirical] = {}
    for step in graph.enabled_steps(spec):
        prefix = step_prefix(store.root, run, step.name)
        marker = markers.read_success(prefix, store)
        if marker is None:
            continue
        steps[step.name] = StepRecord(
            rows={o.name: o.rows for o in marker.outputs if o.rows is not None},
            metrics=dict(marker.metrics),
            duration_seconds=marker.duration_seconds,
        )
        for out in marker.outputs if datasets else ():
            if out.name in ("pool", "dpo-prompts", "pairs") or out.name.startswith("sft-"):
                try:
                    table = storage.read_parquet(output_uri(prefix, out.name), store)
                    samples[out.name] = _record_lengths(table, "run outputs", f"sample of {step.name}'s {out.name}")
                except Exception as e:  # noqa: BLE001
                    notes.append(f"{step.name}: {out.name} not read: {str(e)[:160]}")
    return steps, samples


def gather(spec: AlignmentRunSpec, run: RunIdentity, workdir: Path | None = None) -> Evidence:
    """Everything readable here about this run; never raises for an unreadable input."""
    notes: list[str] = []
    steps, datasets = _steps(spec, run, workdir, notes)
    return Evidence(
        model=_shape(spec.model.uri, spec.model.revision, notes),
        teacher=_shape(spec.teacher.uri, spec.teacher.revision, notes) if spec.teacher else None,
        steps=steps,
        datasets=datasets,
        sources=_sources(spec, notes),
        benchmarks=_benchmarks(spec, notes),
        notes=tuple(notes),
    )


def without_run_outputs(found: Evidence) -> Evidence:
    """Sources, benchmarks and model shapes only: two runs estimated from the same kind of evidence, so that the
    ratio of their work reflects their specs (calibration), not that one of them has finished."""
    return Evidence(model=found.model, teacher=found.teacher, sources=found.sources, benchmarks=found.benchmarks, notes=found.notes)


def reference_run(workdir: Path, manifest: Path | None = None) -> tuple[AlignmentRunSpec, RunIdentity]:
    """The spec and identity of the finished run in `workdir` (`infialign run --workdir`), for `--calibrate-from`.

    The local executor keeps each run's spec in `runs/<namespace>/<name>/spec.json`; a run from before that
    needs its manifest (`--calibrate-manifest`). Raises ValueError naming the flag and the fix."""
    from infialign.pipeline import validation

    if manifest is not None:
        result = validation.load_manifest(manifest)
        if not result.ok or len(result.runs) != 1:
            raise ValueError(f"--calibrate-manifest {manifest}: needs exactly one valid AlignmentRun; run `infialign validate {manifest}`")
        run = result.runs[0]
        return run.spec, RunIdentity(namespace=run.metadata.namespace or "default", name=run.metadata.name)
    found = sorted(workdir.glob(f"runs/*/*/{SPEC_FILE}"))
    if len(found) != 1:
        where = f"{workdir}/runs/<namespace>/<name>/{SPEC_FILE}"
        what = f"{len(found)} runs ({', '.join(p.parent.name for p in found)})" if found else "no run"
        raise ValueError(
            f"--calibrate-from {workdir}: {what} found at {where}; pass --calibrate-manifest FILE with the manifest of the run to calibrate on"
        )
    path = found[0]
    spec = AlignmentRunSpec.model_validate_json(path.read_text(encoding="utf-8"))
    return spec, RunIdentity(namespace=path.parent.parent.name, name=path.parent.name)
