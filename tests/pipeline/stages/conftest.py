"""What the vLLM stage tests share: running one stage pod's process through the real entrypoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_stage(stage: str, config_path: Path, env: dict[str, str], log: Path, *, chunk_prompts: int, timeout: float) -> int:
    """`infialign stage <stage> --config …` as a pod runs it: this test's shard variables only, output appended to `log`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("INFIALIGN_SHARD")}
    env = {**base, "OMP_NUM_THREADS": "1", "INFIALIGN_GENERATION_CHUNK_PROMPTS": str(chunk_prompts), "INFIALIGN_SHARD_POLL_SECONDS": "0.2", **env}
    with log.open("ab") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "infialign.pipeline.cli", "stage", stage, "--config", str(config_path)], env=env, stdout=f, stderr=f, timeout=timeout
        )
    return proc.returncode
