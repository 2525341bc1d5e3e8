"""Arrow helpers shared by the steps: prompt text, the ``scores`` map, column replacement, filtering.

All of them are vectorised over whole columns (Arrow compute or NumPy over the map's child arrays), so a
step that adds a score to a million rows does not loop over rows in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from infialign.pipeline.curation import stats as _stats

__all__: list[str] = []  # private module


_INT32_MAX: Final = 2**31 - 1


def _value_bytes(col: pa.ChunkedArray) -> int:
    """Bytes of character data a string/binary column holds (what its int32 offsets must address)."""
    total = 0
    for chunk in col.chunks:
        offsets = chunk.buffers()[1]
        if offsets is None or len(chunk) == 0:
            continue
        ends = np.frombuffer(offsets, dtype=np.int32, count=chunk.offset + len(chunk) + 1)
        total += int(ends[-1]) - int(ends[chunk.offset])
    return total


def combine(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous array. A ``string`` column whose characters pass 2 GiB cannot be one ``string``
    array (its int32 offsets overflow: "offset overflow while concatenating arrays"), so it comes back as
    ``large_string`` (int64 offsets) instead; every Arrow kernel the steps use accepts both."""
    if not isinstance(col, pa.ChunkedArray):
        return col
    if col.num_chunks == 1:
        return col.chunk(0)
    if col.type in (pa.string(), pa.binary()) and _value_bytes(col) > _INT32_MAX:
        target = pa.large_string() if col.type == pa.string() else pa.large_binary()
        return pa.chunked_array([c.cast(target) for c in col.chunks], target).combine_chunks()
    return col.combine_chunks()


def column(table: pa.Table, name: str) -> pa.Array:
    """One contiguous array for a column (chunks combined; see :func:`combine` for text past 2 GiB)."""
    return combine(table.column(name))


def strings(table: pa.Table, name: str) -> list[str | None]:
    return column(table, name).to_pylist()


def _list_parts(arr: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(offsets rebased to 0, flattened child values) of a possibly sliced list or map array."""
    offsets = arr.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    return offsets - offsets[0], offsets


def prompt_texts(table: pa.Table, roles: tuple[str, ...] = ("user",)) -> pa.Array:
    """The prompt as one string per row: the contents of its ``user`` messages joined by a newline.

    System messages are left out on purpose: they are shared boilerplate, and dedup and decontamination
    must compare the problems, not the instructions around them.
    """
    msgs = column(table, "messages")
    n = len(msgs)
    if n == 0:
        return pa.array([], pa.string())
    flat = msgs.flatten()  # respects slicing
    parents = pc.list_parent_indices(msgs).to_numpy(zero_copy_only=False)
    role = flat.field("role")
    content = flat.field("content").fill_null("")
    keep = pc.is_in(role, value_set=pa.array(list(roles), pa.string())).fill_null(False)
    content = content.filter(keep)
    parents = parents[keep.to_numpy(zero_copy_only=False)]
    counts = np.bincount(parents, minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    grouped = pa.ListArray.from_arrays(pa.array(offsets), content)
    return pc.binary_join(grouped, "\n")


def get_score(table: pa.Table, key: str) -> np.ndarray:
    """``scores[key]`` as float64, NaN where the row has no such key."""
    return get_scores(table, [key])[key]


def get_scores(table: pa.Table, keys: Sequence[str]) -> dict[str, np.ndarray]:
    scores = column(table, "scores")
    n = len(scores)
    out = {k: np.full(n, np.nan) for k in keys}
    if n == 0:
        return out
    rel, absolute = _list_parts(scores)
    lo, hi = int(absolute[0]), int(absolute[-1])
    map_keys = scores.keys.slice(lo, hi - lo)
    map_items = scores.items.slice(lo, hi - lo).to_numpy(zero_copy_only=False)
    parents = np.repeat(np.arange(n), np.diff(rel))
    for k in keys:
        mask = pc.equal(map_keys, k).fill_null(False).to_numpy(zero_copy_only=False)
        out[k][parents[mask]] = map_items[mask]
    return out


def score_keys_with_prefix(table: pa.Table, prefix: str) -> list[str]:
    scores = column(table, "scores")
    if len(scores) == 0:
        return []
    _, absolute = _list_parts(scores)
    lo, hi = int(absolute[0]), int(absolute[-1])
    keys = pc.unique(scores.keys.slice(lo, hi - lo)).to_pylist()
    return sorted(k for k in keys if k is not None and k.startswith(prefix))


def set_scores(table: pa.Table, values: Mapping[str, np.ndarray]) -> pa.Table:
    """Write ``scores[key] = values[key][row]`` for every row where the value is not NaN.

    Existing entries under the same keys are replaced (also where the new value is NaN, so a re-run never
    leaves a stale score behind); other keys are kept. Entries stay grouped by row, new keys last.
    """
    scores = column(table, "scores")
    n = len(scores)
    if n == 0 or not values:
        return table
    rel, absolute = _list_parts(scores)
    lo, hi = int(absolute[0]), int(absolute[-1])
    old_keys = scores.keys.slice(lo, hi - lo)
    old_items = scores.items.slice(lo, hi - lo)
    old_parents = np.repeat(np.arange(n), np.diff(rel))
    keep_old = ~pc.is_in(old_keys, value_set=pa.array(list(values), pa.string())).fill_null(False).to_numpy(zero_copy_only=False)
    parts_parent = [old_parents[keep_old]]
    parts_keys = [old_keys.filter(pa.array(keep_old))]
    parts_items = [old_items.filter(pa.array(keep_old))]
    for key, vals in values.items():
        vals = np.asarray(vals, dtype=np.float64)
        if vals.shape != (n,):
            raise ValueError(f"score {key!r}: expected {n} values, got shape {vals.shape}")
        rows = np.flatnonzero(~np.isnan(vals))
        parts_parent.append(rows)
        parts_keys.append(pa.array([key] * len(rows), pa.string()))
        parts_items.append(pa.array(vals[rows], pa.float64()))
    parent = np.concatenate(parts_parent)
    order = np.argsort(parent, kind="stable")
    keys = pa.concat_arrays([k.cast(pa.string()) for k in parts_keys]).take(pa.array(order))
    items = pa.concat_arrays([i.cast(pa.float64()) for i in parts_items]).take(pa.array(order))
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(parent, minlength=n), out=offsets[1:])
    new = pa.MapArray.from_arrays(pa.array(offsets), keys, items)
    return replace_column(table, "scores", new)


def replace_column(table: pa.Table, name: str, values: pa.Array | Sequence[object]) -> pa.Table:
    """Replace a column, keeping its field (name, type, nullability)."""
    idx = table.schema.get_field_index(name)
    field = table.schema.field(idx)
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type=field.type)
    if arr.type != field.type:
        arr = arr.cast(field.type)
    return table.set_column(idx, field, arr)


def filter_rows(
    table: pa.Table,
    reasons: Sequence[str | None],
    step: str,
    details: Sequence[str] | None = None,
    counters: Mapping[str, float] | None = None,
) -> tuple[pa.Table, _stats.StepStats]:
    """Keep rows whose reason is ``None``; count the rest under their reason."""
    keep = np.fromiter((r is None for r in reasons), dtype=bool, count=len(reasons))
    ids = strings(table, "id")
    st = _stats.StepStats.from_reasons(step, ids, reasons, details, counters)
    return table.filter(pa.array(keep)), st


def response_lengths(table: pa.Table) -> np.ndarray:
    """Response length for ranking: ``response_tokens`` where measured, else characters / 4 (a rough
    token proxy); NaN where there is no response."""
    tokens = column(table, "response_tokens").to_numpy(zero_copy_only=False).astype(np.float64)
    missing = np.isnan(tokens)
    if not missing.any():
        return tokens  # every row counted: the text is not read (a memory-mapped pool stays unread)
    chars, _ = summary_columns("response")
    if chars in table.column_names or missing.all():
        return np.where(missing, text_chars(table, "response") / 4.0, tokens)
    out = tokens.copy()
    out[missing] = text_chars(table.filter(pa.array(missing)), "response") / 4.0
    return out


# -- text summaries -------------------------------------------------------------------------------------
# A global step that needs of a long text column only its length and whether it has text (dedup's
# ranking of the response) may declare it ``summarised`` (steps.StepSpec): the streaming executor then
# reads the text batch by batch and hands the step these two columns instead of the text, so a million
# CoTs (3.4 GB) are never held, mapped or copied at once for two numbers per row (issue 12). Steps read
# both through text_chars / text_has_text, which take the summary when present and the text otherwise.


def summary_columns(name: str) -> tuple[str, str]:
    """Names of the summary columns of text column ``name``: (characters, has text)."""
    return f"__infialign_{name}_chars", f"__infialign_{name}_has_text"


def text_summary(values: pa.Array | pa.ChunkedArray, name: str) -> dict[str, pa.Array | pa.ChunkedArray]:
    """The summary columns of ``values`` (column ``name``): characters (null where null), :func:`has_text`."""
    chars, has = summary_columns(name)
    return {chars: pc.utf8_length(values).cast(pa.int64()), has: pa.array(has_text(values), pa.bool_())}


def text_chars(table: pa.Table, name: str) -> np.ndarray:
    """Characters of column ``name`` per row as float64, NaN where null (from its summary when present)."""
    chars, _ = summary_columns(name)
    if chars in table.column_names:
        return table.column(chars).to_numpy().astype(np.float64)
    # The text chunk by chunk: combining would copy every CoT onto the heap for one length each.
    return pc.utf8_length(table.column(name)).to_numpy().astype(np.float64)


def text_has_text(table: pa.Table, name: str) -> np.ndarray:
    """:func:`has_text` of column ``name`` per row (from its summary when present)."""
    _, has = summary_columns(name)
    if has in table.column_names:
        return table.column(has).to_numpy()
    return has_text(table.column(name))  # chunk by chunk, as in text_chars


def map_values(table: pa.Table, name: str, key: str) -> pa.Array:
    """``table[name][key]`` of every row of a map column, null where absent; the last entry wins when a
    key repeats (as ``dict(pairs)`` would). Vectorised over the map's child arrays, no per-row dicts."""
    col = column(table, name)
    n = len(col)
    value_type = col.type.item_type
    if n == 0:
        return pa.array([], value_type)
    rel, absolute = _list_parts(col)
    lo, hi = int(absolute[0]), int(absolute[-1])
    keys = col.keys.slice(lo, hi - lo)
    items = col.items.slice(lo, hi - lo)
    parents = np.repeat(np.arange(n), np.diff(rel))
    hit = np.flatnonzero(pc.equal(keys, key).fill_null(False).to_numpy(zero_copy_only=False))
    if len(hit) == 0:
        return pa.nulls(n, value_type)
    rows = np.full(n, -1, dtype=np.int64)
    rows[parents[hit]] = hit  # ascending hits: a repeated key's last entry is written last
    valid = rows >= 0
    taken = items.take(pa.array(np.where(valid, rows, 0)))
    return pc.if_else(pa.array(valid), taken, pa.nulls(n, value_type))


def provenance_values(table: pa.Table, key: str) -> list[str | None]:
    """``provenance[key]`` of every row (None where absent)."""
    return map_values(table, "provenance", key).to_pylist()


_SURELY_NOT_BLANK: Final = r"[\p{L}\p{N}]"


def has_text(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``bool(v and v.strip())`` per value, without turning every string into a Python object: a letter
    or digit settles it in one Arrow kernel; only the rare rest (symbols or whitespace only) goes
    through ``str.strip`` itself, so the answer is Python's exactly."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=bool)
    valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
    sure = pc.match_substring_regex(values, _SURELY_NOT_BLANK).fill_null(False).to_numpy(zero_copy_only=False)
    out = sure.copy()
    rest = np.flatnonzero(valid & ~sure)
    if len(rest):
        out[rest] = [bool(v.strip()) for v in values.take(pa.array(rest)).to_pylist()]
    return out


def representative_tier(table: pa.Table) -> np.ndarray:
    """Which duplicate is worth keeping (lower is better), from what is known when dedup runs, which is
    before verification (so nearly every row is still ``unknown``):

    - 0: a response already verified ``pass`` (``records`` sources may carry verdicts);
    - 1: a response with an independent reference answer (an answer column, or code tests): whatever
      verification later says, the problem keeps an answer it can be checked against;
    - 2: a response without one (no answer, or an answer taken from the response itself, which proves nothing);
    - 4: a response that already failed a check (``fail``/``error``/``timeout``);
    - 5: no response (the problem alone, for ``distill``).
    """
    verif = column(table, "verification")
    has_response = text_has_text(table, "response")
    has_answer = has_text(column(table, "answer"))
    from_response = pc.equal(map_values(table, "provenance", "answer_source"), "response").fill_null(False)
    tests = map_values(table, "provenance", "tests")
    has_tests = pc.greater(pc.utf8_length(tests), 0).fill_null(False).to_numpy(zero_copy_only=False)
    independent = has_tests | (has_answer & ~from_response.to_numpy(zero_copy_only=False))
    passed = pc.equal(verif, "pass").fill_null(False).to_numpy(zero_copy_only=False)
    failed = pc.is_in(verif, value_set=pa.array(["fail", "error", "timeout"])).fill_null(False).to_numpy(zero_copy_only=False)
    tier = np.where(independent, 1, 2).astype(np.int64)
    tier[failed] = 4
    tier[passed] = 0
    tier[~has_response] = 5
    return tier


def representative_rank(table: pa.Table) -> np.ndarray:
    """Rank of each row as the one to keep among duplicates (0 = best): :func:`representative_tier` first,
    then the longer CoT, then the shorter raw prompt (extra characters are mostly boilerplate or whitespace
    noise around the same problem), then the smaller id (so ties are deterministic whatever the row order)."""
    n = table.num_rows
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    verif = representative_tier(table)
    length = np.nan_to_num(response_lengths(table), nan=-1.0)
    prompt_chars = pc.utf8_length(prompt_texts(table)).to_numpy(zero_copy_only=False)
    ids = np.array(strings(table, "id"), dtype=object).astype(str)
    order = np.lexsort((ids, prompt_chars, -length, verif))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank
