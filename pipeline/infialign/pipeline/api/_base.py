"""Base model and the shared field types of the AlignmentRun API.

Every shape that appears twice is an ``Annotated`` type here, defined once with its description and
bound, so the CRD documentation cannot drift between two copies.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

__all__ = [
    "ApiModel",
    "DnsLabel",
    "ArtifactUri",
    "ModelUri",
    "Quantity",
    "EnvName",
    "ImageRef",
    "LabelMap",
    "xk8s",
]


class ApiModel(BaseModel):
    """Frozen, camelCase-aliased, and strict about unknown fields (a misspelled field is the most common mistake)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
        use_attribute_docstrings=False,
    )

    def dump(self) -> dict[str, Any]:
        """The manifest form: camelCase keys, no unset optionals."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def xk8s(**extensions: Any) -> dict[str, Any]:
    """Kubernetes schema extensions for a field, carried through ``json_schema_extra`` into the CRD."""
    return {f"x-kubernetes-{k.replace('_', '-')}": v for k, v in extensions.items()}


DnsLabel = Annotated[
    str,
    StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$"),
    Field(description="A DNS-1035 label: lowercase letters, digits and '-', starting with a letter, at most 40 characters."),
]

ArtifactUri = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048, pattern=r"^((s3|file|hf|builtin|gs|az)://\S+|/\S*|\.{1,2}/\S*|[A-Za-z0-9_][^:\s]*)$"),
    Field(
        description="A dataset location: `s3://bucket/key`, `file:///abs/path`, a local path (relative to the manifest file's "
        "directory with `infialign run`/`validate`), "
        "`hf://org/name?split=train`, or `builtin://reasoning?n=2000&seed=0`."
    ),
]

ModelUri = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048, pattern=r"^((s3|file|hf|builtin)://\S+|/\S*|\.{1,2}/\S*|[A-Za-z0-9_][^:\s]*)$"),
    Field(
        description="A model checkpoint in Hugging Face format: `hf://Qwen/Qwen2.5-Math-7B`, "
        "`s3://bucket/models/x/`, a local or PVC path, or `builtin://tiny` (a tiny Qwen2 built locally for tests)."
    ),
]

Quantity = Annotated[
    str,
    StringConstraints(max_length=32, pattern=r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"),
    Field(description="A Kubernetes resource quantity such as `4`, `500m`, `64Gi`."),
]

EnvName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]

ImageRef = Annotated[
    str,
    StringConstraints(min_length=1, max_length=512, pattern=r"^\S+$"),
    Field(description="A container image reference, e.g. `ghcr.io/infialign/trainer:0.1.0`."),
]

LabelMap = Annotated[
    dict[Annotated[str, StringConstraints(max_length=253)], Annotated[str, StringConstraints(max_length=63)]],
    Field(max_length=32),
]
