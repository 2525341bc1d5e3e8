"""A step's config digest covers only the benchmark fields the step reads, so eval settings never re-run training."""

from __future__ import annotations

import pytest
from infialign.pipeline.runtime.config import RunIdentity, StorageConfig, TrackingConfig, build_stage_config, config_digest

BENCH = {"name": "reasoning-bench", "uri": "builtin://reasoning-bench?n=20", "preset": "records"}
STEPS = ("curate", "distill", "select", "sft-phase1", "prefs", "dpo", "eval")


def _digests(make_run, benchmarks: list[dict], quick_eval: int = 0) -> dict[str, str]:
    spec = (
        make_run()
        .set("spec.benchmarks", benchmarks)
        .set("spec.teacher", {"uri": "builtin://tiny-teacher"})
        .stage("curate", decontamination={"enabled": True})
        .stage("sft", quickEval=quick_eval)
        .stage("distill", enabled=True).stage("prefs", enabled=True).stage("dpo", enabled=True).stage("eval", enabled=True)
        .spec()
    )
    storage = StorageConfig(root="file:///tmp/artifacts")
    return {
        step: config_digest(build_stage_config(spec, RunIdentity(namespace="ns", name="r"), step, 1, storage, TrackingConfig(enabled=False)))
        for step in STEPS
    }


def test_eval_only_fields_change_only_the_eval_step(make_run) -> None:
    before = _digests(make_run, [BENCH])
    after = _digests(make_run, [{**BENCH, "samples": 8, "maxTokens": 512, "evaluate": False}])
    assert {s for s in STEPS if before[s] != after[s]} == {"eval"}


def test_a_new_benchmark_re_runs_what_decontaminates_and_evaluates(make_run) -> None:
    before = _digests(make_run, [BENCH])
    after = _digests(make_run, [BENCH, {**BENCH, "name": "other", "uri": "builtin://reasoning-bench?n=30"}])
    assert {s for s in STEPS if before[s] != after[s]} == {"curate", "prefs", "eval"}


@pytest.mark.parametrize(("quick_eval", "sft_changes"), [(0, False), (20, True)])
def test_sft_sees_benchmarks_only_for_its_quick_eval(make_run, quick_eval: int, sft_changes: bool) -> None:
    before = _digests(make_run, [BENCH], quick_eval)
    after = _digests(make_run, [{**BENCH, "uri": "builtin://reasoning-bench?n=30"}], quick_eval)
    assert (before["sft-phase1"] != after["sft-phase1"]) is sft_changes
