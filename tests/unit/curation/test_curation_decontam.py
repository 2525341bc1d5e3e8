"""Decontamination finds exact, lightly edited, short and solution leaks, per benchmark, and nothing else."""

from __future__ import annotations

import math

import pytest
from curation_helpers import make_record, make_table
from infialign.pipeline.curation import decontam

AIME = [
    "Find the number of ordered pairs of positive integers (m, n) such that m^2 n = 20^20 and m divides n.",
    (
        "Let N be the greatest four-digit positive integer with the property that whenever one of its digits is "
        "changed to 1, the resulting number is divisible by 7. Find the remainder when N is divided by 1000."
    ),
    "What is 17 times 23?",  # short item: fewer words than the n-gram
    "Compute the sum of all positive divisors of 360 please.",  # 10 words: one inserted word breaks every 8-gram
]
MATH = make_table(
    make_record(
        "A regular hexagon has side length 6. What is the area of the hexagon, in simplest radical form?",
        id="math-1",
        response="Split the hexagon into 6 equilateral triangles of side 6, each with area 9 sqrt(3), so the total area is 54 sqrt(3).",
    )
)


@pytest.fixture(scope="module")
def index() -> decontam.DecontamIndex:
    return decontam.DecontamIndex.build({"aime": AIME, "math500": MATH}, decontam.DecontamConfig())


def _run(index, *recs):
    t = make_table(*recs)
    scored, _ = decontam.score_contamination(t, index)
    return decontam.filter_contamination(scored, index.cfg)


@pytest.mark.parametrize(
    ("prompt", "response", "bench"),
    [
        (AIME[0], None, "aime"),  # exact copy
        ("Problem 4. " + AIME[1].replace("greatest", "largest"), None, "aime"),  # edited word + prefix
        ("what  is 17 TIMES 23 ?", None, "aime"),  # short item, compared whole
        ("Compute the sum of all the positive divisors of 360 please.", None, "aime"),  # light edit: fuzzy ratio
        (
            "Compute the area of a hexagon with side 6.",
            "Split the hexagon into 6 equilateral triangles of side 6, each with area 9 sqrt(3), so the total area is 54 sqrt(3).",
            "math500",
        ),  # leaked solution: 13-grams over prompt + response
    ],
)
def test_leaks_are_caught_and_attributed(index, prompt, response, bench):
    clean = make_record("A farmer has 12 cows and buys 7 more. How many cows does the farmer have now?")
    out, st = _run(index, make_record(prompt, response=response or "\\boxed{1}"), clean)
    assert out.column("id").to_pylist() == [clean["id"]]
    assert dict(st.dropped) == {"contaminated": 1}
    assert decontam.hits_by_benchmark(st) == {bench: 1}
    assert st.examples[0].detail.startswith(bench)


def test_same_template_other_numbers_is_not_a_leak(index):
    recs = [
        make_record("Find the number of ordered pairs of positive integers (m, n) such that m^2 n = 30^30 and m divides n."),
        make_record("What is 19 times 23?"),
        make_record("A regular hexagon has side length 8. What is the area of the hexagon, in simplest radical form?"),
    ]
    _, st = _run(index, *recs)
    assert st.n_dropped == 0, st.examples
    lax = decontam.DecontamIndex.build({"aime": AIME, "math500": MATH}, decontam.DecontamConfig(number_aware=False))
    _, st = _run(lax, *recs)
    # The two long templates match; "What is 19 times 23?" is one character from the item once symbols are not
    # compared (fuzzy ratio 94.7 < 95).
    assert st.n_dropped == 2


def test_scores_are_sparse_and_thresholds_apply_at_filter_time(index):
    t = make_table(make_record(AIME[0]), make_record("Unrelated question about 5 apples and 3 pears, how many fruits?"))
    scored, st = decontam.score_contamination(t, index)
    keys = [k for k, _ in scored.column("scores")[0].as_py() if k.startswith(decontam.SCORE_PREFIX)]
    assert "decontam:aime:ngram" in keys
    assert not [k for k, _ in scored.column("scores")[1].as_py() if k.startswith(decontam.SCORE_PREFIX)]
    strict = decontam.DecontamConfig(min_ngram_hits=1000, full_ngram=None, fuzzy_ratio=None, word_overlap=None)
    _out, st = decontam.filter_contamination(scored, strict)
    assert st.n_dropped == 0


def test_explain_names_the_item(index):
    matches = index.explain(AIME[1])
    assert ("aime", "1", "ngram") in {(m.benchmark, m.item_id, m.method) for m in matches}


def test_index_is_picklable_and_has_a_digest(index):
    import pickle

    again = pickle.loads(pickle.dumps(index))
    assert again.digest() == index.digest()
    other = decontam.DecontamIndex.build({"aime": AIME[:1]}, decontam.DecontamConfig())
    assert other.digest() != index.digest()


def test_bad_benchmark_names_are_rejected():
    with pytest.raises(ValueError, match="benchmark name"):
        decontam.DecontamIndex.build({"aime:24": AIME}, decontam.DecontamConfig())
    with pytest.raises(ValueError, match="at least one"):
        decontam.DecontamIndex.build({}, decontam.DecontamConfig())


def test_agrees_with_naive_set_intersection():
    """The hashed index finds the same prompt 8-gram overlaps as a naive per-item set intersection."""
    from infialign.pipeline.curation import normalize

    bench = [f"Item {i}: the quick brown fox number {i} jumps over the lazy dog {i} times today" for i in range(30)]
    docs = [f"Doc: the quick brown fox number {i} jumps over the lazy dog {i} times today, and more" for i in range(0, 60, 2)]
    docs += ["a completely different text with no overlap at all here today friends and family"]
    idx = decontam.DecontamIndex.build({"b": bench}, decontam.DecontamConfig(number_aware=False, fuzzy_ratio=None, full_ngram=None))

    def grams(t):
        w = normalize.word_tokens(t)
        return {tuple(w[i : i + 8]) for i in range(len(w) - 7)}

    bench_grams = [grams(b) for b in bench]
    naive = [any(grams(d) & g for g in bench_grams) for d in docs]
    scores = idx.score_texts(docs)
    ours = [False] * len(docs)
    for col in scores.values():
        ours = [o or not math.isnan(v) for o, v in zip(ours, col)]
    assert ours == naive
    assert any(naive) and not all(naive)


def test_embedding_check_flags_what_the_ngrams_miss():
    """The cosine path, with the lexical hashing embedding (the real model's quality is tested in embed)."""
    from infialign.pipeline.curation import embed

    cfg = decontam.DecontamConfig(
        prompt_ngram=40,  # longer than the prompts: only identical prompts match by n-grams
        full_ngram=None,
        fuzzy_ratio=None,
        embedding=embed.EmbedConfig(backend="hashing"),
        embedding_threshold=0.85,
    )
    index = decontam.DecontamIndex.build({"aime": AIME}, cfg)
    variant = make_record(AIME[0].replace("Find the number", "Determine the count"))
    other = make_record("A farmer has 12 cows and buys 7 more. How many cows does the farmer have now?")
    scored, _ = decontam.score_contamination(make_table(variant, other), index)
    out, st = decontam.filter_contamination(scored, cfg)
    assert out.column("id").to_pylist() == [other["id"]]
    assert "aime via cosine" in st.examples[0].detail


def test_competition_fixture_clean_near_misses_pass_and_verbatim_or_reformatted_leaks_are_caught():
    """Issue 12 item 9 on decontam_fixture.py (rates per edit class: benchmarks/bench_decontam_quality.py)."""
    import decontam_fixture as fx

    ids = list(fx.ITEMS)
    idx = decontam.DecontamIndex.build({"bench": list(fx.ITEMS.values())}, decontam.DecontamConfig())

    def hits(text: str) -> set[str]:
        return {ids[int(m.item_id)] for m in idx.explain(text, limit=50) if decontam._is_hit(m.method, m.value, idx.cfg)}

    for cls, item, text in fx.LEAKS:
        if cls in ("verbatim", "reformatted"):
            assert item in hits(text), (cls, item)
    # Near-misses on the digit-free items' topics share a phrase ("for positive real numbers a, b, c, prove that",
    # "how many ways are there to arrange the letters of the word") but are other problems; so are the same
    # templates with other numbers. Known exceptions, kept visible: the same setup and numbers asking another
    # question (the 13-14-15 triangle's inradius, the same bag of marbles) share digit n-grams with the item.
    same_setup = {fx.CLEAN[-3], fx.CLEAN[-1]}
    flagged = {t for t in fx.CLEAN if hits(t)}
    assert flagged <= same_setup, flagged
    assert hits(fx.CLEAN[-2]) == set()  # same numbers 10 and 21, another question: the item's 3 is missing


def test_ngrams_from_shared_match_tokens_equal_those_of_each_match_form():
    """evidence() hashes n-grams from one pass of match_form's regexes for both forms; the hashes must be
    those of word_ngrams over each joined form, on long CoTs, Greek-letter math, Unicode and empty texts."""
    from infialign.pipeline.curation import _ngrams
    from realistic_text import GREEK_MATH_PROMPTS, LONG_COTS

    texts = [*AIME, *GREEK_MATH_PROMPTS, *LONG_COTS.values(), None, "", "  ", "日本 語 テキスト", "a\u00a0 b x\u3000y", "\\frac{1}{2}+x^2=7"]
    tokens = decontam._match_tokens(texts)
    for n in (1, 8, 13):
        for placeholder in (True, False):
            got = _ngrams.token_ngrams(decontam._with_placeholders(tokens) if placeholder else tokens, n)
            want = _ngrams.word_ngrams(decontam.match_form(texts, placeholder), n)
            assert all((a == b).all() for a, b in zip(got, want)) and got[0].size > 0


def _tricky_ascii_texts() -> list[str]:
    """ASCII texts mixing LaTeX commands, whitespace of every kind, control bytes, digits glued to letters and
    instruction boilerplate (random but fixed), plus hand-picked edge cases."""
    import random

    from realistic_text import LONG_COTS

    rng = random.Random(0)
    pieces = list("ab xyZ09\\\\ \n\t\x0b\x0c\r{}^_-.,!$\x00\x1f\x7f") + [
        "\\frac", "\\boxed{}", "\\ \\ x", "12ab", "a1b2", "Step", " please reason step by step.", "\\\n\tcdot", "\\1a",
    ]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    texts += ["\\", "a\\", "\\a", " \\ \n b", "\\\\a", "", "\\ ", " \\", "\\" * 3, "\\" + " " * 200 + "abc"]
    return texts + [t for t in LONG_COTS.values() if t.isascii()]


def test_ascii_match_tokens_equal_the_unicode_path():
    """The byte-level ASCII tokeniser gives the tokens of the regex path, row by row, on whole arrays, on
    slices and across row blocks (a LaTeX command whose backslash ends one text must not eat the next's letters)."""
    import pyarrow as pa

    texts = _tricky_ascii_texts()
    texts += ["x \\", "frac 1", "\\  ", "  beta", "\\\n", "\n\ngamma"]  # backslash at a text's end, letters at the next start
    arr = pa.array(texts, pa.string())
    want = decontam._match_tokens_unicode(arr).to_pylist()
    assert decontam._match_tokens_ascii(arr).to_pylist() == want
    assert decontam._match_tokens_ascii(arr.slice(7, 500)).to_pylist() == want[7:507]
    assert decontam._match_tokens(texts).to_pylist() == want
    assert ["frac"] not in want and ["beta"] in want and ["gamma"] in want


def test_ascii_match_tokens_do_not_depend_on_blocks(monkeypatch):
    import pyarrow as pa

    arr = pa.array(_tricky_ascii_texts(), pa.string())
    want = decontam._match_tokens_unicode(arr).to_pylist()
    for block in (1, 7, 64, 1000):
        monkeypatch.setattr(decontam, "_TOKEN_BLOCK_BYTES", block)
        assert decontam._match_tokens_ascii(arr).to_pylist() == want


def test_mixed_ascii_and_unicode_rows_keep_their_order():
    texts = ["\\alpha + x2 = 5", "αβ \\frac{1}{2}", None, "Ｆｉｎｄ 2x", "find 2x", "\\ \n béta"]
    import pyarrow as pa

    arr = pa.array([t or "" for t in texts], pa.string())
    assert decontam._match_tokens(texts).to_pylist() == decontam._match_tokens_unicode(arr).to_pylist()


def test_fuzzy_candidates_scan_equals_number_key_lookups():
    """A narrow length window tests each item's key against the document's instead of looking up every
    contiguous run of the document's numbers; both give the same items."""
    items = [
        "What is 17 times 23?", "What is 23 times 17?", "Add 1 and 2.", "Add -1 and 2.", "Find x.", "Find y if y = 3.",
        "Compute 1, 2, 3 then 4.", "Compute 12 plus 3.", "What is 2 + 3?", "Sum 3 and 4 and 5.", "Is 17 prime?",
    ]
    index = decontam.DecontamIndex.build({"b": items}, decontam.DecontamConfig())
    docs = ["What is 17 times 23 and 1?", "Add 1 and 2 and 3 and 4.", "No numbers.", "Take -1, 2, 3, 4, 5 and 17.", "12 3 2 3"]

    def by_lookup(doc_key: str, lo: int, hi: int) -> list[int]:  # the lookup branch alone
        nums = [] if doc_key == ",," else doc_key.strip(",").split(",")
        keys = {",,"} | {"," + ",".join(nums[i:j]) + "," for i in range(len(nums)) for j in range(i + 1, len(nums) + 1)}
        return sorted(k for key in keys for k in index.short_by_key.get(key, ()) if lo <= k < hi)

    m = len(index.short_texts)
    for key in decontam._ngrams.digit_keys(docs, brackets_subtract=True):
        for lo in range(m + 1):
            for hi in range(lo, m + 1):
                assert index._fuzzy_candidates(key, lo, hi) == by_lookup(key, lo, hi), (key, lo, hi)


def test_ngrams_of_both_forms_from_one_dictionary():
    """_ngrams_both_forms gives token_ngrams of the placeholder form and of the plain form, also for Greek and
    other single letters, digits and empty inputs."""
    from infialign.pipeline.curation import _ngrams
    from realistic_text import GREEK_MATH_PROMPTS, LONG_COTS

    texts = [*AIME, *GREEK_MATH_PROMPTS, *LONG_COTS.values(), None, "", "α β γ 1 2 x", "é ß ǅ ² ½ a1b2"]
    for batch in (texts, [None, ""], []):
        tokens = decontam._match_tokens(batch)
        for n in (1, 8, 13):
            got = decontam._ngrams_both_forms(tokens, n)
            want = (_ngrams.token_ngrams(decontam._with_placeholders(tokens), n), _ngrams.token_ngrams(tokens, n))
            for (gh, go), (wh, wo) in zip(got, want):
                assert gh.tolist() == wh.tolist() and go.tolist() == wo.tolist()


def test_numbers_and_words_equals_the_pairwise_numbers_fit():
    """_numbers_and_words with cached number counts gives what _numbers_fit per (text, item) pair gives."""
    import decontam_fixture as fx

    cfg = decontam.DecontamConfig(word_overlap=0.7)
    index = decontam.DecontamIndex.build({"fx": list(fx.ITEMS.values())}, cfg)
    texts = [t[-1] if isinstance(t, tuple) else t for t in fx.LEAKS] + list(fx.CLEAN) + ["3 3 10 21 and 7", "no numbers"]
    keys = decontam._ngrams.digit_keys(texts, brackets_subtract=True)
    norm = decontam.match_form(texts, False).to_pylist()
    want = []
    for d, key in enumerate(keys):
        if key == ",,":
            continue
        cands = [i for x in set(key.strip(",").split(",")) for i in index.anchors.get(x, ())]
        for i in cands:
            item_words = index.item_words[i]
            if item_words and decontam._numbers_fit(key, index.item_numbers[i]):
                share = len(item_words & decontam._content_words(norm[d])) / len(item_words)
                if share >= decontam.COSINE_FLOOR * 0.7:
                    want.append((d, i, share))
    got = index._numbers_and_words(norm, keys)
    assert list(zip(*(x.tolist() for x in got))) == want and want
