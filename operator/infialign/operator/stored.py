"""A stored status the operator cannot read (pure).

It happens when a person edits the status subresource by hand, or an older operator wrote a value this one
no longer knows. Rebuilding a fresh status would restart attempt numbers and collide with the Jobs that
exist, so the operator leaves the run alone — but says so on the run: a `StatusUnreadable=True`
condition naming the field, beside whatever conditions still parse, and nothing else of the status touched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pydantic
from infialign.pipeline.api import Condition, ConditionType, Reason, truncate

__all__ = ["describe", "unreadable_patch"]


def describe(error: pydantic.ValidationError) -> str:
    """`status.steps[0].startTime: Input should be a valid datetime, …` for the first few errors."""
    parts = []
    for err in error.errors()[:3]:
        path = "status"
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        parts.append(f"{path}: {err['msg']}")
    more = f" (and {error.error_count() - 3} more)" if error.error_count() > 3 else ""
    return "; ".join(parts) + more


def unreadable_patch(raw: Mapping[str, Any], problem: str, now: dt.datetime) -> dict[str, Any]:
    """The merge patch that adds the condition (the conditions list is replaced whole, as merge patches do)."""
    kept: list[dict[str, Any]] = []
    for item in raw.get("conditions") or []:
        try:
            condition = Condition.model_validate(item)
        except (pydantic.ValidationError, TypeError):
            continue  # an unreadable condition is part of the problem, not worth keeping
        if condition.type != ConditionType.STATUS_UNREADABLE:
            kept.append(condition.model_dump(mode="json", by_alias=True, exclude_none=True))
    message = truncate(
        f"the stored status cannot be read, so the operator does not act on this run: {problem}. Fix or remove that field "
        "(kubectl patch --subresource=status), or delete and re-create the run"
    )
    unreadable = Condition(
        type=ConditionType.STATUS_UNREADABLE, status="True", reason=Reason.INVALID_STATUS, message=message, last_transition_time=now
    )
    return {"status": {"conditions": [*kept, unreadable.model_dump(mode="json", by_alias=True, exclude_none=True)], "message": message}}
