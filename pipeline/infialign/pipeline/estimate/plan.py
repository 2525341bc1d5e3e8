"""`estimate_run(spec, evidence, options) -> RunEstimate`: per step, what runs where, on how many tokens, at what cost.

Pure: everything read from disk (finished steps' markers, source samples, config.json) arrives in `Evidence`,
gathered at the edge (`infialign.pipeline.evidence`). Rows and tokens flow down the graph the way the stages
move them; each figure says where it came from (`lengths.Source`), and a missing one is `unknown` with the
flag that would give it, never a silent zero.
"""

from __future__ import annotations

import math

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from infialign.pipeline import graph
from infialign.pipeline.api import AlignmentRunSpec
from infialign.pipeline.estimate import flops as _flops
from infialign.pipeline.estimate import hardware, lengths, memory, models
from infialign.pipeline.estimate.lengths import Figure

__all__ = ["StepRecord", "Evidence", "Options", "StepEstimate", "RunEstimate", "estimate_run", "KNOWN_BENCHMARK_SIZES"]

# Questions of well-known benchmarks, for `eval` when the benchmark file is not readable here.
KNOWN_BENCHMARK_SIZES: Final[dict[str, int]] = {
    "aime24": 30,  # AIME 2024 I + II
    "aime25": 30,  # AIME 2025 I + II
    "math500": 500,  # Lightman et al. 2023, the MATH test subset
    "gpqa-diamond": 198,  # Rein et al. 2023
    "amc23": 40,
    "humaneval": 164,  # Chen et al. 2021
}
_DEFAULT_MAX_TOKENS: Final = 32768  # Benchmark.maxTokens when empty [RECON]


@dataclass(frozen=True)
class StepRecord:
    """What a finished step left behind: row counts per output, headline metrics, how long it took."""

    rows: Mapping[str, int] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    duration_seconds: float | None = None


@dataclass(frozen=True)
class Evidence:
    """What the edge could read. Every field may be empty."""

    model: models.ModelShape | None = None  # from the student's config.json
    teacher: models.ModelShape | None = None
    steps: Mapping[str, StepRecord] = field(default_factory=dict)  # finished steps of this run
    datasets: Mapping[str, lengths.Empirical] = field(default_factory=dict)  # output name → sampled lengths (run outputs)
    sources: Mapping[str, tuple[int, lengths.Empirical]] = field(default_factory=dict)  # source name → (rows, sampled lengths)
    benchmarks: Mapping[str, int] = field(default_factory=dict)  # benchmark name → questions
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Options:
    gpu: str = "h100"
    mfu: float = 0.3  # gpu_estimate.md expects 25–35 % for HF Trainer + DeepSpeed ZeRO-3 + FA2
    price_per_gpu_hour: float | None = None
    rows: int | None = None  # --rows: records in the sources (curate's input)
    tokens_per_row: float | None = None  # --tokens-per-row: mean record length, prompt + response
    params: float | None = None  # --params: the student's parameter count
    teacher_params: float | None = None


Kind = Literal["cpu", "training", "generation"]


@dataclass(frozen=True)
class StepEstimate:
    step: str
    stage: str
    kind: Kind
    pods: int
    gpus_per_pod: int
    image: str
    queue: str | None
    rows: Figure  # records the step reads
    tokens: Figure  # tokens it processes: trained (all epochs), or prompt + generated
    flops: float | None = None
    gpu_hours: float | None = None
    wall_hours: float | None = None
    cost: float | None = None
    basis: str = ""  # what the time rests on: "MFU 0.40 (flag)", "measured tokens_per_second", "decode memory-bound"
    memory: memory.Memory | None = None
    fixes: tuple[memory.Fix, ...] = ()
    done: bool = False  # a `_SUCCESS.json` exists: skipped when its config is unchanged
    notes: tuple[str, ...] = ()

    @property
    def gpus(self) -> int:
        return self.pods * self.gpus_per_pod

    @property
    def fits(self) -> bool | None:
        return None if self.memory is None else self.memory.fits

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "stage": self.stage, "kind": self.kind, "pods": self.pods, "gpusPerPod": self.gpus_per_pod,
            "image": self.image, "queue": self.queue, "done": self.done,
            "rows": {"value": self.rows.value, "source": self.rows.source, "note": self.rows.note},
            "tokens": {"value": self.tokens.value, "source": self.tokens.source, "note": self.tokens.note},
            "flops": self.flops, "gpuHours": self.gpu_hours, "wallHours": self.wall_hours, "cost": self.cost, "basis": self.basis,
            "memoryGB": self.memory.to_dict() if self.memory else None, "fits": self.fits,
            "fixes": [{"what": f.what, "change": f.change, "memoryGB": round(f.memory_bytes / 1e9, 1), "fits": f.fits, "note": f.note} for f in self.fixes],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class RunEstimate:
    gpu: hardware.Gpu
    mfu: float
    price_per_gpu_hour: float | None
    model: models.ModelShape
    teacher: models.ModelShape | None
    steps: tuple[StepEstimate, ...]
    notes: tuple[str, ...] = ()

    @property
    def gpu_hours(self) -> float:
        """GPU-hours of the GPU steps whose time is known; `complete` says whether that is all of them."""
        return sum(s.gpu_hours for s in self.steps if s.kind != "cpu" and s.gpu_hours is not None)

    @property
    def complete(self) -> bool:
        return all(s.gpu_hours is not None for s in self.steps if s.kind != "cpu")

    @property
    def cost(self) -> float | None:
        return None if self.price_per_gpu_hour is None else self.gpu_hours * self.price_per_gpu_hour

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.gpu.name, "gpuProduct": self.gpu.product, "mfu": self.mfu, "pricePerGpuHour": self.price_per_gpu_hour,
            "model": {"uri": self.model.name, "params": self.model.params, "source": self.model.source},
            "teacher": {"uri": self.teacher.name, "params": self.teacher.params, "source": self.teacher.source} if self.teacher else None,
            "steps": [s.to_dict() for s in self.steps], "gpuHours": self.gpu_hours, "complete": self.complete, "cost": self.cost, "notes": list(self.notes),
        }

    def to_status(self) -> dict[str, Any]:
        """Compact, for `status.estimate`: totals plus GPU-hours and fit per step."""
        return {
            "gpu": self.gpu.name,
            "mfu": self.mfu,
            "gpuHours": _round(self.gpu_hours),
            "complete": self.complete,
            "cost": _round(self.cost),
            "steps": [{"step": s.step, "gpuHours": _round(s.gpu_hours), "wallHours": _round(s.wall_hours), "fits": s.fits} for s in self.steps],
        }


def _round(v: float | None) -> float | None:
    """Three significant figures: two decimals would show a small model's GPU step as 0 hours, which reads as free."""
    return None if v is None else float(f"{v:.3g}")


# ---------------------------------------------------------------- model shapes


def _shape(uri: str, read: models.ModelShape | None, params: float | None, path: str, flag: str) -> models.ModelShape:
    if read is not None:
        return read
    known = models.known_shape(uri)
    if known is not None:
        return known
    if params is not None:
        return models.params_only(uri, params)
    raise models.UnknownModelError(
        f"{path}: parameter count of {uri!r} is unknown: its config.json is not readable here and the name is not in the "
        f"known-models table ({len(models.KNOWN_MODELS)} names, estimate/models.py); pass {flag} (e.g. {flag} 7.6e9)"
    )


# ---------------------------------------------------------------- rows and lengths


@dataclass(frozen=True)
class _Flow:
    """Rows between steps, as figures."""

    sources: Figure
    pool: Figure
    distilled: Figure
    selection: Figure
    phases: dict[str, Figure]
    challenge: Figure
    pairs: Figure


def _rows(evidence: Evidence, step: str, output: str) -> int | None:
    record = evidence.steps.get(step)
    return record.rows.get(output) if record is not None else None


def _scaled(fig: Figure, share: float, note: str) -> Figure:
    return Figure(None if fig.value is None else round(fig.value * share), fig.source, note)


def _flow(spec: AlignmentRunSpec, evidence: Evidence, options: Options) -> _Flow:
    st = spec.stages
    counts: list[int] = []
    missing: list[str] = []
    for s in spec.sources:
        sample = evidence.sources.get(s.name)
        if sample is None:
            missing.append(s.name)
        else:
            counts.append(min(sample[0], s.max_rows) if s.max_rows else sample[0])
    if not missing and counts:
        sources = Figure(sum(counts), "source sample")
    elif options.rows is not None:
        sources = Figure(options.rows, "flag", f"sources not readable here: {', '.join(missing)}" if missing else "")
    else:
        sources = Figure(None, "unknown", f"sources not readable here ({', '.join(missing)}); pass --rows")

    curated = _rows(evidence, "curate", "pool")
    pool = Figure(curated, "run outputs") if curated is not None else Figure(sources.value, sources.source, "no curation drops assumed: an upper bound")
    if st.distill.pool_uri or st.select.pool_uri:
        given = Figure(options.rows, "flag") if options.rows is not None else Figure(None, "unknown", "poolUri is not read; pass --rows")
        pool = pool if curated is not None else given
    distilled_rows = _rows(evidence, "distill", "pool")
    distilled = Figure(distilled_rows, "run outputs") if distilled_rows is not None else pool

    phase_names = [p.name for p in st.sft.phases]
    last = phase_names[-1]
    selected = _rows(evidence, "select", f"sft-{last}")
    if selected is not None:
        selection = Figure(selected / st.sft.phases[-1].fraction, "run outputs")
    elif st.select.target_size is not None:
        cap = distilled.value
        value = st.select.target_size if cap is None else min(st.select.target_size, cap)
        selection = Figure(value, "spec", "spec.stages.select.targetSize")
    else:
        selection = _scaled(distilled, st.select.target_fraction, f"targetFraction {st.select.target_fraction} of the pool")
    phases: dict[str, Figure] = {}
    for p in st.sft.phases:
        measured = _rows(evidence, "select", f"sft-{p.name}")
        if measured is not None:
            phases[p.name] = Figure(measured, "run outputs")
        elif p.data_uri:
            phases[p.name] = Figure(options.rows, "flag") if options.rows else Figure(None, "unknown", "dataUri is not read; pass --rows")
        else:
            phases[p.name] = _scaled(selection, p.fraction, f"fraction {p.fraction} of the selection")

    prompts = _rows(evidence, "select", "dpo-prompts")
    if prompts is not None:
        challenge = Figure(prompts, "run outputs")
    else:
        challenge = Figure(st.select.challenge_size, "spec", "spec.stages.select.challengeSize")
    made = _rows(evidence, "prefs", "pairs")
    pairs = Figure(made, "run outputs") if made is not None else Figure(
        min(st.prefs.pairs, int(challenge.value or st.prefs.pairs)), "spec", "spec.stages.prefs.pairs (one pair per challenge prompt at most)"
    )
    return _Flow(sources, pool, distilled, selection, phases, challenge, pairs)


def _lengths(evidence: Evidence, options: Options, *names: str) -> lengths.Lengths:
    """The first of: the run's own datasets `names`, the source samples merged, `--tokens-per-row`, the prior."""
    for name in names:
        if name in evidence.datasets:
            return evidence.datasets[name]
    if evidence.sources:
        prompt: tuple[int, ...] = ()
        response: tuple[int, ...] = ()
        for _, sample in evidence.sources.values():
            prompt += sample.prompt
            response += sample.response
        if prompt:
            return lengths.Empirical(prompt, response, "source sample", f"{len(prompt)} sampled records, ~{lengths.CHARS_PER_TOKEN:g} chars/token")
    if options.tokens_per_row is not None:
        return lengths.with_mean(options.tokens_per_row, "flag", f"--tokens-per-row {options.tokens_per_row:g}, lognormal σ 0.8")
    return lengths.LONG_COT_PRIOR


# ---------------------------------------------------------------- per-step arithmetic


def _layout(spec: AlignmentRunSpec, step: graph.Step) -> tuple[int, int, str, str | None]:
    """(pods, GPUs per pod, image, queue) as the operator's builders lay out the Job (a test holds them equal)."""
    settings = getattr(spec.stages, step.stage)
    res = settings.resources
    if step.stage in ("sft", "dpo"):
        pods = res.num_nodes
        image = res.image or spec.images.trainer
    elif step.stage in ("distill", "prefs", "eval"):
        pods = settings.shards
        image = res.image or spec.images.vllm
    else:
        pods = 1
        image = res.image or spec.images.pipeline
    return pods, res.gpus_per_node, image, res.queue_name


def _train_setup(spec: AlignmentRunSpec, stage: str, devices: int, seq_len: int, micro_batch: int) -> memory.TrainSetup:
    st = getattr(spec.stages, stage)
    ds = st.deepspeed
    zero = 0 if ds.mode == "off" else ds.zero_stage  # `auto` uses DeepSpeed on GPUs
    ckpt = True if st.gradient_checkpointing is None else st.gradient_checkpointing  # empty: on for GPUs
    return memory.TrainSetup(
        devices=devices, zero_stage=zero, seq_len=seq_len, micro_batch=micro_batch, grad_ckpt=ckpt,
        offload_optimizer=ds.offload_optimizer, offload_params=ds.offload_params,
        lora_rank=st.lora.rank if st.lora.enabled else None, lora_targets=tuple(st.lora.target_modules),
    )


def _time(flops: float, gpus: int, gpu: hardware.Gpu, mfu: float) -> float:
    return _flops.compute_seconds(flops, gpus, gpu, mfu) / 3600.0


def _mfu_basis(record: StepRecord | None, options: Options, six_n: float, with_attn: float) -> tuple[float, str]:
    """The MFU to use (in the attention-inclusive convention) and what it rests on."""
    if record is not None and "mfu" in record.metrics and record.metrics["mfu"] > 0:
        # the stage records `mfu` in the 6N convention; the same achieved FLOP/s count more FLOPs with attention
        measured = record.metrics["mfu"]
        return measured * with_attn / six_n, f"measured mfu {measured:.2f} (6N) from the earlier run"
    return options.mfu, f"MFU {options.mfu:.2f} (--mfu)"


def _training(spec: AlignmentRunSpec, step: graph.Step, flow: _Flow, evidence: Evidence, options: Options,
              shape: models.ModelShape, gpu: hardware.Gpu, base: dict[str, Any]) -> StepEstimate:
    st = getattr(spec.stages, step.stage)
    record = evidence.steps.get(step.name)
    notes: list[str] = []
    devices = base["pods"] * max(base["gpus_per_pod"], 1)
    if step.stage == "sft":
        assert step.phase is not None
        phase = st.phases[step.phase]
        rows = flow.phases[phase.name]
        cap, epochs, micro = phase.max_length, phase.epochs, phase.micro_batch_size
        length_path = f"{step.settings_path}.maxLength"
        pop = _lengths(evidence, options, f"sft-{phase.name}", "pool")
        per_row = pop.mean_total(cap)
        forward_share = 0.0
        if rows.value is not None:  # globalBatchSize counts samples, packed or not (training/data.py)
            steps = math.ceil(rows.value / phase.global_batch_size) * epochs
            notes.append(
                f"optimizer steps: ⌈{rows.value:,.0f} samples / {phase.global_batch_size} per step⌉ × {epochs:g} epochs = "
                f"{steps:,.0f}, packed or padded; packed micro-batches hold ≤ {phase.micro_batch_size * cap:,} tokens per GPU"
            )
    else:
        rows = flow.pairs
        cap, epochs, micro = st.max_length, st.epochs, 2 * st.micro_batch_size  # chosen and rejected go through together
        length_path = "spec.stages.dpo.maxLength"
        pop = _lengths(evidence, options, "pairs", "dpo-prompts", "pool")
        per_row = 2.0 * pop.mean_total(cap)  # chosen and rejected
        forward_share = 1.0 / 3.0  # reference log-probs: one forward pass over the pairs, once (2N of 6N)
        notes.append("+ one reference forward pass over the pairs; SAGE refresh scoring not counted")
    context = pop.context(cap)
    six_n, with_attn = _flops.train_flops_per_token(shape, context)
    tokens = None if rows.value is None else rows.value * per_row * epochs
    token_note = f"{rows.value or 0:,.0f} rows × {per_row:,.0f} tokens × {epochs:g} epochs; T = Σl²/Σl = {context:,.0f}"
    tokens_fig = Figure(tokens, pop.source if rows.value is not None else "unknown", f"{token_note}; lengths: {pop.note or pop.source}")
    flops_total = None if tokens is None else tokens * with_attn + (tokens / epochs) * with_attn * forward_share
    setup = _train_setup(spec, step.stage, devices, cap, micro)
    mem = memory.training_memory(shape, setup, gpu) if shape.complete else None
    if not shape.complete:
        notes.append("no layer sizes (--params only): activations and the attention term are not estimated")
    fixes = tuple(memory.training_fixes(
        shape, setup, gpu, settings_path=f"spec.stages.{step.stage}", length_path=length_path,
        nodes_path=f"spec.stages.{step.stage}.resources.numNodes", gpus_per_node=base["gpus_per_pod"],
    )) if mem is not None else ()
    wall = gpu_hours = None
    basis = ""
    if record is not None and record.metrics.get("tokens_per_second", 0) > 0 and tokens is not None:
        tps = record.metrics["tokens_per_second"]
        wall = tokens / tps / 3600.0
        basis = f"measured tokens_per_second {tps:,.0f} from the earlier run"
    elif flops_total is not None:
        mfu, basis = _mfu_basis(record, options, six_n, with_attn)
        wall = _time(flops_total, devices, gpu, mfu)
        basis += f"; {with_attn / 1e9:,.1f} GFLOP/token (6N {six_n / 1e9:,.1f} + attention)"
    if wall is not None:
        gpu_hours = wall * devices
    return StepEstimate(**base, rows=rows, tokens=tokens_fig, flops=flops_total, gpu_hours=gpu_hours, wall_hours=wall,
                        cost=_cost(gpu_hours, options), basis=basis, memory=mem, fixes=fixes, notes=tuple(notes))


def _cost(gpu_hours: float | None, options: Options) -> float | None:
    return None if gpu_hours is None or options.price_per_gpu_hour is None else gpu_hours * options.price_per_gpu_hour


def _generation(spec: AlignmentRunSpec, step: graph.Step, flow: _Flow, evidence: Evidence, options: Options,
                student: models.ModelShape, teacher: models.ModelShape | None, gpu: hardware.Gpu, base: dict[str, Any]) -> StepEstimate:
    st = getattr(spec.stages, step.stage)
    record = evidence.steps.get(step.name)
    notes: list[str] = []
    if step.stage == "distill":
        shape = teacher
        rows = flow.pool
        pop = _lengths(evidence, options, "pool")
        samples, max_tokens = st.samples, st.max_tokens
        notes.append(f"one round of {st.samples} samples per record; up to {st.max_retries} more rounds for records no sample passes")
        if not st.regenerate:
            notes.append("upper bound: only records without a verified response are sent to the teacher")
        sequences = None if rows.value is None else rows.value * samples
    elif step.stage == "prefs":
        shape = student
        rows = flow.challenge
        pop = _lengths(evidence, options, "dpo-prompts", "pool")
        samples, max_tokens = st.samples, st.max_tokens
        sequences = None if rows.value is None else rows.value * samples
    else:
        shape = student
        chosen = st.benchmarks
        benches = [b for b in spec.benchmarks if b.evaluate and (chosen is None or b.name in chosen)]
        n_models = sum(len(spec.stages.sft.phases) if m == "sft" else 1 for m in st.models)
        questions, sequences, source = 0, 0, "known size"
        unknown = []
        for b in benches:
            q = evidence.benchmarks.get(b.name)
            if q is not None:
                source = "source sample"
            else:
                q = KNOWN_BENCHMARK_SIZES.get(b.name)
            if q is None:
                unknown.append(b.name)
                continue
            questions += q
            sequences += q * (b.samples or 8) * n_models
        rows = Figure(questions if not unknown else None, source if not unknown else "unknown",
                      f"{len(benches)} benchmarks × {n_models} models" + (f"; sizes unknown: {', '.join(unknown)}" if unknown else ""))
        sequences = sequences if not unknown else None
        pop = _lengths(evidence, options, "pool")
        samples = 1
        max_tokens = max((b.max_tokens or _DEFAULT_MAX_TOKENS for b in benches), default=_DEFAULT_MAX_TOKENS)
    prompt = pop.mean_prompt()
    generated = pop.mean_response(max_tokens)
    model_len = st.max_model_len or int(prompt + max_tokens)
    tp = st.tensor_parallel
    gpus = base["pods"] * max(base["gpus_per_pod"], 1)
    engines = max(gpus // tp, 1)
    if shape is None:
        notes.append("teacher parameters unknown: pass --teacher-params")
        return StepEstimate(**base, rows=rows, tokens=Figure(None, "unknown"), notes=tuple(notes))
    setup = memory.GenSetup(tensor_parallel=tp, context=model_len)
    mem = memory.generation_memory(shape, setup, gpu) if shape.complete else None
    fixes = tuple(memory.generation_fixes(shape, setup, gpu, settings_path=f"spec.stages.{step.stage}", gpus_per_node=base["gpus_per_pod"])) if mem else ()
    if sequences is None:
        return StepEstimate(**base, rows=rows, tokens=Figure(None, "unknown", rows.note), memory=mem, fixes=fixes, notes=tuple(notes))
    gen_tokens = sequences * generated
    tokens = Figure(sequences * (prompt + generated), pop.source,
                    f"{sequences:,.0f} sequences × ({prompt:,.0f} prompt + {generated:,.0f} generated); lengths: {pop.note or pop.source}")
    prefill = sequences * _flops.prefill_flops(shape, prompt)
    decode = sequences * _flops.decode_flops(shape, prompt, generated)
    measured = record.metrics.get("generated_tokens_per_second", 0) if record is not None else 0
    if measured > 0:
        # the stages record the rate of one engine (tokens ÷ seconds summed over shards), so it carries over to any shard count
        wall_s = gen_tokens / (measured * engines)
        basis = f"measured generated_tokens_per_second {measured:,.0f} per engine from the earlier run, × {engines} engine(s)"
    else:
        # vLLM's paged KV cache holds what sequences use, so the batch is set by their mean final length
        batch = max(memory.max_sequences(shape, setup, gpu, int(prompt + generated)), 1) if shape.complete else memory.VLLM_MAX_SEQS
        prefill_s = _flops.compute_seconds(prefill / engines, tp, gpu, options.mfu)
        dec = _flops.decode_seconds(shape, generated_tokens=gen_tokens, decode_flops_total=decode, context=prompt + generated / 2,
                                    batch=batch, engines=engines, tensor_parallel=tp, gpu=gpu, mfu=options.mfu, weight_bytes=2.0 * shape.params)
        wall_s = prefill_s + dec.seconds
        basis = f"decode {dec.bound}-bound, {engines} engine(s) × TP {tp}, batch {dec.batch}; prefill at MFU {options.mfu:.2f}"
    wall = wall_s / 3600.0
    return StepEstimate(**base, rows=rows, tokens=tokens, flops=prefill + decode, gpu_hours=wall * gpus, wall_hours=wall,
                        cost=_cost(wall * gpus, options), basis=basis, memory=mem, fixes=fixes, notes=tuple(notes))


def _cpu(step: graph.Step, flow: _Flow, evidence: Evidence, base: dict[str, Any]) -> StepEstimate:
    record = evidence.steps.get(step.name)
    rows = flow.sources if step.stage == "curate" else flow.distilled
    wall = record.duration_seconds / 3600.0 if record is not None and record.duration_seconds else None
    basis = "measured duration of the earlier run" if wall is not None else "CPU step: time not estimated"
    return StepEstimate(**base, rows=rows, tokens=Figure(None, "unknown", "CPU step"), wall_hours=wall, basis=basis)


def estimate_run(spec: AlignmentRunSpec, evidence: Evidence | None = None, options: Options | None = None) -> RunEstimate:
    """Estimate every enabled step. Raises `models.UnknownModelError` when the student's size is unknown,
    `ValueError` for an unknown `--gpu`."""
    evidence = evidence or Evidence()
    options = options or Options()
    gpu = hardware.gpu(options.gpu)
    student = _shape(spec.model.uri, evidence.model, options.params, "spec.model.uri", "--params")
    teacher: models.ModelShape | None = None
    if spec.teacher is not None:
        try:
            teacher = _shape(spec.teacher.uri, evidence.teacher, options.teacher_params, "spec.teacher.uri", "--teacher-params")
        except models.UnknownModelError:
            teacher = None  # only distill needs it; its row says so
    flow = _flow(spec, evidence, options)
    out: list[StepEstimate] = []
    for step in graph.enabled_steps(spec):
        pods, gpus_per_pod, image, queue = _layout(spec, step)
        kind: Kind = "training" if step.stage in ("sft", "dpo") else "generation" if step.stage in ("distill", "prefs", "eval") else "cpu"
        base = {"step": step.name, "stage": step.stage, "kind": kind, "pods": pods, "gpus_per_pod": gpus_per_pod,
                "image": image, "queue": queue, "done": step.name in evidence.steps}
        if kind == "training":
            out.append(_training(spec, step, flow, evidence, options, student, gpu, base))
        elif kind == "generation":
            out.append(_generation(spec, step, flow, evidence, options, student, teacher, gpu, base))
        else:
            out.append(_cpu(step, flow, evidence, base))
    return RunEstimate(gpu, options.mfu, options.price_per_gpu_hour, student, teacher, tuple(out), evidence.notes)
