"""Which prompts a shard owns, and which shards this process runs.

In a cluster every pod of the Indexed Job runs one shard (`INFIALIGN_SHARD_INDEX` / `_COUNT`, set by
the operator) and shard 0 is the leader that merges. On the local executor there is no such
environment: one process runs every shard in turn and is the leader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Shard", "ShardError", "shard_rows", "local_shards", "shard_uri"]

INDEX_ENV = "INFIALIGN_SHARD_INDEX"
COUNT_ENV = "INFIALIGN_SHARD_COUNT"


class ShardError(ValueError):
    """The shard environment or the prompt ids are unusable."""


@dataclass(frozen=True, order=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ShardError(f"shard {self.index} of {self.count}: need 0 ≤ index < count and count ≥ 1")

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Shard:
        """This pod's shard; 0 of 1 when the environment names none."""
        try:
            index = int(env.get(INDEX_ENV) or 0)
            count = int(env.get(COUNT_ENV) or 1)
        except ValueError as e:
            raise ShardError(f"{INDEX_ENV}={env.get(INDEX_ENV)!r} / {COUNT_ENV}={env.get(COUNT_ENV)!r} are not integers") from e
        return cls(index, count)


def shard_rows(ids: Sequence[str], shard: Shard) -> list[int]:
    """Row positions owned by `shard`: round-robin over the ids in sorted order.

    Sorting makes the split independent of row order; round-robin keeps shards within one prompt of
    each other in size. Returned positions are ascending.
    """
    if len(set(ids)) != len(ids):
        raise ShardError("prompt ids must be unique to be sharded")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    return sorted(order[shard.index :: shard.count])


def local_shards(env: Mapping[str, str], configured: int) -> tuple[list[Shard], bool]:
    """(the shards this process runs, whether it is the leader).

    With the operator's environment: only its own shard, and leader iff index 0. Without it (the local
    executor): every one of the `configured` shards in turn, as the leader.
    """
    if env.get(COUNT_ENV):
        shard = Shard.from_env(env)
        return [shard], shard.index == 0
    return [Shard(i, configured) for i in range(configured)], True


def shard_uri(base: str, shard: Shard) -> str:
    return base.rstrip("/") + "/" + shard.name + "/"
