"""Module-level functions that spawned pool workers can import."""

from __future__ import annotations

import time


def slow(item: str) -> str:
    """Hangs on HANG, raises on RAISE, dies on DIE, echoes otherwise."""
    if item == "HANG":
        time.sleep(3600)
    if item == "RAISE":
        raise RuntimeError("boom")
    if item == "DIE":
        import os

        os._exit(3)
    return item.upper()
