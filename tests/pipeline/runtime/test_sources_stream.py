"""Sources read as a stream of batches: the same rows as reading the whole file, in order."""

from __future__ import annotations

import json

import pytest

import pyarrow as pa
import pyarrow.parquet as pq
from infialign.pipeline.runtime import sources


def _rows(n: int) -> list[dict]:
    return [{"problem": f"What is {i} + {i}?", "solution": f"\\boxed{{{2 * i}}}", "n": i} for i in range(n)]


def test_parquet_streams_in_batches(tmp_path):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(_rows(25)), path, row_group_size=10)
    parts = list(sources.iter_dataset(str(path), batch_rows=4))
    assert max(p.num_rows for p in parts) <= 4
    assert pa.concat_tables(parts).equals(sources.open_dataset(str(path)))


def test_jsonl_streams_in_line_aligned_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_JSONL_CHUNK_BYTES", 50)  # lines are ~60 bytes: chunks cut mid-line
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows(30)).rstrip("\n"))  # no final newline
    parts = list(sources.iter_dataset(str(path), batch_rows=7))
    assert pa.concat_tables(parts).to_pylist() == _rows(30)


def test_folder_streams_files_in_name_order(tmp_path):
    (tmp_path / "d").mkdir()
    pq.write_table(pa.Table.from_pylist(_rows(3)), tmp_path / "d" / "b.parquet")
    (tmp_path / "d" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(2)))
    rows = [r for p in sources.iter_dataset(str(tmp_path / "d")) for r in p.to_pylist()]
    assert [r["n"] for r in rows] == [0, 1, 0, 1, 2]


def test_builtin_sources_stream_too():
    parts = list(sources.iter_dataset("builtin://reasoning?n=50&seed=0", batch_rows=20))
    assert [p.num_rows for p in parts] == [20, 20, 10]


def test_jsonl_chunks_keep_one_schema_when_a_column_is_absent_or_null_in_a_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_JSONL_CHUNK_BYTES", 200)  # a few lines per chunk
    rows = (
        [{"problem": f"p{i}", "answer": str(i)} for i in range(4)]  # chunk 1: `answer` is a string
        + [{"problem": f"q{i}"} for i in range(8)]  # whole chunks without `answer`, then without a `source` yet
        + [{"problem": f"r{i}", "answer": None, "source": "olympiad"} for i in range(4)]  # `answer` null, a new column
    )
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parts = list(sources.iter_dataset(str(path), batch_rows=3))
    assert len(parts) > 4
    assert {p.schema.field("answer").type for p in parts} == {pa.string()}
    assert [p.column_names[:2] for p in parts] == [["problem", "answer"]] * len(parts)
    got = [r for p in parts for r in p.to_pylist()]
    assert [r["problem"] for r in got] == [r["problem"] for r in rows]
    assert [r.get("answer") for r in got] == [r.get("answer") for r in rows]
    assert [r.get("source") for r in got] == [r.get("source") for r in rows]


def test_jsonl_column_that_changes_type_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_JSONL_CHUNK_BYTES", 60)
    rows = [{"problem": "p", "answer": 1}] * 3 + [{"problem": "q", "answer": {"a": [1, 2]}}] * 3
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(sources.SourceError, match="changes type"):
        list(sources.iter_dataset(str(path)))


def test_jsonl_numbers_that_widen_in_a_later_chunk_still_read(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_JSONL_CHUNK_BYTES", 60)
    rows = [{"problem": "p", "answer": 1}] * 3 + [{"problem": "q", "answer": 2.5}] * 3
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = [r for p in sources.iter_dataset(str(path)) for r in p.to_pylist()]
    assert [r["answer"] for r in got] == [1, 1, 1, 2.5, 2.5, 2.5]
