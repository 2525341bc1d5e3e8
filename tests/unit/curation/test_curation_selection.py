"""Quotas, SFT selection, curriculum invariants and the DPO challenge pool; all deterministic."""

from __future__ import annotations

import random

import pytest
from curation_helpers import make_record, make_table
from infialign.pipeline.curation import _arrow, selection


@pytest.mark.parametrize(
    ("sizes", "budget", "expected"),
    [
        ({"a": 1000, "b": 100, "c": 10}, 300, {"a": 190, "b": 100, "c": 10}),
        ({"a": 10, "b": 10}, 7, {"a": 4, "b": 3}),
        ({"a": 5, "b": 5}, 100, {"a": 5, "b": 5}),
        ({"a": 50, "b": 30, "c": 2}, 40, {"a": 21, "b": 17, "c": 2}),  # 13+13+2, then 12 split 37:17
        ({"a": 3}, 0, {"a": 0}),
    ],
)
def test_allocate_quotas(sizes, budget, expected):
    got = selection.allocate_quotas(sizes, budget)
    assert got == expected
    assert sum(got.values()) == min(budget, sum(sizes.values()))
    assert all(got[k] <= sizes[k] for k in sizes)


def _pool(seed: int = 0, n: int = 200):
    rng = random.Random(seed)
    recs = []
    for i in range(n):
        dom = ["algebra", "geometry", "number_theory"][i % 3] if i % 10 else "counting"
        recs.append(
            make_record(
                f"Problem {i} about {dom}: compute value {i * 7 + 3}.",
                id=f"p{i:04d}",
                domain=dom,
                cluster=rng.randrange(4),
                response_tokens=rng.randrange(100, 5000),
                verification=rng.choice(["pass", "pass", "pass", "unknown", "fail"]),
                response="<think>...</think>\\boxed{1}",
            )
        )
    return make_table(*recs)


def test_select_sft_balances_domains_and_prefers_long_responses():
    pool = _pool()
    cfg = selection.SelectionConfig(target_size=60)
    out, st = selection.select_sft(pool, cfg)
    assert out.num_rows == 60 and st.dropped["failed_verification"] > 0
    assert set(out.column("verification").to_pylist()) <= {"pass", "unknown"}
    doms = out.column("domain").to_pylist()
    counts = {d: doms.count(d) for d in set(doms)}
    assert counts["counting"] == min(
        15,
        sum(
            1 for d, v in zip(pool.column("domain").to_pylist(), pool.column("verification").to_pylist()) if d == "counting" and v != "fail"
        ),
    )
    assert max(counts.values()) - min(counts.values()) <= 60  # balanced split, leftovers proportional
    # Within a (domain, cluster) group the chosen rows are the longest eligible ones.
    chosen = set(out.column("id").to_pylist())
    rows = [r for r in pool.to_pylist() if r["verification"] != "fail"]
    for key in {(r["domain"], r["cluster"]) for r in rows}:
        group = sorted((r for r in rows if (r["domain"], r["cluster"]) == key), key=lambda r: (-r["response_tokens"], r["id"]))
        picked = [r["id"] in chosen for r in group]
        assert picked == sorted(picked, reverse=True), key  # a prefix of the longest-first order


def test_selection_is_deterministic_and_order_independent():
    pool = _pool()
    cfg = selection.SelectionConfig(target_fraction=0.5, seed=3)
    a = selection.select(pool, cfg)
    b = selection.select(pool.take(list(range(pool.num_rows - 1, -1, -1))), cfg)
    for x, y in ((a.phase1, b.phase1), (a.phase2, b.phase2), (a.dpo, b.dpo)):
        assert sorted(x.column("id").to_pylist()) == sorted(y.column("id").to_pylist())


def test_curriculum_phase1_is_a_subset_with_70_percent_easy():
    pool = _pool(n=300)
    cfg = selection.SelectionConfig(target_size=200, phase1_fraction=0.5, phase1_easy_share=0.7)
    sel = selection.select(pool, cfg)
    p1 = set(sel.phase1.column("id").to_pylist())
    p2 = sel.phase2.column("id").to_pylist()
    assert p1 <= set(p2) and len(p2) == 200 and len(p1) == 100
    difficulty = dict(zip(p2, _arrow.get_score(sel.phase2, "difficulty")))
    easiest = sorted(p2, key=lambda i: (difficulty[i], i))[:70]
    assert set(easiest) <= p1  # the 70 % easy part: the easiest rows of the selection
    rest = p1 - set(easiest)
    assert len(rest) == 30 and not rest & set(easiest)
    again = selection.select(pool, cfg)
    assert sel.phase1.column("id").to_pylist() == again.phase1.column("id").to_pylist()
    other = selection.select(pool, cfg.model_copy(update={"seed": 1}))
    assert set(other.phase1.column("id").to_pylist()) != p1  # only the 30 % hard sample depends on the seed


def test_difficulty_is_a_per_domain_quantile():
    recs = [
        make_record(f"q{i} long enough", domain=d, response_tokens=t)
        for i, (d, t) in enumerate([("a", 10), ("a", 20), ("a", 30), ("b", 1000), ("b", 1000)])
    ]
    out, _ = selection.score_difficulty(make_table(*recs))
    assert _arrow.get_score(out, "difficulty").tolist() == [0.0, 0.5, 1.0, 0.5, 0.5]


def test_challenge_pool_excludes_sft_and_unverified_and_ranks_longest():
    pool = _pool()
    cfg = selection.SelectionConfig(target_size=50, dpo_size=20)
    sel = selection.select(pool, cfg)
    dpo = sel.dpo.to_pylist()
    assert len(dpo) == 20
    sft_ids = set(sel.phase2.column("id").to_pylist())
    assert all(r["verification"] == "pass" and r["answer"] and r["id"] not in sft_ids for r in dpo)
    st = sel.funnel["challenge_pool"]
    assert st.dropped["in_sft"] == 50 and st.dropped["not_verified"] > 0
    # The same prompt under another id is also "in SFT".
    twin = make_record(
        sel.phase2.column("messages")[0].as_py()[0]["content"], id="twin", verification="pass", response_tokens=99999, domain="algebra"
    )
    dpo2, st2 = selection.challenge_pool(make_table(twin), sel.phase2, cfg)
    assert dpo2.num_rows == 0 and st2.dropped == {"in_sft": 1}


def test_config_needs_exactly_one_target():
    with pytest.raises(ValueError, match="exactly one"):
        selection.SelectionConfig()
    with pytest.raises(ValueError, match="exactly one"):
        selection.SelectionConfig(target_size=1, target_fraction=0.5)


def test_random_strategy_samples_uniformly_with_the_same_budget():
    pool = _pool(n=600)
    curated = selection.select(pool, selection.SelectionConfig(target_size=120))
    rand = selection.select(pool, selection.SelectionConfig(target_size=120, strategy="random", seed=1))
    assert rand.phase2.num_rows == curated.phase2.num_rows == 120
    assert set(rand.phase2.column("verification").to_pylist()) <= {"pass", "unknown"}  # eligibility still applies
    # not longest-first: the random sample's mean length is near the eligible mean, the curated one's far above it
    eligible = [r["response_tokens"] for r in pool.to_pylist() if r["verification"] != "fail"]
    mean = sum(eligible) / len(eligible)
    rand_mean = sum(rand.phase2.column("response_tokens").to_pylist()) / 120
    cur_mean = sum(curated.phase2.column("response_tokens").to_pylist()) / 120
    assert abs(rand_mean - mean) < abs(cur_mean - mean)
    # phase 1 is a uniform subset, not the easiest rows
    p1 = set(rand.phase1.column("id").to_pylist())
    assert p1 <= set(rand.phase2.column("id").to_pylist())
    other = selection.select(pool, selection.SelectionConfig(target_size=120, strategy="random", seed=2))
    assert set(other.phase2.column("id").to_pylist()) != set(rand.phase2.column("id").to_pylist())  # the seed matters


# ---------------------------------------------------------------------------------------------------------
# shortfalls and SFT's maxLength (issue 12 item 5)

_COT = (
    "<think>\nWe need the number of ordered pairs (m, n). Write m = 2^a 5^b, so m^2 n = 20^20 gives n = 2^(40-2a) 5^(20-2b). "
    "Wait, let me re-check: m divides n means a <= 40 - 2a and b <= 20 - 2b, so a <= 13 and b <= 6. "
    "Hmm, that gives 14 * 7 = 98. Let me verify again: a ranges 0..13 (14 values), b ranges 0..6 (7 values). Yes.\n</think>\n\n"
    "The answer is \\boxed{98}."
)


def _cot_pool(n: int, prompt_words: int, response_tokens: int, prefix: str = "p") -> list[dict]:
    prompt = "Let N be the number of ordered pairs of positive integers (m, n) with m^2 n = 20^20 and m | n. " + " ".join(
        ["Justify each step."] * (prompt_words // 3)
    )
    return [
        make_record(f"{prompt} (variant {i})", id=f"{prefix}{i:03d}", response=_COT, response_tokens=response_tokens, verification="pass")
        for i in range(n)
    ]


def test_a_target_larger_than_the_eligible_rows_is_a_counted_warning_not_silent():
    pool = make_table(*_cot_pool(30, 20, 400), *[make_record(id=f"f{i}", verification="fail") for i in range(10)])
    cfg = selection.SelectionConfig(target_size=50)
    chosen = selection.select(pool, cfg)
    (st,) = [s for s in chosen.funnel.steps if s.step == "select_sft"]
    assert chosen.phase2.num_rows == 30
    assert (st.counters["requested"], st.counters["shortfall"]) == (50, 20)
    (warning,) = chosen.warnings
    assert warning.startswith("targetSize asks for 50 rows but only 30 are eligible (10 failed_verification)")
    assert "lower spec.stages.select.targetSize" in warning
    assert selection.select(pool, selection.SelectionConfig(target_size=30)).warnings == ()


def test_rows_sft_would_drop_as_over_long_are_not_selected_and_the_quota_is_filled_from_rows_that_fit():
    # Long responses come first, but prompt + template + response of the "long" rows exceeds maxLength 2000,
    # though the response alone (1900) does not.
    long = _cot_pool(10, 300, 1900, prefix="long")
    fits = _cot_pool(20, 20, 800, prefix="fit")
    pool = make_table(*long, *fits)
    cfg = selection.SelectionConfig(target_size=15, max_length=2000)
    scored, _ = selection.score_sft_tokens(pool, cfg)
    tokens = _arrow.get_score(scored, "sft_tokens")
    assert (tokens[:10] > 2000).all() and (tokens[10:] < 2000).all()
    assert (tokens[:10] > 1900).all()  # the prompt and the template count, not just the response
    chosen = selection.select(pool, cfg)
    assert chosen.phase2.num_rows == 15
    assert all(i.startswith("fit") for i in chosen.phase2.column("id").to_pylist())
    (st,) = [s for s in chosen.funnel.steps if s.step == "select_sft"]
    assert st.dropped["over_max_length"] == 10 and st.counters["shortfall"] == 0 and chosen.warnings == ()
    # Without the check the longest responses win, and SFT would drop all ten of them later.
    blind = selection.select(pool, selection.SelectionConfig(target_size=15))
    assert sum(i.startswith("long") for i in blind.phase2.column("id").to_pylist()) == 10


def test_a_shortfall_caused_by_max_length_says_so_and_names_the_field():
    pool = make_table(*_cot_pool(10, 300, 1900, prefix="long"), *_cot_pool(5, 20, 800, prefix="fit"))
    chosen = selection.select(pool, selection.SelectionConfig(target_size=12, max_length=2000))
    assert chosen.phase2.num_rows == 5
    short, length = chosen.warnings
    assert "only 5 are eligible (10 over_max_length)" in short
    assert length.startswith("10 rows are longer than SFT's maxLength 2000") and "spec.stages.sft.phases[*].maxLength" in length


def test_select_with_the_response_summary_equals_select_on_the_text(tmp_path):
    """The select stage hands the selection a memory-mapped pool plus the response's summary columns, so it
    never reads the text for two numbers per row; the outputs are the same and leave the summary out.
    Rows without tokens counted take their length from the summary too."""
    import numpy as np
    import pyarrow as pa
    from infialign.pipeline.curation import stream

    pool = _pool()
    tokens = pool.column("response_tokens").to_numpy(zero_copy_only=False).astype(float)
    tokens[::7] = np.nan  # some rows not counted: their length is characters / 4
    pool = pool.set_column(pool.schema.get_field_index("response_tokens"), "response_tokens", pa.array(tokens, pa.int32(), from_pandas=True))
    blank = np.zeros(pool.num_rows, dtype=bool)
    blank[::11] = True  # and some responses without text
    responses = [None if b else r for b, r in zip(blank, pool.column("response").to_pylist())]
    pool = pool.set_column(pool.schema.get_field_index("response"), "response", pa.array(responses, pa.string()))
    rows = stream.spill([pool], tmp_path)
    summarised = stream.with_text_summary(rows.table(), rows, "response")
    assert set(_arrow.summary_columns("response")) <= set(summarised.column_names)
    cfg = selection.SelectionConfig(target_fraction=0.5, seed=3, dpo_size=20)
    plain, fast = selection.select(pool, cfg), selection.select(summarised, cfg)
    for a, b in ((plain.phase1, fast.phase1), (plain.phase2, fast.phase2), (plain.dpo, fast.dpo)):
        assert b.column_names == pool.column_names
        assert a.equals(b)
    assert _summary_of(plain.funnel) == _summary_of(fast.funnel)
    assert fast.funnel.steps[1].dropped.get("no_response") == int(blank.sum())


def _summary_of(funnel):
    return [(s.step, s.total, s.kept, dict(s.dropped), dict(s.counters)) for s in funnel.steps]


def test_select_stage_view_and_gathered_responses_equal_select_on_the_pool(tmp_path):
    """The select stage selects on a view of the spilled pool whose responses are stand-ins (the text only
    where tokens must be counted), then takes the selected rows' text from the spill: the same datasets as
    selecting on the pool itself."""
    import numpy as np
    import pyarrow as pa
    from infialign.pipeline.curation import stream
    from infialign.pipeline.stages import select as select_stage

    pool = _pool()
    tokens = pool.column("response_tokens").to_numpy(zero_copy_only=False).astype(float)
    tokens[::5] = np.nan
    pool = pool.set_column(pool.schema.get_field_index("response_tokens"), "response_tokens", pa.array(tokens, pa.int32(), from_pandas=True))
    responses = [None if i % 13 == 0 else f"<think>step {i}</think> " + "x " * (i % 40) + "\\boxed{1}" for i in range(pool.num_rows)]
    pool = pool.set_column(pool.schema.get_field_index("response"), "response", pa.array(responses, pa.string()))
    spilled = stream.spill([pool.slice(0, 70), pool.slice(70)], tmp_path)
    view = select_stage.selection_view(spilled)
    assert set(view.column("response").to_pylist()) - set(responses) <= {""}  # stand-ins, or the text where tokens are missing
    cfg = selection.SelectionConfig(target_fraction=0.5, seed=3, dpo_size=20, max_length=400, tokenizer="regex")
    expected, got = selection.select(pool, cfg), selection.select(view, cfg)
    ids = pool.column("id").combine_chunks()
    for a, b in ((expected.phase2, got.phase2), (expected.dpo, got.dpo)):
        assert a.num_rows > 0
        assert select_stage.with_responses(b, spilled, ids).equals(a)
    empty = got.phase2.slice(0, 0)
    assert select_stage.with_responses(empty, spilled, ids).num_rows == 0
