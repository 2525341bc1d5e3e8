"""Evaluation pieces of the `eval` stage: benchmark defaults, scoring, avg@k/pass@k, and the report forms."""

from infialign.pipeline.evaluation import metrics, presets, report, scoring

__all__ = ["metrics", "presets", "report", "scoring"]
