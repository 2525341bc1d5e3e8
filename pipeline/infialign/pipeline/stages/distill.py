"""`distill`: the teacher writes chains of thought for pool records that lack a verified one (vLLM).

seeds §1.3 and §1.6: records with no response, a response that fails verification, or a reference taken
from the response itself go to the teacher. Each round the teacher samples `samples` answers per record
still open; samples are verified (`verifiers`) and kept by `rejection.accept_samples`. Records with no
accepted sample go to the next round, up to `maxRetries` rounds ([SRC] "8 retries max"). Records that
never verify keep their original content and verdict, so `select` drops them and the funnel shows them.

Every round's generations are written under `<output>/rounds/` by the generation layer, which skips
finished work, so a killed attempt resumes where it stopped. The distilled pool keeps the record schema;
provenance names the teacher, the sampling parameters, the seed, the round and the reference source.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from infialign.pipeline import generation, records, rejection, verifiers
from infialign.pipeline.api import DistillStage
from infialign.pipeline.curation import Funnel, StepStats, count_tokens
from infialign.pipeline.runtime.context import StageContext, StageInputError
from infialign.pipeline.stages import _report

__all__ = ["run", "open_work"]

log = logging.getLogger(__name__)


def open_work(rows: list[dict[str, Any]], verdicts: list[str | None], regenerate: bool) -> dict[str, str]:
    """Record id → why the teacher must write it."""
    work: dict[str, str] = {}
    for row, verdict in zip(rows, verdicts, strict=True):
        reason = rejection.work_reason(row, verdict, regenerate)
        if reason is not None:
            work[row["id"]] = reason
    return work


def _verify_existing(rows: list[dict[str, Any]], settings: DistillStage) -> list[str | None]:
    """Verdicts of the pool's own responses (only those with a real reference can pass)."""
    todo = [i for i, r in enumerate(rows) if (r.get("response") or "").strip() and rejection.has_real_reference(r)]
    out: list[str | None] = [None] * len(rows)
    if todo:
        tasks = [verifiers.task_from_record(rows[i]) for i in todo]
        for i, verdict in zip(todo, verifiers.verify_all(tasks, settings.verification), strict=True):
            out[i] = verdict.status
    return out


def _samples_of(table: pa.Table, round_index: int) -> dict[str, list[dict[str, Any]]]:
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in table.to_pylist():
        by_id[row["id"]].append(row)
    for items in by_id.values():
        items.sort(key=lambda r: r["sample"])
    return by_id


def _verify_samples(rows: Mapping[str, dict[str, Any]], generated: dict[str, list[dict[str, Any]]], settings: DistillStage, round_index: int) -> dict[str, list[rejection.TeacherSample]]:
    """Teacher samples with verdicts against each record's real reference (none for self-referenced ones)."""
    keys: list[tuple[str, int]] = []
    tasks: list[verifiers.Task] = []
    for rid, outs in generated.items():
        if not rejection.has_real_reference(rows[rid]):
            continue
        for k, out in enumerate(outs):
            if out["finish_reason"] not in rejection.UNUSABLE_FINISH:
                keys.append((rid, k))
                tasks.append(verifiers.task_from_record(rows[rid], response=out["text"]))
    verdicts = dict(zip(keys, (v.status for v in verifiers.verify_all(tasks, settings.verification)), strict=True)) if tasks else {}
    samples: dict[str, list[rejection.TeacherSample]] = {}
    for rid, outs in generated.items():
        samples[rid] = [
            rejection.TeacherSample(
                text=out["text"],
                finish_reason=out["finish_reason"],
                round=round_index,
                index=out["sample"],
                status=verdicts.get((rid, k), "unknown"),
                logprob_per_token=generation.logprob_per_token(out),
            )
            for k, out in enumerate(outs)
        ]
    return samples


def _distilled_rows(
    row: dict[str, Any], acceptance: rejection.Acceptance, reason: str, provenance: Mapping[str, str], keep_all: bool
) -> list[dict[str, Any]]:
    out = []
    for n, sample in enumerate(acceptance.kept):
        new = dict(row)
        new["id"] = f"{row['id']}#d{n}" if keep_all and n else row["id"]
        new["response"] = sample.text
        new["answer"] = acceptance.reference
        new["verification"] = "pass"
        new["response_tokens"] = None  # recounted below with the pool's counter
        new["provenance"] = {
            **(row.get("provenance") or {}),
            **provenance,
            "distill_reason": reason,
            "distill_round": str(sample.round),
            "distill_sample": str(sample.index),
            "reference_source": acceptance.reference_source or "",
            "answer_source": "reference" if acceptance.reference_source == "reference" else acceptance.reference_source or "",
        }
        out.append(new)
    return out


def run(ctx: StageContext) -> None:
    settings = ctx.settings(DistillStage)
    pool = ctx.read_records("pool")
    if pool.num_rows == 0:
        raise StageInputError("the pool is empty; check the curate funnel (every record was dropped)")
    rows = records.to_records(pool)
    by_id = {r["id"]: r for r in rows}
    ctx.beat(step=0, total=settings.max_retries + 2, message=f"verifying {len(rows)} existing responses")
    verdicts = _verify_existing(rows, settings)
    work = open_work(rows, verdicts, settings.regenerate)
    log.info("distill: %d of %d records need the teacher (%s)", len(work), len(rows), dict(Counter(work.values())))
    shard = generation.Shard.from_env()
    mine = [rid for k, rid in enumerate(sorted(work)) if k in set(generation.shard_rows(sorted(work), shard))]

    teacher_dir = ctx.model_path("teacher")
    sampling_base = settings.sampling()
    samples: dict[str, list[rejection.TeacherSample]] = defaultdict(list)
    accepted: dict[str, rejection.Acceptance] = {}
    yield_by_round: list[dict[str, float]] = []
    open_ids = list(mine)
    rounds = settings.max_retries + 1
    with generation.open_engine(teacher_dir, settings.engine_options()) as engine:
        for r in range(rounds):
            if not open_ids:
                break
            prompts = pa.table({"id": open_ids, "messages": [by_id[i]["messages"] for i in open_ids]})
            sampling = sampling_base.model_copy(update={"seed": sampling_base.seed + r})

            def progress(p: generation.GenProgress, r: int = r) -> None:
                ctx.beat(step=r + 1, total=rounds + 1, metrics={"round": r, "prompts_done": p.prompts_done, "tokens_per_s": p.tokens_per_second},
                         message=f"round {r}: {p.prompts_done}/{p.prompts_total} prompts")

            table = generation.generate(
                engine, prompts, sampling, out=f"{ctx.config.output.rstrip('/')}/rounds/{shard.index}-of-{shard.count}/round-{r}",
                storage=ctx.config.storage, system_prompt=settings.system_prompt, on_progress=progress,
            )
            fresh = _verify_samples(by_id, _samples_of(table, r), settings, r)
            for rid, items in fresh.items():
                samples[rid].extend(items)
            still_open = []
            for rid in open_ids:
                decision = rejection.accept_samples(by_id[rid], samples[rid], keep=settings.keep, min_votes=settings.min_votes, min_share=settings.min_agreement)
                if decision.accepted:
                    accepted[rid] = decision
                else:
                    still_open.append(rid)
            yield_by_round.append({"round": r, "attempted": len(open_ids), "accepted": len(open_ids) - len(still_open)})
            log.info("distill round %d: %d/%d records accepted", r, len(open_ids) - len(still_open), len(open_ids))
            open_ids = still_open

    provenance = {
        "teacher": ctx.config.teacher.uri if ctx.config.teacher else "",
        "distill_temperature": str(sampling_base.temperature),
        "distill_top_p": str(sampling_base.top_p),
        "distill_max_tokens": str(sampling_base.max_tokens),
        "distill_seed": str(sampling_base.seed),
    }
    out_rows: list[dict[str, Any]] = []
    for row, verdict in zip(rows, verdicts, strict=True):
        rid = row["id"]
        if rid in accepted:
            out_rows += _distilled_rows(row, accepted[rid], work[rid], provenance, settings.keep == "all")
        else:
            kept = dict(row)
            if verdict is not None and rid not in work:
                kept["verification"] = verdict  # verified here; select does not verify it again
            elif rid in work:
                kept["verification"] = "unverified" if work[rid] in ("unverified_reference", "missing_response") else (verdict or "unknown")
                kept["provenance"] = {**(row.get("provenance") or {}), "distill_reason": work[rid], "distill_result": "not_verified"}
            out_rows.append(kept)
    table = records.to_table(out_rows)
    table = _recount_tokens(table)
    ctx.write_records("pool", table)
    funnel, metrics = _funnel(rows, work, accepted, yield_by_round, by_id)
    ctx.add_metrics(metrics)
    _report.write_funnel(ctx, funnel, "distill", rows_in=len(rows), rows_out=table.num_rows)


def _recount_tokens(table: pa.Table) -> pa.Table:
    lengths = table.column("response_tokens").to_pylist()
    missing = [i for i, n in enumerate(lengths) if n is None]
    if not missing:
        return table
    responses = table.column("response").to_pylist()
    counts = count_tokens([responses[i] for i in missing])
    for i, n in zip(missing, counts.tolist(), strict=True):
        lengths[i] = int(n)
    return table.set_column(table.schema.get_field_index("response_tokens"), "response_tokens", pa.array(lengths, pa.int32()))


def _funnel(
    rows: list[dict[str, Any]],
    work: dict[str, str],
    accepted: dict[str, rejection.Acceptance],
    yield_by_round: list[dict[str, float]],
    by_id: Mapping[str, dict[str, Any]],
) -> tuple[Funnel, dict[str, float]]:
    reasons = Counter(work.values())
    sources = Counter(a.reference_source for a in accepted.values())
    needs = StepStats.passthrough("needs_teacher", len(rows), {f"work_{k}": v for k, v in reasons.items()} | {"already_verified": len(rows) - len(work)})
    by_domain: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for rid in work:
        d = by_id[rid].get("domain") or "unknown"
        by_domain[d][0] += 1
        by_domain[d][1] += rid in accepted
    metrics: dict[str, float] = {"records_to_distill": len(work), "records_distilled": len(accepted)}
    metrics["verified_yield"] = len(accepted) / len(work) if work else 1.0
    for d, (n, ok) in by_domain.items():
        metrics[f"yield.domain.{d}"] = ok / n
    for entry in yield_by_round:
        metrics[f"yield.round{int(entry['round'])}"] = entry["accepted"] / entry["attempted"] if entry["attempted"] else 0.0
    counters = {f"accepted_by_{k}": v for k, v in sources.items() if k} | {"not_verified": len(work) - len(accepted)}
    result = StepStats.passthrough("teacher_rounds", len(rows), counters)
    return Funnel().add(needs).add(result), metrics
