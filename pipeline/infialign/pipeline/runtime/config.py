"""`stage.json`: the resolved settings of one step attempt, and the pure function that builds it.

The executor and the operator both call `build_stage_config`; the stage process reads the result.
The config digest covers what decides a step's outputs (settings, model, inputs) and not what only
decides where or how it runs (attempt, image, resources, tracking), so a restarted attempt or a
changed node count still skips a finished step.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from infialign.pipeline import graph
from infialign.pipeline.api import AlignmentRunSpec, Resources

__all__ = [
    "CONFIG_VERSION",
    "RunIdentity",
    "ModelRef",
    "StorageConfig",
    "TrackingConfig",
    "StageConfig",
    "StageConfigError",
    "artifacts_root",
    "step_prefix",
    "output_uri",
    "benchmarks_for",
    "build_stage_config",
    "config_digest",
    "load_stage_config",
]

CONFIG_VERSION: Final = 1


class StageConfigError(ValueError):
    """The stage config is unusable; retrying cannot help (exit code 2)."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunIdentity(_Config):
    namespace: str = "default"
    name: str
    uid: str | None = None


class ModelRef(_Config):
    uri: str
    revision: str | None = None
    tokenizer_uri: str | None = None
    from_step: str | None = Field(default=None, description="The step that produced it, if any.")


class StorageConfig(_Config):
    root: str = Field(description="Artifacts root URI: `file:///…` or `s3://bucket/prefix`.")
    endpoint: str | None = None
    region: str | None = None


class TrackingConfig(_Config):
    enabled: bool = True
    uri: str | None = None
    experiment: str = "infialign"
    experiment_id: str | None = None
    parent_run_id: str | None = None
    artifacts_s3_endpoint: str | None = None  # MLflow's own artifact store, when clients upload to it directly


class StageConfig(_Config):
    version: Literal[1] = CONFIG_VERSION
    run: RunIdentity
    step: str
    stage: str
    attempt: int = Field(ge=1)
    settings: dict[str, Any] = Field(description="The stage's settings by alias; for sft `phases` holds only this step's phase.")
    phase_index: int | None = Field(default=None, description="For sft steps: the phase's index in spec.stages.sft.phases.")
    phase_count: int | None = Field(default=None, description="For sft steps: how many phases there are (the last one's model is `sft`).")
    curriculum: list[dict[str, Any]] = Field(
        default_factory=list, description="For select: every curriculum phase's name, fraction and maxLength (select writes one dataset per "
        "phase and selects only rows that fit the smallest maxLength)."
    )
    model: ModelRef
    teacher: ModelRef | None = None
    inputs: dict[str, str] = Field(default_factory=dict, description="Input name → URI.")
    input_steps: dict[str, str] = Field(default_factory=dict, description="Input name → the step that produced it.")
    sources: list[dict[str, Any]] = Field(default_factory=list)
    benchmarks: list[dict[str, Any]] = Field(default_factory=list)
    output: str = Field(description="This step's URI prefix; outputs, _SUCCESS.json and progress.json live under it.")
    storage: StorageConfig
    tracking: TrackingConfig
    resources: dict[str, Any] = Field(default_factory=dict)
    image: str | None = None

    def output_uri(self, name: str) -> str:
        return output_uri(self.output, name)


def artifacts_root(spec: AlignmentRunSpec, workdir: Path | None = None) -> StorageConfig:
    """Where artifacts live: `s3://bucket/prefix`, or a local path made absolute against `workdir`."""
    if spec.storage.s3 is not None:
        s3 = spec.storage.s3
        prefix = s3.prefix.strip("/")
        return StorageConfig(root=f"s3://{s3.bucket}/{prefix}" if prefix else f"s3://{s3.bucket}", endpoint=s3.endpoint, region=s3.region)
    assert spec.storage.local is not None
    path = Path(spec.storage.local.path)
    if not path.is_absolute() and workdir is not None:
        path = workdir / path
    return StorageConfig(root=path.resolve().as_uri() if workdir is not None else str(path))


def step_prefix(root: str, run: RunIdentity, step: str) -> str:
    return posixpath.join(root.rstrip("/"), run.namespace, run.name, step) + "/"


def output_uri(prefix: str, name: str) -> str:
    """Datasets are `<name>.parquet`; a model is a directory; `report` and `results` are JSON."""
    if name == "model":
        return prefix.rstrip("/") + "/model/"
    if name in ("report", "results"):
        return prefix.rstrip("/") + f"/{name}.json"
    return prefix.rstrip("/") + f"/{name}.parquet"


def _settings(spec: AlignmentRunSpec, step: graph.Step) -> tuple[dict[str, Any], Resources]:
    stage = getattr(spec.stages, step.stage)
    settings = stage.model_dump(mode="json", by_alias=True, exclude={"enabled", "resources"})
    if step.stage == "sft":
        assert step.phase is not None
        # only this phase: a change to a later phase must not invalidate this one's outputs
        settings["phases"] = [settings["phases"][step.phase]]
    return settings, stage.resources


def _image(spec: AlignmentRunSpec, stage: str, resources: Resources) -> str:
    if resources.image:
        return resources.image
    if stage in ("sft", "dpo"):
        return spec.images.trainer
    if stage in ("distill", "prefs", "eval"):
        return spec.images.vllm
    return spec.images.pipeline


# Benchmark fields only `eval` reads. Every field a step receives is in its config digest, so a step that got them
# would re-run (curation, SFT, DPO: GPU hours) when a user only asks eval for more samples.
_EVAL_ONLY_BENCHMARK_FIELDS = frozenset({"evaluate", "samples", "maxTokens"})


def benchmarks_for(spec: AlignmentRunSpec, stage: str) -> list[dict[str, Any]]:
    """The `spec.benchmarks` a stage reads, as it reads them. Pure.

    `eval` gets them whole; `curate` and `prefs` decontaminate against them, and `sft` reads the first for its
    `quickEval` (when set): they get them without the eval-only fields; every other stage gets none.
    """
    dumped = [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in spec.benchmarks]
    if stage == "eval":
        return dumped
    if stage in ("curate", "prefs") or (stage == "sft" and spec.stages.sft.quick_eval > 0):
        return [{k: v for k, v in b.items() if k not in _EVAL_ONLY_BENCHMARK_FIELDS} for b in dumped]
    return []


def build_stage_config(
    spec: AlignmentRunSpec,
    run: RunIdentity,
    step_name: str,
    attempt: int,
    storage: StorageConfig,
    tracking: TrackingConfig,
) -> StageConfig:
    """Resolve one step attempt into its `stage.json`. Pure: no I/O."""
    steps = {s.name: s for s in graph.pipeline_steps(spec)}
    if step_name not in steps:
        raise StageConfigError(f"unknown step {step_name!r}; this run has {list(steps)}")
    step = steps[step_name]
    settings, resources = _settings(spec, step)

    inputs: dict[str, str] = {}
    input_steps: dict[str, str] = {}
    for name, ref in graph.step_inputs(spec, step).items():
        if ref is None:
            raise StageConfigError(f"{step_name}: input {name!r} has no provider; run `infialign validate`")
        if ref.uri is not None:
            inputs[name] = ref.uri
        else:
            assert ref.from_step is not None and ref.output is not None
            inputs[name] = output_uri(step_prefix(storage.root, run, ref.from_step), ref.output)
            input_steps[name] = ref.from_step

    model_ref = graph.step_model(spec, step)
    if model_ref.from_step:
        model = ModelRef(uri=output_uri(step_prefix(storage.root, run, model_ref.from_step), "model"), from_step=model_ref.from_step)
    else:
        model = ModelRef(uri=spec.model.uri, revision=spec.model.revision, tokenizer_uri=spec.model.tokenizer_uri)
    teacher = None
    if spec.teacher is not None:
        teacher = ModelRef(uri=spec.teacher.uri, revision=spec.teacher.revision, tokenizer_uri=spec.teacher.tokenizer_uri)

    curriculum = (
        [{"name": p.name, "fraction": p.fraction, "max_length": p.max_length} for p in spec.stages.sft.phases]
        if step.stage == "select"
        else []
    )
    return StageConfig(
        run=run,
        step=step_name,
        stage=step.stage,
        attempt=attempt,
        settings=settings,
        phase_index=step.phase,
        phase_count=len(spec.stages.sft.phases) if step.stage == "sft" else None,
        curriculum=curriculum,
        model=model,
        teacher=teacher,
        inputs=inputs,
        input_steps=input_steps,
        sources=[s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in spec.sources] if step.stage == "curate" else [],
        benchmarks=benchmarks_for(spec, step.stage),
        output=step_prefix(storage.root, run, step_name),
        storage=storage,
        tracking=tracking,
        resources=resources.model_dump(mode="json", by_alias=True, exclude_none=True),
        image=_image(spec, step.stage, resources),
    )


def config_digest(config: StageConfig, input_digests: dict[str, str] | None = None) -> str:
    """sha256 over what decides the step's outputs, plus the content digests of its inputs."""
    relevant = config.model_dump(mode="json", include={"version", "run", "step", "stage", "settings", "phase_index", "curriculum", "model", "teacher", "inputs", "sources", "benchmarks"})
    relevant["run"].pop("uid", None)  # a re-created CR with the same name reuses finished outputs
    relevant["input_digests"] = dict(sorted((input_digests or {}).items()))
    blob = json.dumps(relevant, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def load_stage_config(path: Path) -> StageConfig:
    try:
        return StageConfig.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise StageConfigError(f"cannot read stage config {path}: {e.strerror}") from e
    except ValueError as e:
        raise StageConfigError(f"invalid stage config {path}: {e}") from e
