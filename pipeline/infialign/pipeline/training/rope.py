"""The RoPE decision for training at ``max_length``: what to change in the student's config, and whether it fits.

Pure: the model's facts (``max_position_embeddings``, ``rope_theta``) come in as a mapping (a ``config.json`` or the
known-models table), so `infialign validate` and the trainer make the same decision. ``apply_rope`` is the one
impure helper: it sets the changes on a transformers config before the weights are loaded.

Why a decision is needed: Qwen2.5-Math-7B, InfiAlign's base, has 4,096 positions and ``rope_theta`` 10,000, and the
recipe trains at 32,768 tokens. Position ids past the pretraining range give rotation angles the model never saw.
Two remedies are common:

* a larger base frequency (``theta``): huggingface/open-r1 trains Qwen2.5-Math-7B at 32K as
  ``open-r1/Qwen2.5-Math-7B-RoPE-300k`` (rope_theta 300,000, 32,768 positions, weights unchanged); Qwen2.5-1M raised
  the base frequency the same way while extending context ("adjusted base frequency"). This is the default.
* position interpolation (``linear``, ``dynamic`` NTK, ``yarn``) with a ``factor``, as transformers implements them.
  ``max_position_embeddings`` stays the pretraining value and ``factor`` carries the extension (Qwen's own YaRN
  instructions do the same, and vLLM derives its context length from both).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["RopeError", "RopePlan", "model_positions", "plan_rope", "apply_rope"]

Scaling = Literal["auto", "none", "theta", "linear", "dynamic", "yarn"]


class RopeError(ValueError):
    """``max_length`` cannot be trained with this RoPE setting. Permanent; the message names the fields and the fix."""


@dataclass(frozen=True)
class RopePlan:
    """Config attributes to set before loading (empty: the model as it is), and the positions covered afterwards."""

    changes: dict[str, Any] = field(default_factory=dict)
    positions: int | None = None  # None: the model does not say
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"changes": self.changes, "positions": self.positions, "reason": self.reason}


def model_positions(config: Mapping[str, Any]) -> tuple[int | None, float | None]:
    """``(max_position_embeddings, rope_theta)`` of a config dict; transformers 5 keeps the theta in ``rope_parameters``."""
    cfg = dict(config.get("text_config") or config)
    positions = cfg.get("max_position_embeddings")
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    theta = params.get("rope_theta") if isinstance(params, Mapping) else None
    theta = theta if theta is not None else cfg.get("rope_theta")
    return (int(positions) if positions else None), (float(theta) if theta else None)


def plan_rope(
    scaling: Scaling,
    *,
    theta: float,
    factor: float | None,
    max_length: int,
    positions: int | None,
    model_theta: float | None,
    length_field: str = "spec.stages.sft.phases[*].maxLength",
    rope_field: str = "spec.stages.sft.rope",
) -> RopePlan:
    """What to change so ``max_length`` tokens fit the model's positions. Raises ``RopeError`` when they cannot."""
    if scaling == "none" or (scaling == "auto" and (positions is None or max_length <= positions)):
        if positions is not None and max_length > positions:
            raise RopeError(
                f"{length_field} is {max_length}, above the model's max_position_embeddings {positions}, and "
                f"{rope_field}.scaling is 'none': positions past {positions} were never trained. Set "
                f"{rope_field}.scaling to 'auto' (rope_theta {theta:g}, as open-r1's Qwen2.5-Math-7B-RoPE-300k) or "
                f"'yarn', or lower {length_field} to {positions}."
            )
        why = "fits the model's positions" if positions is not None else "the model's positions are unknown"
        return RopePlan({}, positions, f"unchanged: {why}")
    if scaling in ("auto", "theta"):
        # `auto` never lowers a base frequency the model already has; `theta` sets exactly what was asked
        new_theta = max(theta, model_theta or 0.0) if scaling == "auto" else theta
        new_positions = max(positions or 0, max_length)
        return RopePlan(
            {"max_position_embeddings": new_positions, "rope_parameters": {"rope_type": "default", "rope_theta": new_theta}},
            new_positions,
            f"rope_theta {model_theta or 'unknown'} → {new_theta:g}, positions {positions or 'unknown'} → {new_positions}",
        )
    if factor is None and positions is None:
        raise RopeError(
            f"{rope_field}.scaling is {scaling!r} without {rope_field}.factor, and the model's max_position_embeddings "
            f"is unknown, so the factor cannot be derived. Set {rope_field}.factor (e.g. {max_length / 4096:g} for a "
            "4096-position model)."
        )
    assert positions is not None or factor is not None
    f = float(factor) if factor is not None else max(1.0, max_length / positions)  # type: ignore[operator]
    covered = math.floor(positions * f) if positions is not None else None
    if covered is not None and max_length > covered:
        raise RopeError(
            f"{length_field} is {max_length} but {rope_field}.factor {f:g} × max_position_embeddings {positions} covers "
            f"{covered}. Raise {rope_field}.factor to {max_length / positions:g} or leave it empty."  # type: ignore[operator]
        )
    params: dict[str, Any] = {"rope_type": scaling, "factor": f}
    if model_theta is not None:
        params["rope_theta"] = model_theta
    if scaling == "yarn" and positions is not None:
        params["original_max_position_embeddings"] = positions
    return RopePlan({"rope_parameters": params}, covered, f"{scaling} scaling, factor {f:g}")


def apply_rope(config: Any, plan: RopePlan) -> Any:
    """Set the plan's changes on a transformers ``PretrainedConfig`` (its text config for multimodal ones)."""
    if not plan.changes:
        return config
    target = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key, value in plan.changes.items():
        setattr(target, key, dict(value) if isinstance(value, Mapping) else value)
    return config
