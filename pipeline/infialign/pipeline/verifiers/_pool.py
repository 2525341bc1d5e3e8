"""A process pool with a hard per-item time limit: a worker still busy ``timeout_s`` after it received
an item is killed, the item is reported as timed out, and a fresh worker takes its place.

Why not ``concurrent.futures.ProcessPoolExecutor``: it offers no way to kill one worker. Killing one of
its processes (through the private ``_processes``) breaks the whole pool (``BrokenProcessPool``), failing
every in-flight item, and a future's timeout counts time spent queued, not running. This pool keeps one
pipe per worker, sends a worker one item at a time, and so knows exactly which item hung.

Why a process at all: sympy (under math-verify) can hang on adversarial expressions, and math-verify's
own timeout uses ``signal.alarm``, which works only in a process's main thread (huggingface/Math-Verify#50),
so the limit must be enforced from outside.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

__all__ = ["PoolFailure", "PoolStartError", "WorkerPool", "run_pool"]

_STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class PoolFailure:
    """An item without a result: ``timeout`` (killed at its deadline), ``crash`` (the worker died) or
    ``exception`` (the function raised; ``detail`` is its type and message)."""

    kind: Literal["timeout", "crash", "exception"]
    detail: str = ""


class PoolStartError(RuntimeError):
    """A worker did not start (a missing dependency in the image, usually)."""


def _worker_main(conn: Connection, fn: Callable[[Any], Any], warmup: Callable[[], None] | None) -> None:
    if warmup is not None:
        warmup()  # import heavy modules before reporting ready, so their load time is not charged to an item
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        idx, item = msg
        try:
            out: Any = fn(item)
        except Exception as e:  # noqa: BLE001 - any crash of a check is reported for that item alone
            out = PoolFailure("exception", f"{type(e).__name__}: {str(e)[:200]}")
        conn.send((idx, out))


class _Worker:
    def __init__(self, ctx: Any, fn: Callable[[Any], Any], warmup: Callable[[], None] | None) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn, warmup), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.started = time.monotonic()
        self.task: int | None = None
        self.deadline = 0.0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class WorkerPool:
    """Worker processes that outlive one batch: :meth:`map` runs a batch with the guarantees of
    :func:`run_pool`, and the workers stay for the next one.

    Why: a stage that verifies while it generates (``distill``) starts the workers once, before its model
    loads, so their warm-up (importing math-verify and sympy) overlaps the engine start, and each batch
    then costs only its checks. Not thread-safe: one caller at a time (``verifiers.Verifier`` serialises).
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        timeout_s: float,
        workers: int,
        start_method: str = "spawn",
        warmup: Callable[[], None] | None = None,
        start_hint: str = "",
    ) -> None:
        self.fn, self.timeout_s, self.warmup, self.start_hint = fn, timeout_s, warmup, start_hint
        self.ctx = mp.get_context(start_method)
        self.workers: list[_Worker] = [self._spawn() for _ in range(max(1, min(workers, os.cpu_count() or 1)))]

    def _spawn(self) -> _Worker:
        return _Worker(self.ctx, self.fn, self.warmup)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(self, items: Sequence[Any]) -> list[Any]:
        """``fn(item)`` for every item, in input order; a :class:`PoolFailure` for an item that timed out,
        crashed its worker or raised."""
        out: list[Any] = [None] * len(items)
        queue = deque(range(len(items)))
        pool, timeout_s = self.workers, self.timeout_s
        while queue or any(w.task is not None for w in pool):
            now = time.monotonic()
            for w in pool:
                if w.ready and w.task is None and queue:
                    i = queue.popleft()
                    w.conn.send((i, items[i]))
                    w.task, w.deadline = i, time.monotonic() + timeout_s
            deadlines = [w.deadline for w in pool if w.task is not None]
            deadlines += [w.started + _STARTUP_TIMEOUT_S for w in pool if not w.ready]
            wait_s = max(0.0, min(deadlines) - now) if deadlines else 0.05
            for conn in wait([w.conn for w in pool], timeout=min(wait_s, 1.0)):
                w = next(x for x in pool if x.conn is conn)
                try:
                    kind, result = conn.recv()
                except (EOFError, OSError):  # the worker died (segfault, OOM kill)
                    if w.task is not None:
                        out[w.task] = PoolFailure("crash", f"worker exited with {w.proc.exitcode}")
                    w.kill()
                    pool[pool.index(w)] = self._spawn()
                    continue
                if kind == "ready":
                    w.ready = True
                else:
                    out[kind] = result
                    w.task = None
            now = time.monotonic()
            for k, w in enumerate(pool):
                if w.task is not None and now >= w.deadline:
                    out[w.task] = PoolFailure("timeout", f"no result within {timeout_s:g} s")
                    w.kill()
                    pool[k] = self._spawn()
                elif not w.ready and now >= w.started + _STARTUP_TIMEOUT_S:
                    raise PoolStartError(f"a verification worker did not start within {_STARTUP_TIMEOUT_S:.0f} s{self.start_hint}")
        return out

    def close(self, *, wait: bool = True) -> None:
        """Stop every worker: idle ones are asked to exit, and any still alive a second later are killed.

        ``wait=False`` leaves the joining to a daemon thread, so the caller does not wait for the
        workers' interpreters to shut down (about half a second with sympy loaded).
        """
        for w in self.workers:
            try:
                if w.proc.is_alive() and w.task is None:
                    w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        workers, self.workers = self.workers, []
        if wait:
            _reap(workers)
        else:
            threading.Thread(target=_reap, args=(workers,), name="verify-reaper", daemon=True).start()


def _reap(workers: Sequence[_Worker]) -> None:
    for w in workers:
        w.proc.join(1)
        if w.proc.is_alive():
            w.kill()


def run_pool(
    items: Sequence[Any],
    fn: Callable[[Any], Any],
    *,
    timeout_s: float,
    workers: int,
    start_method: str = "spawn",
    warmup: Callable[[], None] | None = None,
    start_hint: str = "",
) -> list[Any]:
    """``fn(item)`` for every item in worker processes started for this call, in input order; an item that
    timed out, crashed its worker or raised gets a :class:`PoolFailure` instead of a result. ``fn`` and
    ``warmup`` must be module-level (picklable). ``start_hint`` is appended to the error raised when no
    worker starts."""
    if not items:
        return []
    with WorkerPool(
        fn, timeout_s=timeout_s, workers=min(workers, len(items)), start_method=start_method, warmup=warmup, start_hint=start_hint
    ) as pool:
        return pool.map(items)
