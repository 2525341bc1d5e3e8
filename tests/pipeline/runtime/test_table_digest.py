"""storage.table_digest: the rows decide the digest, not the chunking, and big tables are hashed window by window."""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
from infialign.pipeline.runtime import storage


def _one_batch_digest(table: pa.Table) -> str:
    """The digest as it was first defined: one IPC batch of the combined table."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return "sha256:" + hashlib.sha256(sink.getvalue()).hexdigest()


def _table(n: int) -> pa.Table:
    return pa.table({"id": [f"r{i}" for i in range(n)], "n": list(range(n))})


def test_small_tables_keep_their_digest():
    for n in (0, 1, 100, storage._DIGEST_ROWS):
        table = _table(n)
        assert storage.table_digest(table) == _one_batch_digest(table)


def test_chunking_does_not_change_the_digest(monkeypatch):
    monkeypatch.setattr(storage, "_DIGEST_ROWS", 10)
    table = _table(35)
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=7))
    assert rechunked.column(0).num_chunks > 1
    assert storage.table_digest(rechunked) == storage.table_digest(table)


def test_rows_decide_the_digest(monkeypatch):
    monkeypatch.setattr(storage, "_DIGEST_ROWS", 10)
    table = _table(35)
    assert storage.table_digest(table) != storage.table_digest(table.slice(0, 34))
    changed = table.set_column(1, "n", pa.array([*range(34), 99]))
    assert storage.table_digest(changed) != storage.table_digest(table)


def test_a_slice_hashes_like_a_fresh_table_of_its_rows():
    table = _table(50)
    assert storage.table_digest(table.slice(10, 20)) == storage.table_digest(_table(50).slice(10, 20).take(list(range(20))))
    assert storage.table_digest(table.slice(0, 20)) == storage.table_digest(_table(20))
