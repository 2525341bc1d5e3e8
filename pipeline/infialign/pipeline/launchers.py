"""LocalLauncher: a stage attempt as a subprocess on this machine. A thin adapter with no stage logic.

Each attempt runs `infialign stage <step> --config <file>` in its own session, so a Ctrl-C in the
terminal reaches the executor, which then stops the child cleanly (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from infialign.pipeline.runtime.config import StageConfig

__all__ = ["LocalLauncher", "LocalAttempt", "tail"]


def tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


@dataclass
class LocalAttempt:
    step: str
    attempt: int
    process: subprocess.Popen[bytes]
    log_path: Path
    scratch: Path

    @property
    def termination_file(self) -> Path:
        return self.scratch / "termination.json"

    def termination_message(self) -> dict[str, object] | None:
        try:
            return json.loads(self.termination_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


class LocalLauncher:
    def __init__(self, run_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.run_dir = run_dir
        self.extra_env = dict(extra_env or {})
        self.attempts: dict[str, LocalAttempt] = {}

    def start(self, config: StageConfig) -> LocalAttempt:
        attempt_dir = self.run_dir / "attempts" / f"{config.step}-a{config.attempt}"
        attempt_dir.mkdir(parents=True, exist_ok=True)
        config_path = attempt_dir / "stage.json"
        config_path.write_text(config.model_dump_json(indent=2), encoding="utf-8")
        scratch = self.run_dir / "scratch" / config.step  # shared across attempts: checkpoints staged here survive a restart
        scratch.mkdir(parents=True, exist_ok=True)
        log_path = attempt_dir / "stage.log"
        env = {
            **os.environ,
            **self.extra_env,
            **_env_from_resources(config),
            "INFIALIGN_SCRATCH": str(scratch),
            "INFIALIGN_TERMINATION_LOG": str(attempt_dir / "termination.json"),
            "PYTHONUNBUFFERED": "1",
        }
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "infialign.pipeline.cli", "stage", config.step, "--config", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        attempt = LocalAttempt(config.step, config.attempt, process, log_path, attempt_dir)
        self.attempts[config.step] = attempt
        return attempt

    def poll(self, step: str) -> int | None:
        attempt = self.attempts.get(step)
        return None if attempt is None else attempt.process.poll()

    def stop(self, step: str, grace_seconds: float = 15.0) -> None:
        attempt = self.attempts.get(step)
        if attempt is None or attempt.process.poll() is not None:
            return
        try:
            os.killpg(attempt.process.pid, signal.SIGTERM)
            attempt.process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(attempt.process.pid, signal.SIGKILL)
            attempt.process.wait()
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for step in list(self.attempts):
            self.stop(step)


def _env_from_resources(config: StageConfig) -> dict[str, str]:
    """Literal `env` values of the stage's resources apply locally too (secret refs do not exist here)."""
    out: dict[str, str] = {}
    for item in config.resources.get("env", []) or []:
        if "value" in item:
            out[item["name"]] = str(item["value"])
    return out
