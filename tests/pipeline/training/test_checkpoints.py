"""Checkpoint publishing: upload first, marker last; a failed upload never moves the marker."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fsspec.implementations.local import LocalFileSystem

from infialign.pipeline.training import checkpoints as ck


def fake_checkpoint(out: Path, step: int) -> Path:
    d = out / f"checkpoint-{step}"
    (d / "global_step").mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"w" * (100 + step))
    (d / "optimizer.pt").write_bytes(b"o" * 50)
    (d / "global_step" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"z" * step)
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return d


def save(pub: ck.CheckpointPublisher, out: Path, step: int) -> None:
    fake_checkpoint(out, step)
    state = SimpleNamespace(global_step=step, is_local_process_zero=True, is_world_process_zero=True)
    pub.on_save(SimpleNamespace(output_dir=str(out)), state, None)


class RecordingFS(LocalFileSystem):
    """Local filesystem that logs writes and can fail the upload of one checkpoint."""

    def __init__(self, fail_on: str | None = None) -> None:
        super().__init__()
        self.fail_on = fail_on
        self.writes: list[str] = []

    def put_file(self, lpath: str, rpath: str, **kwargs: Any) -> None:
        if self.fail_on and self.fail_on in rpath and rpath.endswith("optimizer.pt"):
            raise OSError("connection reset by peer")
        self.writes.append(rpath)
        super().put_file(lpath, rpath, **kwargs)

    def mv(self, path1: str, path2: str, **kwargs: Any) -> None:
        self.writes.append(path2)
        super().mv(path1, path2, **kwargs)


def test_upload_then_marker_then_prune(tmp_path: Path) -> None:
    fs = RecordingFS()
    store = ck.CheckpointStore(fs, str(tmp_path / "remote"))
    pub = ck.CheckpointPublisher(store, keep_last=2, clock=lambda: 0.0)
    for step in (2, 4, 6):
        save(pub, tmp_path / "local", step)
    marker = ck.read_marker(store)
    assert marker is not None and marker["step"] == 6 and marker["path"] == store.path("checkpoint-6")
    assert marker["time"] == "1970-01-01T00:00:00+00:00"
    assert marker["files"]["model.safetensors"] == 106 and "global_step/zero_pp_rank_0_mp_rank_00_optim_states.pt" in marker["files"]
    # the marker is written after every file of its checkpoint
    marker_writes = [i for i, w in enumerate(fs.writes) if w.endswith(ck.MARKER)]
    for i, step in zip(marker_writes, (2, 4, 6), strict=True):
        files_of_step = [j for j, w in enumerate(fs.writes) if f"checkpoint-{step}/" in w]
        assert max(files_of_step) < i
    assert sorted(p.name for p in (tmp_path / "remote").iterdir()) == ["checkpoint-4", "checkpoint-6", ck.MARKER]
    assert pub.last_published == store.path("checkpoint-6")


def test_failed_upload_leaves_the_marker_on_the_previous_checkpoint(tmp_path: Path) -> None:
    fs = RecordingFS(fail_on="checkpoint-4")
    store = ck.CheckpointStore(fs, str(tmp_path / "remote"))
    pub = ck.CheckpointPublisher(store, keep_last=2)
    save(pub, tmp_path / "local", 2)
    before = (tmp_path / "remote" / ck.MARKER).read_bytes()
    with pytest.raises(ck.CheckpointPublishError, match="ConnectionResetError|OSError") as info:
        save(pub, tmp_path / "local", 4)
    assert "still names" in str(info.value) and "checkpoint-2" in str(info.value)
    assert (tmp_path / "remote" / ck.MARKER).read_bytes() == before
    assert pub.last_published == store.path("checkpoint-2")
    resumed = ck.find_resume_checkpoint(store, tmp_path / "resume")
    assert resumed is not None and resumed.name == "checkpoint-2"
    assert json.loads((resumed / "trainer_state.json").read_text())["global_step"] == 2


def test_find_resume_downloads_verifies_and_reuses(tmp_path: Path) -> None:
    store = ck.CheckpointStore(LocalFileSystem(), str(tmp_path / "remote"))
    assert ck.find_resume_checkpoint(store, tmp_path / "resume") is None  # nothing published: first attempt
    pub = ck.CheckpointPublisher(store)
    save(pub, tmp_path / "local", 3)
    got = ck.find_resume_checkpoint(store, tmp_path / "resume")
    assert got == tmp_path / "resume" / "checkpoint-3"
    assert (got / "global_step" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").read_bytes() == b"zzz"
    mtime = (got / "model.safetensors").stat().st_mtime_ns
    assert ck.find_resume_checkpoint(store, tmp_path / "resume") == got  # complete: not fetched again
    assert (got / "model.safetensors").stat().st_mtime_ns == mtime
    # a marker naming files that are no longer there is an error, not a silent partial resume
    (tmp_path / "remote" / "checkpoint-3" / "optimizer.pt").unlink()
    with pytest.raises(ck.CheckpointPublishError, match="optimizer.pt is missing"):
        ck.find_resume_checkpoint(store, tmp_path / "elsewhere")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real S3 protocol endpoint on 127.0.0.1 (moto's server); it accepts any credentials."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="ckpt")
    try:
        yield endpoint
    finally:
        server.stop()


def test_publish_and_resume_over_s3(tmp_path: Path, s3_endpoint: str) -> None:
    store = ck.CheckpointStore.from_uri("s3://ckpt/ns/run/sft-phase1", client_kwargs={"endpoint_url": s3_endpoint})
    assert store.root == "ckpt/ns/run/sft-phase1" and not store.local
    pub = ck.CheckpointPublisher(store, keep_last=1)
    for step in (5, 10):
        save(pub, tmp_path / "local", step)
    assert ck.read_marker(store)["step"] == 10
    assert [p.rsplit("/", 1)[-1] for p in store.fs.ls(store.root, detail=False)] == ["checkpoint-10", ck.MARKER]
    got = ck.find_resume_checkpoint(store, tmp_path / "resume")
    assert got is not None and (got / "model.safetensors").read_bytes() == b"w" * 110
