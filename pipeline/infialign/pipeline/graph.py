"""The stage graph: which steps a spec has, what each reads, what each writes. Pure functions.

A *step* is one unit the planner schedules: a stage, or one curriculum phase of `sft` (`sft-<phase>`).
The graph is linear (DESIGN.md section 4); a disabled stage is skipped and the next stage then needs
an explicit input URI in the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from infialign.pipeline.api import AlignmentRunSpec

__all__ = [
    "STAGE_ORDER",
    "IMPLEMENTED_STAGES",
    "Step",
    "InputRef",
    "MissingInput",
    "pipeline_steps",
    "enabled_steps",
    "step_inputs",
    "step_outputs",
    "step_model",
    "missing_inputs",
]

STAGE_ORDER: Final = ("curate", "distill", "select", "sft", "prefs", "dpo", "eval")
# Stages this release can run; the others validate but fail at run time with exit code 2.
IMPLEMENTED_STAGES: Final = frozenset({"curate", "distill", "select", "sft", "prefs", "dpo", "eval"})


@dataclass(frozen=True)
class Step:
    name: str  # "curate", "sft-phase1"
    stage: str  # "curate", "sft"
    enabled: bool
    phase: int | None = None  # index into spec.stages.sft.phases for sft steps

    @property
    def settings_path(self) -> str:
        if self.phase is not None:
            return f"spec.stages.{self.stage}.phases[{self.phase}]"
        return f"spec.stages.{self.stage}"


@dataclass(frozen=True)
class InputRef:
    """Where one input of a step comes from: a URI from the spec, or an output of an earlier step."""

    name: str
    uri: str | None = None
    from_step: str | None = None
    output: str | None = None


@dataclass(frozen=True)
class MissingInput:
    step: Step
    input: str
    path: str  # the spec field that would provide it
    message: str


def pipeline_steps(spec: AlignmentRunSpec) -> list[Step]:
    """Every step, enabled or not, in pipeline order."""
    stages = spec.stages
    steps: list[Step] = []
    for stage in STAGE_ORDER:
        settings = getattr(stages, stage)
        if stage == "sft":
            steps += [Step(f"sft-{p.name}", "sft", settings.enabled, i) for i, p in enumerate(settings.phases)]
        else:
            steps.append(Step(stage, stage, settings.enabled))
    return steps


def enabled_steps(spec: AlignmentRunSpec) -> list[Step]:
    return [s for s in pipeline_steps(spec) if s.enabled]


def step_outputs(spec: AlignmentRunSpec, step: Step) -> list[str]:
    """Names of what a step writes: datasets are `<name>.parquet`, `model` is a directory."""
    if step.stage in ("curate", "distill"):
        return ["pool"]
    if step.stage == "select":
        return [f"sft-{p.name}" for p in spec.stages.sft.phases] + ["dpo-prompts"]
    if step.stage in ("sft", "dpo"):
        return ["model"]
    if step.stage == "prefs":
        return ["pairs"]
    return ["results", "samples"]  # eval: the model × benchmark table (JSON) and every scored sample


def _latest(spec: AlignmentRunSpec, before: str, candidates: tuple[str, ...]) -> Step | None:
    """The last enabled step among `candidates` that comes before `before`."""
    found: Step | None = None
    for s in pipeline_steps(spec):
        if s.name == before:
            return found
        if s.enabled and (s.stage in candidates or s.name in candidates):
            found = s
    return found


def _last_sft(spec: AlignmentRunSpec) -> Step | None:
    sft = [s for s in enabled_steps(spec) if s.stage == "sft"]
    return sft[-1] if sft else None


def step_model(spec: AlignmentRunSpec, step: Step) -> InputRef:
    """The model a step starts from: the base model, or the output of an earlier training step."""
    if step.stage == "sft" and step.phase:
        prev = [s for s in enabled_steps(spec) if s.stage == "sft" and s.phase is not None and s.phase < step.phase]
        if prev:
            return InputRef("model", from_step=prev[-1].name, output="model")
    if step.stage in ("prefs", "dpo"):
        last = _last_sft(spec)
        if last:
            return InputRef("model", from_step=last.name, output="model")
    return InputRef("model", uri=spec.model.uri)


def step_inputs(spec: AlignmentRunSpec, step: Step) -> dict[str, InputRef | None]:
    """Each input a step needs; `None` where nothing provides it (see `missing_inputs`)."""
    st = spec.stages
    if step.stage == "curate":
        return {f"source:{s.name}": InputRef(f"source:{s.name}", uri=s.uri) for s in spec.sources}
    if step.stage == "distill":
        return {"pool": _ref("pool", st.distill.pool_uri, _latest(spec, "distill", ("curate",)), "pool")}
    if step.stage == "select":
        return {"pool": _ref("pool", st.select.pool_uri, _latest(spec, "select", ("curate", "distill")), "pool")}
    if step.stage == "sft":
        phase = st.sft.phases[step.phase or 0]
        select = _latest(spec, step.name, ("select",))
        return {"data": _ref("data", phase.data_uri, select, f"sft-{phase.name}")}
    if step.stage == "prefs":
        refs = {"prompts": _ref("prompts", st.prefs.prompts_uri, _latest(spec, "prefs", ("select",)), "dpo-prompts")}
        return refs | _prefs_sft_data(spec)
    if step.stage == "dpo":
        return {"pairs": _ref("pairs", st.dpo.pairs_uri, _latest(spec, "dpo", ("prefs",)), "pairs")}
    # eval: one input per model it compares: the base model, every SFT phase's model, DPO's
    refs: dict[str, InputRef | None] = {}
    for kind in st.eval.models:
        if kind == "base":
            refs["model:base"] = InputRef("model:base", uri=spec.model.uri)
        elif kind == "sft":
            phases = [s for s in enabled_steps(spec) if s.stage == "sft"]
            for phase_step in phases:
                refs[f"model:{phase_step.name}"] = InputRef(f"model:{phase_step.name}", from_step=phase_step.name, output="model")
            if not phases:
                refs["model:sft"] = None
        else:
            dpo = _latest(spec, "eval", ("dpo",))
            refs["model:dpo"] = InputRef("model:dpo", from_step=dpo.name, output="model") if dpo else None
    return refs


def _prefs_sft_data(spec: AlignmentRunSpec) -> dict[str, InputRef | None]:
    """prefs' optional `sft` input: what the last SFT phase trained on, to decontaminate the challenge prompts against.

    Optional: absent (not None) when no select step or explicit `dataUri` provides it, so it is never a missing input.
    """
    last = _last_sft(spec)
    if last is None or last.phase is None:
        return {}
    phase = spec.stages.sft.phases[last.phase]
    ref = _ref("sft", phase.data_uri, _latest(spec, "prefs", ("select",)), f"sft-{phase.name}")
    return {"sft": ref} if ref is not None else {}


def _ref(name: str, uri: str | None, producer: Step | None, output: str) -> InputRef | None:
    if uri:
        return InputRef(name, uri=uri)
    if producer:
        return InputRef(name, from_step=producer.name, output=output)
    return None


_PROVIDER_FIELD = {
    ("distill", "pool"): ("spec.stages.distill.poolUri", "enable curate or set poolUri"),
    ("select", "pool"): ("spec.stages.select.poolUri", "enable curate or distill, or set poolUri"),
    ("prefs", "prompts"): ("spec.stages.prefs.promptsUri", "enable select or set promptsUri"),
    ("dpo", "pairs"): ("spec.stages.dpo.pairsUri", "enable prefs or set pairsUri"),
}


def missing_inputs(spec: AlignmentRunSpec) -> list[MissingInput]:
    """Inputs of enabled steps that no enabled stage and no URI in the spec provides."""
    problems: list[MissingInput] = []
    for step in enabled_steps(spec):
        if step.stage == "curate" and not spec.sources:
            problems.append(MissingInput(step, "sources", "spec.sources", "curate is enabled but no source is given; add a source or disable curate"))
        for name, ref in step_inputs(spec, step).items():
            if ref is not None:
                continue
            if step.stage == "sft":
                path = f"{step.settings_path}.dataUri"
                message = f"phase {step.name!r} has no training data: select is disabled; enable select or set dataUri"
            elif step.stage == "eval":
                kind = name.split(":", 1)[1]
                path = "spec.stages.eval.models"
                message = f"evaluates the {kind!r} model, but the {kind} stage is disabled; remove {kind!r} or enable the stage"
            else:
                path, fix = _PROVIDER_FIELD[(step.stage, name)]
                message = f"{step.stage} needs {name!r} but no enabled stage produces it; {fix}"
            problems.append(MissingInput(step, name, path, message))
    return problems
