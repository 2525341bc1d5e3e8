"""Atomic checkpoint publishing to fsspec storage, and finding the checkpoint to resume from.

Protocol (the crash-safety argument is the order):

1. The HF Trainer writes ``<output_dir>/checkpoint-<step>/`` (weights, optimizer, scheduler, RNG states,
   trainer state; ZeRO shards of every rank under DeepSpeed).
2. ``CheckpointPublisher.on_save``: all ranks meet (every rank has written its files), each node's local
   rank 0 uploads what its disk holds to ``<root>/checkpoint-<step>/``, and all ranks exchange success and
   file lists.
3. Only if every upload succeeded, world rank 0 writes ``<root>/latest.json`` = {step, path, time, files}.
   The marker is the commit point: it only ever names a fully uploaded checkpoint. A crash or failed upload
   before it leaves the marker on the previous checkpoint.
4. Then older remote checkpoints beyond ``keep_last`` are deleted (never the marked one).

``find_resume_checkpoint`` reads the marker, downloads the files it lists (checking sizes) and returns the
local directory for ``trainer.train(resume_from_checkpoint=...)``; the HF Trainer restores step, optimizer,
scheduler, RNG states and the data position from it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from transformers import TrainerCallback

if TYPE_CHECKING:
    import fsspec
    from transformers import TrainerControl, TrainerState, TrainingArguments

__all__ = [
    "MARKER",
    "CheckpointStore",
    "CheckpointPublisher",
    "CheckpointPublishError",
    "find_resume_checkpoint",
    "exchange",
    "read_marker",
    "upload_checkpoint",
]

log = logging.getLogger(__name__)

MARKER: Final = "latest.json"
_STEP = re.compile(r"checkpoint-(\d+)$")


class CheckpointPublishError(RuntimeError):
    """A checkpoint could not be uploaded; the marker still names the previous one. Infrastructure failure."""


@dataclass(frozen=True)
class CheckpointStore:
    """Where checkpoints are published: a filesystem and a root path inside it (no protocol prefix)."""

    fs: fsspec.AbstractFileSystem
    root: str

    @classmethod
    def from_uri(cls, uri: str, **storage_options: Any) -> CheckpointStore:
        """``s3://bucket/prefix`` (credentials and endpoint from the environment or ``storage_options``) or ``file:///dir``."""
        import fsspec

        fs, root = fsspec.core.url_to_fs(uri, **storage_options)
        return cls(fs, root.rstrip("/"))

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    @property
    def local(self) -> bool:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return protocol in ("file", "local")


def _files(local_dir: Path) -> dict[str, int]:
    return {p.relative_to(local_dir).as_posix(): p.stat().st_size for p in sorted(local_dir.rglob("*")) if p.is_file()}


def upload_checkpoint(store: CheckpointStore, local_dir: Path) -> dict[str, int]:
    """Copy every file under ``local_dir`` to ``<root>/<local_dir.name>/``; return {relative path: size}."""
    files = _files(local_dir)
    remote = store.path(local_dir.name)
    for rel in files:
        target = f"{remote}/{rel}"
        store.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        store.fs.put_file(str(local_dir / rel), target)
    return files


def read_marker(store: CheckpointStore) -> dict[str, Any] | None:
    """The marker's content, or None when nothing was published yet."""
    path = store.path(MARKER)
    if not store.fs.exists(path):
        return None
    return json.loads(store.fs.cat_file(path))


def _write_marker(store: CheckpointStore, marker: dict[str, Any]) -> None:
    data = json.dumps(marker, indent=1, sort_keys=True).encode()
    final = store.path(MARKER)
    if store.local:
        # A local write is not atomic; a rename is. (An object-store PUT is atomic by itself.)
        tmp = store.path(f".{MARKER}.{os.getpid()}.tmp")
        store.fs.pipe_file(tmp, data)
        store.fs.mv(tmp, final)
    else:
        store.fs.pipe_file(final, data)


def _remote_steps(store: CheckpointStore) -> dict[int, str]:
    if not store.fs.exists(store.root):
        return {}
    out = {}
    for entry in store.fs.ls(store.root, detail=False):
        m = _STEP.search(entry.rstrip("/"))
        if m:
            out[int(m.group(1))] = entry.rstrip("/")
    return out


def _prune(store: CheckpointStore, keep_last: int, marked: str) -> list[str]:
    steps = _remote_steps(store)
    doomed = [path for step, path in sorted(steps.items())[:-keep_last] if path.rstrip("/").split("/")[-1] != marked.split("/")[-1]]
    for path in doomed:
        store.fs.rm(path, recursive=True)
    return doomed


def _exchange(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rank's payload, on every rank (also a barrier). One process: just ours."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [payload]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, payload)
    return gathered


exchange = _exchange  # public for other collective steps of a run (SAGE margins, dpo.py)


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class CheckpointPublisher(TrainerCallback):
    """After each HF checkpoint save: upload, then (only then) move the marker, then prune old checkpoints.

    Every rank must carry this callback: the upload step is collective. Raises ``CheckpointPublishError``
    on every rank when any node's upload failed, which ends the attempt; the stage restarts from the marker.
    """

    def __init__(self, store: CheckpointStore, *, keep_last: int = 2, clock: Callable[[], float] = time.time) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last={keep_last} must be at least 1")
        self.store = store
        self.keep_last = keep_last
        self.clock = clock
        self.last_published: str | None = None  # remote path of the newest committed checkpoint

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        local_dir = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        _barrier()  # all ranks have written their part (ZeRO shards, RNG states) before anyone uploads
        payload: dict[str, Any] = {"ok": True, "files": {}, "error": None}
        if state.is_local_process_zero:
            try:
                payload["files"] = upload_checkpoint(self.store, local_dir)
            except Exception as e:  # any storage error: report it to all ranks, then fail together
                payload.update(ok=False, error=f"{type(e).__name__}: {e}"[:500])
        results = _exchange(payload)
        errors = [r["error"] for r in results if not r["ok"]]
        remote = self.store.path(local_dir.name)
        if errors:
            raise CheckpointPublishError(
                f"uploading {local_dir.name} to {remote} failed ({errors[0]}); {self.store.path(MARKER)} still names "
                f"{self.last_published or 'no checkpoint'}"
            )
        files: dict[str, int] = {}
        for r in results:
            files.update(r["files"])
        if state.is_world_process_zero:
            marker = {
                "step": state.global_step,
                "path": remote,
                "time": datetime.fromtimestamp(self.clock(), UTC).isoformat(),
                "files": files,
            }
            _write_marker(self.store, marker)
            pruned = _prune(self.store, self.keep_last, remote)
            log.info("published %s (%d files); pruned %s", remote, len(files), pruned or "nothing")
        self.last_published = remote


def find_resume_checkpoint(store: CheckpointStore, local_dir: Path) -> Path | None:
    """Download the checkpoint the marker names into ``local_dir``; None when nothing was published.

    Files already present with the right size are not fetched again (a restarted pod on the same volume, or
    a second local rank after the first has downloaded).
    """
    marker = read_marker(store)
    if marker is None:
        return None
    remote = marker["path"]
    files: dict[str, int] = marker["files"]
    target = Path(local_dir) / remote.rstrip("/").split("/")[-1]
    if target.is_dir() and _files(target) == files:
        return target
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for rel in files:
        dest = staging / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            store.fs.get_file(f"{remote}/{rel}", str(dest))
        except FileNotFoundError as e:
            raise CheckpointPublishError(f"checkpoint {remote} named by the marker is incomplete: {rel} is missing") from e
    got = _files(staging)
    if got != files:
        missing = sorted(set(files) - set(got)) or sorted(k for k in files if got.get(k) != files[k])
        raise CheckpointPublishError(f"checkpoint {remote} named by the marker is incomplete: {missing[:5]} differ")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
