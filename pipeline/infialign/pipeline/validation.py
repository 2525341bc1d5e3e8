"""Load AlignmentRun manifests and check them: schema first, then the rules that need the whole spec.

Every problem is one line, `FILE: spec.stages.sft.phases[1].epochs: must be ≥ 1, got 0`: the dotted
camelCase path as written in the manifest, what is wrong, and what was given. Bad input never
produces a traceback.
"""

from __future__ import annotations

import difflib
import json
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel

from infialign.pipeline import graph
from infialign.pipeline.api import GPU_STAGES, AlignmentRun, AlignmentRunSpec

__all__ = ["Problem", "LoadResult", "load_manifest_text", "load_manifest", "semantic_problems", "format_problem", "BUILTIN_DATASETS", "BUILTIN_MODELS"]

BUILTIN_DATASETS = frozenset({"reasoning", "reasoning-bench"})
BUILTIN_MODELS = frozenset({"tiny", "tiny-teacher"})


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    severity: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class LoadResult:
    runs: list[AlignmentRun]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def format_problem(source: str, problem: Problem) -> str:
    prefix = "warning: " if problem.severity == "warning" else ""
    return f"{source}: {problem.path}: {prefix}{problem.message}"


# ---------------------------------------------------------------- pydantic errors → lines


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _number(value: Any) -> str:
    """1.0 reads as 1 in a message about a field a user wrote as 1."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model class that holds the field at `loc` (by alias), for 'did you mean' hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Find the model class inside Optional[...] or list[...]."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        inner = typing.get_args(arg)
        for sub in inner:
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                return sub
    return annotation


_EXTRA_HINTS = {
    "secretRef": "secretRef is only for spec.storage.s3; a local path needs no credentials",
}


def _message(error: dict[str, Any], root: type[BaseModel]) -> str:
    kind, ctx, given = error["type"], error.get("ctx") or {}, error.get("input")
    loc = tuple(error["loc"])
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        name = str(loc[-1])
        parent = _model_at(root, loc[:-1])
        if name in _EXTRA_HINTS and parent is not None and parent.__name__ == "LocalStorage":
            return f"unknown field; {_EXTRA_HINTS[name]}"
        known = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; known fields: {', '.join(known)}" if known else "")
        return f"unknown field{hint}"
    bounds = {
        "greater_than_equal": ("≥", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("≤", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        return f"must be {op} {_number(ctx.get(key))}, got {_show(given)}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters, got {len(str(given))}"
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} characters, got {_show(given)}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}, got {_show(given)}"
    if kind in ("too_short", "too_long"):
        bound = "at least" if kind == "too_short" else "at most"
        key = "min_length" if kind == "too_short" else "max_length"
        return f"must have {bound} {ctx.get(key)} items, got {ctx.get('actual_length')}"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected')}, got {_show(given)}"
    kinds = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "string": "a string",
        "list": "a list",
        "dict": "a mapping",
        "model": "a mapping",
        "model_attributes": "a mapping",
        "datetime": "a timestamp",
    }
    for prefix, noun in kinds.items():
        if kind.startswith(prefix + "_"):
            return f"must be {noun}, got {_show(given)}"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{error['msg']}, got {_show(given)}"


def _schema_problems(doc: Any) -> list[Problem]:
    try:
        AlignmentRun.model_validate(doc)
    except pydantic.ValidationError as e:
        return [Problem(_path(tuple(err["loc"])), _message(dict(err), AlignmentRun)) for err in e.errors()]
    return []


# ---------------------------------------------------------------- semantic rules


def _builtin_name(uri: str) -> str | None:
    if not uri.startswith("builtin://"):
        return None
    return uri.removeprefix("builtin://").split("?", 1)[0].strip("/")


def _builtin_dataset_problem(uri: str) -> str | None:
    """Why a built-in dataset URI's parameters are wrong (unknown name, bad value), or None."""
    from infialign.pipeline.world import reasoning  # the generator module; nothing is generated here

    try:
        reasoning.parse_uri(uri)
    except ValueError as e:
        return str(e)
    return None


def semantic_problems(spec: AlignmentRunSpec) -> list[Problem]:
    """Rules that need the whole spec. The schema already holds every per-field bound."""
    problems: list[Problem] = []
    add = problems.append

    for missing in graph.missing_inputs(spec):
        add(Problem(missing.path, missing.message))

    enabled = {s.stage for s in graph.enabled_steps(spec)}
    # gpusPerNode 0 runs a GPU stage on CPU (the field's documented meaning): right for the built-in models on a
    # CPU-only cluster (manifests/examples/quickstart-cluster.yaml on kind), a mistake for any real model.
    builtin_only = all(m is None or m.uri.startswith("builtin://") for m in (spec.model, spec.teacher))
    for stage in sorted(enabled & GPU_STAGES):
        resources = getattr(spec.stages, stage).resources
        if resources.gpus_per_node < 1 and not builtin_only:
            add(
                Problem(
                    f"spec.stages.{stage}.resources.gpusPerNode",
                    f"is 0, so the GPU stage {stage} runs on CPU, which only the builtin:// models finish in reasonable time; "
                    "set gpusPerNode ≥ 1 unless this is a CPU-only test",
                    severity="warning",
                )
            )
    for stage in sorted(enabled - graph.IMPLEMENTED_STAGES):
        add(
            Problem(
                f"spec.stages.{stage}.enabled",
                f"the {stage} stage is not available in this release and will fail when reached; set enabled: false",
                "warning",
            )
        )

    if "distill" in enabled and spec.teacher is None:
        add(Problem("spec.teacher", "distill is enabled but no teacher is given; set spec.teacher or disable distill"))
    if "distill" in enabled:
        d = spec.stages.distill
        most = d.samples * (d.max_retries + 1)
        if d.min_votes > most:
            add(
                Problem(
                    "spec.stages.distill.minVotes",
                    f"minVotes {d.min_votes} exceeds the {most} samples a record can get (samples × (maxRetries + 1)), so records "
                    "without a real reference can never be accepted; lower minVotes or raise samples",
                    "warning",
                )
            )
        if d.max_model_len is not None and d.max_tokens >= d.max_model_len:
            add(
                Problem(
                    "spec.stages.distill.maxTokens",
                    f"maxTokens {d.max_tokens} leaves no room for the prompt within maxModelLen {d.max_model_len}; lower maxTokens or raise maxModelLen",
                )
            )

    _unique(problems, "spec.sources", [s.name for s in spec.sources], "source")
    _unique(problems, "spec.benchmarks", [b.name for b in spec.benchmarks], "benchmark")
    _unique(problems, "spec.stages.sft.phases", [p.name for p in spec.stages.sft.phases], "phase")

    known = {b.name for b in spec.benchmarks}
    for i, name in enumerate(spec.stages.eval.benchmarks or []):
        if name not in known:
            add(Problem(f"spec.stages.eval.benchmarks[{i}]", f"unknown benchmark {name!r}; known: {sorted(known) or 'none'}"))
    chosen = spec.stages.eval.benchmarks
    evaluable = [b for b in spec.benchmarks if b.evaluate and (chosen is None or b.name in chosen)]
    if "eval" in enabled and not evaluable:
        if not any(b.evaluate for b in spec.benchmarks):
            add(Problem("spec.benchmarks", "eval is enabled but no benchmark has evaluate: true; add one or disable eval"))
        else:
            add(
                Problem(
                    "spec.stages.eval.benchmarks",
                    f"names only benchmarks with evaluate: false ({sorted(chosen or [])}); name one with evaluate: true or empty the list",
                )
            )

    for path, uri in _dataset_uris(spec):
        name = _builtin_name(uri)
        if name is not None and name not in BUILTIN_DATASETS:
            add(Problem(path, f"unknown built-in dataset {name!r}; known: {sorted(BUILTIN_DATASETS)}"))
        elif name is not None:
            message = _builtin_dataset_problem(uri)
            if message:
                add(Problem(path, message))
    for path, source in (("spec.model", spec.model), ("spec.teacher", spec.teacher)):
        if source is None:
            continue
        name = _builtin_name(source.uri)
        if name is not None and name not in BUILTIN_MODELS:
            add(Problem(f"{path}.uri", f"unknown built-in model {name!r}; known: {sorted(BUILTIN_MODELS)}"))
        if source.secret_ref is not None and not source.uri.startswith("hf://"):
            add(Problem(f"{path}.secretRef", f"a hub token is only used for hf:// models, got uri {source.uri!r}; remove secretRef"))

    for stage in sorted(enabled):
        resources = getattr(spec.stages, stage).resources
        for i, env in enumerate(resources.env or []):
            if env.name.startswith(("PET_", "INFIALIGN_")):
                add(
                    Problem(
                        f"spec.stages.{stage}.resources.env[{i}].name",
                        f"{env.name} is set by the launcher and would be overridden; remove it",
                        "warning",
                    )
                )

    if "select" in enabled and spec.stages.select.verification.enabled and not spec.stages.select.verification.judge.endpoint:
        for path, items in (("spec.sources", spec.sources), ("spec.benchmarks", spec.benchmarks)):
            for i, item in enumerate(items):
                if item.answer_type == "open":
                    add(
                        Problem(
                            f"{path}[{i}].answerType",
                            f"{item.name!r} has open-ended answers but spec.stages.select.verification.judge.endpoint is empty, "
                            "so they stay unverified; set a judge endpoint and model",
                            "warning",
                        )
                    )

    near = spec.stages.curate.near_dedup
    if near.bands * near.rows > 1024:
        add(Problem("spec.stages.curate.nearDedup", f"bands × rows must be ≤ 1024 permutations, got {near.bands * near.rows}"))
    for i, phase in enumerate(spec.stages.sft.phases):
        if phase.min_learning_rate > phase.learning_rate:
            add(
                Problem(
                    f"spec.stages.sft.phases[{i}].minLearningRate",
                    f"must be ≤ learningRate ({phase.learning_rate}), got {phase.min_learning_rate}",
                )
            )
    if "sft" in enabled:
        problems += _rope_problems(spec)
    if spec.stages.sft.deepspeed.offload_params and spec.stages.sft.deepspeed.zero_stage != 3:
        add(Problem("spec.stages.sft.deepspeed.offloadParams", "parameter offload needs zeroStage: 3, got 2"))
    for stage in sorted(enabled):
        problems += _pod_override_problems(spec, stage)
    if "dpo" in enabled:
        problems += _dpo_problems(spec)
    if "prefs" in enabled:
        problems += _prefs_problems(spec, enabled)
    problems += _memory_problems(spec)
    problems += _selection_problems(spec, enabled)
    return problems


def _selection_problems(spec: AlignmentRunSpec, enabled: set[str]) -> list[Problem]:
    """Warnings where the rows trained or checked would silently differ from what the user asked for."""
    problems: list[Problem] = []
    phases = spec.stages.sft.phases
    from_select = [i for i, p in enumerate(phases) if p.data_uri is None]
    if {"select", "sft"} <= enabled and from_select and max(phases[i].fraction for i in from_select) < 1.0:
        i = max(from_select, key=lambda j: phases[j].fraction)
        problems.append(
            Problem(
                f"spec.stages.sft.phases[{i}].fraction",
                f"is {phases[i].fraction}, the largest phase fraction, so {1 - phases[i].fraction:.0%} of the selection is selected "
                "but never trained (a fraction is a share of the whole selection); set the last phase's fraction to 1.0 or "
                "lower spec.stages.select.targetSize",
                "warning",
            )
        )
    decon = spec.stages.curate.decontamination
    if "curate" in enabled and decon.enabled and not any(b.decontaminate for b in spec.benchmarks):
        problems.append(
            Problem(
                "spec.stages.curate.decontamination.enabled",
                "is true but no benchmark in spec.benchmarks has decontaminate: true, so nothing is checked and leaks of your "
                "evaluation sets stay in the training data; add the benchmarks you will evaluate on, or set enabled: false",
                "warning",
            )
        )
    return problems


def _rope_problems(spec: AlignmentRunSpec) -> list[Problem]:
    """Each phase's `maxLength` against the student's positions under `spec.stages.sft.rope` (training/rope.py, the
    decision the trainer makes at load). Only for models whose positions are known here (the known-models table)."""
    from infialign.pipeline.estimate import models
    from infialign.pipeline.training import rope

    if spec.model is None:
        return []
    config = models.KNOWN_MODELS.get(models.model_key(spec.model.uri))
    if config is None:
        return []
    positions, theta = rope.model_positions(config)
    settings = spec.stages.sft.rope
    problems: list[Problem] = []
    for i, phase in enumerate(spec.stages.sft.phases):
        # phases after the first start from the previous export, whose config already has the change: check the first
        # phase against the published model and every phase against the same plan
        path = f"spec.stages.sft.phases[{i}].maxLength"
        try:
            rope.plan_rope(
                settings.scaling, theta=settings.theta, factor=settings.factor, max_length=phase.max_length,
                positions=positions, model_theta=theta, length_field=path,
            )
        except rope.RopeError as e:
            problems.append(Problem(path, str(e).removeprefix(f"{path} ")))
    return problems


def _memory_problems(spec: AlignmentRunSpec) -> list[Problem]:
    """A warning per GPU step that surely runs out of memory on an 80 GB GPU (the estimate of `infialign plan`).

    Only a *sure* OOM warns (the estimate exceeds the whole GPU), and only for models of known size; the GPU type
    is not in the spec, so the check assumes 80 GB (H100/A100), the common training GPU."""
    from infialign.pipeline.estimate import Options, estimate_run, models

    try:
        estimate = estimate_run(spec, options=Options(gpu="h100"))
    except (models.UnknownModelError, ValueError):
        return []
    paths = {s.name: s.settings_path for s in graph.enabled_steps(spec)}
    problems: list[Problem] = []
    for step in estimate.steps:
        if step.memory is None or not step.memory.sure_oom:
            continue
        # the phase (its maxLength) for sft, the stage for dpo and the generation steps
        field = paths.get(step.step, f"spec.stages.{step.stage}")
        fixes = "; ".join(f"{f.what} → {f.memory_bytes / 1e9:.0f} GB ({f.change})" for f in step.fixes if f.fits)
        problems.append(
            Problem(
                field,
                f"{step.step} needs ~{step.memory.total / 1e9:.0f} GB per GPU, more than an 80 GB GPU holds"
                + (f"; fits with: {fixes}" if fixes else "")
                + "; see `infialign plan`",
                "warning",
            )
        )
    return problems


def _pod_override_problems(spec: AlignmentRunSpec, stage: str) -> list[Problem]:
    """The merged (run-wide + stage) override must be self-consistent: every mount names a volume, no name twice."""
    override = spec.pod_override(stage)
    if override is None:
        return []
    own = getattr(spec.stages, stage).resources.pod_template_override
    path = f"spec.stages.{stage}.resources.podTemplateOverride" if own is not None else "spec.podTemplateOverride"
    problems: list[Problem] = []
    volumes = [v["name"] for v in override.volumes or []]
    for i, mount in enumerate(override.volume_mounts or []):
        if mount.name not in volumes:
            problems.append(
                Problem(
                    f"{path}.volumeMounts[{i}].name",
                    f"mounts {mount.name!r}, which no volume of the {stage} pods is named ({volumes or 'none'}); add it to volumes",
                )
            )
    paths = [m.mount_path.rstrip("/") for m in override.volume_mounts or []]
    for twice in sorted({p for p in paths if paths.count(p) > 1}):
        problems.append(Problem(f"{path}.volumeMounts", f"mountPath {twice!r} is used twice in the {stage} pods; give each mount its own path"))
    return problems


def _prefs_problems(spec: AlignmentRunSpec, enabled: set[str]) -> list[Problem]:
    prefs = spec.stages.prefs
    problems: list[Problem] = []
    if prefs.max_model_len is not None and prefs.max_model_len <= prefs.max_tokens:
        problems.append(
            Problem(
                "spec.stages.prefs.maxModelLen",
                f"must exceed maxTokens ({prefs.max_tokens}) to leave room for the prompt, got {prefs.max_model_len}; "
                "raise maxModelLen or lower maxTokens",
            )
        )
    if "sft" not in enabled:
        problems.append(
            Problem(
                "spec.stages.prefs.enabled",
                "sft is disabled, so prefs samples the base model (spec.model) for its errors; enable sft or accept pairs from the base model",
                "warning",
            )
        )
    if "select" in enabled and not prefs.prompts_uri:
        pool = spec.stages.select.challenge_size
        if pool == 0:
            problems.append(
                Problem("spec.stages.select.challengeSize", "is 0, so prefs has no challenge prompts; raise it or set spec.stages.prefs.promptsUri")
            )
        elif pool < prefs.pairs:
            problems.append(
                Problem(
                    "spec.stages.prefs.pairs",
                    f"asks for {prefs.pairs} pairs but spec.stages.select.challengeSize gives {pool} prompts (one pair per prompt at most); "
                    "raise challengeSize or lower pairs",
                    "warning",
                )
            )
    if prefs.verification.enabled is False:
        problems.append(
            Problem(
                "spec.stages.prefs.verification.enabled",
                "prefs needs verification: a rejected answer must be verified wrong; set it to true",
            )
        )
    return problems


# TRL DPO losses that compare chosen with rejected; `sft` alone is plain NLL on `chosen`.
_PREFERENCE_LOSSES = frozenset(
    {"sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero",
     "apo_down", "discopop", "sigmoid_norm"}
)


def _dpo_problems(spec: AlignmentRunSpec) -> list[Problem]:
    dpo = spec.stages.dpo
    problems: list[Problem] = []
    if dpo.deepspeed.offload_params and dpo.deepspeed.zero_stage != 3:
        problems.append(Problem("spec.stages.dpo.deepspeed.offloadParams", "parameter offload needs zeroStage: 3, got 2"))
    if not set(dpo.loss_type) & _PREFERENCE_LOSSES:
        problems.append(
            Problem("spec.stages.dpo.lossType", f"{dpo.loss_type} has no preference loss, so rejected answers are never used; add 'sigmoid'")
        )
    devices = dpo.resources.num_nodes * max(dpo.resources.gpus_per_node, 1)
    per_step = dpo.micro_batch_size * devices
    if dpo.global_batch_size % per_step:
        # A warning: the local executor trains in one process whatever `resources` says; on a cluster the stage fails.
        problems.append(
            Problem(
                "spec.stages.dpo.globalBatchSize",
                f"must be a multiple of microBatchSize × nodes × GPUs = {dpo.micro_batch_size} × {dpo.resources.num_nodes} × "
                f"{max(dpo.resources.gpus_per_node, 1)} = {per_step} to run on a cluster, got {dpo.global_batch_size}",
                "warning",
            )
        )
    return problems


def cluster_problems(spec: AlignmentRunSpec) -> list[Problem]:
    """Rules that hold on a cluster only: the operator applies them, the local executor does not."""
    problems: list[Problem] = []
    local = spec.storage.local
    if local is not None and not local.pvc_name:
        problems.append(
            Problem(
                "spec.storage.local.pvcName",
                f"is empty, so storage.local.path {local.path!r} would be each pod's own container filesystem and the "
                "next stage would find no inputs; on a cluster set storage.s3 (MinIO or any S3 endpoint), "
                "or a ReadWriteMany PVC in storage.local.pvcName",
            )
        )
    return problems


# Kubernetes label values and Job names stop at 63 characters; an Indexed Job's pod hostname adds `-<index>`.
JOB_NAME_LIMIT = 59


def name_problems(run_name: str, spec: AlignmentRunSpec) -> list[Problem]:
    """Child object names are `<run>-<step>-a<attempt>`; a long run name plus a long phase name overflows them."""
    problems: list[Problem] = []
    for step in graph.pipeline_steps(spec):
        longest = len(f"{run_name}-{step.name}-a99")
        if step.enabled and longest > JOB_NAME_LIMIT:
            path = f"{step.settings_path}.name" if step.phase is not None else "metadata.name"
            problems.append(
                Problem(path, f"the Job name {run_name}-{step.name}-a<attempt> would exceed {JOB_NAME_LIMIT} characters ({longest}); shorten the run or phase name")
            )
    return problems


def _unique(problems: list[Problem], path: str, names: list[str], what: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            problems.append(Problem(f"{path}[{i}].name", f"duplicate {what} name {name!r}; names must be unique"))
        seen.add(name)


def _dataset_uris(spec: AlignmentRunSpec) -> list[tuple[str, str]]:
    uris = [(f"spec.sources[{i}].uri", s.uri) for i, s in enumerate(spec.sources)]
    uris += [(f"spec.benchmarks[{i}].uri", b.uri) for i, b in enumerate(spec.benchmarks)]
    st = spec.stages
    for path, uri in (
        ("spec.stages.distill.poolUri", st.distill.pool_uri),
        ("spec.stages.select.poolUri", st.select.pool_uri),
        ("spec.stages.prefs.promptsUri", st.prefs.prompts_uri),
        ("spec.stages.dpo.pairsUri", st.dpo.pairs_uri),
    ):
        if uri:
            uris.append((path, uri))
    uris += [(f"spec.stages.sft.phases[{i}].dataUri", p.data_uri) for i, p in enumerate(st.sft.phases) if p.data_uri]
    return uris


# ---------------------------------------------------------------- loading


def _check_document(doc: Any) -> tuple[AlignmentRun | None, list[Problem]]:
    if not isinstance(doc, dict):
        return None, [Problem("(document)", f"must be a mapping with apiVersion, kind, metadata and spec, got {_show(doc)}")]
    problems = _schema_problems(doc)
    if problems:
        return None, problems
    run = AlignmentRun.model_validate(doc)
    return run, semantic_problems(run.spec) + name_problems(run.metadata.name, run.spec)


def load_manifest_text(text: str) -> LoadResult:
    """Parse and check every YAML document in `text`. Problems of document N>1 are prefixed `[N]`."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(document)"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        return LoadResult([], [Problem(where, f"invalid YAML: {problem}")])
    if not docs:
        return LoadResult([], [Problem("(document)", "the file holds no YAML document; expected an AlignmentRun")])
    runs: list[AlignmentRun] = []
    problems: list[Problem] = []
    for index, doc in enumerate(docs):
        try:
            run, found = _check_document(doc)
        except Exception as e:  # noqa: BLE001  pathological input or a bug: still one line, never a traceback
            run, found = None, [Problem("(document)", f"cannot be checked: {type(e).__name__}: {str(e)[:200]}")]
        if len(docs) > 1:
            found = [Problem(f"[{index + 1}].{p.path}", p.message, p.severity) for p in found]
        problems += found
        if run is not None:
            runs.append(run)
    return LoadResult(runs, problems)


def _anchor(uri: str, base_dir: str) -> str:
    """A relative local path (no scheme, not absolute) joined onto ``base_dir``; anything else unchanged."""
    if "://" in uri or uri.startswith("/"):
        return uri
    return os.path.normpath(os.path.join(base_dir, uri))


# Fields holding a dataset or model location (`ArtifactUri`, `ModelUri`). `tracking.uri` (MLflow's) and
# `storage` (the artifact root, relative to the work dir) are not inputs and keep their own rules.
_LOCATION_FIELDS = frozenset({"uri", "tokenizer_uri", "pool_uri", "data_uri", "prompts_uri", "pairs_uri"})
_NOT_INPUTS = frozenset({"tracking", "storage"})


def _anchored(node: Any, base_dir: str) -> Any:
    if isinstance(node, list):
        return [_anchored(x, base_dir) for x in node]
    if not isinstance(node, BaseModel):
        return node
    update: dict[str, Any] = {}
    for name in type(node).model_fields:
        value = getattr(node, name)
        if name in _NOT_INPUTS:
            continue
        if name in _LOCATION_FIELDS and isinstance(value, str):
            update[name] = _anchor(value, base_dir)
        elif isinstance(value, (BaseModel, list)):
            update[name] = _anchored(value, base_dir)
    return node.model_copy(update=update)


def anchor_local_paths(run: AlignmentRun, base_dir: str) -> AlignmentRun:
    """The run with every relative local path of a dataset or model (`spec.sources[*].uri`,
    `spec.benchmarks[*].uri`, `spec.model.uri`, `tokenizerUri`, the stages' `poolUri`/`dataUri`/...) resolved
    against ``base_dir`` (the manifest's directory, absolute), so `data/train.jsonl` next to the manifest is
    found whatever directory `infialign run` starts in. Pure."""
    return run.model_copy(update={"spec": _anchored(run.spec, base_dir)})


def load_manifest(path: str | Path) -> LoadResult:
    """:func:`load_manifest_text` of a file; relative local paths in its runs resolve against the file's directory."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return LoadResult([], [Problem("(file)", f"cannot read: {e.strerror if isinstance(e, OSError) else e}")])
    result = load_manifest_text(text)
    base_dir = str(Path(path).absolute().parent)
    return LoadResult([anchor_local_paths(run, base_dir) for run in result.runs], result.problems)
