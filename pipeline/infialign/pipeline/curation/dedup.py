"""Exact and near-duplicate removal on the normalised prompt.

Both steps are global filters: whether a row is a duplicate depends on other rows, so they run on the
whole (gathered) table. Among duplicates one representative is kept, chosen by
``_arrow.representative_rank``: a response with an independent reference answer first (decided on what
is known before verification: see ``_arrow.representative_tier``), then the longer CoT, then the shorter prompt,
then the smaller id (seeds-algorithms.md §1.4 D3 "keep the one with the longer response";
curation-anchors.md §5.2(4)). The choice does not depend on row order, so every executor agrees.

Near-dup is MinHash LSH with every candidate pair confirmed by its true Jaccard, then union-find:

1. **Shingles** (``_ngrams``): word 5-grams of the normalised prompt; prompts with fewer than
   ``short_doc_words`` words use character 5-grams instead, because one changed word removes up to five
   of a short prompt's few word 5-grams. Character and word shingles are salted apart.
2. **Signatures**: ``num_perm`` affine permutations ``x -> a*x + b (mod 2^32)`` (``a`` odd, so each is a
   bijection of the 32-bit space) applied to all shingles of a block of documents as one NumPy outer
   product; ``np.minimum.reduceat`` takes the per-document minimum. Blocks are sized to stay in cache. No
   Python loop runs per shingle or per permutation.
3. **LSH**: ``bands x rows`` (explicit; default 16 x 8, S-curve midpoint ``(1/16)^(1/8) = 0.71``,
   P(candidate | J=0.8) = 0.95). Each band's rows hash to one uint64; documents are bucketed by sorting.
   We never let a library pick (b, r): datasketch's automatic choice at 0.8 is (9, 13), which finds only
   46 % of pairs at J≈0.81 (curation-anchors.md §3.1).
4. **Verification**: every candidate pair's true Jaccard of the two shingle sets is computed; only pairs
   with ``J >= threshold`` (and, by default, the same numbers in the same order) become edges. LSH
   collisions alone never drop a row, so there are no false positives beyond the threshold's own
   definition.
5. **Clusters**: union-find over the confirmed edges; each cluster keeps its best-ranked member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from infialign.pipeline.curation import _arrow, _config, _ngrams, normalize, stats, steps
from pydantic import Field, model_validator

__all__ = [
    "ExactDedupConfig",
    "MinHashConfig",
    "NearDupResult",
    "Shingles",
    "dedup_exact",
    "dedup_near",
    "dedup_texts",
    "find_near_duplicates",
    "jaccard",
    "lsh_candidate_pairs",
    "minhash_signatures",
    "shingle_texts",
    "union_find",
]

_SIG_MAX: Final = np.uint32(0xFFFFFFFF)
_CHUNK_SHINGLES: Final = 4096  # shingles per signature block: num_perm x 4096 x 4 B = 2 MiB at 128 perms
_BAND_K: Final = np.random.default_rng(0xB4DC0DE).integers(0, 2**62, size=64, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_WORD_SALT: Final = np.uint64(0x2545F4914F6CDD1D)


class ExactDedupConfig(_config.CurationConfig):
    """Exact duplicates: identical normalised text (``normalize.normalize_array``)."""

    text: Literal["prompt", "prompt_response"] = Field(
        "prompt",
        description="What must be identical: the prompt alone (default; the same problem twice is a "
        "duplicate whatever its answer) or prompt plus response. [RECON] curation-anchors.md §5.2(3).",
    )


class MinHashConfig(_config.CurationConfig):
    """One shared config for every pass of MinHash near-dup (house rule 11); ``digest()`` goes into
    ``_SUCCESS.json``. The seed fixes the permutations, so signatures from any worker are comparable."""

    text: Literal["prompt", "prompt_response"] = Field("prompt", description="Text to shingle. [RECON]")
    ngram: int = Field(5, ge=1, le=32, description="Word n-gram size. [3P] datatrove / text-dedup / data-juicer use 5.")
    char_ngram: int = Field(5, ge=1, le=32, description="Character n-gram size for short prompts. [RECON]")
    short_doc_words: int = Field(
        10,
        ge=0,
        description="Prompts with fewer words use character n-grams: with word 5-grams they have at most a "
        "handful of shingles. A pair straddling the bound is compared across schemes (J = 0), so the "
        "bound is kept low: curation-anchors.md §5.2(4) suggests ~20, and at 20 eight of the built-in "
        "world's 80 planted near duplicates straddled it. 0 disables character shingles. [RECON]",
    )
    strip_instructions: bool = Field(
        False,
        description="Drop the instruction boilerplate (normalize.INSTRUCTION_SUFFIXES) before shingling. Off "
        "by default: on the built-in world, stripping the shared suffix makes a short prompt's prefix edit "
        "('Here is a problem. ...') a large relative change, and near-dup recall fell from 80/80 to 54/80; "
        "with the number check, keeping it merged no distinct problems (0 false merges). Prompts that differ "
        "only in boilerplate are still caught by dedup_exact, which strips it. [RECON]",
    )
    num_perm: int = Field(128, ge=8, le=1024, description="Permutations. [3P] datasketch default; seeds §5.")
    bands: int = Field(16, ge=1, description="LSH bands b. [RECON] curation-anchors.md §5.2(4).")
    rows: int = Field(8, ge=1, description="Rows per band r; b*r must not exceed num_perm. [RECON]")
    threshold: float = Field(0.8, gt=0.0, le=1.0, description="True Jaccard a candidate pair needs to count as a duplicate. [RECON]")
    seed: int = Field(1, ge=0, description="Seed of the permutations. Every worker must share it.")
    require_same_numbers: bool = Field(
        True,
        description="A pair is a duplicate only if its texts contain the same digit runs in the same order. "
        "Two problems that differ only in a number are different problems, however high their Jaccard "
        "(the built-in world plants such hard negatives). [RECON]",
    )
    max_bucket_pairs: int = Field(
        64,
        ge=2,
        description="Buckets with more members than this are not expanded into all pairs: each member is "
        "paired with the bucket's first member and its neighbour in the bucket (star + chain). Such "
        "buckets come from many near-identical prompts, which the star already links. [RECON]",
    )

    @model_validator(mode="after")
    def _bands_fit(self) -> MinHashConfig:
        if self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"bands*rows = {self.bands}*{self.rows} = {self.bands * self.rows} exceeds num_perm="
                f"{self.num_perm}; lower bands or rows, or raise num_perm"
            )
        return self

    @property
    def lsh_threshold(self) -> float:
        """Midpoint of the LSH S-curve, ``(1/b)^(1/r)``: the Jaccard at which a pair is found half the time."""
        return float((1.0 / self.bands) ** (1.0 / self.rows))

    def detection_probability(self, jaccard: float) -> float:
        """P(a pair with this Jaccard shares at least one band) = ``1 - (1 - J^r)^b``."""
        return float(1.0 - (1.0 - jaccard**self.rows) ** self.bands)


# ---------------------------------------------------------------------------------------------------------
# exact dedup


def _texts(table: pa.Table, which: str) -> pa.Array:
    prompts = _arrow.prompt_texts(table)
    if which == "prompt":
        return prompts
    return pc.binary_join_element_wise(prompts, _arrow.column(table, "response").fill_null(""), "\n")


def dedup_texts(normalized: Sequence[str] | pa.Array, rank: np.ndarray) -> np.ndarray:
    """Index of the kept representative for every text (itself when kept), over exact equality.

    ``normalized`` may be an Arrow array: only texts whose hash collides with another's become Python
    strings (a million prompts as a list cost ~400 MB, issue 12)."""
    n = len(normalized)
    keep_of = np.arange(n)
    if n == 0:
        return keep_of
    arr = normalized if isinstance(normalized, (pa.Array, pa.ChunkedArray)) else pa.array(list(normalized), pa.string())
    h = _ngrams.hash_strings(arr)
    order = np.lexsort((rank, h))
    hs = h[order]
    starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]])
    ends = np.r_[starts[1:], n]
    multi = ends - starts > 1
    for s, e in zip(starts[multi], ends[multi]):
        members = order[s:e]
        texts = arr.take(pa.array(members)).to_pylist()
        best: dict[str, int] = {}
        for i, text in zip(members.tolist(), texts):  # rank order: the first of each distinct string is its representative
            keep_of[i] = best.setdefault(text, int(i))
    return keep_of


def _summarised(cfg: ExactDedupConfig | MinHashConfig) -> tuple[str, ...]:
    """Comparing prompts, dedup reads the response only to rank duplicates (has it text, how long is it),
    so the streaming executor may pass its summary; comparing prompt + response it needs the text."""
    return ("response",) if cfg.text == "prompt" else ()


@steps.step(
    "dedup_exact",
    kind="filter",
    scope="global",
    reads=("id", "messages", "response", "response_tokens", "answer", "verification", "provenance"),
    summarised=_summarised,
)
def dedup_exact(table: pa.Table, cfg: ExactDedupConfig) -> tuple[pa.Table, stats.StepStats]:
    """Drop rows whose normalised prompt equals a better-ranked row's (reason ``exact_duplicate``)."""
    norm = normalize.normalize_array(_texts(table, cfg.text))
    keep_of = dedup_texts(norm, _arrow.representative_rank(table))
    ids = _arrow.strings(table, "id")
    reasons = [None if k == i else "exact_duplicate" for i, k in enumerate(keep_of)]
    details = ["" if k == i else f"duplicate of {ids[k]}" for i, k in enumerate(keep_of)]
    return _arrow.filter_rows(table, reasons, "dedup_exact", details)


# ---------------------------------------------------------------------------------------------------------
# MinHash LSH near-dup


@dataclass(frozen=True)
class Shingles:
    """Shingle hashes of many documents: document ``d`` owns ``hashes[offsets[d]:offsets[d+1]]``."""

    hashes: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def doc(self, d: int) -> np.ndarray:
        return self.hashes[self.offsets[d] : self.offsets[d + 1]]

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


# Documents shingled at once. Normalised tokens, token hashes and the n-gram passes cost several times
# the shingles they leave (~3 KB a prompt measured in dedup_near's peak at 150k rows, issue 12); per block
# they stay bounded, and only the shingle hashes (8 bytes each) of all documents remain.
_SHINGLE_BLOCK_ROWS: Final = 16_384


def shingle_texts(texts: pa.Array | pa.ChunkedArray | Sequence[str | None], cfg: MinHashConfig) -> Shingles:
    """Normalise and shingle texts: word n-grams, or character n-grams below ``short_doc_words`` words.

    Every document is shingled on its own, so blocks of documents give the shingles of one pass."""
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.string())
    n = len(arr)
    if n <= _SHINGLE_BLOCK_ROWS:
        return _shingle_block(arr, cfg)
    blocks = [_shingle_block(arr.slice(r0, _SHINGLE_BLOCK_ROWS), cfg) for r0 in range(0, n, _SHINGLE_BLOCK_ROWS)]
    hashes = np.concatenate([b.hashes for b in blocks])
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.concatenate([b.counts for b in blocks]), out=offsets[1:])
    return Shingles(hashes, offsets)


def _shingle_block(texts: pa.Array | pa.ChunkedArray, cfg: MinHashConfig) -> Shingles:
    tokens = normalize.normalize_tokens(texts, strip_instructions=cfg.strip_instructions)
    n_words = pc.list_value_length(tokens).to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(n_words)
    short = (n_words < cfg.short_doc_words) & (n_words > 0)
    parts = []
    long_idx = np.flatnonzero(~short)
    if len(long_idx):
        sub = tokens if len(long_idx) == n else tokens.take(pa.array(long_idx))
        units, offs = _ngrams.token_units(sub)
        h, o = _ngrams.ngram_hashes(units, offs, cfg.ngram)
        parts.append((long_idx, h ^ _WORD_SALT, o))
    short_idx = np.flatnonzero(short)
    if len(short_idx):
        joined = pc.binary_join(tokens.take(pa.array(short_idx)), " ").to_pylist()
        units, offs = _ngrams.char_units(joined)
        h, o = _ngrams.ngram_hashes(units, offs, cfg.char_ngram)
        parts.append((short_idx, h, o))
    hashes, offsets = _ngrams.assemble(n, parts)
    return Shingles(hashes, offsets)


def _permutations(cfg: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    bits = np.random.Generator(np.random.PCG64(cfg.seed)).bit_generator.random_raw(2 * cfg.num_perm)
    bits = (np.asarray(bits, dtype=np.uint64) >> np.uint64(32)).astype(np.uint32)
    return bits[: cfg.num_perm] | np.uint32(1), bits[cfg.num_perm :]


def minhash_signatures(shingles: Shingles, cfg: MinHashConfig) -> np.ndarray:
    """``(num_perm, n_docs)`` uint32 signatures; a document without shingles gets all ``0xFFFFFFFF``.

    Each permutation is ``x -> a*x + b (mod 2^32)`` with ``a`` odd (a bijection of the 32-bit space) on the
    top 32 bits of the 64-bit shingle hash; 32-bit lanes halve the memory traffic of the 64-bit version
    (measured 0.15 s -> 0.075 s for 3M shingles x 128 permutations). Permutation-major, so band ``k`` is
    the contiguous row block ``[k*r, (k+1)*r)``.
    """
    a, b = _permutations(cfg)
    n = len(shingles)
    sig = np.full((cfg.num_perm, n), _SIG_MAX, dtype=np.uint32)
    counts = shingles.counts
    docs = np.flatnonzero(counts > 0)
    if len(docs) == 0:
        return sig
    starts = shingles.offsets[:-1][docs]
    ends = shingles.offsets[1:][docs]
    buf = np.empty((cfg.num_perm, _CHUNK_SHINGLES), dtype=np.uint32)
    hashes = (shingles.hashes >> np.uint64(32)).astype(np.uint32)
    i = 0
    with np.errstate(over="ignore"):
        while i < len(docs):
            # Take documents while their shingles fit the block; a bigger document goes alone, in pieces.
            s0 = int(starts[i])
            j = max(int(np.searchsorted(ends, s0 + _CHUNK_SHINGLES, side="right")), i + 1)
            s1 = int(ends[j - 1])
            if s1 - s0 <= _CHUNK_SHINGLES:
                block = buf[:, : s1 - s0]
                np.multiply(a[:, None], hashes[None, s0:s1], out=block)
                block += b[:, None]
                sig[:, docs[i:j]] = np.minimum.reduceat(block, starts[i:j] - s0, axis=1)
            else:  # one document larger than a block
                mins = np.full(cfg.num_perm, _SIG_MAX, dtype=np.uint32)
                for c0 in range(s0, s1, _CHUNK_SHINGLES):
                    c1 = min(s1, c0 + _CHUNK_SHINGLES)
                    block = buf[:, : c1 - c0]
                    np.multiply(a[:, None], hashes[None, c0:c1], out=block)
                    block += b[:, None]
                    np.minimum(mins, block.min(axis=1), out=mins)
                sig[:, docs[i]] = mins
            i = j
    return sig


def _band_keys(sig: np.ndarray, cfg: MinHashConfig) -> np.ndarray:
    """``(bands, n_docs)`` uint64 hash of each band's ``rows`` signature values."""
    n = sig.shape[1]
    keys = np.empty((cfg.bands, n), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(cfg.bands):
            block = sig[band * cfg.rows : (band + 1) * cfg.rows].astype(np.uint64)
            acc = (block * _BAND_K[: cfg.rows, None]).sum(axis=0, dtype=np.uint64)
            keys[band] = acc ^ np.uint64(band)
    return _ngrams.mix64(keys)


def lsh_candidate_pairs(sig: np.ndarray, cfg: MinHashConfig, active: np.ndarray | None = None) -> np.ndarray:
    """Unique ``(i, j)`` pairs, ``i < j``, of documents that share at least one band bucket.

    ``active`` (bool per document) excludes documents without shingles, which would otherwise all share
    the all-``0xFFFFFFFF`` signature.
    """
    n = sig.shape[1]
    docs = np.arange(n) if active is None else np.flatnonzero(active)
    if len(docs) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    keys = _band_keys(sig if len(docs) == n else sig[:, docs], cfg)  # no copy of every signature (512 B a row) when all are active
    found: list[np.ndarray] = []
    for band in range(cfg.bands):
        order = np.argsort(keys[band], kind="stable")
        ks = keys[band][order]
        same = ks[1:] == ks[:-1]
        if not same.any():
            continue
        run_id = np.concatenate([[0], np.cumsum(~same)])
        run_len = np.bincount(run_id)[run_id]
        small = run_len <= cfg.max_bucket_pairs
        max_small = int(run_len[small].max()) if small.any() else 1
        # All pairs inside small buckets: members d apart in the sorted order, for every d.
        for d in range(1, max_small):
            p = np.flatnonzero((run_id[:-d] == run_id[d:]) & small[:-d])
            if len(p) == 0:
                break
            found.append(np.stack([order[p], order[p + d]], axis=1))
        big = ~small
        if big.any():
            p = np.flatnonzero(same & big[:-1])  # chain: neighbours in the bucket
            found.append(np.stack([order[p], order[p + 1]], axis=1))
            first = np.flatnonzero(big & np.r_[True, ~same])  # star: first member to every member
            heads = np.repeat(first, run_len[first])
            members = heads + np.concatenate([np.arange(run_len[f]) for f in first])
            keep = members != heads
            found.append(np.stack([order[heads[keep]], order[members[keep]]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = docs[np.concatenate(found)]
    lo = np.minimum(pairs[:, 0], pairs[:, 1]).astype(np.int64)
    hi = np.maximum(pairs[:, 0], pairs[:, 1]).astype(np.int64)
    uniq, _ = _ngrams.sorted_unique(lo * n + hi)
    return np.stack([uniq // n, uniq % n], axis=1)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sets of shingle hashes (duplicates within an array are ignored)."""
    a = np.unique(a)
    b = np.unique(b)
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def _verify(shingles: Shingles, pairs: np.ndarray) -> np.ndarray:
    """True Jaccard of every candidate pair of shingle sets, vectorised.

    Each document's shingles are reduced to distinct 40-bit hashes once (a collision inside one pair has
    odds of ~1e-7); each pair's two sets are tagged with the pair's index in the top 24 bits, and one sort
    of both sides counts the shared elements of all pairs at once. Pairs go in chunks of 2^18 (2^23 peaked at 10 GB on 100k templated prompts).
    """
    out = np.empty(len(pairs), dtype=np.float64)
    if len(pairs) == 0:
        return out
    docs, inv = np.unique(pairs, return_inverse=True)
    inv = inv.reshape(pairs.shape)
    counts = shingles.counts[docs]
    src = np.repeat(shingles.offsets[:-1][docs], counts) + _ngrams.ragged_arange(counts)
    local = np.repeat(np.arange(len(docs), dtype=np.uint64), counts)
    keys, _ = _ngrams.sorted_unique((local << np.uint64(40)) | (shingles.hashes[src] >> np.uint64(24)))
    hashes = keys & np.uint64((1 << 40) - 1)
    ucount = np.bincount((keys >> np.uint64(40)).astype(np.int64), minlength=len(docs))
    ustart = np.cumsum(ucount) - ucount
    step = 1 << 18  # pairs per chunk: the sides, their concatenation and the sort cost ~50 bytes per shingle
    for c0 in range(0, len(pairs), step):
        a, b = inv[c0 : c0 + step, 0], inv[c0 : c0 + step, 1]
        sides = []
        for side in (a, b):
            n = ucount[side]
            pid = np.repeat(np.arange(len(side), dtype=np.uint64), n)
            sides.append((pid << np.uint64(40)) | hashes[np.repeat(ustart[side], n) + _ngrams.ragged_arange(n)])
        both = np.sort(np.concatenate(sides))
        same = both[1:] == both[:-1]
        inter = np.bincount((both[1:][same] >> np.uint64(40)).astype(np.int64), minlength=len(a))
        union = ucount[a] + ucount[b] - inter
        out[c0 : c0 + step] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return out


def union_find(n: int, edges: np.ndarray) -> np.ndarray:
    """Root label of every node over undirected ``edges`` (``(m, 2)`` ints); path halving, union by index."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in edges.tolist():
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.fromiter((find(x) for x in range(n)), dtype=np.int64, count=n)


@dataclass(frozen=True)
class NearDupResult:
    """Outcome of near-dup over ``n`` documents.

    ``keep_of[i]`` is the index of the representative kept for ``i`` (``i`` itself when ``i`` is kept);
    ``best_jaccard[i]`` is the highest confirmed Jaccard of ``i`` to any document (0 when none);
    ``edges`` are the confirmed pairs (true Jaccard >= threshold, same numbers) and ``edge_jaccard`` theirs.
    """

    keep_of: np.ndarray
    best_jaccard: np.ndarray
    candidate_pairs: int
    confirmed_pairs: int
    cluster_size: np.ndarray
    rejected_numbers: int = 0
    edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    edge_jaccard: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def keep(self) -> np.ndarray:
        return self.keep_of == np.arange(len(self.keep_of))


def find_near_duplicates(texts: pa.Array | Sequence[str | None], cfg: MinHashConfig, rank: np.ndarray | None = None) -> NearDupResult:
    """Near-duplicate clusters of ``texts``; each cluster keeps its member with the lowest ``rank``
    (default: the first)."""
    sh = shingle_texts(texts, cfg)
    n = len(sh)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return NearDupResult(empty, np.zeros(0), 0, 0, empty)
    rank = np.arange(n) if rank is None else np.asarray(rank)
    sig = minhash_signatures(sh, cfg)
    pairs = lsh_candidate_pairs(sig, cfg, active=sh.counts > 0)
    jac = _verify(sh, pairs) if len(pairs) else np.zeros(0)
    ok = jac >= cfg.threshold
    if cfg.require_same_numbers and ok.any():
        docs = np.unique(pairs[ok])
        subset = texts.take(pa.array(docs)) if isinstance(texts, pa.Array) else [texts[d] for d in docs]
        nums = dict(zip(docs.tolist(), _ngrams.digit_keys(subset)))
        ok &= np.fromiter((nums.get(i) == nums.get(j) for i, j in pairs.tolist()), dtype=bool, count=len(pairs))
    edges = pairs[ok]
    best = np.zeros(n)
    if len(edges):
        np.maximum.at(best, edges[:, 0], jac[ok])
        np.maximum.at(best, edges[:, 1], jac[ok])
    roots = union_find(n, edges)
    # Representative of each cluster: its member with the lowest rank.
    order = np.lexsort((rank, roots))
    first = np.r_[True, roots[order][1:] != roots[order][:-1]]
    rep_of_root = np.empty(n, dtype=np.int64)
    rep_of_root[roots[order][first]] = order[first]
    sizes = np.bincount(roots, minlength=n)
    return NearDupResult(
        keep_of=rep_of_root[roots],
        best_jaccard=best,
        candidate_pairs=len(pairs),
        confirmed_pairs=len(edges),
        rejected_numbers=int(((jac >= cfg.threshold) & ~ok).sum()) if len(pairs) else 0,
        edges=edges,
        edge_jaccard=jac[ok],
        cluster_size=sizes[roots],
    )


@steps.step(
    "dedup_near",
    kind="filter",
    scope="global",
    reads=("id", "messages", "response", "response_tokens", "answer", "verification", "provenance"),
    summarised=_summarised,
)
def dedup_near(table: pa.Table, cfg: MinHashConfig) -> tuple[pa.Table, stats.StepStats]:
    """Drop near-duplicates (reason ``near_duplicate``), keeping each cluster's best-ranked row."""
    res = find_near_duplicates(_texts(table, cfg.text), cfg, _arrow.representative_rank(table))
    ids = _arrow.strings(table, "id")
    reasons: list[str | None] = []
    details: list[str] = []
    for i, k in enumerate(res.keep_of.tolist()):
        if k == i:
            reasons.append(None)
            details.append("")
        else:
            reasons.append("near_duplicate")
            details.append(f"near-duplicate of {ids[k]} (cluster of {int(res.cluster_size[i])}, best J={res.best_jaccard[i]:.2f})")
    counters = {
        "candidate_pairs": res.candidate_pairs,
        "confirmed_pairs": res.confirmed_pairs,
        "rejected_different_numbers": res.rejected_numbers,
    }
    return _arrow.filter_rows(table, reasons, "dedup_near", details, counters)
