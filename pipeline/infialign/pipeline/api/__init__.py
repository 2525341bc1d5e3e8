"""The AlignmentRun API: the single source of truth for the CRD, `infialign validate` and the planner."""

from infialign.pipeline.api.resource import (
    API_VERSION,
    GROUP,
    KIND,
    MAX_NAME_LENGTH,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    AlignmentRun,
    Metadata,
)
from infialign.pipeline.api.spec import *  # noqa: F403  (spec.__all__ is the curated list)
from infialign.pipeline.api.spec import __all__ as _spec_all
from infialign.pipeline.api.status import *  # noqa: F403
from infialign.pipeline.api.status import __all__ as _status_all

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "MAX_NAME_LENGTH",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "AlignmentRun",
    "Metadata",
    *_spec_all,
    *_status_all,
]
