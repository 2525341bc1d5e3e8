"""Answer verification: does the response's final answer equal the reference? (seeds §1.6, "MathVerify")

Writes ``verification``: ``pass`` / ``fail``; ``error`` when the check crashed or ran out of time;
``unknown`` when there is no reference answer or no response.

The math check is math-verify's ``parse`` + ``verify`` on the response's last ``\\boxed{}`` (after
``</think>``) against the reference, with a string-level fallback (``answers.answers_equal``) when
math-verify cannot parse either side or says no to an equal string.

**Timeouts.** sympy can hang on adversarial expressions. math-verify's own timeout uses ``signal.alarm``,
which works only in a process's main thread, so here it is disabled (``parsing_timeout=None``,
``timeout_seconds=None``) and the check runs in worker processes whose time the parent enforces: a worker
still busy ``timeout_s`` after it received an item is killed, the item becomes ``error``, and a fresh
worker takes its place.

Why not ``concurrent.futures.ProcessPoolExecutor``: it offers no way to kill one worker. Killing one of
its processes (through the private ``_processes``) breaks the whole pool (``BrokenProcessPool``), failing
every in-flight item, and a future's timeout counts time spent queued, not running. The small pool below
keeps one pipe per worker, sends a worker one item at a time, and so knows exactly which item hung.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

import pyarrow as pa
from infialign.pipeline.curation import _arrow, _config, answers, stats, steps
from pydantic import Field

__all__ = ["Checker", "VerifyConfig", "check_math", "check_string", "verify_answers", "verify_pairs"]

Checker = Callable[[str, str], str]
"""``checker(response, reference) -> "pass" | "fail"``; module-level so worker processes can unpickle it."""

_STARTUP_TIMEOUT_S = 120.0


class VerifyConfig(_config.CurationConfig):
    backend: Literal["math_verify", "string"] = Field(
        "math_verify", description="math_verify (sympy equivalence) or string (normalised equality only, no workers)."
    )
    timeout_s: float = Field(5.0, gt=0, le=600, description="Per-item limit. [RECON] math-verify's own default is 5 s.")
    workers: int | None = Field(None, ge=1, le=256, description="Worker processes; None = CPU count (at most 8).")
    start_method: Literal["spawn", "forkserver", "fork"] = Field(
        "spawn", description="spawn is safe next to threads (Arrow, Ray); fork starts faster."
    )
    overwrite: bool = Field(False, description="Re-verify rows that already have pass/fail/error.")


def _final_answer(response: str) -> tuple[str, str | None]:
    tail = answers.after_think(response)
    return tail, answers.last_boxed(tail)


def check_string(response: str, reference: str) -> str:
    """Fallback check: normalised string / numeric equality of the last ``\\boxed{}`` and the reference."""
    _, boxed = _final_answer(response)
    return "pass" if answers.answers_equal(boxed, reference) else "fail"


def check_math(response: str, reference: str) -> str:
    """math-verify equivalence of the final answer and the reference, string fallback (runs in workers)."""
    from math_verify import parse, verify

    tail, boxed = _final_answer(response)
    gold = parse(f"\\boxed{{{reference}}}", parsing_timeout=None)
    pred = parse(f"\\boxed{{{boxed}}}" if boxed is not None else tail, parsing_timeout=None)
    if gold and pred and verify(gold, pred, timeout_seconds=None):
        return "pass"
    return "pass" if answers.answers_equal(boxed, reference) else "fail"


def _worker_main(conn: Connection, checker: Checker) -> None:
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    if checker is check_math:
        import math_verify  # noqa: F401  # warm the import before reporting ready

        check_math("\\boxed{1}", "1")
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        idx, response, reference = msg
        try:
            out = checker(response, reference)
            out = out if out in ("pass", "fail") else "error"
        except Exception:  # noqa: BLE001 - any crash of a check is an "error" verdict for that item
            out = "error"
        conn.send((idx, out))


class _Worker:
    def __init__(self, ctx: Any, checker: Checker) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, checker), daemon=True)
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


def verify_pairs(
    pairs: Sequence[tuple[str | None, str | None]],
    cfg: VerifyConfig,
    checker: Checker | None = None,
) -> tuple[list[str], dict[str, int]]:
    """Verdict per ``(response, reference)`` pair, and counters (``timeouts``, ``crashed_workers``)."""
    out = ["unknown"] * len(pairs)
    todo = [i for i, (resp, ref) in enumerate(pairs) if resp and ref and ref.strip()]
    counters = {"timeouts": 0, "crashed_workers": 0}
    if not todo:
        return out, counters
    if checker is None and cfg.backend == "string":
        for i in todo:
            out[i] = check_string(pairs[i][0] or "", pairs[i][1] or "")
        return out, counters
    checker = checker or check_math
    ctx = mp.get_context(cfg.start_method)
    n_workers = min(cfg.workers or min(os.cpu_count() or 1, 8), len(todo))
    queue = deque(todo)
    workers = [_Worker(ctx, checker) for _ in range(n_workers)]
    try:
        while queue or any(w.task is not None for w in workers):
            now = time.monotonic()
            for w in workers:
                if w.ready and w.task is None and queue:
                    i = queue.popleft()
                    w.conn.send((i, pairs[i][0], pairs[i][1]))
                    w.task, w.deadline = i, time.monotonic() + cfg.timeout_s
            deadlines = [w.deadline for w in workers if w.task is not None]
            deadlines += [w.started + _STARTUP_TIMEOUT_S for w in workers if not w.ready]
            wait_s = max(0.0, min(deadlines) - now) if deadlines else 0.05
            for conn in wait([w.conn for w in workers], timeout=min(wait_s, 1.0)):
                w = next(x for x in workers if x.conn is conn)
                try:
                    kind, verdict = conn.recv()
                except (EOFError, OSError):  # the worker died (segfault, OOM kill)
                    counters["crashed_workers"] += 1
                    if w.task is not None:
                        out[w.task] = "error"
                    w.kill()
                    workers[workers.index(w)] = _Worker(ctx, checker)
                    continue
                if kind == "ready":
                    w.ready = True
                else:
                    out[kind] = verdict
                    w.task = None
            now = time.monotonic()
            for k, w in enumerate(workers):
                if w.task is not None and now >= w.deadline:
                    counters["timeouts"] += 1
                    out[w.task] = "error"
                    w.kill()
                    workers[k] = _Worker(ctx, checker)
                elif not w.ready and now >= w.started + _STARTUP_TIMEOUT_S:
                    raise RuntimeError(
                        f"a verification worker did not start within {_STARTUP_TIMEOUT_S:.0f} s; is math-verify "
                        "installed in this image (`pip install math-verify`)? Or use VerifyConfig(backend='string')"
                    )
    finally:
        for w in workers:
            try:
                if w.proc.is_alive() and w.task is None:
                    w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in workers:
            w.proc.join(1)
            if w.proc.is_alive():
                w.kill()
    return out, counters


@steps.step("verify_answers", kind="transform", scope="global", reads=("response", "answer", "verification"), writes=("verification",))
def verify_answers(table: pa.Table, cfg: VerifyConfig) -> tuple[pa.Table, stats.StepStats]:
    """Write ``verification`` for rows not verified yet (all rows with ``overwrite``).

    Global scope: it runs its own worker processes, so executors call it once on the whole table.
    """
    n = table.num_rows
    current = _arrow.strings(table, "verification")
    responses = _arrow.strings(table, "response")
    refs = _arrow.strings(table, "answer")
    rows = [i for i in range(n) if cfg.overwrite or current[i] in (None, "unknown")]
    verdicts, counters = verify_pairs([(responses[i], refs[i]) for i in rows], cfg)
    for i, v in zip(rows, verdicts):
        current[i] = v
    counts: dict[str, float] = {f"verification_{v}": 0 for v in ("pass", "fail", "error", "unknown")}
    for v in current:
        counts[f"verification_{v}"] = counts.get(f"verification_{v}", 0) + 1
    counts.update(counters)
    out = _arrow.replace_column(table, "verification", pa.array(current, pa.string()))
    return out, stats.StepStats.passthrough("verify_answers", n, counts)
