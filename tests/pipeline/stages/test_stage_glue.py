"""The stage glue maps the spec onto the curation library faithfully."""

from __future__ import annotations

from infialign.pipeline.api import CurateStage, SelectStage
from infialign.pipeline.stages import curate, select
from infialign.pipeline.world import reasoning


def _names(steps) -> list[str]:
    return [s.step_name for s in steps]


def test_curate_steps_follow_the_settings() -> None:
    bench = {"bench": reasoning.benchmark(n=20)}
    full = _names(curate.build_steps(CurateStage(), bench, "regex"))
    assert full == [
        "count_response_tokens", "score_rules", "filter_rules", "dedup_exact", "dedup_near",
        "score_contamination", "filter_contamination", "label_domains_keyword", "cluster_prompts",
    ]
    bare = CurateStage.model_validate({"exactDedup": False, "nearDedup": {"enabled": False}, "decontamination": {"enabled": False}})
    assert _names(curate.build_steps(bare, bench, "regex")) == ["count_response_tokens", "score_rules", "filter_rules", "label_domains_keyword", "cluster_prompts"]
    assert "score_contamination" not in _names(curate.build_steps(CurateStage(), {}, "regex"))  # no benchmark, nothing to check


def test_near_dedup_settings_reach_the_library() -> None:
    stage = CurateStage.model_validate({"nearDedup": {"bands": 16, "rows": 8, "threshold": 0.9}})
    (near,) = [s for s in curate.build_steps(stage, {}, "regex") if s.step_name == "dedup_near"]
    assert (near.cfg.bands, near.cfg.rows, near.cfg.num_perm, near.cfg.threshold) == (16, 8, 128, 0.9)


def test_every_phase_is_a_subset_of_the_full_selection() -> None:
    world = reasoning.generate(400, seed=1, mix=reasoning.PlantMix().scaled(0.0))
    cfg = select.selection_config(SelectStage.model_validate({"targetFraction": 0.5, "verification": {"enabled": False}}))
    full = world.table.slice(0, 200)
    tables = select.phase_tables(full, [{"name": "a", "fraction": 0.25}, {"name": "b", "fraction": 0.5}, {"name": "c", "fraction": 1.0}], cfg)
    ids = {name: set(t.column("id").to_pylist()) for name, t in tables.items()}
    assert ids["c"] == set(full.column("id").to_pylist())
    assert ids["a"] <= ids["c"] and ids["b"] <= ids["c"]
    assert (len(ids["a"]), len(ids["b"])) == (50, 100)


def test_failed_verification_is_eligible_only_when_asked() -> None:
    strict = select.selection_config(SelectStage())
    lenient = select.selection_config(SelectStage.model_validate({"verification": {"dropFailed": False}}))
    assert "fail" not in strict.eligible_verification and "fail" in lenient.eligible_verification
