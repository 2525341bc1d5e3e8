"""The rule filters on realistic text (issue 12): math notation is never foreign, complete answers that
do not end in a period are not truncated, long re-checking CoTs are not repetition, and the rows each
rule exists for are still dropped."""

from __future__ import annotations

import numpy as np
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


# -- item 3: truncation -----------------------------------------------------------------------------------

# Endings that are complete in the domain they come from. Math answers that state their answer may end on a
# letter ("The answer is C"); code and prose may end on anything but a continuation character.
_COMPLETE_DOMAINS = {
    "code_identifier": "code",
    "code_fence": "code",
    "bare_code_identifier": "code",
    "choice_letter": "science",
    "choice_paren": "science",
    "prose_no_period": "other",
    "metamath": "prealgebra",
    "gsm8k": "prealgebra",
    "exclamation": "calculus",
    "closing_paren": "algebra",
    "markdown_list": "number_theory",
    "quote": "code",
    "latex_display": "algebra",
}


@pytest.mark.parametrize("name", sorted(text.COMPLETE_ENDINGS))
def test_complete_answers_that_do_not_end_in_a_period_are_kept(name: str) -> None:
    rec = make_record(response=text.COMPLETE_ENDINGS[name], domain=_COMPLETE_DOMAINS[name], answer="x")
    assert _reason(rec) is None


def test_a_stated_option_letter_is_complete_even_in_a_math_domain() -> None:
    rec = make_record(response=text.COMPLETE_ENDINGS["choice_letter"], domain="algebra", answer="C")
    assert _reason(rec) is None


@pytest.mark.parametrize("name", sorted(text.CUT_ENDINGS))
def test_cut_responses_are_dropped(name: str) -> None:
    assert _reason(make_record(response=text.CUT_ENDINGS[name], domain="algebra", answer="5")) == "truncated_cot"


@pytest.mark.parametrize(
    ("response", "domain"),
    [
        ("<think>Reverse it.</think>\n\n```python\ndef rev(s):\n    return s[::-1", "code"),  # unclosed fence
        ("<think>Compare the charges.</think>\n\nThe correct option is the one with the", "science"),  # dangling "the"
        ("<think>Compare the charges.</think>\n\nOption B conserves charge, and", "science"),
    ],
)
def test_cuts_outside_math_are_still_caught(response: str, domain: str) -> None:
    assert _reason(make_record(response=response, domain=domain, answer="B")) == "truncated_cot"


def test_a_trailing_letter_is_a_cut_only_in_a_math_answer_that_has_not_stated_its_answer() -> None:
    cut = text.CUT_ENDINGS["math_cut_mid_word"]
    assert _reason(make_record(response=cut, domain="algebra", answer="5")) == "truncated_cot"
    assert _reason(make_record(response=cut, domain="other", answer="5")) is None  # prose may end on a letter


# -- item 4: repetition -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(text.LONG_COTS))
def test_long_cots_that_recheck_an_equation_are_not_repetition(name: str) -> None:
    cot = text.LONG_COTS[name]
    assert len(cot.split()) >= 350
    rec = make_record(response=cot, domain="code" if name == "code" else "algebra", answer=None)
    assert _reason(rec) is None


@pytest.mark.parametrize("name", sorted(text.DEGENERATE_COTS))
def test_degenerate_loops_are_repetition(name: str) -> None:
    assert _reason(make_record(response=text.DEGENERATE_COTS[name], answer=None)) == "repetition"


def test_repetition_counts_words_not_symbol_tokens() -> None:
    """The limit CoT restates a formula of ~28 symbol tokens seven times; as words each restatement is
    a handful of words in a different sentence, so no word 20-gram repeats."""
    s = _scores([make_record(response=text.LONG_COTS["limit"])])
    assert s["rep_max_ngram_count"][0] == 1.0
    assert s["rep_dup_ngram_frac"][0] < 0.1
    assert s["rep_compression_ratio"][0] < 3.0


def test_word_tokens_are_letter_and_digit_runs_without_latex_command_names() -> None:
    """The vectorised tokenizer of the repetition rule against a plain regex over the same UTF-8 bytes."""
    import re

    import pyarrow as pa
    from infialign.pipeline.curation import _ngrams

    edges = ["\\alpha x", "", "x\\", "\\\\ab \\", "", "A\\B\\c9 Z"]  # a command at a text's start, empty texts, trailing backslash
    texts = [*text.LONG_COTS.values(), *text.DEGENERATE_COTS.values(), *text.CUT_ENDINGS.values(), *edges, "", "\\frac{a}{b}", "Ab\\Cd ef", "α+β=π/2"]

    def reference(t: str) -> list[bytes]:
        b = t.encode()
        runs = re.finditer(rb"[0-9A-Za-z\x80-\xff]+", b)
        return [m.group(0).lower() for m in runs if not (m.start() > 0 and b[m.start() - 1 : m.start()] == b"\\")]

    tokens = [reference(t) for t in texts]
    assert tokens[-3:] == [[b"a", b"b"], [b"ab", b"ef"], ["α".encode(), "β".encode(), "π".encode(), b"2"]]
    hashes, offsets = filters._word_units(texts)
    assert list(offsets) == [0, *np.cumsum([len(t) for t in tokens])]
    flat = pa.array([x for ts in tokens for x in ts], pa.large_binary()).cast(pa.large_string())
    assert np.array_equal(hashes, _ngrams.hash_strings(flat))


def test_value_runs_match_a_per_document_count() -> None:
    """The blocked row-wise sort behind the repetition scores against np.unique per document, on documents
    of very different lengths (blocks, padding) and with many equal values."""
    rng = np.random.default_rng(0)
    lens = np.r_[0, rng.integers(0, 40, 50), 0, rng.integers(500, 3000, 5), 1, 7000]
    offsets = np.r_[0, np.cumsum(lens)]
    values = rng.integers(0, 30, int(offsets[-1])).astype(np.uint64) << np.uint64(39)
    most, distinct = filters._value_runs(values, offsets)
    for k in range(len(lens)):
        _, counts = np.unique(values[offsets[k] : offsets[k + 1]], return_counts=True)
        assert most[k] == (counts.max() if len(counts) else 0)
        assert distinct[k] == len(counts)


@pytest.mark.parametrize(
    "prompts",
    [
        ["", "the", "The of AND is", "the-of-and-is-the", "the,of,and", "of1the", "theof", "Le der el que yang", "x y z", "a\n\nb"],
        [*text.GREEK_MATH_PROMPTS, "Find the value of $x$ if \\[x^2 = 4\\] and x > 0.", "Soit f la fonction définie pour tout x réel."],
    ],
)
def test_ascii_language_counts_equal_the_regex_counts(prompts: list[str]) -> None:
    """The NumPy path for ASCII prompts counts what the Unicode regexes count (non-ASCII rows are routed to
    the regexes, so only ASCII rows are compared)."""
    import pyarrow as pa

    ascii_only = pa.array([p for p in prompts if p.isascii()], pa.string())
    fast = filters._ascii_language_counts(ascii_only)
    slow = filters._regex_language_counts(ascii_only)
    for got, want in zip(fast[:3], slow[:3]):
        assert np.array_equal(got, want)
    for got, want in zip(fast[3], slow[3]):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("final", ["\\boxed{5}  \n", "\\boxed 5 \t", "\\boxed{5\\ ", "\\boxed  ", "\\fbox{a}\n", "so \\boxed{\\}}\n", "x", " "])
def test_ending_scores_take_the_callers_box_test(final: str) -> None:
    """score_rules passes ``last_boxed(answer part) is not None`` in; the scores equal testing the stripped tail."""
    from infialign.pipeline.curation import answers

    assert np.array_equal(filters._ending_scores(final), filters._ending_scores(final, answers.last_boxed(final) is not None), equal_nan=True)
