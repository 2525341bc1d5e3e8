"""One crafted record per drop reason, asserting the reason string; scores are written before the decision."""

from __future__ import annotations

import numpy as np
import pytest
from curation_helpers import make_record, make_table
from infialign.pipeline.curation import _arrow, filters, steps

LOOP = "<think>" + " ".join(["Wait, let me check that again and compute the value once more carefully now."] * 8) + "</think> \\boxed{2}"
CASES = [
    ("empty_prompt", make_record(None), filters.RuleFilterConfig()),
    ("empty_prompt", make_record("   "), filters.RuleFilterConfig()),
    ("empty_response", make_record(response=None), filters.RuleFilterConfig(empty=filters.EmptyRule(require_response=True))),
    ("non_english", make_record("求满足方程 2x + 3 = 7 的 x 的值。"), filters.RuleFilterConfig()),
    (
        "non_english",
        make_record("Trouvez la valeur de x qui vérifie l'équation 2x + 3 = 7 pour le nombre réel."),
        filters.RuleFilterConfig(),
    ),
    ("prompt_too_short", make_record("2+2=?"), filters.RuleFilterConfig()),
    ("prompt_too_long", make_record("Find x. " * 3000), filters.RuleFilterConfig()),
    ("response_too_short", make_record(response="\\boxed{2}"), filters.RuleFilterConfig(length=filters.LengthRule(min_response_chars=20))),
    ("response_too_long", make_record(response_tokens=40000), filters.RuleFilterConfig()),
    (
        "response_too_long",
        make_record(response="<think>" + "x = 2. " * 100 + "</think>\\boxed{2}"),
        filters.RuleFilterConfig(length=filters.LengthRule(max_response_chars=200)),
    ),
    ("truncated_cot", make_record(response="<think>2x = 4, so x"), filters.RuleFilterConfig()),
    ("truncated_cot", make_record(response="<think>2x = 4, so x = 2.</think>\n  "), filters.RuleFilterConfig()),
    ("truncated_cot", make_record(response="<think>2x = 4, so x = 2.</think>\n\nThe answer is"), filters.RuleFilterConfig()),
    ("no_final_answer", make_record(response="<think>x = 2.</think>\nSo x is two.", answer=None), filters.RuleFilterConfig()),
    (
        "no_boxed_answer",
        make_record(response="<think>x = 2.</think>\nSo x is 2.", answer="2"),
        filters.RuleFilterConfig(final_answer=filters.FinalAnswerRule(require_boxed_response=True)),
    ),
    ("repetition", make_record(response=LOOP), filters.RuleFilterConfig()),
]


@pytest.mark.parametrize(("reason", "rec", "cfg"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_rule_drops_its_record_with_its_reason(reason, rec, cfg):
    clean = make_record()
    out, funnel = _run(make_table(rec, clean), cfg)
    assert out.column("id").to_pylist() == [clean["id"]]
    assert dict(funnel.dropped) == {reason: 1}
    assert funnel.examples[0].id == rec["id"] and funnel.examples[0].reason == reason
    assert reason in filters.DROP_REASONS


def _run(table, cfg):
    scored, _ = steps.Step(filters.score_rules, cfg)(table)
    out, st = steps.Step(filters.filter_rules, cfg)(scored)
    assert st.total == st.kept + st.n_dropped
    return out, st


@pytest.mark.parametrize(
    "rec",
    [
        make_record(),
        make_record(response=None, answer="2"),  # no response yet: distillation fills it in
        make_record(
            "Prove that there are infinitely many primes.",
            domain="number_theory",
            answer=None,
            response="<think>Euclid.</think>\n\\boxed{\\text{proved}}",
        ),
        make_record(
            "Write a Python function that reverses a string and returns the result.",
            domain="code",
            answer=None,
            response="```python\ndef rev(s): return s[::-1]\n```",
        ),
        make_record("Find x if 2x+3=7.", domain="algebra"),  # short, but has no stopwords to judge by
        make_record(response="<think>" + " ".join(f"step {i}: add {i} to the total." for i in range(200)) + "</think>\\boxed{2}"),
    ],
)
def test_clean_records_survive(rec):
    _out, st = _run(make_table(rec), filters.RuleFilterConfig())
    assert st.n_dropped == 0, st.examples


def test_disabled_rules_do_not_drop():
    cfg = filters.RuleFilterConfig(language=filters.LanguageRule(enabled=False), truncation=filters.TruncationRule(enabled=False))
    _out, st = _run(make_table(make_record("求满足方程 2x + 3 = 7 的 x 的值。"), make_record(response="<think>cut")), cfg)
    assert st.n_dropped == 0


def test_scores_are_written_and_thresholds_change_without_rescoring():
    t = make_table(make_record(response="<think>" + "a b c d e f g h i j " * 30 + "</think>\\boxed{2}"))
    scored, _ = filters.score_rules(t, filters.RuleFilterConfig())
    s = _arrow.get_scores(scored, list(filters.RULE_SCORE_KEYS))
    assert s["has_final_answer"][0] == 1.0 and s["cot_unclosed_think"][0] == 0.0
    assert s["rep_max_ngram_count"][0] >= 5
    # The same scores, a laxer threshold: kept, without calling score_rules again.
    lax = filters.RuleFilterConfig(repetition=filters.RepetitionRule(max_repeats=1000, max_dup_fraction=None, max_compression_ratio=None))
    _, st = filters.filter_rules(scored, lax)
    assert st.n_dropped == 0
    _, st = filters.filter_rules(scored, filters.RuleFilterConfig())
    assert dict(st.dropped) == {"repetition": 1}


def test_filter_without_scores_names_the_fix():
    with pytest.raises(ValueError, match="run score_rules first"):
        filters.filter_rules(make_table(make_record()), filters.RuleFilterConfig())


def test_absent_scores_are_nan_not_zero():
    scored, _ = filters.score_rules(make_table(make_record(response=None)), filters.RuleFilterConfig())
    assert np.isnan(_arrow.get_score(scored, "response_chars")[0])
