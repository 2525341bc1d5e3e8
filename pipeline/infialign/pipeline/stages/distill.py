"""`distill`: the teacher writes chains of thought for pool records that lack a verified one (vLLM).

seeds §1.3 and §1.6: records with no response, a response that fails verification, or a reference taken
from the response itself go to the teacher (`rejection.work_reason`). Each round the teacher samples
`samples` answers per record still open; samples are verified (`verifiers`) and kept by
`rejection.accept_samples` (by reference, teacher agreement or majority vote). Records with no accepted
sample go to the next round, up to `maxRetries` extra rounds ([SRC] "8 retries max"). Records that never
verify keep their original content, so `select` drops them and the funnel shows them.

Sharding, as in `eval`: the pool's records are split by id (`generation.shard_rows`); one shard per pod
of the Indexed Job, or every shard in turn on the local executor. A shard runs all its rounds alone
(records are independent) and writes its distilled rows and stats under `<output>/shards/<shard>/`;
shard 0 waits for every shard's result and merges them into the distilled pool.

Resumable: each round's generations go to `<output>/generations/<shard>/round-NN/` through
`generation.generate`, which skips finished prompts. A round's prompts are the records still open after
the previous rounds, a pure function of those rounds' generations, so a killed attempt recomputes the
same prompts, finds their parts and generates only what is missing: no duplicates, no lost rows.
A finished shard (its `result.json` fingerprint matches) is not redone and needs no engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from infialign.pipeline import generation, records, rejection, verifiers
from infialign.pipeline.api import DistillStage
from infialign.pipeline.curation import Funnel, StepStats
from infialign.pipeline.curation.tokens import count_tokens
from infialign.pipeline.runtime import storage
from infialign.pipeline.runtime.config import StageConfigError
from infialign.pipeline.runtime.context import StageContext, StageInputError
from infialign.pipeline.stages import _cards, _report, _sharded

__all__ = ["run", "open_work", "round_sampling", "distilled_rows", "undistilled_row", "ShardStats", "funnel_and_metrics"]

log = logging.getLogger(__name__)

WAIT_POLL_SECONDS: Final = float(os.environ.get("INFIALIGN_SHARD_POLL_SECONDS", "10"))
CHUNK_PROMPTS: Final = int(os.environ.get("INFIALIGN_GENERATION_CHUNK_PROMPTS", str(generation.DEFAULT_CHUNK_PROMPTS)))
RESULT_VERSION: Final = "1"
"""Bump when what a shard writes changes, so results of older code are redone."""


# ---------------------------------------------------------------- pure decisions


def open_work(rows: Sequence[Mapping[str, Any]], verdicts: Sequence[str | None], regenerate: bool) -> dict[str, str]:
    """Record id → why the teacher must write it (records with a verified response are absent)."""
    work: dict[str, str] = {}
    for row, verdict in zip(rows, verdicts, strict=True):
        reason = rejection.work_reason(row, verdict, regenerate)
        if reason is not None:
            work[row["id"]] = reason
    return work


def round_sampling(settings: DistillStage, round_index: int) -> generation.Sampling:
    """Round r's sampling: a new seed per round (else a retry would redraw the same samples); log-probs
    only when `keep: best` ranks samples by them."""
    return generation.Sampling(
        n=settings.samples,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_tokens=settings.max_tokens,
        seed=(settings.seed + round_index) % 2**31,
        logprobs=settings.keep == "best",
    )


def provenance_of(teacher_uri: str, settings: DistillStage) -> dict[str, str]:
    """What every distilled row records about how it was made (the round and sample are added per row)."""
    return {
        "teacher": teacher_uri,
        "distill_temperature": str(settings.temperature),
        "distill_top_p": str(settings.top_p),
        "distill_max_tokens": str(settings.max_tokens),
        "distill_samples": str(settings.samples),
        "distill_seed": str(settings.seed),
        "distill_keep": settings.keep,
    }


def distilled_rows(
    row: Mapping[str, Any], acceptance: rejection.Acceptance, reason: str, provenance: Mapping[str, str], base_seed: int
) -> list[dict[str, Any]]:
    """The record rewritten with each kept sample; with `keep: all` extra samples get ids `<id>#d<n>`."""
    out: list[dict[str, Any]] = []
    own = dict(row.get("provenance") or {})
    for n, sample in enumerate(acceptance.kept):
        new = dict(row)
        new["id"] = f"{row['id']}#d{n}" if n else row["id"]
        new["response"] = sample.text
        new["answer"] = acceptance.reference
        new["verification"] = "pass"
        new["response_tokens"] = None  # recounted with the pool's counter
        prov = {**own, **provenance}
        prov.update(
            {
                "distill_reason": reason,
                "distill_round": str(sample.round),
                "distill_sample": str(sample.index),
                "distill_round_seed": str((base_seed + sample.round) % 2**31),
                "reference_source": acceptance.reference_source or "",
            }
        )
        if acceptance.reference_source != "reference":
            # the answer now comes from the teacher's samples, not from this response: select may verify it
            prov["answer_source"] = acceptance.reference_source or ""
        if sample.logprob_per_token is not None:
            prov["distill_logprob_per_token"] = f"{sample.logprob_per_token:.6f}"
        new["provenance"] = prov
        out.append(new)
    return out


def undistilled_row(row: Mapping[str, Any], verdict: str | None, reason: str | None) -> dict[str, Any]:
    """A record the teacher did not (or could not) write: its own content and verdict."""
    kept = dict(row)
    if reason is None:
        if verdict is not None:
            kept["verification"] = verdict  # verified here against a real reference
        return kept
    if reason in ("unverified_reference", "missing_response") or verdict is None:
        kept["verification"] = "unverified" if (row.get("response") or "").strip() else row.get("verification") or "unverified"
    else:
        kept["verification"] = verdict
    kept["provenance"] = {**(row.get("provenance") or {}), "distill_reason": reason, "distill_result": "not_verified"}
    return kept


@dataclass
class ShardStats:
    """What one shard did; JSON-serialisable so the leader merges shards it did not run."""

    records: int = 0
    work: dict[str, int] | None = None  # reason → records
    accepted_by: dict[str, int] | None = None  # reference source → records
    domains: dict[str, list[int]] | None = None  # domain → [to distill, distilled]
    rounds: list[list[int]] | None = None  # round → [attempted, accepted]
    generated_tokens: int = 0
    timed: list[list[float]] | None = None  # round → [tokens, seconds] of the generate call that finished it

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("records", "work", "accepted_by", "domains", "rounds", "generated_tokens", "timed")}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ShardStats:
        return cls(
            **{k: raw.get(k) for k in ("records", "work", "accepted_by", "domains", "rounds", "timed")},
            generated_tokens=int(raw.get("generated_tokens") or 0),
        )


def funnel_and_metrics(shards: Sequence[ShardStats]) -> tuple[Funnel, dict[str, float]]:
    """The funnel (needs-teacher, then one row per round: attempted → accepted) and the yield metrics. Pure."""
    work: Counter[str] = Counter()
    by: Counter[str] = Counter()
    domains: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    rounds: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    total = 0
    for s in shards:
        total += s.records
        work.update(s.work or {})
        by.update(s.accepted_by or {})
        for d, (n, ok) in (s.domains or {}).items():
            domains[d][0] += n
            domains[d][1] += ok
        for r, (attempted, accepted) in enumerate(s.rounds or []):
            rounds[r][0] += attempted
            rounds[r][1] += accepted
    to_distill = sum(work.values())
    distilled = sum(by.values())
    funnel = Funnel().add(
        StepStats.passthrough("needs_teacher", total, {f"work_{k}": v for k, v in sorted(work.items())} | {"already_verified": total - to_distill})
    )
    metrics: dict[str, float] = {"records_to_distill": to_distill, "records_distilled": distilled}
    metrics["verified_yield"] = distilled / to_distill if to_distill else 1.0
    for r in sorted(rounds):
        attempted, accepted = rounds[r]
        funnel.add(StepStats(step=f"teacher_round_{r}", total=attempted, kept=accepted, dropped={"no_verified_sample": attempted - accepted}))
        metrics[f"yield.round{r}"] = accepted / attempted if attempted else 0.0
    for d, (n, ok) in sorted(domains.items()):
        metrics[f"yield.domain.{d}"] = ok / n if n else 0.0
    for k, v in sorted(by.items()):
        metrics[f"accepted_by.{k}"] = v
    return funnel, metrics


# ---------------------------------------------------------------- verification glue


def _verify_existing(rows: list[dict[str, Any]], settings: DistillStage, verifier: verifiers.Verifier) -> list[str | None]:
    """Verdicts of the pool's own responses; only those with a real reference are checked (others cannot pass)."""
    out: list[str | None] = [None] * len(rows)
    if settings.regenerate:
        return out
    todo = [i for i, r in enumerate(rows) if (r.get("response") or "").strip() and rejection.has_real_reference(r)]
    if todo:
        for i, verdict in zip(todo, verifier.verify([verifiers.task_from_record(rows[i]) for i in todo]), strict=True):
            out[i] = verdict.status
    return out


class _RoundVerification:
    """Verifies a round's samples while the teacher still generates: finished prompts are batched and
    handed to the verifier's background thread, so on a multi-core node the checks overlap generation
    instead of following it. Samples of records without a real reference, or cut off, are not checked."""

    BATCH: Final = 64
    """Samples per background batch: big enough to keep every worker busy, small enough to finish soon
    after the last prompt does."""

    def __init__(self, by_id: Mapping[str, dict[str, Any]], verifier: verifiers.Verifier) -> None:
        self.by_id, self.verifier = by_id, verifier
        self.pending: list[tuple[tuple[str, int], verifiers.Task]] = []
        self.submitted: list[tuple[list[tuple[str, int]], Future[list[verifiers.Verdict]]]] = []
        self.seen: set[tuple[str, int]] = set()

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            key = (str(row["id"]), int(row["sample"]))
            self.seen.add(key)
            record = self.by_id[key[0]]
            if row["finish_reason"] not in rejection.UNUSABLE_FINISH and rejection.has_real_reference(record):
                self.pending.append((key, verifiers.task_from_record(record, response=row["text"])))
        if len(self.pending) >= self.BATCH:
            self._submit()

    def _submit(self) -> None:
        if self.pending:
            keys, tasks = zip(*self.pending, strict=True)
            self.submitted.append((list(keys), self.verifier.submit(tasks)))
            self.pending = []

    def statuses(self, generated: pa.Table) -> dict[tuple[str, int], str]:
        """Every checked sample's status; rows read back from earlier parts (a resumed round) are checked now."""
        self.add([r for r in generated.to_pylist() if (str(r["id"]), int(r["sample"])) not in self.seen])
        self._submit()
        out: dict[tuple[str, int], str] = {}
        for keys, future in self.submitted:
            out.update(zip(keys, (v.status for v in future.result()), strict=True))
        return out


def _teacher_samples(generated: pa.Table, statuses: Mapping[tuple[str, int], str], round_index: int) -> dict[str, list[rejection.TeacherSample]]:
    """One round's samples per record, in sample order, with their verdicts (``unknown`` when not checked)."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in generated.to_pylist():
        grouped[row["id"]].append(row)
    return {
        rid: [
            rejection.TeacherSample(
                text=out["text"],
                finish_reason=out["finish_reason"] or "",
                round=round_index,
                index=int(out["sample"]),
                status=statuses.get((rid, int(out["sample"])), "unknown"),
                logprob_per_token=generation.logprob_per_token(out),
            )
            for out in sorted(outs, key=lambda r: r["sample"])
        ]
        for rid, outs in grouped.items()
    }


# ---------------------------------------------------------------- one shard


@dataclass(frozen=True)
class _Teacher:
    uri: str
    path: Path
    identity: str


class _LazyEngine:
    """Starts the teacher's engine on first use only: a process whose shards are all done needs none."""

    def __init__(self, teacher: _Teacher, options: generation.EngineOptions, stack: ExitStack) -> None:
        self.teacher, self.options, self.stack = teacher, options, stack
        self.engine: generation.Engine | None = None

    def get(self) -> generation.Engine:
        if self.engine is None:
            try:
                self.engine = self.stack.enter_context(generation.open_engine(self.teacher.path, self.options, identity=self.teacher.identity))
            except generation.EngineError as e:
                raise StageInputError(f"spec.teacher.uri: cannot serve the teacher {self.teacher.uri!r}: {e}") from e
        return self.engine


def _shard_dir(ctx: StageContext, kind: str, shard: generation.Shard) -> str:
    return f"{ctx.config.output.rstrip('/')}/{kind}/{shard.name}"


def _shard_fingerprint(teacher: _Teacher, settings: DistillStage, rows: Sequence[Mapping[str, Any]]) -> str:
    """What decides a shard's result: the teacher, the settings that shape samples and decisions, its records."""
    h = hashlib.sha256()
    decisive = settings.model_dump(mode="json", exclude={"enabled", "pool_uri", "shards", "tensor_parallel", "resources"})
    h.update(json.dumps({"version": RESULT_VERSION, "teacher": teacher.identity, "settings": decisive}, sort_keys=True).encode())
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, default=str, ensure_ascii=False).encode())
    return "sha256:" + h.hexdigest()


def _read_result(ctx: StageContext, shard: generation.Shard, fingerprint: str) -> tuple[ShardStats, str] | None:
    base = _shard_dir(ctx, "shards", shard)
    uri = f"{base}/result.json"
    try:
        if not storage.exists(uri, ctx.config.storage):
            return None
        raw = storage.read_json(uri, ctx.config.storage)
    except (OSError, ValueError):
        return None
    if raw.get("fingerprint") != fingerprint:
        return None
    return ShardStats.from_json(raw["stats"]), f"{base}/rows.parquet"


def _distill_shard(
    ctx: StageContext, settings: DistillStage, teacher: _Teacher, engine: _LazyEngine, verifier: verifiers.Verifier,
    shard: generation.Shard, rows: list[dict[str, Any]], on_progress: Callable[[str, generation.GenProgress], None],
) -> None:
    """Verify, run the rounds, write `rows.parquet` then `result.json` (the shard's done marker)."""
    fingerprint = _shard_fingerprint(teacher, settings, rows)
    if _read_result(ctx, shard, fingerprint) is not None:
        log.info("distill: %s finished before; skipped", shard.name)
        return
    by_id = {r["id"]: r for r in rows}
    verifier.start()  # the workers warm up while the pool is checked and the engine loads
    verdicts = _verify_existing(rows, settings, verifier)
    work = open_work(rows, verdicts, settings.regenerate)
    log.info("distill %s: %d of %d records need the teacher %s", shard.name, len(work), len(rows), dict(Counter(work.values())))
    samples: dict[str, list[rejection.TeacherSample]] = defaultdict(list)
    accepted: dict[str, rejection.Acceptance] = {}
    rounds: list[list[int]] = []
    tokens = 0
    timed: list[list[float]] = []
    open_ids = sorted(work)
    for r in range(settings.max_retries + 1):
        if not open_ids:
            break
        prompts = pa.table({"id": open_ids, "messages": pa.array([by_id[i]["messages"] for i in open_ids], records.RECORD_SCHEMA.field("messages").type)})
        out = f"{_shard_dir(ctx, 'generations', shard)}/round-{r:02d}"
        checks = _RoundVerification(by_id, verifier)
        generated = generation.generate(
            engine.get(), prompts, round_sampling(settings, r), out=out, storage=ctx.config.storage,
            system_prompt=settings.system_prompt or None, on_progress=lambda p, r=r: on_progress(f"{shard.name} round {r}", p),
            chunk_prompts=CHUNK_PROMPTS, on_finished=checks.add,
        )
        tokens += sum(n or 0 for n in generated.column("completion_tokens").to_pylist())
        done = generation.read_done(out, ctx.config.storage)
        if done is not None:
            timed.append([float(done.generated_tokens), done.seconds])
        for rid, items in _teacher_samples(generated, checks.statuses(generated), r).items():
            samples[rid].extend(items)
        still_open: list[str] = []
        for rid in open_ids:
            decision = rejection.accept_samples(
                by_id[rid], samples[rid], keep=settings.keep, min_votes=settings.min_votes, min_share=settings.min_agreement
            )
            if decision.accepted:
                accepted[rid] = decision
            else:
                still_open.append(rid)
        rounds.append([len(open_ids), len(open_ids) - len(still_open)])
        log.info("distill %s round %d: %d of %d records accepted", shard.name, r, rounds[-1][1], rounds[-1][0])
        open_ids = still_open

    provenance = provenance_of(teacher.uri, settings)
    out_rows: list[dict[str, Any]] = []
    domains: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row, verdict in zip(rows, verdicts, strict=True):
        rid = row["id"]
        if rid in work:
            d = row.get("domain") or "unknown"
            domains[d][0] += 1
            domains[d][1] += rid in accepted
        if rid in accepted:
            out_rows += distilled_rows(row, accepted[rid], work[rid], provenance, settings.seed)
        else:
            out_rows.append(undistilled_row(row, verdict, work.get(rid)))
    stats = ShardStats(
        records=len(rows), work=dict(Counter(work.values())), accepted_by=dict(Counter(a.reference_source or "" for a in accepted.values())),
        domains=dict(domains), rounds=rounds, generated_tokens=tokens, timed=timed,
    )
    base = _shard_dir(ctx, "shards", shard)
    storage.write_parquet(f"{base}/rows.parquet", records.to_table(out_rows), ctx.config.storage)
    storage.write_json(f"{base}/result.json", {"fingerprint": fingerprint, "stats": stats.to_json()}, ctx.config.storage)  # written last


# ---------------------------------------------------------------- the stage


def _teacher(ctx: StageContext) -> _Teacher:
    ref = ctx.config.teacher
    if ref is None:
        raise StageInputError("spec.teacher: distill needs a teacher; set spec.teacher.uri or disable spec.stages.distill")
    try:
        path = ctx.model_path("teacher")
    except (StageInputError, StageConfigError) as e:
        raise StageInputError(f"spec.teacher.uri: cannot load the teacher {ref.uri!r}: {e}") from e
    return _Teacher(ref.uri, path, generation.model_identity(path))


def _wait_for_shards(ctx: StageContext, pending: Callable[[], list[generation.Shard]]) -> None:
    """The leader waits for the other pods; it beats only when a shard finishes, so a hung shard turns the
    heartbeat stale and the hang detector restarts the attempt."""
    last: int | None = None
    while waiting := pending():
        if len(waiting) != last:
            last = len(waiting)
            ctx.beat(metrics={"shards_pending": len(waiting)}, message=f"waiting for {len(waiting)} shards", force=True)
        time.sleep(WAIT_POLL_SECONDS)


def _recount_tokens(table: pa.Table) -> pa.Table:
    lengths = table.column("response_tokens").to_pylist()
    missing = [i for i, n in enumerate(lengths) if n is None and table.column("response")[i].is_valid]
    if not missing:
        return table
    responses = table.column("response").to_pylist()
    for i, n in zip(missing, count_tokens([responses[i] for i in missing]).tolist(), strict=True):
        lengths[i] = int(n)
    return table.set_column(table.schema.get_field_index("response_tokens"), "response_tokens", pa.array(lengths, pa.int32()))


def _partition(rows: list[dict[str, Any]], count: int) -> Iterator[tuple[generation.Shard, list[dict[str, Any]]]]:
    ids = [r["id"] for r in rows]
    for i in range(count):
        shard = generation.Shard(i, count)
        yield shard, [rows[k] for k in generation.shard_rows(ids, shard)]


def run(ctx: StageContext) -> None:
    settings = ctx.settings(DistillStage)
    pool = ctx.read_records("pool")
    if pool.num_rows == 0:
        raise StageInputError("the pool is empty; check the curate funnel (every record was dropped)")
    rows = records.to_records(pool)
    teacher = _teacher(ctx)
    shards, leader = generation.local_shards(os.environ, settings.shards)
    count = shards[0].count
    parts = dict(_partition(rows, count))
    fingerprints = {s: _shard_fingerprint(teacher, settings, parts[s]) for s in parts}
    ctx.tracker.log_params({"distill.teacher": teacher.uri, "distill.sampling": round_sampling(settings, 0).model_dump(mode="json")})

    total = sum(len(parts[s]) for s in shards)
    offset = {"done": 0}

    def on_progress(label: str, p: generation.GenProgress) -> None:
        ctx.beat(step=offset["done"], total=total, metrics={"prompts_done": p.prompts_done, "tokens_per_second": p.tokens_per_second,
                 "generated_tokens": p.generated_tokens}, message=f"{label}: {p.prompts_done}/{p.prompts_total} prompts")

    options = generation.EngineOptions(tensor_parallel=settings.tensor_parallel, max_model_len=settings.max_model_len)
    with ExitStack() as stack:
        engine = _LazyEngine(teacher, options, stack)
        verifier = stack.enter_context(verifiers.Verifier(settings.verification))
        for shard in shards:
            _distill_shard(ctx, settings, teacher, engine, verifier, shard, parts[shard], on_progress)
            offset["done"] += len(parts[shard])
    if not leader:
        return
    _wait_for_shards(ctx, lambda: [s for s in parts if _read_result(ctx, s, fingerprints[s]) is None])
    results = [_read_result(ctx, s, fingerprints[s]) for s in sorted(parts)]
    stats = [r[0] for r in results if r is not None]
    table = pa.concat_tables([storage.read_parquet(r[1], ctx.config.storage) for r in results if r is not None])
    table = _recount_tokens(records.validate_table(table))
    ctx.write_records("pool", table)
    funnel, metrics = funnel_and_metrics(stats)
    metrics["generated_tokens"] = sum(s.generated_tokens for s in stats)
    metrics |= _sharded.generation_rate((int(t), float(sec)) for st in stats for t, sec in (st.timed or []))
    ctx.add_metrics(metrics)
    cards = _cards.log_cards(ctx, {"pool": table})
    _report.write_funnel(ctx, funnel, "distill", rows_in=len(rows), rows_out=table.num_rows, cards=cards)
