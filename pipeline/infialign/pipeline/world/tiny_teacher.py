"""``builtin://tiny-teacher``: ``builtin://tiny`` trained by our own SFT trainer on a clean world.

Why: the quickstart's ``distill`` stage needs a real teacher served by vLLM that is measurably better than
the student, on a laptop CPU with no model hub. The teacher is the student's own architecture and
tokenizer (``builtin://tiny``, whatever its current ``TinyModelSpec`` is) after a fixed SFT budget
(``training.train_sft``) on ``builtin://reasoning`` with no planted defects and its own seed, never the
benchmark split. Deterministic (fixed seeds, one process, CPU fp32), built once and cached under
``<cache>/tiny-teacher-<digest>/``; the digest covers the student's digest and this recipe, so when the
tiny model or the world generator changes the teacher is rebuilt instead of going stale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from infialign.pipeline.world import reasoning, tiny_model

__all__ = ["TEACHER_URI", "TeacherSpec", "ensure_tiny_teacher", "tiny_teacher_dir"]

TEACHER_URI: Final = "builtin://tiny-teacher"
TEACHER_VERSION: Final = "1"
"""Bump when the build code changes what it writes (the spec fields alone are hashed automatically)."""
METADATA_FILE: Final = "infialign-tiny-teacher.json"


@dataclass(frozen=True, slots=True)
class TeacherSpec:
    """The recipe of ``builtin://tiny-teacher``. Every field (and the student's digest) goes into the cache digest."""

    student: tiny_model.TinyModelSpec = field(default_factory=tiny_model.TinyModelSpec)
    """The model it starts from: the current ``builtin://tiny`` recipe, so the teacher follows it."""
    world_records: int = 4000
    world_seed: int = 1234
    """Its own seed: different problems from the quickstart's pool (seed 0) and never the bench split."""
    max_steps: int = 250
    """Reconstruction: a fixed budget of a few CPU minutes (~1.5 epochs of packed 512-token rows) that lifts
    bench accuracy well above the untrained student's."""
    global_batch_size: int = 8
    learning_rate: float = 3e-3
    """High for a 0.9 M-parameter model trained from scratch; cosine to a tenth."""
    max_length: int = 512
    seed: int = 0

    def digest(self) -> str:
        payload = {
            "student": self.student.digest(),
            "spec": {k: v for k, v in dataclasses.asdict(self).items() if k != "student"},
            "teacher_version": TEACHER_VERSION,
            "generator_version": reasoning.GENERATOR_VERSION,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def tiny_teacher_dir(cache_dir: Path | None = None, spec: TeacherSpec | None = None) -> Path:
    spec = spec or TeacherSpec()
    return Path(cache_dir or tiny_model._default_cache_dir()) / f"tiny-teacher-{spec.digest()}"


def ensure_tiny_teacher(cache_dir: Path | None = None, *, spec: TeacherSpec | None = None) -> Path:
    """The teacher's model directory, trained first if it is not cached (same locking as ``builtin://tiny``)."""
    spec = spec or TeacherSpec()
    final = tiny_teacher_dir(cache_dir, spec)
    if (final / METADATA_FILE).is_file():
        return final
    student = tiny_model.ensure_tiny_model(cache_dir, spec=spec.student)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tiny_model._locked(final.parent / f"{final.name}.lock"):
        if (final / METADATA_FILE).is_file():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            _build(tmp, student, spec)
            tmp.chmod(0o755)
            if final.exists():
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _build(out: Path, student: Path, spec: TeacherSpec) -> None:
    from infialign.pipeline.training import SftSettings, train_sft

    started = time.monotonic()
    world = reasoning.generate(spec.world_records, seed=spec.world_seed, mix=reasoning.PlantMix().scaled(0.0)).table
    settings = SftSettings(
        max_length=spec.max_length,
        global_batch_size=spec.global_batch_size,
        micro_batch_size=spec.global_batch_size,
        learning_rate=spec.learning_rate,
        min_learning_rate=spec.learning_rate / 10,
        warmup_ratio=0.05,
        max_steps=spec.max_steps,
        save_steps=spec.max_steps,
        keep_checkpoints=1,
        logging_steps=25,
        heartbeat_interval_s=0,
        seed=spec.seed,
        precision="fp32",
    )
    work = out / "_train"
    result = train_sft(settings, str(student), world, work)
    if result.model_dir is None:
        raise RuntimeError("train_sft exported no model (not world rank 0?)")
    for item in Path(result.model_dir).iterdir():
        shutil.move(str(item), out / item.name)
    shutil.rmtree(work, ignore_errors=True)
    metadata = {
        "uri": TEACHER_URI,
        "digest": spec.digest(),
        "student_digest": spec.student.digest(),
        "spec": {k: v for k, v in dataclasses.asdict(spec).items() if k != "student"},
        "teacher_version": TEACHER_VERSION,
        "train_loss": result.train_loss,
        "global_step": result.global_step,
        "build_seconds": round(time.monotonic() - started, 2),
    }
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
