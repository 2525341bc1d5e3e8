"""The whole `AlignmentRun` object as it appears in a manifest."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints

from infialign.pipeline.api._base import ApiModel
from infialign.pipeline.api.spec import AlignmentRunSpec
from infialign.pipeline.api.status import AlignmentRunStatus

__all__ = ["GROUP", "VERSION", "API_VERSION", "KIND", "PLURAL", "SINGULAR", "SHORT_NAMES", "Metadata", "AlignmentRun", "MAX_NAME_LENGTH"]

GROUP: Final = "infialign.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "AlignmentRun"
PLURAL: Final = "alignmentruns"
SINGULAR: Final = "alignmentrun"
SHORT_NAMES: Final = ("arun",)
# `<run>-<step>-a<attempt>` must stay a 63-character label value: 40 + 1 + 16 + 6 leaves room.
MAX_NAME_LENGTH: Final = 40


class Metadata(ApiModel):
    """The part of `metadata` the pipeline reads; the rest belongs to Kubernetes and is ignored."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")] = Field(
        description="The run's name: a DNS-1035 label of at most 40 characters (child object names append to it)."
    )
    namespace: Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")] = Field(
        default="default", description="The namespace. Default: default."
    )
    uid: Annotated[str, StringConstraints(max_length=64)] | None = Field(default=None, description="Set by Kubernetes.")
    generation: int | None = Field(default=None, description="Set by Kubernetes.")
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class AlignmentRun(ApiModel):
    """An AlignmentRun manifest."""

    api_version: Literal["infialign.dev/v1alpha1"] = Field(alias="apiVersion", description="infialign.dev/v1alpha1")
    kind: Literal["AlignmentRun"] = Field(description="AlignmentRun")
    metadata: Metadata
    spec: AlignmentRunSpec
    status: AlignmentRunStatus | None = None
