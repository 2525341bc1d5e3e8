"""The rule filters on realistic text (issue 12): math notation is never foreign, complete answers that
do not end in a period are not truncated, long re-checking CoTs are not repetition, and the rows each
rule exists for are still dropped."""

from __future__ import annotations

import pytest
import realistic_text as text
from curation_helpers import make_record, make_table
from infialign.pipeline.curation import _arrow, filters, steps


def _scores(recs: list[dict], cfg: filters.RuleFilterConfig | None = None) -> dict:
    scored, _ = steps.Step(filters.score_rules, cfg or filters.RuleFilterConfig())(make_table(*recs))
    return _arrow.get_scores(scored, filters.RULE_SCORE_KEYS)


def _reason(rec: dict, cfg: filters.RuleFilterConfig | None = None) -> str | None:
    """The reason the rule filters drop this one record for, or None when it is kept."""
    cfg = cfg or filters.RuleFilterConfig()
    scored, _ = steps.Step(filters.score_rules, cfg)(make_table(rec))
    out, st = steps.Step(filters.filter_rules, cfg)(scored)
    assert st.total == st.kept + st.n_dropped == 1
    return None if out.num_rows else st.examples[0].reason


# -- item 2: language -------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", text.GREEK_MATH_PROMPTS)
def test_greek_letters_math_symbols_and_variables_are_not_foreign(prompt: str) -> None:
    assert _reason(make_record(prompt)) is None


@pytest.mark.parametrize("name", sorted(text.FOREIGN_PROMPTS))
def test_non_english_prose_is_still_dropped(name: str) -> None:
    assert _reason(make_record(text.FOREIGN_PROMPTS[name])) == "non_english"


def test_greek_letters_are_neutral_in_the_script_ratio_and_single_letters_cast_no_vote() -> None:
    s = _scores([make_record("If α+β=π/2, find sin α / cos β."), make_record("Given f(x, y) = x y + y, find ∂f/∂y")])
    assert list(s["lang_latin_ratio"]) == [1.0, 1.0]
    assert list(s["lang_foreign_stopwords"]) == [0.0, 0.0]
