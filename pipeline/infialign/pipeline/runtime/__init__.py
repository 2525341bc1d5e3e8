"""The stage runtime: config, storage, markers, tracking and the `infialign stage` entrypoint."""

__all__ = ["config", "context", "entrypoint", "markers", "sources", "storage", "tracking"]
