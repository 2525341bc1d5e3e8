"""Executors: local, processes and Ray Data give the same rows in the same order and the same counts."""

from __future__ import annotations

import pyarrow as pa
import pytest
from curation_helpers import make_record, make_table
from infialign.pipeline import records
from infialign.pipeline.curation import decontam, dedup, domains, executor, filters, stats, steps, tokens


def _table(n: int = 120) -> pa.Table:
    recs = []
    for i in range(n):
        prompt = f"A shop sells {i % 40} pens at {i % 7 + 1} dollars each. How much do the pens cost in total?"
        if i % 9 == 0:
            prompt = "Combien coûtent les stylos si le magasin en vend plusieurs à un prix fixe chacun ?"
        resp = "<think>cut" if i % 11 == 0 else f"<think>{i % 40} * {i % 7 + 1}</think>\\boxed{{{(i % 40) * (i % 7 + 1)}}}"
        recs.append(make_record(prompt, id=f"id{i:04d}", domain=None, response=resp, answer=str((i % 40) * (i % 7 + 1))))
    return make_table(*recs)


def _steps() -> list[steps.Step]:
    index = decontam.DecontamIndex.build(
        {"bench": ["A shop sells 3 pens at 4 dollars each. How much do the pens cost in total?"]}, decontam.DecontamConfig()
    )
    return [
        steps.Step(domains.label_domains_keyword, domains.KeywordLabellerConfig()),
        steps.Step(tokens.count_response_tokens, tokens.TokenCountConfig()),
        *filters.rule_steps(),
        steps.Step(dedup.dedup_exact, dedup.ExactDedupConfig()),
        steps.Step(decontam.score_contamination, index),
        steps.Step(decontam.filter_contamination, decontam.DecontamConfig()),
    ]


def _summary(funnel: stats.Funnel):
    return [(s.step, s.total, s.kept, dict(s.dropped)) for s in funnel.steps]


def test_segments_fuse_row_steps_around_global_ones():
    segs = executor.segments(_steps())
    assert [(scope, [s.step_name for s in seg]) for scope, seg in segs] == [
        ("row", ["label_domains_keyword", "count_response_tokens", "score_rules", "filter_rules"]),
        ("global", ["dedup_exact"]),
        ("row", ["score_contamination", "filter_contamination"]),
    ]


def test_processes_equal_local():
    t = _table()
    local, f_local = executor.run_steps(t, _steps())
    procs, f_procs = executor.run_steps(t, _steps(), executor.ExecutorConfig(backend="processes", workers=2, shard_rows=25))
    assert local.column("id").to_pylist() == procs.column("id").to_pylist()
    assert local.equals(procs)
    assert _summary(f_local) == _summary(f_procs)
    reasons = f_local["filter_rules"].dropped
    assert reasons["non_english"] > 0 and reasons["truncated_cot"] > 0
    assert f_local["filter_contamination"].dropped == {"contaminated": 1}
    records.validate_table(local)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
def test_ray_equals_local():
    ray = pytest.importorskip("ray")
    t = _table()
    local, f_local = executor.run_steps(t, _steps())
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        out, f_ray = executor.run_steps(t, _steps(), executor.ExecutorConfig(backend="ray", shard_rows=30))
    finally:
        ray.shutdown()
    assert out.column("id").to_pylist() == local.column("id").to_pylist()
    assert out.equals(local)
    assert _summary(f_ray) == _summary(f_local)


def test_step_contract_is_enforced():
    @steps.step("bad", kind="transform", scope="row", reads=("id",), writes=("domain",))
    def bad(table, cfg):
        return table.slice(1), stats.StepStats.passthrough("bad", table.num_rows - 1)

    with pytest.raises(steps.StepContractError, match="counted total"):
        steps.Step(bad)(make_table(make_record(), make_record()))
    with pytest.raises(steps.MissingColumnError, match="records.to_table"):
        steps.Step(filters.filter_rules, filters.RuleFilterConfig())(pa.table({"id": ["a"]}))
    with pytest.raises(steps.StepContractError, match="must not write"):
        steps.step("f", kind="filter", scope="row", reads=(), writes=("x",))


def test_steps_accept_record_batches():
    batch = make_table(make_record(), make_record(None)).to_batches()[0]
    out, st = steps.Step(filters.score_rules, filters.RuleFilterConfig())(batch)
    assert isinstance(out, pa.RecordBatch) and out.num_rows == 2
    out, st = steps.Step(filters.filter_rules, filters.RuleFilterConfig())(out)
    assert isinstance(out, pa.RecordBatch) and out.num_rows == 1 and st.dropped == {"empty_prompt": 1}
