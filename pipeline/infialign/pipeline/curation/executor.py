"""Run a list of steps over a table: in this process, on local worker processes, or on Ray Data.

Executors differ only in how row-scope steps are mapped over shards (datatrove keeps executors apart from
steps the same way). Consecutive row-scope steps are fused and run shard by shard; a global step
(dedup, clustering, verification, selection) runs here, on the driver, over the gathered table. Shards
keep their order and are concatenated in order, and stats are merged in shard order, so every backend
returns the same rows in the same order with the same counts.

- ``local``: everything in this process (the laptop default; measured faster than Ray on 2 cores,
  curation-anchors.md §5.3).
- ``processes``: row segments on a ``ProcessPoolExecutor`` (``spawn`` by default, safe next to threads).
  The streaming path (``curation.stream``) keeps one :class:`RowPool` for the whole run instead: its
  workers are started (spawn + imports) once, get the step list once, and take windows of rows as Arrow
  IPC while the driver reads the sources and writes the spill.
- ``ray``: ``ray.data.from_arrow(shards).map_batches(fn, batch_format="pyarrow")``. Each output row
  packs one shard's result (Arrow IPC bytes) with its stats (JSON), so stats come back without a side
  channel; the driver sorts by shard index. ``ray.init`` is called only when Ray is not initialised.
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import multiprocessing as mp
import os
import pickle
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from infialign.pipeline.curation import _config, stats, steps
from pydantic import Field

__all__ = ["ExecutorConfig", "RowPool", "available_cpus", "map_segment", "run_steps", "segments"]

_SHARD_COL = "__infialign_shard"


class ExecutorConfig(_config.CurationConfig):
    backend: Literal["local", "processes", "ray"] = Field("local", description="Where row-scope steps run.")
    workers: int = Field(2, ge=1, le=1024, description="Worker processes (processes backend).")
    shard_rows: int = Field(5000, ge=1, description="Rows per shard / Ray block.")
    start_method: Literal["spawn", "forkserver", "fork"] = Field("spawn", description="processes backend start method.")
    ray_address: str | None = Field(None, description="ray.init(address=...) when Ray is not initialised; None = local.")
    window_rows: int = Field(
        5_000,
        ge=1,
        description="Streaming only (curation.stream): rows a row-scope segment takes at once. Bounds the memory of "
        "row steps: decontamination's n-gram evidence needs ~1 GB of temporaries per 20k long CoTs (measured). "
        "Give the ray backend at least shard_rows x workers, so each window fills every worker. With the processes "
        "backend, each window is one task of the run-long RowPool.",
    )


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity mask (``taskset``, a cpuset), capped by a cgroup v2 CPU
    quota when one is set (a pod's CPU limit: ``cpu.max`` = ``"200000 100000"`` is 2 CPUs, rounded down,
    at least 1). ``os.cpu_count()`` counts the node's CPUs, which a pod with a limit cannot use."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:
        quota, period = cgroup.read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def segments(step_list: Sequence[steps.Step]) -> list[tuple[str, list[steps.Step]]]:
    """Group consecutive row-scope steps: ``[("row", [a, b]), ("global", [c]), ...]``."""
    out: list[tuple[str, list[steps.Step]]] = []
    for s in step_list:
        if s.spec.scope == "row" and out and out[-1][0] == "row":
            out[-1][1].append(s)
        else:
            out.append((s.spec.scope, [s]))
    return out


def _run_row_steps(step_list: Sequence[steps.Step], table: pa.Table) -> tuple[pa.Table, list[stats.StepStats]]:
    out = []
    for s in step_list:
        table, st = s(table)
        out.append(st)
    return table, out


def _shards(table: pa.Table, rows: int) -> list[pa.Table]:
    if table.num_rows == 0:
        return [table]
    return [table.slice(i, rows) for i in range(0, table.num_rows, rows)]


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def _ray_batch(batch: pa.Table, step_list: Sequence[steps.Step]) -> pa.Table:
    """Ray ``map_batches`` function: run the steps per shard found in the batch, pack the results."""
    shard_ids, blobs, stat_blobs = [], [], []
    shard_col = batch.column(_SHARD_COL).to_pylist()
    for shard in sorted(set(shard_col)):
        part = batch.filter(pc.equal(batch.column(_SHARD_COL), shard)).drop_columns([_SHARD_COL])
        out, st = _run_row_steps(step_list, part)
        shard_ids.append(shard)
        blobs.append(_to_ipc(out))
        stat_blobs.append(json.dumps([s.to_json() for s in st]))
    return pa.table({"shard": pa.array(shard_ids, pa.int64()), "ipc": pa.array(blobs, pa.binary()), "stats": stat_blobs})


def _map_ray(step_list: Sequence[steps.Step], shards: list[pa.Table], cfg: ExecutorConfig) -> list[tuple[pa.Table, list[stats.StepStats]]]:
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise ImportError("ExecutorConfig.backend='ray' needs `pip install 'ray[data]'`; or use backend='local'") from e
    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False)
    tagged = [s.append_column(_SHARD_COL, pa.array([k] * s.num_rows, pa.int64())) for k, s in enumerate(shards)]
    ds = ray.data.from_arrow(tagged).map_batches(
        _ray_batch, batch_format="pyarrow", batch_size=None, fn_kwargs={"step_list": list(step_list)}
    )
    packed = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    results: dict[int, tuple[pa.Table, list[stats.StepStats]]] = {}
    for t in packed:
        for shard, blob, st in zip(t.column("shard").to_pylist(), t.column("ipc").to_pylist(), t.column("stats").to_pylist()):
            results[shard] = (_from_ipc(blob), [stats.StepStats.from_json(d) for d in json.loads(st)])
    missing = set(range(len(shards))) - set(results)
    if missing:
        raise RuntimeError(f"Ray returned no result for shards {sorted(missing)}")
    return [results[k] for k in range(len(shards))]


def map_segment(step_list: Sequence[steps.Step], table: pa.Table, cfg: ExecutorConfig) -> list[tuple[pa.Table, list[stats.StepStats]]]:
    """Run consecutive row-scope steps over ``table`` on the configured backend; one result per shard, in order."""
    if cfg.backend == "local":
        return [_run_row_steps(step_list, table)]
    shards = _shards(table, cfg.shard_rows)
    if cfg.backend == "processes":
        if len(shards) == 1 or cfg.workers == 1:
            return [_run_row_steps(step_list, s) for s in shards]
        with ProcessPoolExecutor(max_workers=min(cfg.workers, len(shards)), mp_context=mp.get_context(cfg.start_method)) as pool:
            return list(pool.map(_run_row_steps, [step_list] * len(shards), shards))
    return _map_ray(step_list, shards, cfg)


# -- the run-long pool of the streaming path ---------------------------------------------------------

_worker_steps: list[steps.Step] = []


def _pool_init(blob: bytes) -> None:
    global _worker_steps
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker_steps = pickle.loads(blob)


def _pool_task(start: int, stop: int, ipc: bytes) -> tuple[bytes, list[stats.StepStats]]:
    """Run steps ``start:stop`` of the pool's step list over one window of rows (Arrow IPC both ways)."""
    out, st = _run_row_steps(_worker_steps[start:stop], _from_ipc(ipc))
    return _to_ipc(out), st


class RowPool:
    """Worker processes that live for a whole streaming run and run row segments window by window.

    Each worker is spawned once, imports once and unpickles the run's step list once (the initializer),
    so caches that live in a worker (the tokenizer, its segment counts) last the whole run. A window goes
    to a worker as Arrow IPC bytes and comes back the same way with its stats. :meth:`map_windows` keeps
    up to ``in_flight`` windows queued and yields results in input order, so the rows, their order and the
    funnel equal the ``local`` backend's, while the driver keeps reading and writing between results.
    Workers start with the first submitted window, and a segment of a single window never submits one.
    """

    def __init__(self, step_list: Sequence[steps.Step], workers: int, start_method: str = "spawn", in_flight: int | None = None) -> None:
        self.step_list = list(step_list)
        self.workers = workers
        self.in_flight = in_flight or 2 * workers
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=mp.get_context(start_method), initializer=_pool_init, initargs=(pickle.dumps(self.step_list),)
        )

    def __enter__(self) -> RowPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _span(self, seg: Sequence[steps.Step]) -> tuple[int, int]:
        n = len(seg)
        for start in range(len(self.step_list) - n + 1):
            if all(a is b for a, b in zip(self.step_list[start : start + n], seg)):
                return start, start + n
        raise ValueError("RowPool.map_windows: the segment is not a run of the pool's step list")

    def map_windows(self, seg: Sequence[steps.Step], windows: Iterable[pa.Table]) -> Iterator[tuple[pa.Table, list[stats.StepStats]]]:
        """Run ``seg`` (consecutive steps of the pool's step list) over each window; results in input order."""
        start, stop = self._span(seg)
        stream = iter(windows)
        first = next(stream, None)
        if first is None:
            return
        second = next(stream, None)
        if second is None:
            # One window (a small dataset): spawning the workers and their imports costs more than it saves.
            yield _run_row_steps(seg, first)
            return
        pending: collections.deque[Future] = collections.deque()
        for window in itertools.chain((first, second), stream):
            pending.append(self._pool.submit(_pool_task, start, stop, _to_ipc(window)))
            while len(pending) >= self.in_flight:
                yield self._result(pending.popleft())
        while pending:
            yield self._result(pending.popleft())

    @staticmethod
    def _result(future: Future) -> tuple[pa.Table, list[stats.StepStats]]:
        ipc, st = future.result()
        return _from_ipc(ipc), st


def run_steps(table: pa.Table, step_list: Sequence[steps.Step], cfg: ExecutorConfig | None = None) -> tuple[pa.Table, stats.Funnel]:
    """Run ``step_list`` over ``table``; returns the output and the funnel (one entry per step, in order)."""
    cfg = cfg or ExecutorConfig()
    funnel = stats.Funnel()
    for scope, seg in segments(step_list):
        if scope == "global":
            for s in seg:
                table, st = s(table)
                funnel.add(st)
            continue
        parts = map_segment(seg, table, cfg)
        schema = parts[0][0].schema
        table = pa.concat_tables([p[0].cast(schema) for p in parts])
        for _, st_list in parts:
            for st in st_list:
                funnel.add(st)
    return table, funnel
