"""What the leader of a sharded generation stage (eval, prefs) does while the other pods finish, and the
generation throughput it reports once they have."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol, TypeVar

import pyarrow as pa

from infialign.pipeline import generation
from infialign.pipeline.runtime.context import StageContext

__all__ = ["WAIT_POLL_SECONDS", "ShardWork", "wait_for_shards", "generation_rate", "generation_metrics"]

WAIT_POLL_SECONDS: Final = float(os.environ.get("INFIALIGN_SHARD_POLL_SECONDS", "10"))


class ShardWork(Protocol):
    out: str  # the shard's generation output prefix (its progress file lives there)
    prompts: pa.Table
    fingerprint: str  # what the shard's done marker must match to count


J = TypeVar("J", bound=ShardWork)


def wait_for_shards(ctx: StageContext, jobs: Sequence[J], is_done: Callable[[J], bool]) -> None:
    """Wait for every shard. Beat only when their progress moves, so a hung shard still turns the
    heartbeat stale and the hang detector restarts the attempt."""
    last: tuple[int, int] | None = None
    total = sum(j.prompts.num_rows for j in jobs)
    while True:
        pending = [j for j in jobs if not is_done(j)]
        if not pending:
            return
        done = sum(j.prompts.num_rows for j in jobs if j not in pending)
        for j in pending:
            p = generation.read_progress(j.out, ctx.config.storage)
            done += p.prompts_done if p is not None else 0
        if (done, len(pending)) != last:
            last = (done, len(pending))
            ctx.beat(step=done, total=total, metrics={"prompts_done": done, "shards_pending": len(pending)},
                     message=f"waiting for {len(pending)} shards", force=True)
        time.sleep(WAIT_POLL_SECONDS)


def generation_rate(timed: Iterable[tuple[int, float]]) -> dict[str, float]:
    """``generated_tokens_per_second`` of one engine: Σ tokens / Σ seconds over (tokens, seconds) of the generate
    calls that finished each shard. Shards run side by side on separate engines, so this is the rate of one
    model replica (what `infialign plan` scales by the shard count), not of the whole step. Empty when nothing
    was timed."""
    tokens = seconds = 0.0
    for t, s in timed:
        tokens, seconds = tokens + t, seconds + s
    return {"generated_tokens_per_second": tokens / seconds} if tokens > 0 and seconds > 0 else {}


def generation_metrics(ctx: StageContext, jobs: Sequence[J]) -> dict[str, float]:
    """The rate over every shard's done marker (written by `generation.generate`) that matches its job."""
    dones = [generation.read_done(j.out, ctx.config.storage) for j in jobs]
    return generation_rate(
        (d.generated_tokens, d.seconds) for d, j in zip(dones, jobs, strict=True) if d is not None and d.fingerprint == j.fingerprint
    )
