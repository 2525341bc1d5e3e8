"""Streaming executor: the same rows, values, order and funnel as the in-memory one, on every backend,
with global steps between row steps and with windows and spill batches far smaller than the input."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest
from curation_helpers import make_record, make_table
from infialign.pipeline import records
from infialign.pipeline.curation import _arrow, dedup, domains, embed, executor, stats, steps, stream, tokens
from test_curation_executor import _steps, _summary, _table


def _pipeline() -> list[steps.Step]:
    """Row steps, two global filters, row steps again, then a global transform (clusters)."""
    return [
        *_steps(),
        steps.Step(dedup.dedup_near, dedup.MinHashConfig()),
        steps.Step(tokens.count_response_tokens, tokens.TokenCountConfig(overwrite=True)),
        steps.Step(embed.cluster_prompts, embed.ClusterConfig(embed=embed.EmbedConfig(backend="hashing"), kmeans=embed.KMeansConfig(k=4))),
    ]


def _duplicated(n: int = 120) -> pa.Table:
    t = _table(n)
    # Exact duplicates that arrive in later batches than their originals, so dedup must see across batches.
    dup = t.slice(3, 5)
    ids = pa.array([f"dup{i}" for i in range(dup.num_rows)])
    return pa.concat_tables([t, dup.set_column(0, t.schema.field("id"), ids)])


def _batches(table: pa.Table, rows: int) -> list[pa.Table]:
    return [table.slice(i, rows) for i in range(0, table.num_rows, rows)]


@pytest.mark.parametrize(
    "cfg",
    [
        executor.ExecutorConfig(window_rows=7),
        executor.ExecutorConfig(backend="processes", workers=2, shard_rows=10, window_rows=40),
    ],
    ids=["local", "processes"],
)
def test_streaming_equals_in_memory(tmp_path, cfg):
    table = _duplicated()
    expected, f_expected = executor.run_steps(table, _pipeline())
    rows, funnel = stream.run_steps_streaming(_batches(table, 11), _pipeline(), cfg, scratch=tmp_path)
    out = rows.table()
    assert out.column("id").to_pylist() == expected.column("id").to_pylist()
    assert out.equals(expected)
    assert _summary(funnel) == _summary(f_expected)
    assert funnel["dedup_exact"].dropped == {"exact_duplicate": 5}
    # Batch by batch, the output is the same rows again (what the stage writes).
    assert pa.concat_tables(rows.batches()).equals(expected)
    records.validate_table(out)


def test_global_step_sees_only_its_columns_and_filters_lazily(tmp_path):
    seen: list[list[str]] = []

    @steps.step("drop_odd", kind="filter", scope="global", reads=("id",))
    def drop_odd(table, cfg):
        seen.append(table.column_names)
        reasons = [None if i % 2 == 0 else "odd" for i in range(table.num_rows)]
        return _arrow.filter_rows(table, reasons, "drop_odd")

    table = make_table(*[make_record(f"Problem number {i} asks for the sum of two numbers.", id=f"r{i}") for i in range(10)])
    rows, funnel = stream.run_steps_streaming(_batches(table, 3), [steps.Step(drop_odd)], scratch=tmp_path)
    assert seen == [["id", stream._ROW]]  # no response, no messages: only what the step declares
    assert rows.pending and rows.num_rows == 5
    assert rows.table().column("id").to_pylist() == ["r0", "r2", "r4", "r6", "r8"]
    assert funnel["drop_odd"].dropped == {"odd": 5}


@pytest.mark.parametrize("text", ["prompt", "prompt_response"])
def test_dedup_gets_the_response_as_a_summary_not_the_text(tmp_path, text):
    """Streaming, dedup ranks duplicates from the response's summary (12 bytes a row) instead of holding
    every CoT (issue 12); comparing prompt + response, it gets the text. Same rows and funnel either way."""
    seen: list[list[str]] = []
    real = dedup.dedup_exact

    def spy(table, cfg):
        seen.append(table.column_names)
        return real(table, cfg)

    spy.spec = real.spec  # type: ignore[attr-defined]
    table = _duplicated()
    # Duplicates that the response decides: blank, symbol-only, longer and shorter CoTs of one prompt.
    extra = [make_record("Which prime follows 7?", id=f"x{i}", response=r) for i, r in enumerate([" \u00a0 ", "…", "<think>a b c</think> 11", None, "11"])]
    table = pa.concat_tables([table, make_table(*extra).cast(table.schema)])
    cfg = dedup.ExactDedupConfig(text=text)
    expected, f_expected = executor.run_steps(table, [steps.Step(real, cfg)])
    rows, funnel = stream.run_steps_streaming(_batches(table, 11), [steps.Step(spy, cfg)], scratch=tmp_path)
    summary = set(_arrow.summary_columns("response"))
    if text == "prompt":
        assert "response" not in seen[0] and summary <= set(seen[0])
    else:
        assert "response" in seen[0] and not summary & set(seen[0])
    assert rows.table().equals(expected)
    assert _summary(funnel) == _summary(f_expected)


def test_a_column_subset_is_copied_out_of_the_spill_batch(tmp_path):
    """A plain read of a spill batch is one buffer that every column views; the card columns (or any subset)
    kept from it would keep every batch's CoTs alive (6.2 GiB at 1M rows, issue 12). The subset owns its buffers."""
    table = _table(40)
    rows = stream.spill(_batches(table, 10), tmp_path)
    raw = pa.ipc.open_file(pa.OSFile(str(rows.path), "rb")).get_batch(0)
    assert any(b is not None and b.parent is not None for b in raw.column(0).buffers())  # what a read gives: views
    rows.overrides["cluster"] = pa.array(np.arange(40, dtype=np.int32))  # pending, no selection: the card path
    out = rows.table(["id", "cluster"])
    assert all(b is None or b.parent is None for c in out.column("id").chunks for b in c.buffers())
    assert out.column("id").to_pylist() == table.column("id").to_pylist()
    assert out.column("cluster").to_pylist() == list(range(40))


def test_text_summary_equals_the_text_helpers():
    values = pa.chunked_array([pa.array(["  \n", None, "é…"]), pa.array(["", "ok", " \u00a0 "])])
    table = pa.table({"response": values})
    with_summary = pa.table({"response_tokens": pa.nulls(6, pa.int32()), **_arrow.text_summary(values, "response")})
    assert np.array_equal(_arrow.text_chars(with_summary, "response"), _arrow.text_chars(table, "response"), equal_nan=True)
    assert _arrow.text_has_text(with_summary, "response").tolist() == _arrow.text_has_text(table, "response").tolist()
    assert _arrow.text_has_text(table, "response").tolist() == [False, False, True, False, True, False]


def test_streaming_needs_a_table():
    with pytest.raises(ValueError, match="no input tables"):
        stream.run_steps_streaming([], [])


def test_string_column_past_int32_offsets_is_combined_as_large_string(monkeypatch):
    # Pretend the int32 limit is 100 bytes: the same code path as 2 GiB of responses, without the GiBs.
    monkeypatch.setattr(_arrow, "_INT32_MAX", 100)
    chunks = [pa.array(["x" * 30, None, "y" * 30]) for _ in range(3)]  # 180 bytes of characters in all
    table = pa.table({"response": pa.chunked_array(chunks)})
    col = _arrow.column(table, "response")
    assert col.type == pa.large_string()
    assert col.to_pylist() == [c for ch in chunks for c in ch.to_pylist()]
    small = pa.table({"response": pa.chunked_array(chunks[:1])})
    assert _arrow.column(small, "response").type == pa.string()
    # Token counting batches over it and agrees with counting each text.
    counts = tokens.count_tokens(table.column("response"), batch_rows=2)
    assert counts.tolist() == [1, 0, 1] * 3


def test_value_bytes_counts_sliced_chunks():
    arr = pa.array(["ab", "cde", "f", "ghij"])
    col = pa.chunked_array([arr.slice(1, 2), arr.slice(3, 1)])
    assert _arrow._value_bytes(col) == 3 + 1 + 4


def test_representative_tier_matches_python_strip():
    recs = [
        make_record("p", id="a", response="  \n\t "),  # blank: no response
        make_record("p", id="b", response=" \u00a0 "),  # Python strips NBSP too
        make_record("p", id="c", response="…", answer=" "),  # a symbol is a response; a blank answer is none
        make_record("p", id="d", response="ok", answer="4"),
        make_record("p", id="e", response="ok", answer="4", verification="fail"),
        make_record("p", id="f", response="ok", answer="4", verification="pass"),
        make_record("p", id="g", response=None),
    ]
    table = make_table(*recs)
    tier = _arrow.representative_tier(table)
    assert tier.tolist()[:2] == [5, 5]
    assert tier.tolist()[2:] == [2, 1, 4, 0, 5]


def test_map_values_last_entry_wins_and_absent_is_null():
    prov = pa.array([[("a", "1"), ("b", "2"), ("a", "3")], [], [("b", "x")]], pa.map_(pa.string(), pa.string()))
    table = pa.table({"provenance": prov}).slice(0)
    assert _arrow.map_values(table, "provenance", "a").to_pylist() == ["3", None, None]
    assert _arrow.map_values(table.slice(1), "provenance", "b").to_pylist() == [None, "x"]


def test_keyword_labels_equal_keyword_label_on_ascii_and_unicode():
    texts = [
        "Compute 3 + 4\nwhat is 2*3",
        "what is 2 + 2 ?",
        "Evaluate the expression 3 + 4 * 2.",
        "If α+β=π/2, find sin α in the triangle ABC.",
        "How many primes divide 2024? Find the remainder modulo 7.",
        "\u212aelvin: how many ways to choose 3 of 10 people?",
        "Write a function def foo(x): that returns the sum of a list.",
        "",
    ]
    for cfg in (domains.KeywordLabellerConfig(), domains.KeywordLabellerConfig(ruleset="world")):
        assert domains.keyword_labels(pa.array(texts), cfg) == [domains.keyword_label(t, cfg) for t in texts]


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
def test_streaming_on_ray_equals_in_memory(tmp_path):
    ray = pytest.importorskip("ray")
    table = _duplicated()
    expected, f_expected = executor.run_steps(table, _pipeline())
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        cfg = executor.ExecutorConfig(backend="ray", shard_rows=20, window_rows=60)
        rows, funnel = stream.run_steps_streaming(_batches(table, 25), _pipeline(), cfg, scratch=tmp_path)
        out = rows.table()
    finally:
        ray.shutdown()
    assert out.equals(expected)
    assert _summary(funnel) == _summary(f_expected)


_TRICKY = [
    "a b c d e f",
    "it's a dog 's life",
    "Héllo wörld  x  y\n\nz",
    "If α+β=π/2 , find sin α .",
    "ﬁ ligature e\u0301 b",
    None,
    "",
    "  lead and trail  ",
    "日本 語 テキスト",
    "a\tb c\r\nd e",
    "a\u00a0 b",  # NBSP then space: one whitespace run for the tokenizer, so no cut there
    "x\u3000 y",
    "a\u2028 b",
    "1 2 3 = 6 .",
    "( a ) [ b ] \\boxed{4} .",
    "a\n b",
    "a \n b",
    "a\x0b b",
]


def test_segment_token_counts_equal_the_tokenizer(tmp_path):
    """The word-gap cuts never change a byte-level BPE count: the builtin tiny model's tokenizer (Qwen's
    pre-tokenizer regex) on tricky whitespace, Unicode and long CoTs, with the start-up check off."""
    from infialign.pipeline.world import reasoning, tiny_model

    path = str(tiny_model.resolve_model_uri("builtin://tiny")) + "/tokenizer.json"
    tok = tokens._hf_tokenizer(path)
    cots = reasoning.open_builtin("builtin://reasoning?n=200&seed=5").column("response").to_pylist()
    texts = _TRICKY + cots
    direct = [len(e.ids) for e in tok.encode_batch([t or "" for t in texts], add_special_tokens=False)]
    counter = tokens._SegmentCounter(tok)
    assert counter.enabled
    counter.checked = True  # the cuts alone must be exact, without the fallback
    assert counter.count(pa.array(texts)).tolist() == direct
    tokens._segment_counter.cache_clear()
    assert tokens.count_tokens(pa.array(texts), path, batch_rows=7).tolist() == direct
    # A text that already holds the cut character sends its batch to the tokenizer directly.
    odd = ["has a \x00 cut character", "a b"]
    assert counter.count(pa.array(odd)).tolist() == [len(e.ids) for e in tok.encode_batch(odd, add_special_tokens=False)]


def test_segment_cache_overflow_recounts_the_batch():
    """A full segment cache starts over without losing the segments of the batch being counted (a 1M-row
    select died with a KeyError when a clear dropped segments it had found cached a moment before)."""
    from infialign.pipeline.world import reasoning, tiny_model

    path = str(tiny_model.resolve_model_uri("builtin://tiny")) + "/tokenizer.json"
    tok = tokens._hf_tokenizer(path)
    cots = reasoning.open_builtin("builtin://reasoning?n=60&seed=7").column("response").to_pylist()
    direct = [len(e.ids) for e in tok.encode_batch(cots, add_special_tokens=False)]
    counter = tokens._SegmentCounter(tok, max_cache=400)
    counter.checked = True
    for start in range(0, 60, 20):  # later batches share segments with earlier ones and overflow the cache
        assert counter.count(pa.array(cots[start : start + 20])).tolist() == direct[start : start + 20]
    assert counter.count(pa.array(cots)).tolist() == direct


def test_run_long_pool_equals_local(tmp_path):
    """The curate stage's default without Ray: one RowPool for the whole run, windows shipped as Arrow
    IPC. Same rows, values, order and funnel as the local backend over the same windows."""
    table = _duplicated(300)
    local_rows, f_local = stream.run_steps_streaming(_batches(table, 13), _pipeline(), executor.ExecutorConfig(window_rows=40), scratch=tmp_path)
    cfg = executor.ExecutorConfig(backend="processes", workers=2, window_rows=40)
    pool_rows, f_pool = stream.run_steps_streaming(_batches(table, 13), _pipeline(), cfg, scratch=tmp_path)
    assert pool_rows.table().equals(local_rows.table())
    assert _summary(f_pool) == _summary(f_local)
    assert [s.counters for s in f_pool.steps] == [s.counters for s in f_local.steps]


def test_row_pool_workers_live_for_the_run():
    """Every window of every segment runs on the same (at most two) worker processes: no pool per window."""
    step_list = _steps()
    row_segments = [seg for scope, seg in executor.segments(step_list) if scope == "row"]
    table = _table(200)
    with executor.RowPool(step_list, workers=2) as pool:
        outs = []
        for seg in row_segments:
            outs += [out for out, _ in pool.map_windows(seg, _batches(table, 20))]
        pids = {f.pid for f in pool._pool._processes.values()}  # noqa: SLF001  the pool's own record
    assert len(pids) <= 2
    expected = [executor.map_segment(seg, w, executor.ExecutorConfig())[0][0] for seg in row_segments for w in _batches(table, 20)]
    assert len(outs) == len(expected) and all(a.equals(b) for a, b in zip(outs, expected))


def test_row_pool_runs_a_single_window_in_process():
    """A dataset that fits one window (the quickstart, most tests) never spawns the workers."""
    step_list = _steps()
    seg = next(seg for scope, seg in executor.segments(step_list) if scope == "row")
    table = _table(30)
    with executor.RowPool(step_list, workers=2) as pool:
        outs = [out for out, _ in pool.map_windows(seg, [table])]
        assert not pool._pool._processes  # noqa: SLF001  no worker was started
    assert len(outs) == 1 and outs[0].equals(executor.map_segment(seg, table, executor.ExecutorConfig())[0][0])


def test_row_pool_rejects_a_foreign_segment():
    with executor.RowPool(_steps()[:1], workers=2) as pool, pytest.raises(ValueError, match="not a run"):
        list(pool.map_windows(_steps()[1:2], [_table(3)]))


def test_available_cpus_respects_affinity_and_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(executor.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert executor.available_cpus(quota) == 4
    quota.write_text("250000 100000\n")
    assert executor.available_cpus(quota) == 2
    quota.write_text("50000 100000\n")
    assert executor.available_cpus(quota) == 1
    assert executor.available_cpus(tmp_path / "absent") == 4


_WS = "\t\n\x0b\x0c\r\x85 \u00a0\u1680\u2000\u2001\u2005\u200a\u2028\u2029\u202f\u205f\u3000"


def test_word_gap_pieces_cut_before_every_single_space_between_non_whitespace():
    """The NumPy cut finds exactly the gaps the _WORD_GAP regex describes, every one of them, in every text
    (Unicode separators on either side, spaces at a text's edges, empty and null texts)."""
    texts = [*_TRICKY, "a b c d e", " a b ", "x" + "".join(f"{w} y" for w in _WS), "ü ß 日 本", "\u200b z", "a  b", "é\u00a0 b c"]
    # Multi-byte characters right beside a space: separators, and look-alikes that are not whitespace
    # (U+2060 word joiner, U+2030 per mille, U+205E, U+1681, U+3001, U+00A1), at text edges too.
    texts += ["\u3000 x \u2005", "x\u205f y", "\u2060 y \u2060", "‰ y ‰", "\u205e a \u1681 b \u3001 c \u00a1 d", "\u0085 e \u0085"]
    arr = pa.array(texts).fill_null("")
    pieces, parents = tokens._word_gap_pieces(arr)
    got: list[list[str]] = [[] for _ in texts]
    for p, d in zip(pieces.to_pylist(), parents.tolist()):
        got[d].append(p)
    for text, parts in zip(arr.to_pylist(), got):
        assert "".join(parts) == text
        cuts = [i for i in range(1, len(text) - 1) if text[i] == " " and text[i - 1] not in _WS and text[i + 1] not in _WS]
        bounds = list(itertools.accumulate(len(p) for p in parts))[:-1]
        assert bounds == cuts, text
