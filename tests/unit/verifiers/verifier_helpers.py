"""Module-level functions that spawned pool workers can import."""

from __future__ import annotations

import os
import time


def slow(item: str) -> str:
    """Hangs on HANG, raises on RAISE, dies on DIE, echoes otherwise."""
    if item == "HANG":
        time.sleep(3600)
    if item == "RAISE":
        raise RuntimeError("boom")
    if item == "DIE":
        os._exit(3)
    return item.upper()


def pid_of(item: str) -> tuple[str, int]:
    """Which worker process took the item (a pool that keeps its workers answers with the same pids)."""
    if item == "HANG":
        time.sleep(60)
    return item, os.getpid()
