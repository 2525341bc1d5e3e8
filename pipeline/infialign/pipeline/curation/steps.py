"""The step contract: a function over an Arrow table plus a config, returning ``(table, StepStats)``.

A step function is decorated with :func:`step`, which records what it is (house rule 9, NeMo Curator's
``inputs()/outputs()``):

- ``kind``: ``"filter"`` removes rows and changes no values; ``"transform"`` changes values (only in the
  columns it ``writes``) and keeps every row. Never both: a filter that also rewrites text hides edits
  inside drop counts (datatrove's "avoid" list).
- ``scope``: ``"row"`` steps see one shard at a time and can run on any executor; ``"global"`` steps
  (dedup, clustering, selection, and steps that parallelise themselves) need the whole table.
- ``reads`` / ``writes``: the record-schema columns it needs and changes; checked before and after.

:class:`Step` binds a step function to its config; calling it enforces the contract, so a broken step
fails loudly in tests rather than silently in a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import pyarrow as pa
from infialign.pipeline.curation import _arrow
from infialign.pipeline.curation import stats as _stats

__all__ = ["MissingColumnError", "Step", "StepContractError", "StepKind", "StepScope", "StepSpec", "step"]

StepKind = Literal["filter", "transform"]
StepScope = Literal["row", "global"]


class StepContractError(RuntimeError):
    """A step broke its declared contract (a bug in the step, not in the data)."""


class MissingColumnError(ValueError):
    """The input lacks a column a step reads. The message names the step, the column and the fix."""


@dataclass(frozen=True)
class StepSpec:
    """What a step function declares about itself. ``score_keys`` lists the ``scores{}`` keys it writes.

    ``summarised`` (given the step's config) names text columns among ``reads`` that the step reads only
    through ``_arrow.text_chars`` / ``_arrow.text_has_text``; the streaming executor passes their summary
    columns (``_arrow.summary_columns``) instead of the text. None = every read column is read whole.
    """

    name: str
    kind: StepKind
    scope: StepScope
    reads: tuple[str, ...]
    writes: tuple[str, ...] = ()
    score_keys: tuple[str, ...] = ()
    summarised: Callable[[Any], tuple[str, ...]] | None = None


class StepFn(Protocol):
    spec: StepSpec

    def __call__(self, table: pa.Table, cfg: Any, /) -> tuple[pa.Table, _stats.StepStats]: ...


F = TypeVar("F", bound=Callable[..., tuple[pa.Table, _stats.StepStats]])


def step(
    name: str,
    *,
    kind: StepKind,
    scope: StepScope,
    reads: tuple[str, ...],
    writes: tuple[str, ...] = (),
    score_keys: tuple[str, ...] = (),
    summarised: Callable[[Any], tuple[str, ...]] | None = None,
) -> Callable[[F], F]:
    """Declare a step function's contract; the function keeps its plain ``fn(table, cfg)`` signature."""
    if kind == "filter" and writes:
        raise StepContractError(f"step {name!r}: a filter must not write columns (declared writes={writes})")
    if kind == "transform" and not writes:
        raise StepContractError(f"step {name!r}: a transform must declare the columns it writes")

    def decorate(fn: F) -> F:
        fn.spec = StepSpec(name, kind, scope, tuple(reads), tuple(writes), tuple(score_keys), summarised)  # type: ignore[attr-defined]
        return fn

    return decorate


@dataclass(frozen=True)
class Step:
    """A step function bound to its config. Picklable when ``fn`` is module-level and ``cfg`` is picklable."""

    fn: StepFn
    cfg: Any = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not hasattr(self.fn, "spec"):
            raise StepContractError(f"{self.fn!r} is not a step function; decorate it with @steps.step(...)")

    @property
    def spec(self) -> StepSpec:
        return self.fn.spec

    @property
    def step_name(self) -> str:
        return self.name or self.spec.name

    @property
    def summarised(self) -> tuple[str, ...]:
        """The read columns this step, with its config, may get as summaries (see :class:`StepSpec`)."""
        cols = self.spec.summarised(self.cfg) if self.spec.summarised is not None else ()
        bad = [c for c in cols if c not in self.spec.reads or c in self.spec.writes]
        if bad:
            raise StepContractError(f"step {self.step_name!r}: summarised columns {bad} must be read and not written")
        return tuple(cols)

    def __call__(self, data: pa.Table | pa.RecordBatch) -> tuple[pa.Table | pa.RecordBatch, _stats.StepStats]:
        was_batch = isinstance(data, pa.RecordBatch)
        table = pa.Table.from_batches([data]) if was_batch else data
        present = set(table.column_names)
        missing = [
            c for c in self.spec.reads if c not in present and not (c in self.summarised and set(_arrow.summary_columns(c)) <= present)
        ]
        if missing:
            raise MissingColumnError(
                f"step {self.step_name!r} reads columns {missing}, which the input lacks "
                f"(columns present: {table.column_names}); build the input with records.to_table / "
                "curation.ingest.records_from_rows so it has every record-schema column"
            )
        out, st = self.fn(table, self.cfg)
        if self.name and st.step != self.name:
            st = _stats.StepStats(self.name, st.total, st.kept, st.dropped, st.examples, st.counters)
        self._check(table, out, st)
        if was_batch:
            out = out.combine_chunks()
            batches = out.to_batches()
            return (batches[0] if batches else pa.RecordBatch.from_pylist([], schema=out.schema)), st
        return out, st

    def _check(self, before: pa.Table, after: pa.Table, st: _stats.StepStats) -> None:
        name = self.step_name
        if st.total != before.num_rows:
            raise StepContractError(f"step {name!r} counted total={st.total} but saw {before.num_rows} rows")
        if st.kept != after.num_rows:
            raise StepContractError(f"step {name!r} counted kept={st.kept} but returned {after.num_rows} rows")
        if self.spec.kind == "transform" and after.num_rows != before.num_rows:
            raise StepContractError(f"transform step {name!r} changed the row count; only filters drop rows")
        if after.column_names != before.column_names:
            raise StepContractError(f"step {name!r} changed the columns from {before.column_names} to {after.column_names}")
        for f_before, f_after in zip(before.schema, after.schema):
            if f_before.type != f_after.type and f_before.name not in self.spec.writes:
                raise StepContractError(f"step {name!r} changed the type of column {f_before.name!r}")
