"""Benchmark decontamination: drop training prompts that leak evaluation items (seeds §1.7).

Benchmarks are record-schema tables (the prompt is the text of their user messages, the solution their
``response``) or plain lists of prompts, keyed by a benchmark name. :meth:`DecontamIndex.build` indexes
them once; the index is a few sorted NumPy arrays, so it pickles cheaply to every shard and worker.

Checks, all on the *match form* of a text (:func:`match_form`): ``normalize``d (digits kept), LaTeX commands
and symbols dropped, digits split from letters, and every single-letter token (a variable) written ``_``. So
n-grams are over words and numbers only ("for positive numbers a , b , c ," is no longer an 8-gram of which
half is punctuation), ``\\frac{1}{2}`` and ``1/2`` agree, and renaming variables changes nothing.

- **prompt n-grams** (default n=8): any word 8-gram of the training prompt that occurs in a benchmark
  prompt. [SRC] huggingface/open-r1 scripts/decontaminate.py uses 8-grams on the problem; measured here it
  catches 192/200 lightly edited leaks where 13-grams catch 151 (curation-anchors.md §3.4). Prompts shorter
  than n words are compared whole (their single "whole" shingle equals only an identical short prompt).
  seeds §1.7 names n=15 for InfiAlign [SRC]; set ``prompt_ngram=15`` to follow the paper literally.
- **full n-grams** (default n=13, prompt + response): catches a leaked *solution* inside a CoT.
  [RECON] GPT-3 / NeMo Curator legacy 13-gram convention.
- **fuzzy ratio** for short prompts (<= ``fuzzy_max_words`` words): rapidfuzz ``fuzz.ratio`` >= 95 against
  short benchmark prompts of similar length ([SRC] open-thoughts decontaminate.py uses ratio 95); difflib
  when rapidfuzz is missing (much slower).
- **embedding cosine** (off by default): max cosine to benchmark prompts > 0.9 ([SRC] seeds §1.7
  "embedding similarity checks (>0.9)"); flag paraphrases that share no n-gram.

- **numbers + words** (``word_overlap``, items with digits): the text has all of the item's numbers, in any
  order, and ``word_overlap`` of its distinct content words. Catches leaks whose sentences are reordered or
  whose wording around the numbers changed, which break every digit n-gram. [RECON]

Number-aware by default: evidence against an item counts only when the text contains the item's numbers
(its digit runs, with their minus signs, as a multiset: order and neighbours do not matter), and an item
with numbers indexes only its n-grams that contain a digit. An item *without* digits indexes all its n-grams,
so a single shared phrase would flag a different problem on the same topic: its n-gram evidence counts only
when the text has ``min_ngram_share`` of the item's distinct n-grams. Templated problems ("find the gcd of {a} and {b}") share long
n-grams and fuzzy ratios above 95 with every benchmark item of the same template; numbers tell them
apart. A leak copies the numbers, so it still matches, also inside a longer text ("Problem 12. ...").
The price: a problem that extends an item's numbers (the item's "3 shirts, 2 hats" plus "and 4 scarves")
still counts; on the built-in world that flagged 8 of 19,400 clean prompts (benchmarks/bench_decontam.py).

The n-gram index is a sorted array of 64-bit n-gram hashes; a shard's n-grams are looked up with one
``np.searchsorted``, instead of intersecting every document with every benchmark item.

Scoring and the keep decision are separate steps (house rule 10): :func:`score_contamination` writes
sparse scores ``decontam:<benchmark>:<method>`` (n-gram hit counts, fuzzy ratio, cosine), and
:func:`filter_contamination` applies the thresholds, so thresholds can change without re-scoring. Its
counters ``contaminated_<benchmark>`` are the per-benchmark hit counts for the report.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from infialign.pipeline.curation import _arrow, _config, _ngrams, embed, normalize, stats, steps
from pydantic import Field

__all__ = [
    "SCORE_PREFIX",
    "DecontamConfig",
    "DecontamIndex",
    "Match",
    "decontamination_skipped",
    "filter_contamination",
    "hits_by_benchmark",
    "match_form",
    "number_key",
    "score_contamination",
]

SCORE_PREFIX: Final = "decontam:"
FUZZY_FLOOR: Final = 80.0
"""Fuzzy ratios below this are not written as scores (keeps the map sparse); thresholds must be above it."""
COSINE_FLOOR: Final = 0.8
"""Cosines below this are not written as scores; ``embedding_threshold`` must be above it."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class DecontamConfig(_config.CurationConfig):
    """Which checks run and their thresholds. ``None`` disables a check."""

    prompt_ngram: int = Field(8, ge=1, le=64, description="Word n-gram size on prompts. [SRC] open-r1 (8).")
    min_ngram_hits: int = Field(1, ge=1, description="Shared prompt n-grams that make a leak. [SRC] open-r1: any.")
    full_ngram: int | None = Field(
        13, ge=1, le=64, description="Word n-gram size on prompt+response; None disables. [RECON] GPT-3/NeMo 13."
    )
    min_full_hits: int = Field(1, ge=1, description="Shared prompt+response n-grams that make a leak. [RECON]")
    fuzzy_ratio: float | None = Field(
        95.0, gt=FUZZY_FLOOR, le=100.0, description="fuzz.ratio for short prompts; None disables. [SRC] open-thoughts."
    )
    fuzzy_max_words: int = Field(
        50, ge=1, description="Prompts (training and benchmark) up to this many words get the fuzzy check. [RECON]"
    )
    embedding: embed.EmbedConfig | None = Field(
        None, description="Embedding check (off by default: it needs the model and is slow on CPU). [RECON]"
    )
    embedding_threshold: float = Field(0.9, gt=COSINE_FLOOR, le=1.0, description="A cosine strictly above this makes a leak. [SRC] seeds §1.7 (>0.9).")
    number_aware: bool = Field(
        True,
        description="Evidence against an item counts only if the text contains every number of the item (as a "
        "multiset, in any order), and items with digits index only n-grams that contain a digit. A shared "
        "template with other numbers is a different problem, not a leak. [RECON]",
    )
    min_ngram_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="For an item without digits, the share of its distinct n-grams a text must contain (besides "
        "min_ngram_hits / min_full_hits): one common phrase ('for positive real numbers a b c prove that') is "
        "not a leak. [RECON] benchmarks/bench_decontam_quality.py",
    )
    word_overlap: float | None = Field(
        None,
        gt=0,
        le=1,
        description="numbers+words check for items with digits: a text that has all the item's numbers and this "
        "share of its distinct content words is a leak, whatever the order or the wording around the numbers. "
        "None (default) disables: on templated pools (the built-in world) it flags other problems whose small "
        "numbers happen to be a superset of the item's; 0.7 is what the competition fixture was measured with. "
        "[RECON] benchmarks/bench_decontam_quality.py",
    )


@dataclass(frozen=True)
class Match:
    """One piece of evidence that a text leaks a benchmark item."""

    benchmark: str
    item_id: str
    method: str  # "ngram" | "full" | "fuzzy" | "cosine"
    value: float


def _prompts_and_full(data: pa.Table | Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """(prompts, prompt+solution texts, item ids) of a benchmark given as a table or a list of prompts."""
    if isinstance(data, pa.Table):
        prompts = _arrow.prompt_texts(data).to_pylist()
        responses = _arrow.strings(data, "response") if "response" in data.column_names else [None] * len(prompts)
        ids = _arrow.strings(data, "id") if "id" in data.column_names else [str(i) for i in range(len(prompts))]
    else:
        prompts = [str(p) for p in data]
        responses = [None] * len(prompts)
        ids = [str(i) for i in range(len(prompts))]
    full = [p if not r else f"{p}\n{r}" for p, r in zip(prompts, responses)]
    return prompts, full, [str(i) for i in ids]


def number_key(text: str | None) -> str:
    """The digit runs of a text (after NFKC) as ``",3,14,"``: containment of keys = contiguous containment
    of number sequences."""
    return _ngrams.digit_keys([text], brackets_subtract=True)[0]


_MAX_KEYED_NUMBERS = 30
"""Documents with more numbers than this check fuzzy candidates by scanning, not by number-key lookups."""


def _group_positions(keys: Sequence[str]) -> dict[str, tuple[int, ...]]:
    grouped: dict[str, list[int]] = {}
    for pos, key in enumerate(keys):
        grouped.setdefault(key, []).append(pos)
    return {k: tuple(v) for k, v in grouped.items()}


def _number_counts(key: str) -> Counter[str]:
    return Counter(key.strip(",").split(",")) if key != ",," else Counter()


def _numbers_fit(doc_key: str, item_key: str) -> bool:
    """The item's numbers are a sub-multiset of the document's (any order, anything in between)."""
    if item_key == ",,":
        return True
    if item_key in doc_key:
        return True
    need = _number_counts(item_key)
    have = _number_counts(doc_key)
    return all(have[k] >= v for k, v in need.items())


_LATEX_COMMAND = r"\\ [a-z]+"  # in normalised text: "\\frac" became "\\ frac"
_STOPWORDS: Final = frozenset(
    "_ a an the of and or to in on at by for from with is are be been was were that this these those it its as if "
    "then than so such what which find compute determine let given show prove all each every any some".split()
)


def match_form(texts: Sequence[str | None] | pa.Array, placeholder: bool = True) -> pa.Array:
    """The text decontamination compares: normalised, without LaTeX commands and symbols, digits split from
    letters, and with ``placeholder`` single letters (variables) as ``_``. Words and numbers are the only tokens.

    Items with digits are matched in the placeholder form (renamed variables still match; their numbers keep
    other problems apart). Items without digits are matched with their letters: there the formula's variables
    are most of what tells "prove a^a b^b c^c >= a^b b^c c^a" from "prove (a+b)(b+c)(c+a) >= 8abc"."""
    tokens = _match_tokens(texts)
    return pc.binary_join(_with_placeholders(tokens) if placeholder else tokens, " ")


def _match_tokens(texts: Sequence[str | None] | pa.Array) -> pa.ListArray:
    """The tokens of :func:`match_form` without placeholders. Both forms come from these (one pass of the
    regexes instead of two), and n-grams are hashed from them directly: splitting the joined form on
    whitespace gives the same tokens back (a token holds no whitespace and is never empty)."""
    arr = texts if isinstance(texts, pa.Array) else pa.array([t or "" for t in texts], pa.string())
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    return normalize.by_ascii(arr.fill_null(""), _match_tokens_ascii, _match_tokens_unicode)


def _match_tokens_unicode(arr: pa.Array) -> pa.ListArray:
    """:func:`_match_tokens` with Arrow's Unicode kernels (any text)."""
    # After normalising: the instruction boilerplate it strips is matched with its \\boxed{} in place.
    norm = normalize.normalize_array(arr)
    norm = pc.replace_substring_regex(norm, _LATEX_COMMAND, " ")
    norm = pc.replace_substring_regex(norm, r"[^\p{L}\p{N}\p{M}\s]", " ")
    norm = pc.replace_substring_regex(norm, r"(\p{N})(\p{L})", r"\1 \2")
    norm = pc.replace_substring_regex(norm, r"(\p{L})(\p{N})", r"\1 \2")
    return normalize.tokenize_array(norm)


# Byte classes of lowercased ASCII text for _match_tokens_ascii: bytes 9-13 and space are what Arrow's ASCII
# split treats as whitespace; a backslash has its own class so that LaTeX commands are found run by run.
_WS, _SYMBOL, _BACKSLASH, _LETTER, _DIGIT = 0, 1, 2, 3, 4
_BYTE_CLASS = np.full(256, _SYMBOL, dtype=np.uint8)
_BYTE_CLASS[[9, 10, 11, 12, 13, 32]] = _WS
_BYTE_CLASS[ord("\\")] = _BACKSLASH
_BYTE_CLASS[ord("a") : ord("z") + 1] = _LETTER
_BYTE_CLASS[ord("0") : ord("9") + 1] = _DIGIT
_TOKEN_BLOCK_BYTES: Final = 1 << 22  # text bytes per block: the temporaries (~15 bytes per byte) stay ~60 MiB


def _match_tokens_ascii(arr: pa.Array) -> pa.ListArray:
    """:func:`_match_tokens` of ASCII texts from their bytes: the same tokens as the Unicode kernels without
    their 5 regex passes (2.5 -> 0.9 CPU s on the prompt+response texts of 20k long CoTs, measured).

    On lowercased ASCII text the Unicode path's steps reduce to: a token is a maximal run of letters or of
    digits; a run of letters whose nearest non-whitespace byte before it (in the same text) is a backslash
    is a LaTeX command and dropped (normalising made the backslash its own token, so ``\\ [a-z]+`` removed
    the run's letters; a run right after a digit is inside a token and stays); anything else separates tokens."""
    text = normalize.lower_ascii(arr)
    offsets, data = _ngrams._string_buffers(text)
    n = len(text)
    mask = np.zeros(len(data), dtype=bool)  # the bytes of kept tokens
    lens: list[np.ndarray] = []
    per_row = np.zeros(n, dtype=np.int64)
    for row, end in _ngrams.row_blocks(offsets, _TOKEN_BLOCK_BYTES):
        lens.append(_ascii_token_block(offsets[row : end + 1], data, mask, per_row[row:end]))
    lo, hi = (int(offsets[0]), int(offsets[-1])) if n else (0, 0)
    tok_len = np.concatenate(lens) if lens else np.zeros(0, np.int32)
    tok_off = np.zeros(len(tok_len) + 1, dtype=np.int32)
    np.cumsum(tok_len, out=tok_off[1:])
    row_off = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(per_row, out=row_off[1:])
    tokens = pa.StringArray.from_buffers(len(tok_len), pa.py_buffer(tok_off), pa.py_buffer(data[lo:hi][mask[lo:hi]]))
    return pa.ListArray.from_arrays(pa.array(row_off), tokens)


def _ascii_token_block(offsets: np.ndarray, data: np.ndarray, mask: np.ndarray, per_row: np.ndarray) -> np.ndarray:
    """Token lengths of the rows at absolute byte ``offsets`` of ``data``; marks their bytes in ``mask`` and
    writes each row's token count to ``per_row`` (a view of the caller's array)."""
    lo, hi = int(offsets[0]), int(offsets[-1])
    size = hi - lo
    if size == 0:
        return np.zeros(0, np.int32)
    rel = offsets - lo
    cls = _BYTE_CLASS[data[lo:hi]]
    # Runs of one class, cut where a text starts.
    new_run = np.empty(size, dtype=bool)
    new_run[0] = True
    np.not_equal(cls[1:], cls[:-1], out=new_run[1:])
    row_starts = rel[:-1][rel[:-1] < rel[1:]]
    new_run[row_starts] = True
    start = np.flatnonzero(new_run)
    kind = cls[start]
    stop = np.r_[start[1:], size]
    word = kind >= _LETTER
    # LaTeX commands: a letter run after a backslash run, or after whitespace after one, in the same text.
    r = np.flatnonzero(kind == _LETTER)
    r = r[r >= 1]
    prev = kind[r - 1]
    back = np.where(prev == _BACKSLASH, r - 1, -1)
    spaced = (prev == _WS) & (r >= 2)
    back[spaced] = np.where(kind[r[spaced] - 2] == _BACKSLASH, r[spaced] - 2, -1)
    cand, back = r[back >= 0], back[back >= 0]
    if cand.size:
        # The backslash and the letters in the same text: no text starts after the backslash, up to the letters.
        same = np.searchsorted(rel, stop[back] - 1, side="right") == np.searchsorted(rel, start[cand], side="right")
        cand = cand[same]
        word[cand] = False
    mask[lo:hi] = cls >= _LETTER
    for c in cand.tolist():  # few: one per LaTeX command
        mask[lo + start[c] : lo + stop[c]] = False
    kept = np.flatnonzero(word)
    # Each row start begins a run, so a row's tokens are the kept runs between its first run and the next row's.
    first_run = np.searchsorted(start, rel[:-1])
    per_row[:] = np.diff(np.r_[np.searchsorted(kept, first_run), len(kept)])
    return (stop[kept] - start[kept]).astype(np.int32)


def _with_placeholders(tokens: pa.ListArray) -> pa.ListArray:
    """Every single-letter token (a variable) written ``_``."""
    flat = pc.list_flatten(tokens)
    single = pc.and_(pc.equal(pc.utf8_length(flat), 1), pc.utf8_is_alpha(flat))
    return pa.ListArray.from_arrays(tokens.offsets, pc.if_else(single, pa.scalar("_"), flat))


def _ngrams_both_forms(tokens: pa.ListArray, n: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(``token_ngrams`` of :func:`_with_placeholders` of ``tokens``, ``token_ngrams`` of ``tokens``) from one
    dictionary: a single-letter token's unit is that of ``"_"``, so the placeholder form is never built
    (1.5 -> 0.9 CPU s for n=13 on the prompt+response texts of 20k long CoTs, measured)."""
    dictionary, idx, offsets = _ngrams.token_dictionary(tokens)
    plain = _ngrams.hash_strings(dictionary)
    single = pc.and_(pc.equal(pc.utf8_length(dictionary), 1), pc.utf8_is_alpha(dictionary)).to_numpy(zero_copy_only=False)
    placeholder = np.where(single, _ngrams.hash_strings(pa.array(["_"]))[0], plain)
    return _ngrams.ngram_hashes(placeholder[idx], offsets, n), _ngrams.ngram_hashes(plain[idx], offsets, n)


def _content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in text.split() if w not in _STOPWORDS and not any(c.isdigit() for c in w))


def _index(
    normalized: pa.Array, n: int, has_digits: np.ndarray, number_aware: bool, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (n-gram hash, item) entries, one per distinct pair, and each item's count of distinct indexed
    n-grams. Number-aware: items with digits index only their n-grams that contain a digit, so shared
    template wording alone never links a text to them."""
    h, o, digit, real = _ngrams.word_ngrams_informative(normalized, n)
    item = _ngrams.doc_ids(o)
    # A window that is mostly variables ("_ _ _ _ _ _ _ 8") says nothing about which problem it is from.
    keep = (real >= 0.5) & items[item]
    if number_aware:
        keep &= digit | ~has_digits[item]
    h, item = h[keep], item[keep]
    order = np.lexsort((item, h))
    h, item = h[order], item[order]
    first = np.r_[True, (h[1:] != h[:-1]) | (item[1:] != item[:-1])] if len(h) else np.zeros(0, bool)
    h, item = h[first], item[first].astype(np.int64)  # built once per benchmark set: lexsort is fine here
    return h, item, np.bincount(item, minlength=len(has_digits))


Evidence = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(documents, items, values)``: one row per (document, benchmark item) pair with evidence."""


def _no_evidence() -> Evidence:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)


def _concat(a: Evidence, b: Evidence) -> Evidence:
    """Evidence of two lookups over disjoint item sets."""
    return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]), np.concatenate([a[2], b[2]])


def _lookup(index_h: np.ndarray, index_item: np.ndarray, hashes: np.ndarray, offsets: np.ndarray) -> Evidence:
    """Per (document, item) pair, the number of the document's n-gram positions found in the item."""
    if hashes.size == 0 or index_h.size == 0:
        return _no_evidence()
    # Prefilter on the top 22 bits (a 4 MiB table, ~2 % false passes at 90k indexed n-grams), so only a
    # few candidates pay for the binary search.
    table = np.zeros(1 << 22, dtype=bool)
    table[index_h >> np.uint64(42)] = True
    cand = np.flatnonzero(table[hashes >> np.uint64(42)])
    left = np.searchsorted(index_h, hashes[cand], side="left")
    right = np.searchsorted(index_h, hashes[cand], side="right")
    found = right > left
    hit, left, right = cand[found], left[found], right[found]
    if hit.size == 0:
        return _no_evidence()
    span = right - left
    pos = np.repeat(left, span) + _ngrams.ragged_arange(span)
    docs = _ngrams.doc_ids(offsets)[np.repeat(hit, span)]
    n_items = int(index_item.max()) + 1
    keys, counts = _ngrams.sorted_unique(docs.astype(np.int64) * n_items + index_item[pos])
    return keys // n_items, keys % n_items, counts.astype(np.float64)


@dataclass(frozen=True)
class DecontamIndex:
    """Benchmarks indexed for lookup. Build with :meth:`build`; immutable and picklable.

    Items are numbered globally; ``item_bench[i]`` is item ``i``'s benchmark and ``item_ids[i]`` its id.
    """

    cfg: DecontamConfig
    names: tuple[str, ...]
    item_bench: np.ndarray
    item_ids: tuple[str, ...]
    item_numbers: tuple[str, ...]
    item_full_numbers: tuple[str, ...]
    prompt_h: np.ndarray
    prompt_item: np.ndarray
    prompt_count: np.ndarray  # distinct indexed n-grams per item
    prompt_h_plain: np.ndarray  # items without digits, in the letter form (see match_form)
    prompt_item_plain: np.ndarray
    full_h: np.ndarray
    full_item: np.ndarray
    full_count: np.ndarray
    full_h_plain: np.ndarray
    full_item_plain: np.ndarray
    item_words: tuple[frozenset[str], ...]  # distinct content words of each prompt (numbers+words check)
    anchors: dict[str, tuple[int, ...]]  # number -> items with digits whose rarest number it is
    short_texts: tuple[str, ...]  # normalised short benchmark prompts, sorted by length
    short_lens: tuple[int, ...]
    short_item: np.ndarray
    short_by_key: dict[str, tuple[int, ...]]  # item number key -> positions in short_texts
    emb: np.ndarray | None

    @classmethod
    def build(cls, benchmarks: Mapping[str, pa.Table | Sequence[str]], cfg: DecontamConfig) -> DecontamIndex:
        """Index ``{benchmark name: record table or list of prompts}``."""
        if not benchmarks:
            raise ValueError("decontamination needs at least one benchmark; pass {name: table or prompts}")
        names = tuple(benchmarks)
        for name in names:
            if not _NAME.match(name):
                raise ValueError(f"benchmark name {name!r} must match {_NAME.pattern} (it becomes a score key)")
        prompts: list[str] = []
        fulls: list[str] = []
        ids: list[str] = []
        bench: list[int] = []
        for b, name in enumerate(names):
            p, f, i = _prompts_and_full(benchmarks[name])
            prompts += p
            fulls += f
            ids += i
            bench += [b] * len(p)
        numbers = tuple(_ngrams.digit_keys(prompts, brackets_subtract=True))
        full_numbers = tuple(_ngrams.digit_keys(fulls, brackets_subtract=True))
        has_digits = np.array([k != ",," for k in numbers], dtype=bool)
        norm = match_form(prompts)
        prompt_h, prompt_item, prompt_count = _index(norm, cfg.prompt_ngram, has_digits, cfg.number_aware, has_digits)
        plain = match_form(prompts, False)
        plain_h, plain_item, plain_count = _index(plain, cfg.prompt_ngram, has_digits, cfg.number_aware, ~has_digits)
        prompt_count = prompt_count + plain_count
        empty = np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(len(prompts), np.int64)
        full_h, full_item, full_count = empty
        full_plain_h, full_plain_item = empty[:2]
        if cfg.full_ngram is not None:
            full_digits = np.array([k != ",," for k in full_numbers], dtype=bool)
            full_h, full_item, full_count = _index(match_form(fulls), cfg.full_ngram, full_digits, cfg.number_aware, full_digits)
            full_plain_h, full_plain_item, c = _index(match_form(fulls, False), cfg.full_ngram, full_digits, cfg.number_aware, ~full_digits)
            full_count = full_count + c
        words = _ngrams.word_counts(plain)
        norm_list = plain.to_pylist()
        # Each item with digits is filed under its rarest number, so a text is compared only with the items
        # filed under one of its own numbers.
        counts = [_number_counts(k) for k in numbers]
        freq = Counter(x for c in counts for x in c)
        anchors: dict[str, list[int]] = {}
        for i, c in enumerate(counts):
            if c:
                anchors.setdefault(min(c, key=lambda x: (freq[x], -len(x), x)), []).append(i)
        short = [int(i) for i in np.argsort([len(t) for t in norm_list], kind="stable") if 0 < words[i] <= cfg.fuzzy_max_words]
        emb = embed.embed_texts(prompts, cfg.embedding) if cfg.embedding is not None else None
        return cls(
            cfg=cfg,
            names=names,
            item_bench=np.asarray(bench, dtype=np.int32),
            item_ids=tuple(ids),
            item_numbers=numbers,
            item_full_numbers=full_numbers,
            prompt_h=prompt_h,
            prompt_item=prompt_item,
            prompt_count=prompt_count,
            prompt_h_plain=plain_h,
            prompt_item_plain=plain_item,
            full_h=full_h,
            full_item=full_item,
            full_count=full_count,
            full_h_plain=full_plain_h,
            full_item_plain=full_plain_item,
            item_words=tuple(_content_words(t) for t in norm_list),
            anchors={k: tuple(v) for k, v in anchors.items()},
            short_texts=tuple(norm_list[i] for i in short),
            short_lens=tuple(len(norm_list[i]) for i in short),
            short_item=np.asarray(short, dtype=np.int64),
            short_by_key=_group_positions([numbers[i] for i in short]),
            emb=emb,
        )

    def digest(self) -> str:
        """Config digest plus a hash of the indexed content, for ``_SUCCESS.json``."""
        h = hashlib.sha256(self.cfg.digest().encode())
        h.update(repr((self.names, self.item_ids, self.item_numbers, self.item_full_numbers)).encode())
        for arr in (
            self.item_bench, self.prompt_h, self.prompt_item, self.prompt_count, self.prompt_h_plain, self.prompt_item_plain,
            self.full_h, self.full_item, self.full_count, self.full_h_plain, self.full_item_plain,
        ):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update("\x1f".join(self.short_texts).encode())
        return "sha256:" + h.hexdigest()

    # -- evidence -------------------------------------------------------------------------------------

    def _numbers_permit(self, found: Evidence, doc_keys: Sequence[str], full: bool = False) -> Evidence:
        """Keep the pairs whose numbers permit a match: the item's numbers occur in the document's, in any order
        for prompts; for ``full`` the digit runs of prompt+solution contiguously and in order in the document's
        prompt+response (a leaked solution copies them in order; in a long CoT full of numbers, a multiset would
        almost always be contained)."""
        if not self.cfg.number_aware or found[0].size == 0:
            return found
        item_keys = self.item_full_numbers if full else self.item_numbers
        fits = (lambda d, i: i == ",," or i in d) if full else _numbers_fit
        keep = np.fromiter(
            (fits(doc_keys[d], item_keys[i]) for d, i in zip(found[0].tolist(), found[1].tolist())),
            dtype=bool,
            count=found[0].size,
        )
        return found[0][keep], found[1][keep], found[2][keep]

    def _share_permits(self, found: Evidence, count: np.ndarray, number_keys: tuple[str, ...], min_hits: int) -> Evidence:
        """Keep the pairs with enough n-grams: an item without digits needs ``min_ngram_share`` of its distinct
        n-grams (one common phrase is not a leak); an item with digits needs only ``min_hits``."""
        if found[0].size == 0 or self.cfg.min_ngram_share <= 0:
            return found
        digit_free = np.fromiter((number_keys[i] == ",," for i in found[1].tolist()), dtype=bool, count=found[1].size)
        need = np.where(digit_free, np.maximum(min_hits, np.ceil(self.cfg.min_ngram_share * count[found[1]])), 0)
        keep = found[2] >= need
        return found[0][keep], found[1][keep], found[2][keep]

    def _numbers_and_words(self, norm_prompts: list[str], doc_keys: Sequence[str]) -> Evidence:
        """Share of an item's distinct content words in a text that has all the item's numbers (items with digits)."""
        if self.cfg.word_overlap is None or not self.anchors:
            return _no_evidence()
        docs: list[int] = []
        items: list[int] = []
        values: list[float] = []
        # _numbers_fit with each item's and document's number counts built once (Counter construction was
        # most of this check's 1.0 CPU s on the 7.8k-row equality corpus), and content words only when needed.
        need_of: dict[int, Counter[str]] = {}
        for d, key in enumerate(doc_keys):
            if key == ",,":
                continue
            nums = set(key.strip(",").split(","))
            cands = [i for x in nums for i in self.anchors.get(x, ())]
            if not cands:
                continue
            have: Counter[str] | None = None
            words: frozenset[str] | None = None
            for i in cands:
                want = self.item_words[i]
                if not want:
                    continue
                item_key = self.item_numbers[i]
                if item_key != ",," and item_key not in key:
                    need = need_of.get(i)
                    if need is None:
                        need = need_of[i] = _number_counts(item_key)
                    if have is None:
                        have = _number_counts(key)
                    if not all(have[k] >= v for k, v in need.items()):
                        continue
                if words is None:
                    words = _content_words(norm_prompts[d])
                share = len(want & words) / len(want)
                if share >= COSINE_FLOOR * self.cfg.word_overlap:  # sparse, but keep near-threshold values for reports
                    docs.append(d)
                    items.append(i)
                    values.append(share)
        if not docs:
            return _no_evidence()
        return np.asarray(docs, np.int64), np.asarray(items, np.int64), np.asarray(values, np.float64)

    def _fuzzy(self, norm_prompts: list[str], words: np.ndarray, doc_keys: Sequence[str]) -> Evidence:
        """Ratios >= FUZZY_FLOOR of short documents against short items of similar length."""
        out: dict[tuple[int, int], float] = {}
        if self.cfg.fuzzy_ratio is None or not self.short_texts:
            return _no_evidence()
        try:
            from rapidfuzz import fuzz

            def ratio(a: str, b: str) -> float:
                return float(fuzz.ratio(a, b, score_cutoff=FUZZY_FLOOR))
        except ImportError:
            import difflib

            def ratio(a: str, b: str) -> float:
                m = difflib.SequenceMatcher(None, a, b, autojunk=False)
                if m.real_quick_ratio() * 100 < FUZZY_FLOOR or m.quick_ratio() * 100 < FUZZY_FLOOR:
                    return 0.0
                return m.ratio() * 100

        lo_f = FUZZY_FLOOR / (200.0 - FUZZY_FLOOR)  # ratio >= F needs the shorter >= lo_f * the longer
        for d, text in enumerate(norm_prompts):
            if not (0 < words[d] <= self.cfg.fuzzy_max_words):
                continue
            n = len(text)
            lo = bisect.bisect_left(self.short_lens, int(np.floor(n * lo_f)))
            hi = bisect.bisect_right(self.short_lens, int(np.ceil(n / lo_f)))
            if lo >= hi:
                continue  # no short item of similar length
            for k in self._fuzzy_candidates(doc_keys[d] if self.cfg.number_aware else None, lo, hi):
                item = int(self.short_item[k])
                r = ratio(text, self.short_texts[k])
                if r >= FUZZY_FLOOR:
                    out[(d, item)] = r
        if not out:
            return _no_evidence()
        pairs = np.array(list(out), dtype=np.int64)
        return pairs[:, 0], pairs[:, 1], np.array(list(out.values()), dtype=np.float64)

    def _fuzzy_candidates(self, doc_key: str | None, lo: int, hi: int) -> list[int]:
        """Short items in the length window ``[lo, hi)`` whose numbers the document's contain.

        Number-aware, the candidates come from the items filed under each contiguous run of the document's
        numbers (few lookups per document), instead of scanning every item of similar length.
        """
        nums = [] if doc_key is None or doc_key == ",," else doc_key.strip(",").split(",")
        if doc_key is None or len(nums) > _MAX_KEYED_NUMBERS:
            found = range(lo, hi)
            if doc_key is None:
                return list(found)
            return [k for k in found if _numbers_fit(doc_key, self.item_numbers[int(self.short_item[k])])]
        if hi - lo <= len(nums) * (len(nums) + 1) // 2:
            # Fewer items in the window than number runs to look up: test each item's key. A key ",a,b," is a
            # substring of the document's ",n1,...,nk," exactly when a, b are a contiguous run of n1..nk (commas
            # delimit the numbers), so this gives the same items as the lookups.
            keys_at = self.item_numbers
            return [k for k in range(lo, hi) if (key := keys_at[int(self.short_item[k])]) == ",," or key in doc_key]
        keys = {",,"} | {"," + ",".join(nums[i:j]) + "," for i in range(len(nums)) for j in range(i + 1, len(nums) + 1)}
        return sorted(k for key in keys for k in self.short_by_key.get(key, ()) if lo <= k < hi)

    def evidence(self, prompts: Sequence[str | None], responses: Sequence[str | None] | None = None) -> dict[str, Evidence]:
        """Per method, ``(texts, items, values)`` for every item a text matches (numbers permitting)."""
        n = len(prompts)
        doc_keys = _ngrams.digit_keys(list(prompts), brackets_subtract=True) if self.cfg.number_aware else []
        # One pass of match_form's regexes per text for both forms; n-grams straight from the tokens
        # (the same hashes as word_ngrams of the joined form, without joining and splitting again).
        plain_tokens = _match_tokens(list(prompts))
        plain = pc.binary_join(plain_tokens, " ")
        norm_list = plain.to_pylist()
        out: dict[str, Evidence] = {}
        (h, o), (ph, po) = _ngrams_both_forms(plain_tokens, self.cfg.prompt_ngram)
        found = _concat(_lookup(self.prompt_h, self.prompt_item, h, o), _lookup(self.prompt_h_plain, self.prompt_item_plain, ph, po))
        found = self._numbers_permit(found, doc_keys)
        out["ngram"] = self._share_permits(found, self.prompt_count, self.item_numbers, self.cfg.min_ngram_hits)
        if self.cfg.full_ngram is not None:
            resp = list(responses) if responses is not None else [None] * n
            full = [(p or "") if not r else f"{p or ''}\n{r}" for p, r in zip(prompts, resp)]
            full_tokens = _match_tokens(full)
            (fh, fo), (gh, go) = _ngrams_both_forms(full_tokens, self.cfg.full_ngram)
            del full_tokens
            found = _concat(_lookup(self.full_h, self.full_item, fh, fo), _lookup(self.full_h_plain, self.full_item_plain, gh, go))
            found = self._numbers_permit(found, doc_keys)
            found = self._numbers_permit(found, _ngrams.digit_keys(full, brackets_subtract=True) if self.cfg.number_aware else [], full=True)
            out["full"] = self._share_permits(found, self.full_count, self.item_full_numbers, self.cfg.min_full_hits)
        words = pc.list_value_length(plain_tokens).to_numpy(zero_copy_only=False).astype(np.int64)  # = word_counts(plain)
        out["fuzzy"] = self._fuzzy(norm_list, words, doc_keys)
        if self.cfg.number_aware:
            out["numwords"] = self._numbers_and_words(norm_list, doc_keys)
        if self.cfg.embedding is not None and self.emb is not None and n:
            q = embed.embed_texts(list(prompts), self.cfg.embedding)
            parts = []
            for s in range(0, n, 1024):
                sim = q[s : s + 1024] @ self.emb.T
                d, item = np.nonzero(sim >= COSINE_FLOOR)
                parts.append((d + s, item, sim[d, item].astype(np.float64)))
            found = tuple(np.concatenate(x) for x in zip(*parts))
            out["cosine"] = self._numbers_permit(found, doc_keys)  # type: ignore[arg-type]
        return out

    def score_texts(self, prompts: Sequence[str | None], responses: Sequence[str | None] | None = None) -> dict[str, np.ndarray]:
        """Scores ``decontam:<benchmark>:<method>``: per benchmark, the best value over its items (NaN where
        nothing matched). For n-gram methods the value is the number of matching n-gram positions."""
        n = len(prompts)
        scores: dict[str, np.ndarray] = {}
        for method, (docs, items, values) in self.evidence(prompts, responses).items():
            if docs.size == 0:
                continue
            best = np.full((n, len(self.names)), np.nan)
            np.fmax.at(best, (docs, self.item_bench[items]), values)
            for b, name in enumerate(self.names):
                if not np.isnan(best[:, b]).all():
                    scores[f"{SCORE_PREFIX}{name}:{method}"] = best[:, b]
        return scores

    def explain(self, prompt: str, response: str | None = None, limit: int = 5) -> list[Match]:
        """The benchmark items a text matches, strongest first (for the examples of a report)."""
        matches = [
            Match(self.names[int(self.item_bench[item])], self.item_ids[item], method, float(value))
            for method, (_, items, values) in self.evidence([prompt], [response]).items()
            for item, value in zip(items.tolist(), values.tolist())
        ]
        return sorted(matches, key=lambda m: (-m.value, m.benchmark, m.item_id, m.method))[:limit]


# ---------------------------------------------------------------------------------------------------------
# steps


@steps.step("score_contamination", kind="transform", scope="row", reads=("messages", "response"), writes=("scores",))
def score_contamination(table: pa.Table, index: DecontamIndex) -> tuple[pa.Table, stats.StepStats]:
    """Write ``decontam:<benchmark>:<method>`` evidence scores (sparse; absent = nothing found)."""
    n = table.num_rows
    prompts = _arrow.prompt_texts(table).to_pylist()
    responses = _arrow.strings(table, "response")
    scores = index.score_texts(prompts, responses)
    # Clear stale evidence from an earlier run over the same rows, then write the new values.
    stale = {k: np.full(n, np.nan) for k in _arrow.score_keys_with_prefix(table, SCORE_PREFIX) if k not in scores}
    out = _arrow.set_scores(table, {**stale, **scores})
    flagged = int(np.any([~np.isnan(v) for v in scores.values()], axis=0).sum()) if scores else 0
    return out, stats.StepStats.passthrough("score_contamination", n, {"rows_with_evidence": flagged})


def _is_hit(method: str, value: float, cfg: DecontamConfig) -> bool:
    if method == "ngram":
        return value >= cfg.min_ngram_hits
    if method == "full":
        return cfg.full_ngram is not None and value >= cfg.min_full_hits
    if method == "fuzzy":
        return cfg.fuzzy_ratio is not None and value >= cfg.fuzzy_ratio
    if method == "cosine":
        return cfg.embedding is not None and value > cfg.embedding_threshold  # strictly above: the source's "> 0.9"
    if method == "numwords":
        return cfg.word_overlap is not None and value >= cfg.word_overlap
    return False


@steps.step("decontamination_skipped", kind="filter", scope="global", reads=("id",))
def decontamination_skipped(table: pa.Table, reason: str) -> tuple[pa.Table, stats.StepStats]:
    """A funnel entry where decontamination was asked for but could not run (``reason``, e.g. no benchmarks):
    the report shows a check that did not happen instead of leaving it out."""
    return table, stats.StepStats.passthrough("decontamination_skipped", table.num_rows, {f"skipped_{reason}": 1})


@steps.step("filter_contamination", kind="filter", scope="row", reads=("id", "scores"))
def filter_contamination(table: pa.Table, cfg: DecontamConfig) -> tuple[pa.Table, stats.StepStats]:
    """Drop rows whose evidence passes a threshold (reason ``contaminated``); count hits per benchmark."""
    n = table.num_rows
    keys = _arrow.score_keys_with_prefix(table, SCORE_PREFIX)
    values = _arrow.get_scores(table, keys)
    hits: list[list[str]] = [[] for _ in range(n)]
    counters: dict[str, float] = {}
    per_row_bench: list[set[str]] = [set() for _ in range(n)]
    for key in keys:
        _, bench, method = key.split(":", 2)
        col = values[key]
        for i in np.flatnonzero(~np.isnan(col)).tolist():
            if _is_hit(method, float(col[i]), cfg):
                hits[i].append(f"{bench} via {method}={col[i]:g}")
                per_row_bench[i].add(bench)
    for benches in per_row_bench:
        for bench in benches:
            counters[f"contaminated_{bench}"] = counters.get(f"contaminated_{bench}", 0) + 1
    reasons = ["contaminated" if h else None for h in hits]
    details = ["; ".join(h) for h in hits]
    return _arrow.filter_rows(table, reasons, "filter_contamination", details, counters)


def hits_by_benchmark(st: stats.StepStats) -> dict[str, int]:
    """Per-benchmark counts of dropped rows from ``filter_contamination``'s stats (a row can count twice)."""
    prefix = "contaminated_"
    return {k[len(prefix) :]: int(v) for k, v in sorted(st.counters.items()) if k.startswith(prefix)}
