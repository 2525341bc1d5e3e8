"""Exact and MinHash near-dup: verified pairs only, union-find clusters, the best representative kept."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from curation_helpers import make_record, make_table
from infialign.pipeline.curation import dedup

# Letters only: digits in a word would count as numbers, and near-dup is number-aware.
WORDS = ["".join(chr(97 + (i // 26**k) % 26) for k in range(3)) for i in range(26**3)]


def _doc(rng: random.Random, n: int = 120) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def _edit(words: list[str], k: int, rng: random.Random) -> list[str]:
    out = list(words)
    for p in rng.sample(range(len(out)), k):
        out[p] = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))
    return out


def test_exact_dedup_keeps_verified_then_longer_cot():
    p = "A bag has 3 red and 5 blue marbles. How many marbles are in the bag?"
    rows = [
        make_record(p, id="a", response="<think>short</think>\\boxed{8}"),
        make_record(
            "  a BAG has 3 red and 5 blue marbles.   How many marbles are in the bag? ",
            id="b",
            response="<think>a much longer chain of thought</think>\\boxed{8}",
        ),
        make_record(
            p + " Please reason step by step, and put your final answer within \\boxed{}.",
            id="c",
            verification="pass",
            response="<think>s</think>\\boxed{8}",
        ),
        make_record("A bag has 4 red and 5 blue marbles. How many marbles are in the bag?", id="d"),
    ]
    out, st = dedup.dedup_exact(make_table(*rows), dedup.ExactDedupConfig())
    assert out.column("id").to_pylist() == ["c", "d"]
    assert dict(st.dropped) == {"exact_duplicate": 2}
    assert all(e.detail == "duplicate of c" for e in st.examples)
    # Without a verified row, the longer CoT wins.
    out, _ = dedup.dedup_exact(make_table(*rows[:2], rows[3]), dedup.ExactDedupConfig())
    assert out.column("id").to_pylist() == ["b", "d"]


def test_minhash_confirms_every_pair_by_true_jaccard():
    rng = random.Random(0)
    cfg = dedup.MinHashConfig()
    base = [_doc(rng) for _ in range(60)]
    texts = [" ".join(d) for d in base]
    planted = {}
    for i in range(20):  # 2 edits in 120 words: J ≈ 0.85; 12 edits: J ≈ 0.4
        texts.append(" ".join(_edit(base[i], 2 if i < 10 else 12, rng)))
        planted[len(texts) - 1] = i
    res = dedup.find_near_duplicates(texts, cfg)
    sh = dedup.shingle_texts(texts, cfg)
    removed = np.flatnonzero(~res.keep)
    for d in removed:  # no false positives: every removed doc is truly similar to its representative's cluster
        assert res.best_jaccard[d] >= cfg.threshold
    true_j = {d: dedup.jaccard(sh.doc(d), sh.doc(o)) for d, o in planted.items()}
    for d, o in planted.items():
        same = res.keep_of[d] == res.keep_of[o]
        assert same == (true_j[d] >= cfg.threshold), (d, true_j[d])
    assert res.confirmed_pairs == sum(j >= cfg.threshold for j in true_j.values())


def test_signature_estimate_tracks_true_jaccard():
    rng = random.Random(1)
    cfg = dedup.MinHashConfig()
    pairs = []
    for k in (2, 6, 12, 24):
        a = _doc(rng, 200)
        pairs += [(" ".join(a), " ".join(_edit(a, k, rng)))]
    sh = dedup.shingle_texts([t for p in pairs for t in p], cfg)
    sig = dedup.minhash_signatures(sh, cfg)
    for i in range(len(pairs)):
        est = float((sig[:, 2 * i] == sig[:, 2 * i + 1]).mean())
        true = dedup.jaccard(sh.doc(2 * i), sh.doc(2 * i + 1))
        assert abs(est - true) < 0.15


def test_union_find_chain_keeps_the_best_ranked_member():
    edges = np.array([[0, 1], [1, 2], [3, 4]])
    roots = dedup.union_find(6, edges)
    assert roots[0] == roots[1] == roots[2] and roots[3] == roots[4] and len(set(roots.tolist())) == 3
    rng = random.Random(2)
    a = _doc(rng, 150)
    b = _edit(a, 1, rng)
    c = _edit(b, 1, rng)
    texts = [" ".join(x) for x in (a, b, c)]
    res = dedup.find_near_duplicates(texts, dedup.MinHashConfig(), rank=np.array([2, 0, 1]))
    assert res.keep.tolist() == [False, True, False] and res.keep_of.tolist() == [1, 1, 1]
    assert res.cluster_size.tolist() == [3, 3, 3]


def test_dedup_near_step_prefers_verified_and_reports():
    rng = random.Random(3)
    a = _doc(rng, 100)
    rows = [
        make_record(" ".join(a), id="x"),
        make_record(" ".join(_edit(a, 1, rng)), id="y", verification="pass"),
        make_record(" ".join(_doc(rng, 100)), id="z"),
    ]
    out, st = dedup.dedup_near(make_table(*rows), dedup.MinHashConfig())
    assert out.column("id").to_pylist() == ["y", "z"]
    assert dict(st.dropped) == {"near_duplicate": 1} and "near-duplicate of y" in st.examples[0].detail
    assert st.counters["confirmed_pairs"] == 1


def test_short_prompts_use_character_shingles():
    cfg = dedup.MinHashConfig()
    texts = ["Compute the sum of the first ten primes", "Compute the sum of the first ten prime"]
    res = dedup.find_near_duplicates(texts, cfg)
    assert res.keep.tolist() == [True, False]


def test_same_wording_different_numbers_is_not_a_duplicate():
    text = (
        "A warehouse has {a} shelves and each shelf holds {b} boxes. The manager counts the boxes every "
        "morning before the trucks arrive and writes the total on the board next to the loading door. "
        "At noon a second crew restocks the shelves that were emptied in the morning, and the manager "
        "checks the count again before closing. How many boxes does the warehouse hold when every shelf is full?"
    )
    # J = 0.87; 32 bands x 4 rows make the pair an LSH candidate with certainty, so the test is about the
    # number check, not about LSH luck (16 x 8 finds a J = 0.87 pair 99.8 % of the time).
    cfg = dedup.MinHashConfig(bands=32, rows=4)
    res = dedup.find_near_duplicates([text.format(a=12, b=30), text.format(a=12, b=31)], cfg)
    assert res.keep.all() and res.rejected_numbers == 1
    res = dedup.find_near_duplicates(
        [text.format(a=12, b=30), text.format(a=12, b=31)], cfg.model_copy(update={"require_same_numbers": False})
    )
    assert not res.keep.all()


def test_config_checks_bands_and_has_a_stable_digest():
    with pytest.raises(ValueError, match="bands\\*rows"):
        dedup.MinHashConfig(num_perm=64)
    cfg = dedup.MinHashConfig()
    assert cfg.digest() == dedup.MinHashConfig().digest() != dedup.MinHashConfig(seed=2).digest()
    assert abs(cfg.lsh_threshold - 0.707) < 0.01
    assert cfg.detection_probability(0.8) > 0.94


def test_documents_larger_than_a_signature_block():
    rng = random.Random(4)
    a = _doc(rng, 6000)  # > 4096 shingles: signed in pieces
    texts = [" ".join(a), " ".join(_edit(a, 20, rng)), " ".join(_doc(rng, 6000))]
    cfg = dedup.MinHashConfig()
    sh = dedup.shingle_texts(texts, cfg)
    sig = dedup.minhash_signatures(sh, cfg)
    small = dedup.minhash_signatures(dedup.shingle_texts(texts[:1], cfg), cfg)
    assert np.array_equal(sig[:, :1], small)
    assert dedup.find_near_duplicates(texts, cfg).keep.tolist() == [True, False, True]


def test_empty_and_tiny_inputs():
    res = dedup.find_near_duplicates([], dedup.MinHashConfig())
    assert len(res.keep) == 0
    res = dedup.find_near_duplicates(["", "", None], dedup.MinHashConfig())
    assert res.keep.all()  # empty prompts are the empty filter's business, not near-dup's


def test_hash_strings_blocks_do_not_change_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """hash_strings works in blocks of bounded bytes (its temporaries are ~40 bytes per byte of text, issue 12):
    every block size, and chunked input, give the hashes of one pass over everything."""
    from infialign.pipeline.curation import _ngrams

    values = ["", None, "a", "Let x be 2.", "é" * 40, "x" * 300, "two words", None, "", "√2 ≈ 1.414"] * 7
    arr = pa.array(values, pa.string()).slice(3)
    monkeypatch.setattr(_ngrams, "_HASH_BLOCK_BYTES", 1 << 40)
    whole = _ngrams.hash_strings(arr)
    for block in (1, 7, 64, 301):  # below, around and above the longest string (300 bytes)
        monkeypatch.setattr(_ngrams, "_HASH_BLOCK_BYTES", block)
        assert (_ngrams.hash_strings(arr) == whole).all()
        assert (_ngrams.hash_strings(pa.chunked_array([arr.slice(0, 20), arr.slice(20)])) == whole).all()
        assert (_ngrams.hash_strings(arr.cast(pa.large_string())) == whole).all()
    assert len(set(whole[[0, 1, 2, 4]].tolist())) == 4  # distinct texts, distinct hashes


def test_shingles_do_not_depend_on_row_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Near-dup shingles a block of documents at a time (issue 12: every prompt's tokens and n-gram passes
    at once held ~3 KB a prompt); word and character shingles come out the same for every block size."""
    rng = random.Random(5)
    texts = [" ".join(_doc(rng, k)) for k in (0, 3, 9, 12, 40)] * 3 + [None, "", "Ünïcödé ｆｕｌｌ width words here"]
    cfg = dedup.MinHashConfig()
    monkeypatch.setattr(dedup, "_SHINGLE_BLOCK_ROWS", 10_000)
    whole = dedup.shingle_texts(texts, cfg)
    assert (whole.counts > 0).sum() >= 10
    for rows in (1, 4, 7):
        monkeypatch.setattr(dedup, "_SHINGLE_BLOCK_ROWS", rows)
        got = dedup.shingle_texts(pa.array(texts, pa.string()), cfg)
        assert np.array_equal(got.hashes, whole.hashes) and np.array_equal(got.offsets, whole.offsets)
