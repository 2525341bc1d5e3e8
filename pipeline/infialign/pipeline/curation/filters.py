"""Rule filters: "filter out noise (non-English, half-baked answers) with rule-based precision" (seeds §1.2).

Two steps, scores first (house rule 10, NeMo Curator's score/keep split):

- :func:`score_rules` (transform) writes the measurements into ``scores``;
- :func:`filter_rules` (filter) reads them and drops each failing row under the first rule it fails,
  in this order, with these reasons:

================  =========================  ===================================================  ==========
rule              reason                     drops when                                           tag
================  =========================  ===================================================  ==========
empty             ``empty_prompt``           no user text                                         [SRC]
                  ``empty_response``         no response, only with ``require_response``          [RECON]
language          ``non_english``            < 80 % of prose letters are Latin, or (>= 8 prose    [SRC] rule,
                                             words) more foreign than English stopwords; math     [RECON] numbers
                                             (formulas, LaTeX, Greek symbols) is neutral
length            ``prompt_too_short``       prompt < 10 characters                               [RECON] §1.2(4)
                  ``prompt_too_long``        prompt > 16384 characters (~4096 tokens)             [RECON] §1.2(4)
                  ``response_too_short``     response < ``min_response_chars`` (off)              [RECON]
                  ``response_too_long``      response >= 32768 tokens or ``max_response_chars``   [RECON] §1.3
truncation        ``truncated_cot``          unclosed ``<think>``, nothing after ``</think>``,    [SRC] "half-baked"
                                             or the answer part ends mid-sentence (see
                                             ``_CONTINUATION``: letters end code and prose fine)
final answer      ``no_final_answer``        a math row with no reference answer and no           [SRC] "math must
                                             ``\\boxed{}`` in its response                          have \\boxed"
                  ``no_boxed_answer``        a math response without ``\\boxed{}``, only with       [SRC]
                                             ``require_boxed_response`` (use after distillation)
repetition        ``repetition``             a word 20-gram occurs >= 5 times, or >= 50 % of the  [RECON] §1.2(4)
                                             response's word 10-gram positions repeat an earlier
                                             one, or it compresses >= 10x (loops of symbols)
================  =========================  ===================================================  ==========

The final-answer and truncation rules read ``domain``, so a domain labeller runs before these steps (the
pipeline order in :mod:`infialign.pipeline.curation`); a row without a domain is not treated as math.

Every rule has an ``enabled`` switch; ``None`` disables a bound. Scores are NaN (absent) where a
measurement does not apply (no response, no letters), and an absent score never drops a row.
"""

from __future__ import annotations

import re
import zlib
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from infialign.pipeline.curation import _arrow, _config, _ngrams, answers, domains, stats, steps
from pydantic import Field

__all__ = [
    "DROP_REASONS",
    "RULE_SCORE_KEYS",
    "EmptyRule",
    "FinalAnswerRule",
    "LanguageRule",
    "LengthRule",
    "RepetitionRule",
    "RuleFilterConfig",
    "TruncationRule",
    "filter_rules",
    "rule_steps",
    "score_rules",
]

RULE_SCORE_KEYS: Final = (
    "prompt_chars",
    "prompt_words",
    "response_chars",
    "lang_latin_ratio",
    "lang_en_stopwords",
    "lang_foreign_stopwords",
    "has_final_answer",
    "has_boxed_response",
    "cot_unclosed_think",
    "cot_chars_after_think",
    "cot_ends_mid_sentence",
    "cot_ends_in_word",
    "cot_ends_dangling_word",
    "cot_states_answer",
    "rep_max_ngram_count",
    "rep_dup_ngram_frac",
    "rep_compression_ratio",
)
DROP_REASONS: Final = (
    "empty_prompt",
    "empty_response",
    "non_english",
    "prompt_too_short",
    "prompt_too_long",
    "response_too_short",
    "response_too_long",
    "truncated_cot",
    "no_final_answer",
    "no_boxed_answer",
    "repetition",
)


class EmptyRule(_config.CurationConfig):
    enabled: bool = True
    require_response: bool = Field(False, description="Drop rows without a response. Off at curate time: distill fills them in.")


class LanguageRule(_config.CurationConfig):
    enabled: bool = True
    min_latin_ratio: float = Field(
        0.8, ge=0, le=1, description="Share of prose letters that must be Latin; math (formulas, LaTeX, Greek and math-alphabet "
        "symbols) is neutral. [RECON] §1.2(1)."
    )
    stopword_min_words: int = Field(
        8, ge=1, description="Prose words (two letters or more, outside formulas) a prompt needs before the stopword test "
        "applies (short math prompts lack them). [RECON]"
    )


class LengthRule(_config.CurationConfig):
    enabled: bool = True
    min_prompt_chars: int | None = Field(10, ge=0, description="[RECON] seeds §1.2(4).")
    max_prompt_chars: int | None = Field(16384, ge=1, description="~4096 tokens. [RECON] seeds §1.2(4).")
    min_response_chars: int | None = Field(None, ge=0, description="Off by default. [RECON]")
    max_response_chars: int | None = Field(None, ge=1, description="Off by default. [RECON]")
    max_response_tokens: int | None = Field(
        32768,
        ge=1,
        description="Responses of this many tokens or more hit the teacher's max_tokens, so they are cut. [RECON] seeds §1.3.",
    )


class TruncationRule(_config.CurationConfig):
    enabled: bool = True
    mid_sentence: bool = Field(
        True,
        description="Also drop responses whose answer part (after </think>) ends mid-sentence: on a comma, colon, "
        "opening bracket or operator, inside an unclosed \\boxed{ or ``` fence, on a word that cannot end a "
        "sentence (the, of, and, is, ...) outside code, or, in a math domain, on a letter before any stated "
        "answer. Letters end code, option letters and prose fine. [RECON] seeds §1.2(2).",
    )


class FinalAnswerRule(_config.CurationConfig):
    enabled: bool = True
    math_domains: tuple[str, ...] = Field(tuple(sorted(domains.MATH_DOMAINS)), description="Domains (canonical labels) treated as math.")
    require_boxed_response: bool = Field(
        False,
        description="Also require \\boxed{} in the response itself. [SRC] 'math must have \\boxed answers'; "
        "turn on for distilled responses (reference solutions from the sources often lack a box).",
    )


class RepetitionRule(_config.CurationConfig):
    """Degenerate loops, over word tokens (runs of letters and digits; symbols and LaTeX command names are
    not words, so a restated formula is a few words, not a 20-gram). Measured on realistic long CoTs that
    re-check an equation 5-9 times: every word 20-gram occurs once and < 4 % of 10-gram positions repeat;
    a sentence or line repeated 20 times gives counts of 12-23 and > 85 % repeats."""

    enabled: bool = True
    ngram: int = Field(20, ge=2, le=64, description="n of the repeated word n-gram test. [RECON] seeds §1.2(4).")
    max_repeats: int = Field(5, ge=2, description="Drop when one n-gram occurs this often. [RECON] seeds §1.2(4).")
    dup_ngram: int = Field(10, ge=2, le=64, description="n of the duplicate-fraction test. [RECON] (Gopher-style)")
    max_dup_fraction: float | None = Field(
        0.5, gt=0, le=1, description="Drop when this share of n-gram positions repeat. Lenient: long CoTs restate. [RECON]"
    )
    max_compression_ratio: float | None = Field(
        10.0,
        gt=1,
        le=1000,
        description="Drop when the response's UTF-8 bytes / zlib(level 1) bytes reaches this. Catches loops without words "
        "('))))', '....'); word loops are the n-gram tests' job. Natural long CoTs measure 2-2.5, a number table 6, "
        "a sentence repeated 20 times 8.6 (tests/unit/curation/realistic_text.py). [RECON]",
    )


class RuleFilterConfig(_config.CurationConfig):
    """All rule filters. ``score_rules`` and ``filter_rules`` take the same config."""

    empty: EmptyRule = Field(default_factory=EmptyRule)
    language: LanguageRule = Field(default_factory=LanguageRule)
    length: LengthRule = Field(default_factory=LengthRule)
    truncation: TruncationRule = Field(default_factory=TruncationRule)
    final_answer: FinalAnswerRule = Field(default_factory=FinalAnswerRule)
    repetition: RepetitionRule = Field(default_factory=RepetitionRule)


# ---------------------------------------------------------------------------------------------------------
# scoring

# Stopwords are prose markers only. Single letters ("y", "é", "a") are variable names in math, and words
# that are also English or math words ("die" as in dice, "do", "per", "son", "non-" as in non-negative,
# "del" the operator, "dan"/"um" names and interjections) would let an English math problem vote
# foreign; each language keeps enough unambiguous markers without them.
_EN: Final = [
    "the", "of", "and", "to", "in", "is", "are", "was", "were", "be", "that", "this", "it", "for", "on", "with",
    "as", "by", "at", "from", "what", "which", "how", "if", "then", "there", "their", "its", "not", "all", "each",
    "has", "have", "find", "let", "many", "much", "than", "when", "where", "who", "whose", "into", "between",
    "such", "these", "those", "an", "given", "suppose", "compute", "determine", "prove", "show", "we", "can",
]
_FOREIGN: Final = {
    "fr": [
        "le", "les", "des", "est", "une", "du", "et", "que", "qui", "dans", "pour", "sur", "avec", "trouver", "soit", "sont", "nous",
        "vous", "cette",
    ],
    "de": [
        "der", "das", "und", "ist", "ein", "eine", "zu", "den", "von", "mit", "für", "auf", "sich", "nicht", "wie", "welche", "finden",
        "dass", "werden",
    ],
    "es": ["el", "los", "las", "que", "es", "en", "una", "por", "para", "con", "cuál", "encuentra", "sea", "cuántos"],
    "pt": ["os", "da", "que", "em", "uma", "para", "com", "não", "são", "qual", "quantos", "seja"],
    "it": ["il", "gli", "di", "che", "sono", "della", "delle", "quale", "trova", "sia"],
    "id": ["yang", "adalah", "dengan", "untuk", "dari", "ini", "itu", "tentukan", "berapa", "jika"],
}
# Math is neither English nor foreign, so the language scores look only at prose: display math
# (\[..\], \(..\), $$..$$), LaTeX commands, and any token holding an operator or bracket are removed
# first. A token is a run of Latin/Greek letters, digits, punctuation and symbols, so unspaced CJK text
# next to a formula is never removed with it. Hyphens are not operators: "non-negative" stays prose.
_MATH_SPAN: Final = r"(?s)\\\[.*?\\\]|\\\(.*?\\\)|\$\$.*?\$\$"
_LATEX_CMD: Final = r"\\[A-Za-z]+"
_TOKEN_CHAR: Final = r"[\p{Latin}\p{Greek}\p{N}\p{P}\p{S}]"
_OPERATOR: Final = r"[=+*/^_<>|(){}\[\]∂∇∑∏∫√≤≥≠±×÷·∈∉⊂⊆∪∩→⇒≈≡∞]"
_FORMULA_TOKEN: Final = _TOKEN_CHAR + "*" + _OPERATOR + _TOKEN_CHAR + "*"
# Letters that are neutral in the script ratio: Common-script letters (ℝ, 𝑥: the math alphabets) and runs of
# one or two Greek letters (α, π, αβ: math symbols). A run of three or more is a Greek word, so Greek
# prose still counts as non-Latin. Two passes: a match consumes the character after its run, which
# may be the one before the next run ("α+β").
_SHORT_GREEK: Final = r"(^|[^\p{Greek}])\p{Greek}{1,2}([^\p{Greek}]|$)"
# The truncation rule's "ends mid-sentence" test reads only the answer part (after </think>). A teacher cut
# by max_tokens stops anywhere; a complete answer may end on a letter (a code identifier, "The answer is
# C", prose without a final period) but never on a continuation character or inside an open group.
# So: a continuation character, an unclosed \boxed{ or ``` fence, or (outside code) a word that cannot
# end an English sentence is a cut in every domain; a trailing letter is a cut only in a math answer that
# has not yet stated its answer (\boxed{}, "####", "answer is/: X"), since math answers end on one.
_CONTINUATION: Final = ",;:([{=+-*/\\^"
_DANGLING_WORDS: Final = frozenset({"the", "a", "an", "of", "and", "or", "is", "are"})
_STATED_ANSWER: Final = re.compile(r"(?i)\banswer\b[^\n]{0,20}?(?:\bis\b|:)\s*\S|####\s*\S")
_LAST_WORD: Final = re.compile(r"([A-Za-z]+)\W*$")


def _ending_scores(final: str, boxed: bool | None = None) -> tuple[float, float, float, float]:
    """(ends mid-sentence, ends in a letter, ends on a dangling word, states an answer) of an answer part.
    ``boxed``: whether ``last_boxed(final)`` is not None, when the caller knows (trailing whitespace
    cannot change that: a box command holds none and its content ends before it)."""
    tail = final.rstrip()
    if not tail:
        return np.nan, np.nan, np.nan, np.nan
    fenced = "```" in tail
    cut = tail[-1] in _CONTINUATION or tail.count("```") % 2 == 1 or answers.box_is_cut(tail)
    word = _LAST_WORD.search(tail[-40:]) if tail[-1].isalpha() else None
    dangling = not fenced and word is not None and word.group(1).lower() in _DANGLING_WORDS
    if boxed is None:
        boxed = answers.last_boxed(tail) is not None
    stated = boxed or _STATED_ANSWER.search(tail) is not None
    return float(cut), float(tail[-1].isalpha()), float(dangling), float(stated)


def _word_re(words: list[str]) -> str:
    return r"(?:^|[^\p{L}])(?:" + "|".join(words) + r")(?:[^\p{L}]|$)"


def _count_words(arr: pa.Array, words: list[str]) -> np.ndarray:
    # Space-pad so adjacent stopwords do not share the boundary character of the pattern.
    padded = pc.replace_substring_regex(arr, r" ", "  ")
    return pc.count_substring_regex(padded, _word_re(words)).to_numpy(zero_copy_only=False).astype(np.float64)


def _count(arr: pa.Array, pattern: str) -> np.ndarray:
    return pc.count_substring_regex(arr, pattern).to_numpy(zero_copy_only=False).astype(np.float64)


def _prose_text(prompts: pa.Array) -> pa.Array:
    """The prompts without their math (display math, LaTeX commands, formula tokens): what the language
    scores read."""
    text = pc.replace_substring_regex(prompts, _MATH_SPAN, " ")
    text = pc.replace_substring_regex(text, _LATEX_CMD, " ")
    return pc.replace_substring_regex(text, _FORMULA_TOKEN, " ")


def _regex_language_counts(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """(letters, Latin letters, words, stopword matches per list in ``[_EN, *_FOREIGN]``) of prose texts,
    with the Unicode regexes that define them."""
    scripted = pc.replace_substring_regex(text, r"\p{Common}", " ")
    for _ in range(2):
        scripted = pc.replace_substring_regex(scripted, _SHORT_GREEK, r"\1 \2")
    letters = _count(scripted, r"\p{L}")
    latin = _count(scripted, r"\p{Latin}")
    lower = pc.utf8_lower(text)
    # Words of two letters or more: single letters are variables, not evidence of a language.
    words = _count(lower, r"\p{L}{2,}")
    return letters, latin, words, [_count_words(lower, ws) for ws in (_EN, *_FOREIGN.values())]


def _byte_runs(member: np.ndarray, text_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first byte, one past the last byte) of every maximal run of ``member`` bytes over a texts' buffer; a
    run also ends where another text starts (``text_starts``: the first byte of every non-empty text)."""
    begins = member.copy()
    begins[1:] &= ~member[:-1]
    begins[text_starts] = member[text_starts]
    ends = member.copy()
    ends[:-1] &= ~member[1:] | begins[1:]
    return np.flatnonzero(begins), np.flatnonzero(ends) + 1


_ASCII_LETTER: Final = np.zeros(256, dtype=bool)
_ASCII_LETTER[[*range(65, 91), *range(97, 123)]] = True


def _ascii_language_counts(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """:func:`_regex_language_counts` of ASCII texts, from their letter runs in NumPy: the same counts.

    In ASCII, ``\\p{L}`` and ``\\p{Latin}`` are ``[A-Za-z]`` and nothing is Common-script or Greek, so letters
    are letter bytes and words runs of two or more. A stopword match of :func:`_count_words` is a whole
    letter run from the list (its words are letters) with the character on each side, and every such run
    counts: the kernel resumes after a match with ``^`` matching there, so a consumed boundary character
    does not hide the next word (measured: "the-of-and" counts 3). The regex passes ran at ~3 MB/s over
    250-character prompts (0.41 s per 5k, measured)."""
    n = len(text)
    offsets, data = _ngrams._string_buffers(text)
    lo, hi = int(offsets[0]), int(offsets[-1])
    body = data[lo:hi]
    doc_off = offsets - lo
    letter = _ASCII_LETTER[body]
    starts, ends = _byte_runs(letter, doc_off[:-1][doc_off[:-1] < len(body)])
    run_doc = np.searchsorted(doc_off, starts, side="right") - 1
    letter_total = np.zeros(len(body) + 1, dtype=np.int64)
    np.cumsum(letter, out=letter_total[1:])
    letters = (letter_total[doc_off[1:]] - letter_total[doc_off[:-1]]).astype(np.float64)
    words = np.bincount(run_doc, weights=(ends - starts >= 2).astype(np.float64), minlength=n).astype(np.float64)
    lens = ends - starts
    tok_off = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lens, out=tok_off[1:])
    run_bytes = _ASCII_FOLD[body[letter]]  # letters only, runs back to back, lowercased
    runs = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(tok_off), pa.py_buffer(run_bytes))
    enc = pc.dictionary_encode(runs)
    vocab = enc.dictionary.to_pylist()
    idx = enc.indices.to_numpy(zero_copy_only=False)
    stop_counts = []
    for ws in (_EN, *_FOREIGN.values()):
        word_set = set(ws)
        listed = np.fromiter((w in word_set for w in vocab), dtype=bool, count=len(vocab))[idx]
        stop_counts.append(np.bincount(run_doc, weights=listed.astype(np.float64), minlength=n))
    return letters, letters.copy(), words, stop_counts


def _language_scores(prompts: pa.Array) -> dict[str, np.ndarray]:
    text = _arrow.combine(_prose_text(prompts))
    n = len(text)
    ascii_rows = pc.string_is_ascii(text).fill_null(False).to_numpy(zero_copy_only=False)
    letters, latin, words = np.zeros(n), np.zeros(n), np.zeros(n)
    stop = [np.zeros(n) for _ in range(1 + len(_FOREIGN))]
    for rows, count in ((ascii_rows, _ascii_language_counts), (~ascii_rows, _regex_language_counts)):
        if rows.any():
            part = text if rows.all() else text.filter(pa.array(rows))
            got_letters, got_latin, got_words, got_stop = count(part)
            letters[rows], latin[rows], words[rows] = got_letters, got_latin, got_words
            for out, got in zip(stop, got_stop):
                out[rows] = got
    safe = np.where(words == 0, 1.0, words)
    en = stop[0] / safe
    foreign = np.max([c / safe for c in stop[1:]], axis=0)
    return {
        "lang_latin_ratio": np.where(letters > 0, latin / np.where(letters == 0, 1, letters), np.nan),
        "lang_en_stopwords": np.where(words > 0, en, np.nan),
        "lang_foreign_stopwords": np.where(words > 0, foreign, np.nan),
        "prompt_words": words,
    }


# Bytes that make up words: ASCII letters and digits, and every byte of a non-ASCII character (Greek
# letters, accented letters, CJK), which the bytes alone cannot tell from a math symbol such as "≤".
_WORD_BYTE: Final = np.zeros(256, dtype=bool)
_WORD_BYTE[[*range(48, 58), *range(65, 91), *range(97, 123), *range(128, 256)]] = True
_BACKSLASH: Final = ord("\\")
_ASCII_FOLD: Final = np.arange(256, dtype=np.uint8)
_ASCII_FOLD[65:91] += 32  # A-Z -> a-z, every other byte unchanged


def _word_units(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every word token, token offsets per text): words are runs of letters and digits,
    case-folded (ASCII), with LaTeX command names (a run right after a backslash) dropped. Symbols are
    not words: a formula split into symbol tokens ("\\frac { x ^ 2 - 4 }") makes one restated equation
    a 20-gram, so a CoT that re-checks it five times would look like a loop. Vectorised over the UTF-8
    bytes (Arrow's Unicode regex replace ran at ~15 MB/s here)."""
    arr = pa.array(texts, pa.large_string())
    bufs = arr.buffers()
    doc_off = np.frombuffer(bufs[1], dtype=np.int64, count=len(arr) + 1)
    data = np.frombuffer(bufs[2], dtype=np.uint8)[: int(doc_off[-1])] if bufs[2] is not None else np.zeros(0, np.uint8)
    word = _WORD_BYTE[data]
    text_starts = doc_off[:-1][doc_off[:-1] < len(data)]
    starts, ends = _byte_runs(word, text_starts)
    # LaTeX command names are runs right after a backslash of the same text.
    after_backslash = np.zeros(len(starts), dtype=bool)
    inner = starts > 0
    after_backslash[inner] = data[starts[inner] - 1] == _BACKSLASH
    at_text_start = np.zeros(len(data) + 1, dtype=bool)
    at_text_start[text_starts] = True
    keep = ~after_backslash | at_text_start[starts]  # = np.isin(starts, text_starts), without its sort
    # Clear the bytes of the dropped runs (few: command names), so the words are the word bytes left.
    # Numbering every byte's run with an int64 cumsum and masking through it instead cost as much as all
    # the rest of this function (0.10 s per 8 MB chunk, measured).
    dropped_lens = (ends - starts)[~keep]
    word[np.repeat(starts[~keep], dropped_lens) + _ngrams.ragged_arange(dropped_lens)] = False
    lens = (ends - starts)[keep]
    gathered = _ASCII_FOLD[data[word]]
    tok_off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=tok_off[1:])
    tokens = pa.LargeStringArray.from_buffers(len(lens), pa.py_buffer(tok_off), pa.py_buffer(gathered))
    # Tokens per text: the kept starts below each text's first byte.
    offsets = np.searchsorted(starts[keep], doc_off, side="left").astype(np.int64)
    if len(tokens) == 0:
        return np.zeros(0, dtype=np.uint64), offsets
    # Hash each distinct word once (a CoT repeats its words): the same hashes, a fraction of the bytes.
    enc = pc.dictionary_encode(tokens)
    return _ngrams.hash_strings(enc.dictionary)[enc.indices.to_numpy(zero_copy_only=False)], offsets


# A row-wise sort of documents padded to a common width beats one global sort of (document, value) keys:
# 1.1M n-grams of 2,300 long CoTs sort in 0.011 s as rows vs 0.063 s flat (measured). Documents go into
# blocks of similar length so that padding stays small.
_PAD: Final = np.uint64(np.iinfo(np.uint64).max)  # above every value (hashes are shifted right first)
_BLOCK_CELLS: Final = 1 << 20


def _value_runs(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(largest number of equal values, number of distinct values) within each document's slice of
    ``values`` (< 2**64 - 1); 0 and 0 for an empty slice."""
    lens = np.diff(offsets)
    max_run = np.zeros(len(lens), dtype=np.int64)
    distinct = np.zeros(len(lens), dtype=np.int64)
    order = np.argsort(lens, kind="stable")
    order = order[lens[order] > 0]
    sorted_lens = lens[order]
    i = 0
    while i < len(order):
        # Documents up to 1.25x the block's shortest, and at most _BLOCK_CELLS cells in all.
        limit = int(sorted_lens[i]) * 5 // 4 + 8
        j = int(np.searchsorted(sorted_lens, limit, side="right"))
        j = min(j, i + max(1, _BLOCK_CELLS // limit))
        docs = order[i:j]
        block_lens = lens[docs]
        width = int(block_lens.max())
        grid = np.full((len(docs), width), _PAD, dtype=np.uint64)
        cols = _ngrams.ragged_arange(block_lens)
        grid[np.repeat(np.arange(len(docs)), block_lens), cols] = values[np.repeat(offsets[:-1][docs], block_lens) + cols]
        grid.sort(axis=1)
        # A run starts at column 0 and wherever the value changes; the padding is one run at a row's end.
        new = np.empty(grid.shape, dtype=bool)
        new[:, 0] = True
        np.not_equal(grid[:, 1:], grid[:, :-1], out=new[:, 1:])
        runs = new.sum(axis=1)
        padded = block_lens < width
        distinct[docs] = runs - padded
        run_at = np.flatnonzero(new)
        run_len = np.diff(np.r_[run_at, grid.size])
        row_first = np.zeros(len(docs), dtype=np.int64)
        np.cumsum(runs[:-1], out=row_first[1:])
        run_len[(row_first + runs - 1)[padded]] = 0
        max_run[docs] = np.maximum.reduceat(run_len, row_first)
        i = j
    return max_run, distinct


def _compression_ratio(text: str) -> float:
    raw = text.encode("utf-8", "surrogatepass")
    return len(raw) / len(zlib.compress(raw, 1))


def _repetition_scores(responses: list[str | None], cfg: RepetitionRule) -> dict[str, np.ndarray]:
    n = len(responses)
    max_count = np.full(n, np.nan)
    dup_frac = np.full(n, np.nan)
    ratio = np.full(n, np.nan)
    present = [i for i, r in enumerate(responses) if r]
    for i in present:
        ratio[i] = _compression_ratio(responses[i] or "")
    # Chunks of ~8M characters bound the memory of the flat n-gram arrays for long CoTs.
    chunk: list[int] = []
    size = 0
    for idx in [*present, None]:
        if idx is not None:
            chunk.append(idx)
            size += len(responses[idx] or "")
        if chunk and (idx is None or size >= 8_000_000):
            units, offsets = _word_units([responses[i] or "" for i in chunk])
            rows = np.asarray(chunk)
            for n_gram, out, kind in ((cfg.ngram, max_count, "max"), (cfg.dup_ngram, dup_frac, "frac")):
                h, o = _ngrams.ngram_hashes(units, offsets, n_gram, whole_if_short=False)
                total = np.diff(o)
                # Equal n-grams are equal in their top 40 hash bits, within a document.
                most, uniq = _value_runs(h >> np.uint64(24), o)
                if kind == "max":
                    res = most.astype(np.float64)
                else:
                    res = np.where(total > 0, 1.0 - uniq / np.where(total == 0, 1, total), 0.0)
                out[rows] = res
            chunk, size = [], 0
    return {"rep_max_ngram_count": max_count, "rep_dup_ngram_frac": dup_frac, "rep_compression_ratio": ratio}


@steps.step(
    "score_rules",
    kind="transform",
    scope="row",
    reads=("messages", "response", "answer"),
    writes=("scores",),
    score_keys=RULE_SCORE_KEYS,
)
def score_rules(table: pa.Table, cfg: RuleFilterConfig) -> tuple[pa.Table, stats.StepStats]:
    """Measure everything the rule filters decide on; write it into ``scores``."""
    n = table.num_rows
    prompts = _arrow.prompt_texts(table)
    responses = _arrow.strings(table, "response")
    answer_col = _arrow.strings(table, "answer")
    scores: dict[str, np.ndarray] = {
        "prompt_chars": pc.utf8_length(pc.utf8_trim_whitespace(prompts)).to_numpy(zero_copy_only=False).astype(np.float64)
    }
    scores.update(_language_scores(prompts))
    resp_chars = np.full(n, np.nan)
    boxed = np.full(n, np.nan)
    unclosed = np.full(n, np.nan)
    after = np.full(n, np.nan)
    ending = np.full((4, n), np.nan)
    has_answer = np.zeros(n)
    for i, r in enumerate(responses):
        if answer_col[i] and answer_col[i].strip():
            has_answer[i] = 1.0
        if r is None:
            continue
        resp_chars[i] = len(r.strip())
        final = answers.after_think(r)
        box = answers.last_boxed(final) is not None
        boxed[i] = float(box)
        if box:
            has_answer[i] = 1.0
        open_at, close_at = r.rfind(answers.THINK_OPEN), r.rfind(answers.THINK_CLOSE)
        unclosed[i] = float(open_at >= 0 and close_at < open_at)
        if close_at >= 0:
            after[i] = len(r[close_at + len(answers.THINK_CLOSE) :].strip())
        if not unclosed[i]:
            ending[:, i] = _ending_scores(final, box)
    scores.update(
        {
            "response_chars": resp_chars,
            "has_final_answer": has_answer,
            "has_boxed_response": boxed,
            "cot_unclosed_think": unclosed,
            "cot_chars_after_think": after,
            "cot_ends_mid_sentence": ending[0],
            "cot_ends_in_word": ending[1],
            "cot_ends_dangling_word": ending[2],
            "cot_states_answer": ending[3],
        }
    )
    scores.update(_repetition_scores(responses, cfg.repetition))
    return _arrow.set_scores(table, scores), stats.StepStats.passthrough("score_rules", n)


# ---------------------------------------------------------------------------------------------------------
# the keep decision


def _ge(x: float, bound: float | None) -> bool:
    return bound is not None and not np.isnan(x) and x >= bound


@steps.step("filter_rules", kind="filter", scope="row", reads=("id", "domain", "response_tokens", "scores"))
def filter_rules(table: pa.Table, cfg: RuleFilterConfig) -> tuple[pa.Table, stats.StepStats]:
    """Drop rows failing an enabled rule, under the first failing rule's reason (see the module table)."""
    n = table.num_rows
    s = _arrow.get_scores(table, RULE_SCORE_KEYS)
    if n and np.isnan(s["prompt_chars"]).all():
        raise ValueError("filter_rules reads the scores score_rules writes, and they are missing; run score_rules first")
    dom = _arrow.strings(table, "domain")
    tokens = _arrow.column(table, "response_tokens").to_numpy(zero_copy_only=False).astype(np.float64)
    c = cfg
    math_domains = set(c.final_answer.math_domains)
    reasons: list[str | None] = []
    details: list[str] = []
    for i in range(n):
        g = {k: float(v[i]) for k, v in s.items()}
        reason, detail = None, ""
        has_resp = not np.isnan(g["response_chars"]) and g["response_chars"] > 0
        if c.empty.enabled and not g["prompt_chars"] > 0:
            reason = "empty_prompt"
        elif c.empty.enabled and c.empty.require_response and not has_resp:
            reason = "empty_response"
        elif c.language.enabled and (
            (not np.isnan(g["lang_latin_ratio"]) and g["lang_latin_ratio"] < c.language.min_latin_ratio)
            or (g["prompt_words"] >= c.language.stopword_min_words and g["lang_foreign_stopwords"] > g["lang_en_stopwords"])
        ):
            reason = "non_english"
            detail = f"latin={g['lang_latin_ratio']:.2f} en={g['lang_en_stopwords']:.2f} foreign={g['lang_foreign_stopwords']:.2f}"
        elif c.length.enabled and c.length.min_prompt_chars is not None and g["prompt_chars"] < c.length.min_prompt_chars:
            reason, detail = "prompt_too_short", f"{g['prompt_chars']:.0f} chars"
        elif c.length.enabled and c.length.max_prompt_chars is not None and g["prompt_chars"] > c.length.max_prompt_chars:
            reason, detail = "prompt_too_long", f"{g['prompt_chars']:.0f} chars"
        elif (
            c.length.enabled and has_resp and c.length.min_response_chars is not None and g["response_chars"] < c.length.min_response_chars
        ):
            reason, detail = "response_too_short", f"{g['response_chars']:.0f} chars"
        elif (
            c.length.enabled and has_resp and c.length.max_response_chars is not None and g["response_chars"] > c.length.max_response_chars
        ):
            reason, detail = "response_too_long", f"{g['response_chars']:.0f} chars"
        elif c.length.enabled and _ge(tokens[i], c.length.max_response_tokens):
            reason, detail = "response_too_long", f"{tokens[i]:.0f} tokens"
        elif c.truncation.enabled and g["cot_unclosed_think"] == 1.0:
            reason, detail = "truncated_cot", "unclosed <think>"
        elif c.truncation.enabled and g["cot_chars_after_think"] == 0.0:
            reason, detail = "truncated_cot", "nothing after </think>"
        elif c.truncation.enabled and c.truncation.mid_sentence and g["cot_ends_mid_sentence"] == 1.0:
            reason, detail = "truncated_cot", "ends mid-sentence"
        elif c.truncation.enabled and c.truncation.mid_sentence and g["cot_ends_dangling_word"] == 1.0 and dom[i] != "code":
            reason, detail = "truncated_cot", "ends on a word that cannot end a sentence"
        elif (
            c.truncation.enabled
            and c.truncation.mid_sentence
            and (dom[i] or "") in math_domains
            and g["cot_ends_in_word"] == 1.0
            and g["cot_states_answer"] == 0.0
        ):
            reason, detail = "truncated_cot", "math answer ends mid-word before stating its answer"
        elif c.final_answer.enabled and (dom[i] or "") in math_domains and g["has_final_answer"] != 1.0:
            reason = "no_final_answer"
        elif (
            c.final_answer.enabled
            and c.final_answer.require_boxed_response
            and (dom[i] or "") in math_domains
            and g["has_boxed_response"] == 0.0
        ):
            reason = "no_boxed_answer"
        elif c.repetition.enabled and (
            _ge(g["rep_max_ngram_count"], c.repetition.max_repeats)
            or _ge(g["rep_dup_ngram_frac"], c.repetition.max_dup_fraction)
            or _ge(g["rep_compression_ratio"], c.repetition.max_compression_ratio)
        ):
            reason = "repetition"
            detail = (
                f"max word {c.repetition.ngram}-gram count {g['rep_max_ngram_count']:.0f}, "
                f"dup frac {g['rep_dup_ngram_frac']:.2f}, compression {g['rep_compression_ratio']:.1f}"
            )
        reasons.append(reason)
        details.append(detail)
    return _arrow.filter_rows(table, reasons, "filter_rules", details)


def rule_steps(cfg: RuleFilterConfig | None = None) -> list[steps.Step]:
    """``[score_rules, filter_rules]`` bound to one config."""
    cfg = cfg or RuleFilterConfig()
    return [steps.Step(score_rules, cfg), steps.Step(filter_rules, cfg)]
