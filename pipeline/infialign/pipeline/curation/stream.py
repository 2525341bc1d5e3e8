"""Run the steps over a stream of batches, holding on the heap only what global steps need.

:func:`executor.run_steps` holds the whole table in memory. At scale it cannot: a million long CoTs are
more than 3 GB of response text, and one ``string`` column past 2 GiB cannot even be combined. Here:

- **Row-scope segments** run window by window as the batches arrive (on the configured backend, through
  the same ``executor`` code), and their output is appended to a *spill*: an uncompressed Arrow IPC
  file in a local scratch folder, read back memory-mapped (zero-copy; the pages belong to the file,
  so the kernel can drop and re-read them instead of the process holding them).
- **A global step** (dedup, clustering, verification) gets a *projection*: only the columns it declares
  (``reads`` and ``writes``) plus a row number. What it returns becomes a row *selection* (the row
  numbers it kept) and column *overrides* (the values it wrote), applied lazily; the spill is not
  rewritten for a filter. A later step, or the final output, reads the rows batch by batch through the
  selection and the overrides. A text column the step declares ``summarised`` (``steps.StepSpec``; dedup's
  response) is read batch by batch and passed as its two summary columns (``_arrow.summary_columns``).
- The spill is rewritten only where a later row segment (or a global step that reads the response)
  needs the current rows, and then batch by batch.

Row steps are row-independent and global steps see exactly the columns they declare, in the original
row order, so the rows, values, order and funnel equal :func:`executor.run_steps` over the concatenated
input (``tests/unit/curation/test_curation_stream.py`` checks it for every backend).
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from infialign.pipeline.curation import _arrow, executor, stats, steps

__all__ = ["Rows", "run_steps_streaming", "run_windowed", "spill", "with_text_summary"]

_ROW = "__infialign_row"
# Columns whose projection is worth a rewrite of the spill first: taking a selection of a memory-mapped
# column copies it onto the heap, which for the response is the very thing streaming avoids.
_HEAVY = frozenset({"response"})


@dataclass
class Rows:
    """The current rows: a spill file, plus a pending selection of its rows and pending column values.

    ``selection`` holds ascending row numbers of the spill (None = all of them); ``overrides[c]`` holds
    column ``c`` for the selected rows, in order.
    """

    path: Path
    schema: pa.Schema
    spill_rows: int
    selection: np.ndarray | None = None
    overrides: dict[str, pa.Array] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return self.spill_rows if self.selection is None else len(self.selection)

    @property
    def pending(self) -> bool:
        return self.selection is not None or bool(self.overrides)

    def _reader(self, mapped: bool = True) -> pa.ipc.RecordBatchFileReader:
        # Memory-mapped for projections (zero-copy, only the columns read are touched); plain reads for
        # a pass over every batch, whose pages would otherwise stay resident (counted in RSS) for the
        # whole file until the pass ends: measured as the curate peak growing with the pool size.
        source = pa.memory_map(str(self.path), "r") if mapped else pa.OSFile(str(self.path), "rb")
        return pa.ipc.open_file(source)

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """The current rows, spill batch by spill batch, with the selection and overrides applied."""
        names = list(columns) if columns is not None else self.schema.names
        reader = self._reader(mapped=False)
        start = 0  # spill row number of the batch's first row
        taken = 0  # selected rows before the batch
        for b in range(reader.num_record_batches):
            batch = reader.get_batch(b)
            end = start + batch.num_rows
            table = pa.Table.from_batches([batch]).select(names)
            if self.selection is None:
                lo, hi = start, end
                if len(names) < len(self.schema.names):
                    # A plain read gives one buffer for the whole batch, and every column is a view into it:
                    # a few columns kept would keep every batch's CoTs alive (the card columns, 10 MB at
                    # 150k rows, held 0.59 GiB; the 1M run peaked there at 6.2 GiB). Copy them out.
                    table = table.take(pa.array(np.arange(table.num_rows)))
            else:
                lo, hi = taken, int(np.searchsorted(self.selection, end))
                table = table.take(pa.array(self.selection[lo:hi] - start))
            for name, values in self.overrides.items():
                if name in names:
                    table = _arrow.replace_column(table, name, values.slice(lo, hi - lo))
            taken = hi
            start = end
            if table.num_rows:
                yield table

    def table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The current rows as one table (memory-mapped where nothing is pending)."""
        names = list(columns) if columns is not None else self.schema.names
        if not self.pending:
            return self._reader().read_all().select(names)
        parts = list(self.batches(names))
        return pa.concat_tables(parts) if parts else self.schema.empty_table().select(names)


class _Spill:
    """Numbered spill files in one scratch folder; an old file is deleted once nothing reads it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._n = itertools.count()

    def write(self, tables: Iterable[pa.Table], schema: pa.Schema | None = None) -> Rows | None:
        path = self.folder / f"spill-{next(self._n):03d}.arrow"
        writer: pa.ipc.RecordBatchFileWriter | None = None
        rows = 0
        try:
            for t in tables:
                if writer is None:
                    schema = schema or t.schema
                    writer = pa.ipc.new_file(str(path), schema)
                for batch in t.cast(schema).to_batches():
                    writer.write_batch(batch)
                rows += t.num_rows
            if writer is None:
                if schema is None:
                    return None
                writer = pa.ipc.new_file(str(path), schema)
        finally:
            if writer is not None:
                writer.close()
        return Rows(path, schema, rows)

    def rewrite(self, rows: Rows) -> Rows:
        if not rows.pending:
            return rows
        new = self.write(rows.batches(), rows.schema)
        assert new is not None
        rows.path.unlink(missing_ok=True)
        return new


def _windows(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Regroup a stream of tables into tables of ``rows`` rows (the last one shorter), in order.

    Input tables are cut where a window ends (row steps are row-independent, so the cuts change no
    value), so a window never grows to a whole source batch (8,192 rows in curate) and a worker pool
    gets windows of the configured size to spread."""
    buf: list[pa.Table] = []
    n = 0
    yielded = False
    for t in tables:
        while n + t.num_rows >= rows:
            take = rows - n
            buf.append(t.slice(0, take))
            yield pa.concat_tables(buf)
            buf, n, yielded = [], 0, True
            t = t.slice(take)
        if t.num_rows or not (buf or yielded):  # an empty table only when nothing else carries the schema
            buf.append(t)
            n += t.num_rows
    if buf:
        yield pa.concat_tables(buf)


def _row_segment(
    seg: list[steps.Step], tables: Iterable[pa.Table], cfg: executor.ExecutorConfig, funnel: stats.Funnel, pool: executor.RowPool | None
) -> Iterator[pa.Table]:
    windows = _windows(tables, cfg.window_rows)
    if pool is not None:
        parts: Iterable[tuple[pa.Table, list[stats.StepStats]]] = pool.map_windows(seg, windows)
    else:
        parts = (part for window in windows for part in executor.map_segment(seg, window, cfg))
    for out, st_list in parts:
        for st in st_list:
            funnel.add(st)
        yield out


def with_text_summary(table: pa.Table, rows: Rows, name: str) -> pa.Table:
    """``table`` (the current rows of ``rows``) plus the summary columns of text column ``name`` (characters,
    has text; see ``_arrow.text_summary``), computed one spill batch at a time from plain reads: 12 bytes a
    row instead of ~3.5 KB of CoT mapped, or copied by a step's filter."""
    parts = [_arrow.text_summary(t.column(name), name) for t in rows.batches([name])]
    for col, kind in zip(_arrow.summary_columns(name), (pa.int64(), pa.bool_())):
        chunks = [c for p in parts for c in (p[col].chunks if isinstance(p[col], pa.ChunkedArray) else [p[col]])]
        table = table.append_column(col, pa.chunked_array(chunks, kind))
    return table


def _global_step(step: steps.Step, rows: Rows, funnel: stats.Funnel) -> Rows:
    """Run ``step`` on the projection it declares; fold its result into a selection and overrides."""
    summarised = step.summarised
    wanted = (set(step.spec.reads) | set(step.spec.writes)) - set(summarised)
    names = [c for c in rows.schema.names if c in wanted]
    projection = rows.table(names)
    for name in summarised:
        projection = with_text_summary(projection, rows, name)
    projection = projection.append_column(_ROW, pa.array(np.arange(projection.num_rows, dtype=np.int64)))
    out, st = step(projection)
    funnel.add(st)
    kept = _arrow.column(out, _ROW).to_numpy(zero_copy_only=False)
    if len(kept) > 1 and not (np.diff(kept) > 0).all():
        raise steps.StepContractError(f"global step {step.step_name!r} reordered rows; the streaming executor needs the input order kept")
    identity = len(kept) == projection.num_rows
    base = np.arange(rows.spill_rows) if rows.selection is None else rows.selection
    selection = None if identity and rows.selection is None else base[kept]
    overrides = {k: v if identity else v.take(pa.array(kept)) for k, v in rows.overrides.items()}
    for name in step.spec.writes:
        overrides[name] = _arrow.column(out, name)
    return Rows(rows.path, rows.schema, rows.spill_rows, selection, overrides)


def run_steps_streaming(
    tables: Iterable[pa.Table],
    step_list: Sequence[steps.Step],
    cfg: executor.ExecutorConfig | None = None,
    scratch: Path | None = None,
) -> tuple[Rows, stats.Funnel]:
    """Run ``step_list`` over a stream of record tables; returns the output rows (read them with
    ``Rows.batches()``; they live under ``scratch`` until it is removed) and the funnel."""
    cfg = cfg or executor.ExecutorConfig()
    segs = executor.segments(step_list)
    # processes backend: one pool of workers for every row segment of the run (spawned and importing once)
    use_pool = cfg.backend == "processes" and cfg.workers > 1 and any(scope == "row" for scope, _ in segs)
    with executor.RowPool(step_list, cfg.workers, cfg.start_method) if use_pool else contextlib.nullcontext() as pool:
        return _run(tables, segs, cfg, scratch, pool)


def _run(
    tables: Iterable[pa.Table],
    segs: list[tuple[str, list[steps.Step]]],
    cfg: executor.ExecutorConfig,
    scratch: Path | None,
    pool: executor.RowPool | None,
) -> tuple[Rows, stats.Funnel]:
    folder = Path(tempfile.mkdtemp(prefix="curate-spill-", dir=scratch))
    spill = _Spill(folder)
    funnel = stats.Funnel()
    rows: Rows | None = None
    source: Iterable[pa.Table] = tables
    for scope, seg in segs:
        if scope == "row":
            if rows is not None:
                source = rows.batches()
            new = spill.write(_row_segment(seg, source, cfg, funnel, pool), rows.schema if rows is not None else None)
            if rows is not None:
                rows.path.unlink(missing_ok=True)
            if new is None:
                raise ValueError("run_steps_streaming got no input tables; pass at least one (it may be empty)")
            rows = new
            continue
        if rows is None:
            rows = spill.write(source)
            if rows is None:
                raise ValueError("run_steps_streaming got no input tables; pass at least one (it may be empty)")
        for s in seg:
            if rows.pending and _HEAVY & (set(s.spec.reads) - set(s.summarised)):
                rows = spill.rewrite(rows)
            rows = _global_step(s, rows, funnel)
    if rows is None:
        rows = spill.write(source)
        if rows is None:
            raise ValueError("run_steps_streaming got no input tables; pass at least one (it may be empty)")
    return rows, funnel


def spill(tables: Iterable[pa.Table], scratch: Path | None = None, schema: pa.Schema | None = None) -> Rows:
    """Write a stream of tables to a spill file under ``scratch`` and return it, memory-mapped."""
    folder = Path(tempfile.mkdtemp(prefix="spill-", dir=scratch))
    rows = _Spill(folder).write(tables, schema)
    if rows is None:
        raise ValueError("spill got no tables and no schema; pass at least one table (it may be empty)")
    return rows


def run_windowed(step: steps.Step, tables: Iterable[pa.Table], window_rows: int, funnel: stats.Funnel) -> Iterator[pa.Table]:
    """Run a step window by window, counting into ``funnel``. For global steps that are global only
    because they parallelise themselves (verification: a pool of killable processes), whose verdict of
    a row depends on that row alone; the rows and counts equal one call over everything."""
    for window in _windows(tables, window_rows):
        out, st = step(window)
        funnel.add(st)
        yield out
