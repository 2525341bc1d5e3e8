"""`generate`: prompts in, n samples per prompt out, written in resumable chunks as they finish.

Stages decide what to generate; this only generates. The caller gets every sample, including
length-truncated ones (`finish_reason == "length"`), which are unusable: `distill` and `prefs` drop
them and `eval` scores them as wrong, and all of them count them (`ShardDone.truncated`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa

from infialign.pipeline.generation import store
from infialign.pipeline.generation.engine import Engine
from infialign.pipeline.generation.settings import Sampling
from infialign.pipeline.runtime.config import StorageConfig

__all__ = ["GenProgress", "GenerationInputError", "generate", "with_system_prompt", "DEFAULT_CHUNK_PROMPTS"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK_PROMPTS: Final = 256
"""Prompts per part file: a killed shard loses at most this many prompts' work."""
_PROGRESS_EVERY_S: Final = 0.5
KILL_AFTER_PARTS_ENV: Final = "INFIALIGN_TEST_KILL_AFTER_PARTS"
"""Fault injection for the resume tests: SIGKILL this process right after it wrote that many parts, as a
node loss or the OOM killer would — no cleanup, no `_DONE.json`. Unset in every real deployment."""


class GenerationInputError(ValueError):
    """The prompts table is unusable (columns missing, ids not unique)."""


@dataclass(frozen=True)
class GenProgress:
    """Where one `generate` call is; `tokens_per_second` counts only tokens generated in this call."""

    prompts_done: int
    prompts_total: int
    samples_done: int
    generated_tokens: int
    elapsed_seconds: float
    resumed_prompts: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


def with_system_prompt(messages: Sequence[dict[str, Any]], system_prompt: str | None) -> list[dict[str, str]]:
    """The conversation to render: the system prompt first unless the record brings its own."""
    out = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    if system_prompt and not (out and out[0]["role"] == "system"):
        out.insert(0, {"role": "system", "content": system_prompt})
    return out


def _check(prompts: pa.Table) -> list[str]:
    missing = [c for c in ("id", "messages") if c not in prompts.column_names]
    if missing:
        raise GenerationInputError(f"the prompts table lacks {missing}; it needs `id` and `messages` (the record schema's columns)")
    ids = [str(i) for i in prompts.column("id").to_pylist()]
    if len(set(ids)) != len(ids):
        raise GenerationInputError("prompt ids must be unique: a shard resumes by skipping the ids it has finished")
    return ids


def _rows(output: Any, prompt_id: str) -> list[dict[str, Any]]:
    prompt_tokens = len(output.prompt_token_ids or [])
    return [
        {
            "id": prompt_id,
            "sample": int(c.index),
            "text": c.text,
            "finish_reason": c.finish_reason,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(c.token_ids),
            "cumulative_logprob": c.cumulative_logprob,
        }
        for c in sorted(output.outputs, key=lambda c: c.index)
    ]


def _maybe_die(parts_written: int) -> None:
    limit = os.environ.get(KILL_AFTER_PARTS_ENV)
    if limit and parts_written >= int(limit):
        log.warning("%s=%s: killing this process after %d parts (fault injection)", KILL_AFTER_PARTS_ENV, limit, parts_written)
        os.kill(os.getpid(), signal.SIGKILL)


def generate(
    engine: Engine,
    prompts: pa.Table,
    sampling: Sampling,
    *,
    out: str,
    storage: StorageConfig | None,
    system_prompt: str | None = None,
    on_progress: Callable[[GenProgress], None] | None = None,
    chunk_prompts: int = DEFAULT_CHUNK_PROMPTS,
    on_finished: Callable[[list[dict[str, Any]]], None] | None = None,
) -> pa.Table:
    """Generate `sampling.n` samples per prompt into `out` and return all of them (GENERATION_SCHEMA).

    Idempotent: a shard whose `_DONE.json` matches is read back without generating; otherwise the
    prompts already in parts are skipped and only the rest is generated.

    `on_finished` gets the rows of each prompt as soon as its last sample is done (not those read back
    from earlier parts), on the engine's thread: it must hand heavy work off (e.g. `Verifier.submit`)
    so generation does not wait for it.
    """
    ids = _check(prompts)
    fp = store.fingerprint(engine.identity, prompts.select(["id", "messages"]), sampling, system_prompt)
    done = store.read_done(out, storage)
    if done is not None and done.fingerprint == fp:
        log.info("%s: finished before (%d prompts); nothing to generate", out, done.prompts)
        return store.read_parts(out, storage, fp)
    if removed := store.remove_stale(out, storage, fp):
        log.warning("%s: removed %d parts made with other settings", out, removed)
    previous = store.read_parts(out, storage, fp)
    finished = store.done_ids(previous)
    todo = [i for i, pid in enumerate(ids) if pid not in finished]
    total = len(ids)
    if finished:
        log.info("%s: resuming; %d of %d prompts were done", out, len(finished & set(ids)), total)

    messages = prompts.column("messages").to_pylist()
    part = store.next_part_index(out, storage)
    started = time.monotonic()
    state = {"done": total - len(todo), "samples": previous.num_rows, "tokens": 0, "last": 0.0}
    resumed = state["done"]

    def progress(force: bool = False) -> GenProgress:
        now = time.monotonic()
        p = GenProgress(state["done"], total, state["samples"], state["tokens"], now - started, resumed)
        if on_progress is not None and (force or now - state["last"] >= _PROGRESS_EVERY_S):
            state["last"] = now
            on_progress(p)
        return p

    for i in todo:
        conversation = with_system_prompt(messages[i], system_prompt)
        engine.add(str(i), engine.render(conversation), engine.sampling_params(sampling, ids[i]))
    pending: set[str] = {str(i) for i in todo}
    buffer: list[dict[str, Any]] = []
    buffered = 0
    tables = [previous]

    def flush() -> None:
        nonlocal part, buffer, buffered
        if not buffer:
            return
        table = store.rows_to_table(buffer)
        store.write_part(out, part, table, fp, storage)
        tables.append(table)
        _maybe_die(len(tables) - 1)
        part, buffer, buffered = part + 1, [], 0
        p = progress(force=True)
        store.write_progress(
            out,
            store.ShardProgress(
                prompts_done=p.prompts_done, prompts_total=total, samples=p.samples_done, generated_tokens=p.generated_tokens,
                tokens_per_second=p.tokens_per_second, time=dt.datetime.now(dt.UTC),
            ),
            storage,
        )

    try:
        while engine.has_unfinished():
            for output in engine.step():
                if not output.finished:
                    continue
                pending.discard(output.request_id)
                rows = _rows(output, ids[int(output.request_id)])
                if on_finished is not None:
                    on_finished(rows)
                buffer += rows
                buffered += 1
                state["done"] += 1
                state["samples"] += len(rows)
                state["tokens"] += sum(r["completion_tokens"] for r in rows)
                if buffered >= chunk_prompts:
                    flush()
            progress()
        flush()
    except BaseException:
        engine.abort(sorted(pending))  # leave the engine clean; finished parts stay for the next attempt
        raise
    if pending:
        raise RuntimeError(f"{out}: the engine stopped with {len(pending)} prompts unfinished")
    result = pa.concat_tables(tables)
    final = progress(force=True)
    all_truncated = sum(1 for r in result.column("finish_reason").to_pylist() if r == "length")
    store.write_done(
        out,
        store.ShardDone(
            fingerprint=fp, prompts=total, samples=result.num_rows, truncated=all_truncated, generated_tokens=final.generated_tokens,
            seconds=final.elapsed_seconds, tokens_per_second=final.tokens_per_second if final.generated_tokens else None,
            finished_at=dt.datetime.now(dt.UTC),
        ),
        storage,
    )
    return result
