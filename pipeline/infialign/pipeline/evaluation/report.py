"""The eval table in its forms: MLflow metric keys, an MLflow table, and a PNG chart. Pure except the PNG write."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["metric_key", "mlflow_metrics", "table_columns", "plot_png"]

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. /]")


def metric_key(entry: dict[str, Any]) -> str:
    """`eval.<model>.<benchmark>[.<subset>].avg_at_8`: MLflow keys allow no `@`."""
    parts = ["eval", str(entry["model"]), str(entry["benchmark"])]
    if entry.get("subset"):
        parts.append(str(entry["subset"]))
    parts.append(str(entry["metric"]).replace("@", "_at_"))
    return _UNSAFE.sub("_", ".".join(parts))


def mlflow_metrics(entries: Sequence[dict[str, Any]]) -> dict[str, float]:
    return {metric_key(e): float(e["value"]) for e in entries}


def table_columns(entries: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Column-wise form for `mlflow.log_table`."""
    names = ("model", "benchmark", "subset", "metric", "value", "samples", "questions")
    return {n: [e.get(n) for e in entries] for n in names}


def plot_png(entries: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Grouped bars of avg@k: one group per benchmark (and subset), one bar per model. None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed; no eval chart")
        return None
    avg = [e for e in entries if str(e["metric"]).startswith("avg@")]
    if not avg:
        return None
    groups = list(dict.fromkeys((e["benchmark"], e.get("subset")) for e in avg))
    models = list(dict.fromkeys(e["model"] for e in avg))
    values = {(e["model"], e["benchmark"], e.get("subset")): float(e["value"]) for e in avg}
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(len(models), 1) * 0.6), 4.0))
    for m, model in enumerate(models):
        xs = [g + m * width for g in range(len(groups))]
        ys = [values.get((model, b, s), 0.0) for b, s in groups]
        bars = ax.bar(xs, ys, width=width, label=model)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([g + width * (len(models) - 1) / 2 for g in range(len(groups))])
    ax.set_xticklabels([f"{b}\n{s}" if s else b for b, s in groups], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("avg@k (accuracy)")
    ax.set_title("eval: model × benchmark")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
