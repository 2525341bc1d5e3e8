"""The stage glue maps the spec onto the curation library faithfully."""

from __future__ import annotations

from infialign.pipeline import curation
import pyarrow as pa
import pytest
from infialign.pipeline.api import Benchmark, CurateStage, DataSource, SelectStage
from infialign.pipeline.runtime.context import StageInputError
from infialign.pipeline.stages import curate, select
from infialign.pipeline.world import reasoning


def _names(steps) -> list[str]:
    return [s.step_name for s in steps]


def test_curate_steps_follow_the_settings() -> None:
    bench = {"bench": reasoning.benchmark(n=20)}
    full = _names(curate.build_steps(CurateStage(), bench, "regex"))
    assert full == [
        "label_domains_keyword", "count_response_tokens", "score_rules", "filter_rules", "dedup_exact", "dedup_near",
        "score_contamination", "filter_contamination", "cluster_prompts",
    ]
    bare = CurateStage.model_validate({"exactDedup": False, "nearDedup": {"enabled": False}, "decontamination": {"enabled": False}})
    assert _names(curate.build_steps(bare, bench, "regex")) == ["label_domains_keyword", "count_response_tokens", "score_rules", "filter_rules", "cluster_prompts"]
    nothing = _names(curate.build_steps(CurateStage(), {}, "regex"))  # no benchmark, nothing to check: said so in the funnel
    assert "score_contamination" not in nothing and "decontamination_skipped" in nothing


def test_decontamination_follows_the_paper_settings_and_the_runs_embedding_model(monkeypatch) -> None:
    built = []
    monkeypatch.setattr(curation.DecontamIndex, "build", classmethod(lambda cls, benchmarks, cfg: built.append(cfg) or cfg))
    bench = {"bench": reasoning.benchmark(n=20)}
    stage = CurateStage.model_validate(
        {"decontamination": {"promptNgram": 15, "embeddingThreshold": 0.9, "wordOverlap": 0.7}, "embeddings": {"model": "/models/bge-small"}}
    )
    curate.build_steps(stage, bench, "regex")
    cfg = built[-1]
    assert (cfg.prompt_ngram, cfg.embedding_threshold, cfg.word_overlap) == (15, 0.9, 0.7)
    assert (cfg.embedding.model_path, cfg.embedding.max_seq_length) == ("/models/bge-small", None)  # not MiniLM cut at 128
    curate.build_steps(CurateStage.model_validate({"decontamination": {"embeddingThreshold": 0.9}, "embeddings": {"model": "hashed"}}), bench, "regex")
    assert built[-1].embedding.backend == "hashing"


_ALGEBRA_COT = (
    "<think>We need to solve 3x + 5 = 20 for x. Subtract 5 from both sides: 3x = 15. Divide both sides by 3: x = 5. "
    "Wait, let me verify: 3 * 5 + 5 = 15 + 5 = 20, which matches the right-hand side of the equation.</think>\n"
)


def test_curate_runs_row_steps_on_a_run_long_pool_unless_one_cpu_or_ray(monkeypatch) -> None:
    monkeypatch.setattr(curation, "available_cpus", lambda: 2)
    cfg = curate.executor_config(CurateStage())
    assert (cfg.backend, cfg.workers) == ("processes", 2)  # streaming uses one RowPool of 2 workers
    assert curate.executor_config(CurateStage.model_validate({"localWorkers": 1})).backend == "local"
    assert curate.executor_config(CurateStage.model_validate({"localWorkers": 3})).workers == 3
    monkeypatch.setattr(curation, "available_cpus", lambda: 1)
    assert curate.executor_config(CurateStage()).backend == "local"
    assert curate.executor_config(CurateStage.model_validate({"ray": {"workers": 2}})).backend == "ray"


def test_math_without_a_box_is_dropped_for_a_source_without_a_domain_column() -> None:
    """NuminaMath layout (problem/solution, no domain column): the labeller names the domain before the
    rules run, so the [SRC] "math must have \\boxed" rule applies; a labelled source keeps its label."""
    rows = pa.table(
        {
            "problem": ["Solve the linear equation 3x + 5 = 20 for the real number x."] * 2
            + ["Find all real solutions of the equation x^2 - 5x + 6 = 0 and compute their sum."],
            "solution": [
                _ALGEBRA_COT + "So the solution of the equation is \\boxed{5}.",
                _ALGEBRA_COT + "So the solution of the equation is x equals five.",
                "<think>The roots are 2 and 3, by factoring (x - 2)(x - 3) = 0.</think>\nTheir sum is \\boxed{5}.",
            ],
        }
    )
    source = DataSource.model_validate({"name": "numina", "uri": "file:///unused.parquet", "preset": "numina"})
    pool = curate.to_records(rows, source)
    assert pool.column("domain").to_pylist() == [None, None, None]
    bare = CurateStage.model_validate(
        {"exactDedup": False, "nearDedup": {"enabled": False}, "decontamination": {"enabled": False}, "embeddings": {"model": "hashed", "clusters": 1}}
    )
    out, funnel = curation.run_steps(pool, curate.build_steps(bare, {}, "regex"))
    (rules,) = [s for s in funnel.steps if s.step == "filter_rules"]
    assert dict(rules.dropped) == {"no_final_answer": 1}
    assert sorted(r["content"][:5] for m in out.column("messages").to_pylist() for r in m) == ["Find ", "Solve"]
    assert all(d is not None for d in out.column("domain").to_pylist())


def test_one_explicit_field_keeps_the_presets_choice_for_the_others() -> None:
    """`fields: {prompt: query}` must not switch the preset off: response, answer and id still map."""
    table = pa.table(
        {
            "query": ["A number tripled and increased by 5 is 20. What is the number?"],
            "response": ["3x + 5 = 20, so 3x = 15 and x = 5.\nThe answer is: 5"],
            "answer": ["5"],
            "id": ["mm-17"],
        }
    )
    source = DataSource.model_validate({"name": "mm", "uri": "file:///unused.jsonl", "fields": {"prompt": "query"}})
    rec = curate.to_records(table, source).to_pylist()[0]
    assert rec["messages"][0]["content"].startswith("A number tripled")
    assert rec["response"].startswith("3x + 5 = 20") and rec["answer"] == "5"
    assert dict(rec["provenance"])["orig_id"] == "mm-17"


def test_metamathqa_answers_come_from_the_answer_is_line() -> None:
    table = pa.table({"query": ["Janet has 16 eggs, eats 3 and bakes with 4. She sells the rest at $2. How much does she make?"],
                      "response": ["16 - 3 - 4 = 9 eggs are left, and 9 * 2 = 18.\nThe answer is: 18"]})
    source = DataSource.model_validate({"name": "metamath", "uri": "file:///unused.jsonl", "fields": {"prompt": "query"}})
    rec = curate.to_records(table, source).to_pylist()[0]
    assert rec["answer"] == "18" and dict(rec["provenance"])["answer_source"] == "response"


def test_an_unrecognised_layout_names_the_manifest_key() -> None:
    source = DataSource.model_validate({"name": "metamath", "uri": "file:///unused.jsonl"})
    with pytest.raises(StageInputError, match=r"spec\.sources\[2\]\.fields\.prompt") as e:
        curate.to_records(pa.table({"query": ["What is 2 + 2?"], "response": ["The answer is: 4"]}), source, 2)
    assert "FieldMapping" not in str(e.value)
    bench = Benchmark.model_validate({"name": "aime", "uri": "file:///unused.jsonl", "fields": {"answer": "nope"}})
    with pytest.raises(StageInputError, match=r"spec\.benchmarks\[0\]\.fields\.answer: 'nope'"):
        curate.to_records(pa.table({"problem": ["What is 2 + 2?"]}), bench, 0)


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


def test_a_phase_fraction_is_its_share_of_the_whole_selection_not_of_the_largest_phase() -> None:
    world = reasoning.generate(400, seed=1, mix=reasoning.PlantMix().scaled(0.0))
    cfg = select.selection_config(SelectStage.model_validate({"targetFraction": 0.5, "verification": {"enabled": False}}))
    full = world.table.slice(0, 200)
    # [0.3, 0.5]: 60 then 100 rows of 200, not 120 then 200 (the old "relative to the largest phase" reading)
    tables = select.phase_tables(full, [{"name": "p1", "fraction": 0.3}, {"name": "p2", "fraction": 0.5}], cfg)
    assert (tables["p1"].num_rows, tables["p2"].num_rows) == (60, 100)
    ids = {name: set(t.column("id").to_pylist()) for name, t in tables.items()}
    assert ids["p1"] <= ids["p2"]
    # [0.3, 1.0] (the shape of the examples): 30 %, then all of it
    tables = select.phase_tables(full, [{"name": "p1", "fraction": 0.3}, {"name": "p2", "fraction": 1.0}], cfg)
    assert (tables["p1"].num_rows, tables["p2"].num_rows) == (60, 200)
    assert select.first_phase_share([{"name": "p1", "fraction": 0.3}, {"name": "p2", "fraction": 0.5}]) == 0.3


def test_the_funnels_curriculum_split_is_the_first_phase_the_stage_writes() -> None:
    world = reasoning.generate(400, seed=1, mix=reasoning.PlantMix().scaled(0.0))
    curriculum = [{"name": "phase1", "fraction": 0.5}, {"name": "phase2", "fraction": 1.0}]
    cfg = select.selection_config(SelectStage.model_validate({"targetFraction": 0.5, "verification": {"enabled": False}}), curriculum)
    chosen = curation.select(world.table, cfg)
    written = select.phase_tables(chosen.phase2, curriculum, cfg)
    (split,) = [s for s in chosen.funnel.steps if s.step == "curriculum_phase1"]
    assert split.kept == written["phase1"].num_rows == round(chosen.phase2.num_rows / 2)


def test_failed_verification_is_eligible_only_when_asked() -> None:
    strict = select.selection_config(SelectStage())
    lenient = select.selection_config(SelectStage.model_validate({"verification": {"dropFailed": False}}))
    assert "fail" not in strict.eligible_verification and "fail" in lenient.eligible_verification


def test_unverified_records_follow_keep_unverified_and_never_count_as_verified() -> None:
    keep = select.eligible_verdicts(SelectStage().verification)
    strict = select.eligible_verdicts(SelectStage.model_validate({"verification": {"keepUnverified": False}}).verification)
    assert keep == ("pass", "unknown", "unverified") and strict == ("pass",)
    assert "timeout" in select.eligible_verdicts(SelectStage.model_validate({"verification": {"dropFailed": False}}).verification)


def test_select_verifies_through_the_verifiers_package() -> None:
    from infialign.pipeline import curation, records, verifiers

    def rec(i: int, response: str, answer: str | None, **prov: str) -> dict:
        q = f"Question number {i}: which option or value is right, considering everything above?"
        return {"id": f"r{i}", "source": "t", "domain": "science", "messages": [{"role": "user", "content": q}],
                "response": response, "answer": answer, "verification": "unknown", "provenance": prov}

    pool = records.to_table([
        rec(0, "<think>It is C.</think> The answer is C", "C"),                        # choice: was a math fail before
        rec(1, "<think>2 + 2 = 5</think> \\boxed{5}", "5", answer_source="response"),  # self-reference
        rec(2, "<think>...</think> \\boxed{4}", "5"),                                  # wrong
    ])
    settings = SelectStage.model_validate({"targetFraction": 1.0, "groupLevels": ["domain"], "verification": {"workers": 1}})
    out, stats = curation.run_steps(pool, [curation.Step(verifiers.verify_records, settings.verification)])
    rows = {r["id"]: r for r in records.to_records(out)}
    assert [rows[k]["verification"] for k in ("r0", "r1", "r2")] == ["pass", "unverified", "fail"]
    assert rows["r0"]["provenance"]["verifier"] == "choice" and rows["r1"]["provenance"]["reference_source"] == "response"
    assert rows["r2"]["provenance"]["verify_reason"] == "boxed 4 ≠ reference 5"
    assert stats["verify_records"].counters["verification_unverified"] == 1
    chosen = curation.select(out, select.selection_config(settings))
    assert set(chosen.phase2.column("id").to_pylist()) == {"r0", "r1"}  # unverified stays eligible for SFT by default...
    assert set(chosen.dpo.column("id").to_pylist()) <= {"r0"}  # ...but only `pass` may enter the challenge pool
