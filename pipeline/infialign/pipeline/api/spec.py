"""`AlignmentRun.spec`: what a user writes.

Defaults follow InfiAlign (arXiv 2508.05496) as reconstructed in `research/seeds-algorithms.md`.
Each field's description says where its default comes from: `[SRC]` a primary source, `[SRC-2]` the
same team's re-implementation (InfiXAI/InfiR2), `[RECON]` a reconstruction where the paper gives no
number. Every `[RECON]` value is a setting, never a constant.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from infialign.pipeline.api._base import (
    ApiModel,
    ArtifactUri,
    DnsLabel,
    EnvName,
    ImageRef,
    LabelMap,
    ModelUri,
    Quantity,
    xk8s,
)

__all__ = [
    "SecretKeyRef",
    "S3SecretRef",
    "ModelSource",
    "FieldMapping",
    "DataSource",
    "Benchmark",
    "Toleration",
    "EnvVar",
    "VolumeMount",
    "PodTemplateOverride",
    "Resources",
    "RayWorkers",
    "RuleFilters",
    "NearDedup",
    "Decontamination",
    "DomainLabelling",
    "Embeddings",
    "CurateStage",
    "DistillStage",
    "SandboxSettings",
    "JudgeSettings",
    "VerificationSettings",
    "SelectStage",
    "DeepSpeedSettings",
    "LoraSettings",
    "RopeSettings",
    "SftPhase",
    "SftStage",
    "PrefsStage",
    "SageSettings",
    "DpoStage",
    "DpoLossType",
    "EvalStage",
    "Stages",
    "S3Storage",
    "LocalStorage",
    "Storage",
    "Tracking",
    "Images",
    "FailurePolicy",
    "AlignmentRunSpec",
    "GPU_STAGES",
    "RESERVED_VOLUMES",
    "RESERVED_MOUNT_PATHS",
    "RESERVED_LABEL_KEYS",
    "LORA_LEARNING_RATE",
    "LORA_EPOCHS",
]

# Stages whose work needs accelerators when they run on a cluster.
GPU_STAGES = frozenset({"distill", "sft", "prefs", "dpo", "eval"})


# ---------------------------------------------------------------- references and sources

Preset = Literal[
    "auto", "records", "messages", "sharegpt", "numina", "alpaca", "gsm8k",
    "aime", "math500", "humaneval", "apps", "taco", "livecodebench", "gpqa",
]
AnswerType = Literal["auto", "math", "code", "choice", "open"]


class SecretKeyRef(ApiModel):
    """A key in a Secret of the run's namespace. The operator never reads it; pods get it through `secretKeyRef`."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")] = Field(
        description="The Secret's name, in the run's namespace."
    )
    key: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(description="The key inside the Secret.")


class S3SecretRef(ApiModel):
    """A Secret holding S3 credentials, referenced by name and key names."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")] = Field(
        description="The Secret's name, in the run's namespace."
    )
    access_key_id_key: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        default="AWS_ACCESS_KEY_ID", description="The key holding the access key id. Default: AWS_ACCESS_KEY_ID."
    )
    secret_access_key_key: Annotated[str, StringConstraints(min_length=1, max_length=253)] = Field(
        default="AWS_SECRET_ACCESS_KEY",
        description="The key holding the secret access key. Default: AWS_SECRET_ACCESS_KEY.",
    )


class ModelSource(ApiModel):
    """A model checkpoint and how to load it."""

    uri: ModelUri
    revision: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None, description="For `hf://` models: a branch, tag or commit. Empty means the default branch."
    )
    tokenizer_uri: ModelUri | None = Field(
        default=None, description="Load the tokenizer from here instead of `uri` (for checkpoints saved without one)."
    )
    secret_ref: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding a hub token (`HF_TOKEN`) for gated models. Not allowed with local paths."
    )


class FieldMapping(ApiModel):
    """Explicit column names of a source, overriding its preset key by key. Empty fields keep the preset's choice
    (the usual names `response`, `answer`, `id`, ... still map when only `prompt` is set)."""

    prompt: Annotated[str, StringConstraints(max_length=128)] | None = Field(default=None, description="Column with the question text.")
    messages: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None, description="Column with a chat list (`role`/`content` or ShareGPT `from`/`value`)."
    )
    response: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None, description="Column with the solution or chain of thought."
    )
    answer: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None, description="Column with the final answer. When empty the answer is extracted from the response: its `\\boxed{}` "
        "(several boxes in the closing paragraph become the ordered tuple `(a, b)`), `#### x` or a last line `The answer is: x`."
    )
    id: Annotated[str, StringConstraints(max_length=128)] | None = Field(default=None, description="Column with the original row id.")
    domain: Annotated[str, StringConstraints(max_length=128)] | None = Field(default=None, description="Column with a domain label.")


class DataSource(ApiModel):
    """One input dataset of the `curate` stage."""

    name: DnsLabel = Field(description="A short name, recorded as `source` in every record it produces.")
    uri: ArtifactUri
    preset: Preset = Field(
        default="auto",
        description="How columns map onto the record schema: `messages` (OpenR1 chat lists), `sharegpt` (`from`/`value`), "
        "`numina` (`problem`/`solution`), `alpaca` (`instruction`/`output`), `gsm8k` (`question`/`answer` with `####`), "
        "`aime` and `math500` (`problem`/`answer`), `humaneval` (`prompt`/`test`/`entry_point`), `apps` and `taco` "
        "(`question`/`solutions`/`input_output`), `livecodebench` (`question_content`/`public_test_cases`/`private_test_cases`), "
        "`gpqa` (`Question`/`Correct Answer`/`Incorrect Answer 1-3` → options A-D), "
        "`records` (already in our schema). `auto` detects it from the columns. Default: auto.",
    )
    answer_type: AnswerType = Field(
        default="auto",
        description="How answers of this source are verified: `math`, `code` (tests), `choice` (an option letter) or `open` "
        "(the LLM judge). `auto`: the preset's type, else `math`, or `choice` for a one-letter reference. Default: auto.",
    )
    fields: FieldMapping | None = Field(
        default=None,
        description="Explicit column names; each key set wins over the preset, keys left empty keep the preset's choice. "
        "An unrecognised layout is reported as `spec.sources[i].fields.prompt`.",
    )
    max_rows: int | None = Field(default=None, ge=1, le=1_000_000_000, description="Read at most this many rows. Empty reads all.")
    domain: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Give every record of this source this domain instead of labelling it."
    )


class Benchmark(ApiModel):
    """A benchmark: decontaminated against in `curate`, evaluated on in `eval`."""

    name: DnsLabel = Field(description="The benchmark's name in reports and metrics, e.g. `aime24`.")
    uri: ArtifactUri
    preset: Preset = Field(default="auto", description="Column mapping, as for sources. Default: auto.")
    answer_type: AnswerType = Field(default="auto", description="How answers are verified, as for sources. Default: auto.")
    fields: FieldMapping | None = Field(
        default=None, description="Explicit column names; they win over the preset. `fields.answer` names the reference answer column."
    )
    decontaminate: bool = Field(default=True, description="Drop training records that overlap this benchmark. Default: true.")
    evaluate: bool = Field(default=True, description="Evaluate models on this benchmark in the `eval` stage. Default: true.")
    samples: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Samples per question (k of avg@k). Empty: the preset's default ([SRC-2] AIME 32, GPQA/LiveCodeBench 8; "
        "see the README's benchmark table), else 8.",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=16,
        le=262144,
        description="Generation budget per sample. Empty: the preset's default ([SRC-2] AIME 31000, GPQA 26000, LiveCodeBench 27000), "
        "else 32768 [RECON].",
    )


# ---------------------------------------------------------------- scheduling


class Toleration(ApiModel):
    """A pod toleration, passed through unchanged."""

    key: Annotated[str, StringConstraints(max_length=253)] | None = Field(default=None, description="The taint key.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="`Exists` or `Equal`.")
    value: Annotated[str, StringConstraints(max_length=63)] | None = Field(default=None, description="The taint value.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(default=None, description="The taint effect.")
    toleration_seconds: int | None = Field(default=None, ge=0, description="For NoExecute: how long the pod stays bound.")


class EnvVar(ApiModel):
    """An extra environment variable for the stage's containers (NCCL knobs, HF_HUB_OFFLINE, …)."""

    name: EnvName = Field(description="The variable's name.")
    value: Annotated[str, StringConstraints(max_length=4096)] | None = Field(default=None, description="A literal value.")
    secret_key_ref: SecretKeyRef | None = Field(default=None, description="Take the value from a Secret key instead.")

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if (self.value is None) == (self.secret_key_ref is None):
            raise ValueError("set exactly one of `value` and `secretKeyRef`")
        return self


# ---------------------------------------------------------------- pod-template override

# What the operator puts in every stage pod; an override may add to it, never replace it.
RESERVED_VOLUMES = frozenset({"config", "scratch", "dshm", "artifacts"})
RESERVED_MOUNT_PATHS = frozenset({"/etc/infialign", "/scratch", "/dev/shm"})
RESERVED_LABEL_KEYS = frozenset({"app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/managed-by"})
_OWN_DOMAIN = "infialign.dev/"  # labels and annotations under it are the operator's (run, stage, attempt)

# `[prefix/]name` as Kubernetes spells label and annotation keys.
_QUALIFIED_KEY = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
# Extended resources always carry a domain (`rdma/hca_shared_devices_a`, `vpc.amazonaws.com/efa`);
# `cpu`, `memory`, `ephemeral-storage` and `hugepages-*` have none, so the pattern keeps them out.
_EXTENDED_RESOURCE = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
# Volume sources an override may use. `hostPath` is absent on purpose: it needs a privileged namespace and
# bypasses the device plugins that hand out RDMA and EFA devices properly.
_VOLUME_SOURCES = frozenset(
    {"configMap", "secret", "persistentVolumeClaim", "emptyDir", "ephemeral", "csi", "nfs", "projected", "downwardAPI", "image"}
)

QualifiedKey = Annotated[str, StringConstraints(min_length=1, max_length=317, pattern=_QUALIFIED_KEY)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")]
VolumeName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
Capability = Literal["IPC_LOCK", "SYS_NICE", "SYS_RESOURCE", "NET_RAW"]


class VolumeMount(ApiModel):
    """Where a volume of the override appears in the stage container."""

    name: VolumeName = Field(description="The name of a volume in `volumes` (of this override or the run-wide one).")
    mount_path: Annotated[str, StringConstraints(min_length=2, max_length=1024, pattern=r"^/\S*$")] = Field(
        description="An absolute path in the container. Not /etc/infialign, /scratch or /dev/shm (the operator's own mounts)."
    )
    read_only: bool = Field(default=False, description="Mount read-only. Default: false.")
    sub_path: Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^/]\S*$")] | None = Field(
        default=None, description="A path inside the volume to mount instead of its root."
    )


class PodTemplateOverride(ApiModel):
    """Additions to the stage pods for GPU network fabrics and cluster conventions (the idea of Kubeflow Trainer's
    `podTemplateOverrides` and JobSet's templates, restricted to what is safe to add). `spec.podTemplateOverride`
    applies to every stage; a stage's `resources.podTemplateOverride` is merged over it (its maps win key by key,
    its lists are appended, its `hostNetwork` wins when set)."""

    extra_resources: dict[Annotated[str, StringConstraints(min_length=1, max_length=253)], Annotated[int, Field(ge=1, le=1024)]] | None = Field(
        default=None,
        max_length=16,
        description="Extended resources per pod, as request = limit: `rdma/hca_shared_devices_a: 1`, `vpc.amazonaws.com/efa: 4`, "
        "`nvidia.com/hostdev: 8`. Names need a domain; cpu, memory and nvidia.com/gpu have their own fields in `resources`.",
    )
    annotations: dict[QualifiedKey, Annotated[str, StringConstraints(max_length=4096)]] | None = Field(
        default=None,
        max_length=32,
        description="Pod annotations, e.g. `k8s.v1.cni.cncf.io/networks` (Multus) or "
        "`kueue.x-k8s.io/podset-required-topology` (Kueue topology-aware scheduling). Not under infialign.dev/.",
    )
    labels: dict[QualifiedKey, LabelValue] | None = Field(
        default=None,
        max_length=32,
        description="Pod labels, e.g. `sidecar.istio.io/inject: \"false\"`. Not under infialign.dev/, and not the "
        "app.kubernetes.io name, component or managed-by labels the operator sets.",
    )
    volumes: list[Annotated[dict[str, Any], Field(json_schema_extra=xk8s(preserve_unknown_fields=True))]] | None = Field(
        default=None,
        max_length=16,
        description="Pod volumes in the Kubernetes form: `name` plus one source (configMap, secret, persistentVolumeClaim, "
        "emptyDir, ephemeral, csi, nfs, projected, downwardAPI, image). hostPath is refused. Not named config, scratch, "
        "dshm or artifacts.",
    )
    volume_mounts: list[VolumeMount] | None = Field(default=None, max_length=16, description="Mounts of `volumes` in the stage container.")
    image_pull_secrets: list[Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]] | None = Field(
        default=None, max_length=8, description="Secrets (names in the run's namespace) for pulling private images."
    )
    capabilities: list[Capability] | None = Field(
        default=None,
        max_length=4,
        description="Linux capabilities added to the stage container (all others stay dropped): IPC_LOCK (pin memory for "
        "RDMA), SYS_NICE, SYS_RESOURCE, NET_RAW. Privileged containers are never allowed. The pods run as a non-root "
        "user, so a capability reaches the process only if the image grants it (file capabilities) or the runtime "
        "sets ambient capabilities.",
    )
    host_network: bool | None = Field(
        default=None,
        description="Run the pods in the node's network namespace (some RDMA/RoCE setups), with dnsPolicy "
        "ClusterFirstWithHostNet so Service names still resolve. Needs a namespace that Pod Security admits as "
        "privileged; torchrun's port 29500 must be free on the node. Empty: not set (false).",
    )

    @field_validator("extra_resources")
    @classmethod
    def _no_first_class_resources(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        for name in value or {}:
            if not re.fullmatch(_EXTENDED_RESOURCE, name):
                raise ValueError(
                    f"extraResources: {name!r} is not an extended resource (those are named <domain>/<name>, e.g. "
                    "rdma/hca_shared_devices_a); cpu and memory have their own fields: resources.cpu and resources.memory"
                )
            if name == "nvidia.com/gpu":
                raise ValueError("extraResources: nvidia.com/gpu has its own field; set resources.gpusPerNode instead")
            domain = name.split("/", 1)[0]
            if domain == "kubernetes.io" or domain.endswith(".kubernetes.io"):
                raise ValueError(f"extraResources: {name!r} is in the kubernetes.io domain, which extended resources may not use")
        return value

    @field_validator("labels", "annotations")
    @classmethod
    def _not_ours(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if key.startswith(_OWN_DOMAIN) or key in RESERVED_LABEL_KEYS:
                raise ValueError(f"{key!r} is set by the operator (it finds its pods by it); remove it from the override")
        return value

    @field_validator("volumes")
    @classmethod
    def _volume_shape(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, volume in enumerate(value or []):
            name = volume.get("name")
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 63:
                raise ValueError(f"volumes[{i}].name must be a DNS label of at most 63 characters, got {name!r}")
            if name in RESERVED_VOLUMES:
                raise ValueError(f"volumes[{i}].name {name!r} is one of the operator's volumes {sorted(RESERVED_VOLUMES)}; rename it")
            sources = [k for k in volume if k != "name"]
            if "hostPath" in sources:
                raise ValueError(
                    f"volumes[{i}] ({name}): hostPath is not allowed; use a device plugin resource in extraResources, or a PVC or CSI volume"
                )
            if len(sources) != 1 or sources[0] not in _VOLUME_SOURCES:
                raise ValueError(f"volumes[{i}] ({name}) must have exactly one source of {sorted(_VOLUME_SOURCES)}, got {sources}")
            if not isinstance(volume[sources[0]], dict):
                raise ValueError(f"volumes[{i}].{sources[0]} must be a mapping, got {type(volume[sources[0]]).__name__}")
        return value

    @field_validator("volume_mounts")
    @classmethod
    def _mounts_outside_ours(cls, value: list[VolumeMount] | None) -> list[VolumeMount] | None:
        for i, mount in enumerate(value or []):
            path = mount.mount_path.rstrip("/")
            if any(path == p or path.startswith(p + "/") or p.startswith(path + "/") for p in RESERVED_MOUNT_PATHS):
                raise ValueError(f"volumeMounts[{i}].mountPath {mount.mount_path!r} overlaps the operator's mounts {sorted(RESERVED_MOUNT_PATHS)}")
        return value

    def merged_over(self, base: PodTemplateOverride | None) -> PodTemplateOverride:
        """This (a stage's) override on top of `base` (the run-wide one): maps by key, lists appended."""
        if base is None:
            return self

        def both(a: Any, b: Any) -> Any:
            if a is None or b is None:
                return b if a is None else a
            if isinstance(a, dict):
                return {**a, **b}
            if a and isinstance(a[0], dict):  # volumes: the stage's wins by name
                names = {v.get("name") for v in b}
                return [v for v in a if v.get("name") not in names] + list(b)
            return [*a, *[x for x in b if x not in a]]

        update = {name: both(getattr(base, name), getattr(self, name)) for name in type(self).model_fields if name != "host_network"}
        update["host_network"] = self.host_network if self.host_network is not None else base.host_network
        return PodTemplateOverride.model_validate(update)


class Resources(ApiModel):
    """Where and on what a stage runs in a cluster. Ignored by the local executor, except `env`."""

    image: ImageRef | None = Field(default=None, description="Container image. Empty uses `spec.images` for the stage's kind.")
    num_nodes: int = Field(default=1, ge=1, le=512, description="Pods (nodes) for the stage. Training stages form one torchrun group.")
    gpus_per_node: int = Field(default=0, ge=0, le=16, description="`nvidia.com/gpu` per pod. 0 runs on CPU.")
    cpu: Quantity | None = Field(default=None, description="CPU request and limit per pod. Empty leaves it unset.")
    memory: Quantity | None = Field(default=None, description="Memory request and limit per pod. Empty leaves it unset.")
    shm_size: Quantity = Field(default="16Gi", description="Size of the memory-backed `/dev/shm` (NCCL, dataloaders). Default: 16Gi.")
    scratch_size: Quantity | None = Field(
        default=None,
        description="Size of the pod's `/scratch` disk, where model downloads and the Hugging Face, vLLM, Triton and "
        "compile caches go: the emptyDir's `sizeLimit` and the pod's `ephemeral-storage` request, so the scheduler "
        "places the pod on a node with that much disk. Empty: 200Gi for GPU pods, 20Gi for CPU pods. A step evicted "
        "twice for disk pressure fails as an application error: raise this value.",
    )
    node_selector: LabelMap | None = Field(default=None, description="Node labels the pods require, passed through.")
    tolerations: list[Toleration] | None = Field(default=None, max_length=32, description="Pod tolerations, passed through.")
    affinity: dict | None = Field(
        default=None,
        description="A pod `affinity` object, passed through unchanged.",
        json_schema_extra=xk8s(preserve_unknown_fields=True),
    )
    queue_name: Annotated[str, StringConstraints(max_length=253)] | None = Field(
        default=None, description="A Kueue LocalQueue: the Job gets `kueue.x-k8s.io/queue-name` and all-or-nothing admission."
    )
    priority_class_name: Annotated[str, StringConstraints(max_length=253)] | None = Field(
        default=None, description="A PriorityClass for the pods."
    )
    env: list[EnvVar] | None = Field(default=None, max_length=64, description="Extra environment variables.")
    pod_template_override: PodTemplateOverride | None = Field(
        default=None, description="Additions to this stage's pods, merged over `spec.podTemplateOverride`."
    )


def _gpu_resources() -> Resources:
    return Resources(gpusPerNode=8)


class RayWorkers(ApiModel):
    """Run `curate`/`select` on Ray Data (KubeRay in clusters) instead of one process."""

    workers: int = Field(
        default=0, ge=0, le=1024, description="Ray workers. 0 runs on the stage's own pod (for `curate`: see `localWorkers`). Default: 0."
    )
    address: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="An existing Ray cluster (`ray://host:10001`). Empty starts a local Ray."
    )


# ---------------------------------------------------------------- curate


class RuleFilters(ApiModel):
    """Rule-based filters [SRC]: 'filter out noise (non-English, half-baked answers)'. Thresholds are [RECON]."""

    language: bool = Field(
        default=True,
        description="Drop prompts that are not English [SRC]. Math is neutral: formulas, LaTeX, Greek letters and "
        "single-letter variables never make a prompt foreign. Default: true.",
    )
    min_english_ratio: float = Field(
        default=0.8, gt=0, le=1, description="Share of a prompt's prose letters (math removed) that must be Latin-script [RECON]. Default: 0.8."
    )
    require_answer: bool = Field(
        default=True,
        description="Drop math records without a final answer (a reference answer, or `\\boxed{}` in the response) [SRC]. "
        "Math is decided by the domain, labelled before the filters for sources without a domain column. Default: true.",
    )
    truncated: bool = Field(
        default=True,
        description="Drop truncated chains of thought [SRC]: an unclosed `<think>`, nothing after `</think>`, or an answer that "
        "ends mid-sentence (on a comma, operator or open bracket, inside an open `\\boxed{` or code fence, on a word such as "
        "`the`, or, for math, on a letter before any stated answer). Code identifiers, option letters and prose without a "
        "final period end fine [RECON]. Default: true.",
    )
    repetition: bool = Field(
        default=True,
        description="Drop degenerate repetition loops [RECON]: a word n-gram repeated `repetitionMaxRepeats` times, half of the "
        "word 10-grams repeated, or a response that compresses 10x or more. Long CoTs that restate an equation pass. Default: true.",
    )
    repetition_ngram: int = Field(
        default=20, ge=2, le=100, description="Word n-gram size for the repetition check; words are runs of letters and digits, "
        "so symbols and LaTeX commands do not count [RECON]. Default: 20."
    )
    repetition_max_repeats: int = Field(default=5, ge=2, le=1000, description="Drop when one n-gram repeats this often [RECON]. Default: 5.")
    min_prompt_chars: int = Field(default=10, ge=0, le=100_000, description="Shortest prompt kept [RECON]. Default: 10.")
    max_prompt_chars: int = Field(default=16_384, ge=1, le=10_000_000, description="Longest prompt kept [RECON]. Default: 16384.")
    max_response_chars: int = Field(default=200_000, ge=1, le=100_000_000, description="Longest response kept [RECON]. Default: 200000.")


class NearDedup(ApiModel):
    """MinHash LSH near-duplicate removal [RECON]: word 5-grams, 128 permutations, true-Jaccard confirmation."""

    enabled: bool = Field(default=True, description="Default: true.")
    threshold: float = Field(default=0.8, gt=0, le=1, description="True Jaccard that makes two prompts duplicates. Default: 0.8.")
    ngram: int = Field(default=5, ge=1, le=32, description="Word shingle size. Default: 5.")
    bands: int = Field(
        default=32,
        ge=1,
        le=512,
        description="LSH bands (b); b×r permutations. 32×4 found every planted pair at J ≥ 0.8 where 16×8 found 98.8% "
        "(benchmarks/bench_neardup.py), for ~13% more time; candidates are confirmed by true Jaccard either way. Default: 32.",
    )
    rows: int = Field(default=4, ge=1, le=512, description="Rows per band (r). Default: 4.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Hash seed shared by all workers. Default: 0.")


class Decontamination(ApiModel):
    """Benchmark decontamination against every benchmark with `decontaminate: true` ([SRC] "N-gram (n=15) & embedding
    similarity checks (>0.9)"). The paper's settings: `promptNgram: 15`, `embeddingThreshold: 0.9`."""

    enabled: bool = Field(
        default=True, description="Default: true. Without a benchmark to check, curate records `decontamination_skipped` and validate warns."
    )
    prompt_ngram: int = Field(
        default=8,
        ge=3,
        le=64,
        description="Word n-gram overlap on the prompt; n-grams are over words and numbers, never symbols. 8: Open-R1's "
        "default, which catches more edited leaks [RECON]; the paper uses 15 [SRC]. Default: 8.",
    )
    min_ngram_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="For a benchmark item without digits: the share of its n-grams a prompt must share, so one common "
        "phrase does not flag a different problem [RECON] (benchmarks/bench_decontam_quality.py). Default: 0.5.",
    )
    word_overlap: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="numbers+words check: a prompt with all of an item's numbers and this share of its content words "
        "is a leak (catches reordered and reworded leaks; 0.7 measured). Empty disables: on templated pools it flags "
        "other problems with the same small numbers [RECON]. Default: empty.",
    )
    full_ngram: int = Field(default=13, ge=3, le=64, description="Word n-gram overlap on prompt+response (GPT-3 convention). Default: 13.")
    fuzzy_ratio: float = Field(default=0.95, gt=0, le=1, description="Fuzzy-match ratio for short prompts. Default: 0.95.")
    embedding_threshold: float | None = Field(
        default=None,
        gt=0.8,
        le=1,
        description="Cosine similarity of prompt embeddings that counts as a leak ([SRC] 0.9), computed with "
        "`curate.embeddings.model` on the whole prompt (up to the model's own maximum length). Empty disables the "
        "embedding check (it needs the model and is slow on CPU).",
    )


class DomainLabelling(ApiModel):
    """Domain tags for balanced sampling [SRC: LLM-classified categories]."""

    labeller: Literal["keyword", "llm"] = Field(
        default="keyword", description="`keyword` rules, or `llm` through an OpenAI-compatible endpoint (vLLM). Default: keyword."
    )
    endpoint: Annotated[str, StringConstraints(max_length=512, pattern=r"^https?://\S+$")] | None = Field(
        default=None, description="For `llm`: the OpenAI-compatible base URL, e.g. `http://qwen-32b:8000/v1`."
    )
    model: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None,
        description="For `llm`: the served model name. The paper names Qwen2.5-32B as the domain tagger of the DPO challenge "
        "selection only [SRC]; using it (e.g. Qwen/Qwen2.5-32B-Instruct) for the SFT pool's domains is a reconstruction [RECON].",
    )
    labels: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=64, description="The label set. Empty uses the built-in math taxonomy [RECON]."
    )
    concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        description="For `llm`: requests in flight to the endpoint. One vLLM server batches them; raise it for a "
        "larger server or several replicas behind one Service [RECON]. Default: 8.",
    )


class Embeddings(ApiModel):
    """Prompt embeddings and k-means clusters for semantic diversity [SRC]."""

    model: Annotated[str, StringConstraints(max_length=512)] = Field(
        default="all-MiniLM-L6-v2",
        description="A sentence-transformers model name or path; `hashed` uses a fast bag-of-words projection (tests). "
        "Clusters use it (prompts cut to 128 tokens) and so does decontamination's embedding check (whole prompts). "
        "Default: all-MiniLM-L6-v2 [RECON].",
    )
    clusters: int | None = Field(
        default=None, ge=1, le=100_000, description="k for k-means. Empty uses round(sqrt(N/2)) [RECON]."
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="k-means seed. Default: 0.")


class CurateStage(ApiModel):
    """`curate`: sources → a deduplicated, decontaminated candidate pool with features (`pool.parquet`)."""

    enabled: bool = Field(default=True, description="Run this stage. Default: true.")
    filters: RuleFilters = Field(default_factory=RuleFilters, description="Rule-based filters.")
    exact_dedup: bool = Field(default=True, description="Drop exact duplicates of the normalised prompt. Default: true.")
    near_dedup: NearDedup = Field(default_factory=NearDedup, description="MinHash LSH near-duplicate removal.")
    decontamination: Decontamination = Field(default_factory=Decontamination, description="Benchmark decontamination.")
    domains: DomainLabelling = Field(default_factory=DomainLabelling, description="Domain labelling.")
    embeddings: Embeddings = Field(default_factory=Embeddings, description="Embeddings and clusters.")
    ray: RayWorkers = Field(default_factory=RayWorkers, description="Scale out on Ray Data.")
    local_workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Without Ray (`ray.workers` 0): worker processes for the row steps (domain labels, token counts, "
        "rule filters, decontamination scores). They live for the whole stage and take windows of rows while the "
        "stage process reads the sources and writes the spill. Empty: the CPUs the stage may use (its CPU affinity, "
        "capped by the pod's CPU limit); 1 runs everything in the stage process. The output is the same either way. "
        "Default: empty [RECON] (measured in benchmarks/results/curate_scale.md).",
    )
    resources: Resources = Field(default_factory=Resources, description="Pod resources (CPU by default).")


# ---------------------------------------------------------------- distill


# ---------------------------------------------------------------- select


class SandboxSettings(ApiModel):
    """Limits of the code sandbox: each test runs as a fresh subprocess ([RECON] seeds §1.6)."""

    test_timeout_seconds: float = Field(default=6.0, gt=0, le=600, description="Wall and CPU limit per test run [RECON]. Default: 6.")
    total_timeout_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="Budget for all tests of one problem; past it the verdict is `timeout` [RECON]. Default: 10."
    )
    memory_mb: int = Field(default=2048, ge=64, le=1_048_576, description="Address-space limit (RLIMIT_AS) per run, in MiB [RECON]. Default: 2048.")
    max_processes: int = Field(
        default=16,
        ge=1,
        le=4096,
        description="RLIMIT_NPROC of the sandbox user (stops fork bombs). It counts every process of that user, "
        "`nobody` when the stage runs as root, else the stage's own user. Default: 16.",
    )
    max_output_mb: int = Field(default=64, ge=1, le=65536, description="Largest stdout/stderr/file a run may write (RLIMIT_FSIZE), in MiB. Default: 64.")
    isolate_network: bool = Field(
        default=True,
        description="No network for candidate code: a network namespace when permitted, else sockets disabled in-process. Default: true.",
    )
    drop_root: bool = Field(default=True, description="When the stage runs as root, run candidate code as `nobody`. Default: true.")


_JUDGE_PROMPT = (
    "You grade an answer to an open-ended question for correctness, completeness, clarity and faithfulness.\n\n"
    "Question:\n{prompt}\n\nReference answer (may be empty):\n{reference}\n\nAnswer to grade:\n{response}\n\n"
    'Reply with JSON only: {"score": <integer 1-10>, "reason": "<one sentence>"}'
)


class JudgeSettings(ApiModel):
    """LLM judge for open-ended answers, through an OpenAI-compatible endpoint ([SRC] 'LLM quality scores'; details [RECON])."""

    endpoint: Annotated[str, StringConstraints(max_length=512, pattern=r"^https?://\S+$")] | None = Field(
        default=None,
        description="OpenAI-compatible base URL, e.g. `http://qwen-72b:8000/v1` (vLLM's server). Empty: open answers stay `unverified`.",
    )
    model: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="The served model name ([RECON] Qwen2.5-32B/72B-Instruct). Required with `endpoint`."
    )
    prompt_template: Annotated[str, StringConstraints(min_length=1, max_length=16384)] = Field(
        default=_JUDGE_PROMPT,
        description="The user message; `{prompt}`, `{response}` and `{reference}` are replaced. The reply must hold a JSON `score`.",
    )
    threshold: float = Field(default=8.0, ge=0, le=100, description="Lowest score that passes ([RECON] 8 of 10). Default: 8.")
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600, description="Per request. Default: 60.")
    max_tokens: int = Field(default=256, ge=1, le=32768, description="Reply budget. Default: 256.")
    concurrency: int = Field(default=4, ge=1, le=256, description="Requests in flight. Default: 4.")
    api_key_env: EnvName | None = Field(
        default=None, description="Environment variable holding a bearer token (set it from a Secret with `resources.env`)."
    )

    @model_validator(mode="after")
    def _model_with_endpoint(self) -> JudgeSettings:
        if self.endpoint and not self.model:
            raise ValueError("judge.model is required when judge.endpoint is set: name the model the endpoint serves")
        return self


class VerificationSettings(ApiModel):
    """Answer verification: math-verify, option letters, a code sandbox and an LLM judge ([SRC] 'MathVerify, Sandbox', LLM-as-judge).

    Only `pass` counts as verified. A reference answer taken from the response itself never verifies it
    (the record is `unverified`)."""

    enabled: bool = Field(default=True, description="Default: true.")
    timeout_seconds: float = Field(default=5.0, gt=0, le=600, description="Per math check; past it the verdict is `timeout` [RECON]. Default: 5.")
    workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Math processes, and code sandboxes run at once. Empty: one per CPU the stage may use (its cgroup "
        "CPU quota, else its CPU affinity), so a pod given 16 CPUs verifies 16 at a time. Default: empty.",
    )
    drop_failed: bool = Field(default=True, description="Drop records whose verdict is `fail`, `error` or `timeout`. Default: true.")
    keep_unverified: bool = Field(
        default=True,
        description="Keep records nothing could check (`unknown`, `unverified`) eligible for SFT. They never enter the DPO "
        "challenge pool, which needs `pass`. Default: true.",
    )
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings, description="Code sandbox limits.")
    judge: JudgeSettings = Field(default_factory=JudgeSettings, description="LLM judge for open-ended answers.")


class DistillStage(ApiModel):
    """`distill`: the teacher writes chains of thought for pool records that lack a verified one (vLLM).

    Rejection sampling (seeds §1.3, §1.6): `samples` per record and round; a record with no accepted sample is
    re-sampled, up to `maxRetries` more rounds. A sample is accepted by its verdict against the record's real
    reference, else by teacher agreement with a self-taken reference, else by majority vote."""

    enabled: bool = Field(default=True, description="Run this stage. Needs `spec.teacher`. Default: true.")
    pool_uri: ArtifactUri | None = Field(default=None, description="Distil this pool instead of the `curate` output.")
    regenerate: bool = Field(
        default=False,
        description="Let the teacher rewrite every record, not only those without a verified response [RECON]. Default: false.",
    )
    samples: int = Field(default=4, ge=1, le=64, description="Samples per record and round, rejection-sampled by verification [RECON]. Default: 4.")
    keep: Literal["best", "all"] = Field(
        default="best",
        description="Accepted samples to keep per record: `best` (the teacher's most confident, by mean token log-prob) "
        "or `all` (each becomes a record) [RECON]. Default: best.",
    )
    max_retries: int = Field(
        default=8, ge=0, le=64, description="Extra rounds for records with no accepted sample [SRC: 8 retries max]. Default: 8."
    )
    min_votes: int = Field(
        default=2,
        ge=1,
        le=1024,
        description="Samples (over all rounds) that must give the majority answer before it is accepted without a real reference [RECON]. Default: 2.",
    )
    min_agreement: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of the answered samples the majority answer needs to be accepted without a real reference [RECON]. Default: 0.5.",
    )
    temperature: float = Field(default=0.6, ge=0, le=2, description="Sampling temperature [RECON]. Default: 0.6.")
    top_p: float = Field(default=0.95, gt=0, le=1, description="Nucleus sampling [RECON]. Default: 0.95.")
    max_tokens: int = Field(default=32768, ge=16, le=262144, description="Generation budget; truncated samples are never kept [RECON]. Default: 32768.")
    seed: int = Field(
        default=0, ge=0, le=2**31 - 1, description="Sampling seed; each record's seed derives from it, the record id and the round. Default: 0."
    )
    system_prompt: Annotated[str, StringConstraints(max_length=4096)] = Field(
        default="Please reason step by step, and put your final answer within \\boxed{}.",
        description="System prompt for the teacher [SRC-2]. Empty sends none.",
    )
    max_model_len: int | None = Field(default=None, ge=16, le=1_048_576, description="vLLM context length. Empty: the teacher's own maximum.")
    shards: int = Field(default=1, ge=1, le=1024, description="Record shards = pods of the Indexed Job; shard 0 merges. Default: 1.")
    tensor_parallel: int = Field(default=1, ge=1, le=16, description="GPUs per vLLM engine. Default: 1.")
    verification: VerificationSettings = Field(
        default_factory=VerificationSettings,
        description="How teacher samples and existing responses are checked (math-verify timeouts, the code sandbox, the LLM judge).",
    )
    resources: Resources = Field(default_factory=_gpu_resources, description="Pod resources (8 GPUs by default).")

    @model_validator(mode="after")
    def _greedy_is_one_sample(self) -> DistillStage:
        if self.temperature == 0 and self.samples > 1:
            # vLLM refuses n > 1 with greedy sampling: every sample would be the same one
            raise ValueError(f"temperature 0 (greedy) gives one sample, but samples is {self.samples}; set samples: 1 or a temperature above 0")
        return self


class SelectStage(ApiModel):
    """`select`: pool → curriculum SFT sets (`sft-<phase>.parquet`) and DPO prompts (`dpo-prompts.parquet`)."""

    enabled: bool = Field(default=True, description="Run this stage. Default: true.")
    pool_uri: ArtifactUri | None = Field(default=None, description="Select from this pool instead of the previous stage's output.")
    target_size: int | None = Field(
        default=None, ge=1, le=1_000_000_000, description="Records in the full SFT selection. Empty uses `targetFraction`."
    )
    target_fraction: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Share of the eligible pool selected when `targetSize` is empty. [RECON] 0.2: not the paper's ratio. The "
        "paper's '~20% of the data' compares its 165K with DeepSeek-R1-Distill's 800K; against its own 10M+ pool 165K is "
        "~1.6%. Set `targetSize` (165000 in the paper) for a fixed size. Default: 0.2.",
    )
    easy_share: float = Field(
        default=0.7, ge=0, le=1, description="Share of an early curriculum phase drawn from the easiest records ([SRC] '70% easy'). Default: 0.7."
    )
    group_levels: list[Literal["domain", "cluster"]] = Field(
        default_factory=lambda: ["domain", "cluster"],
        min_length=1,
        max_length=2,
        description="Diversity quota levels, outermost first: even quotas per domain, then per k-means cluster within it "
        "([SRC] domain-level and semantic-level sampling). Default: [domain, cluster].",
    )
    challenge_size: int = Field(
        default=10_000,
        ge=0,
        le=100_000_000,
        description="Prompts (not pairs) in the DPO challenge pool; 0 writes none. [RECON] The paper keeps 10K pairs "
        "(`prefs.pairs`) and gives no prompt count; a prompt the SFT model always solves yields no pair, so more prompts "
        "than pairs are needed to reach `prefs.pairs`. Default: 10000.",
    )
    strategy: Literal["infialign", "random"] = Field(
        default="infialign",
        description="`infialign`: difficulty, diversity quotas and an easy-heavy first phase ([SRC]). `random`: a seeded uniform "
        "sample of the eligible records of the same size and a uniform first phase — the baseline of the paper's ablation. "
        "Default: infialign.",
    )
    verification: VerificationSettings = Field(default_factory=VerificationSettings, description="Answer verification.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Tie-breaking seed. Default: 0.")
    ray: RayWorkers = Field(default_factory=RayWorkers, description="Scale out on Ray Data.")
    resources: Resources = Field(default_factory=Resources, description="Pod resources (CPU by default).")


# ---------------------------------------------------------------- sft


class DeepSpeedSettings(ApiModel):
    """DeepSpeed ZeRO settings; the stage writes the generated config next to its checkpoints."""

    mode: Literal["auto", "on", "off"] = Field(
        default="auto", description="`auto` uses DeepSpeed on GPUs and plain torch on CPU. Default: auto."
    )
    zero_stage: Literal[2, 3] = Field(default=3, description="ZeRO stage ([RECON] ZeRO-3 for 7B at 32K). Default: 3.")
    offload_optimizer: bool = Field(default=False, description="Offload optimizer state to CPU memory. Default: false.")
    offload_params: bool = Field(default=False, description="Offload parameters to CPU memory (ZeRO-3 only). Default: false.")
    gradient_clipping: float = Field(default=1.0, ge=0, le=1000, description="Gradient norm clipping. Default: 1.0.")


# With LoRA the SFT schedule changes: SkyThought's LoRA config (arXiv 2502.07374, "LLMs Can Easily Learn to Reason from
# Demonstrations: Structure, not content, is what matters"; research/seeds-algorithms.md §3.3) trains rank-64 adapters at
# LR 1e-4 for 3 epochs, where its full fine-tuning uses 1e-5. A phase that leaves `learningRate`/`epochs` unset gets these.
LORA_LEARNING_RATE = 1e-4
LORA_EPOCHS = 3.0


class LoraSettings(ApiModel):
    """LoRA through peft; merged weights are exported at the end ([SRC] 2502.07374: LoRA suffices)."""

    enabled: bool = Field(
        default=False,
        description="Default: false (full fine-tuning, as InfiAlign). In `sft`, turning it on also changes the default "
        "`learningRate` to 1e-4 and `epochs` to 3 of every phase that does not set them ([SRC] 2502.07374 LoRA recipe, "
        "'structure, not content'); `dpo` keeps its own defaults.",
    )
    rank: int = Field(default=64, ge=1, le=4096, description="LoRA rank ([SRC] SkyThought: 64). Default: 64.")
    alpha: int = Field(default=128, ge=1, le=16384, description="LoRA alpha (2×rank). Default: 128.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="LoRA dropout. Default: 0.")
    target_modules: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] = Field(
        default_factory=lambda: ["all-linear"], max_length=64, description="Modules to adapt. Default: all-linear."
    )


class RopeSettings(ApiModel):
    """How the student's rotary position embedding is set for training at `maxLength` (applied to the model config at
    load and kept in the exported model's config.json, so eval and vLLM use the same)."""

    scaling: Literal["auto", "none", "theta", "linear", "dynamic", "yarn"] = Field(
        default="auto",
        description="`auto`: when a phase's `maxLength` exceeds the model's `max_position_embeddings`, raise `rope_theta` "
        "to `theta` and the positions to `maxLength` (what `theta` does); otherwise leave the model as it is. `none`: "
        "never change it (training beyond the model's positions is then an error). `theta`: always set `rope_theta` "
        "(the 'adjusted base frequency' long-context recipe). `linear`, `dynamic`, `yarn`: transformers' RoPE scaling "
        "types with `factor`. Default: auto ([RECON]: InfiAlign does not say, research/seeds-algorithms.md "
        "§1.8; huggingface/open-r1 trains Qwen2.5-Math-7B at 32K as open-r1/Qwen2.5-Math-7B-RoPE-300k: rope_theta "
        "10000 → 300000, positions 4096 → 32768, weights unchanged).",
    )
    theta: float = Field(
        default=300_000.0,
        ge=1.0,
        le=1e9,
        description="`rope_theta` for `auto`/`theta`. Default: 300000 ([RECON] as open-r1/Qwen2.5-Math-7B-RoPE-300k).",
    )
    factor: float | None = Field(
        default=None,
        ge=1.0,
        le=1024.0,
        description="Scaling factor for `linear`/`dynamic`/`yarn`. Empty: the longest phase `maxLength` / the model's "
        "`max_position_embeddings` (at least 1).",
    )


class SftPhase(ApiModel):
    """One curriculum phase. Phases run in order; each starts from the previous phase's weights ([SRC-2] InfiR2)."""

    name: DnsLabel = Field(description="The phase's name; the step is `sft-<name>`.")
    fraction: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of the whole `select` output (`targetSize` rows) trained in this phase, on its own, not relative "
        "to other phases ([SRC-2] 72k of 165k ≈ 0.44 for phase 1). 1 trains the whole selection; below 1 trains an "
        "easy-heavy subset (`select.easyShare` of it from the easiest rows), and smaller phases are subsets of larger ones. "
        "Fractions [0.3, 1.0]: 30% of the selection, then all of it. [0.3, 0.5]: 30%, then 50%; the other half is selected "
        "but never trained (`infialign validate` warns). Default: 1.",
    )
    data_uri: ArtifactUri | None = Field(default=None, description="Train on this dataset instead of the `select` output.")
    epochs: float = Field(
        default=5, ge=1, le=1000,
        description="Epochs ([SRC-2] 5). Default: 5; 3 when `lora.enabled` and this is unset ([SRC] 2502.07374 LoRA recipe).",
    )
    learning_rate: float = Field(
        default=2e-5, gt=0, le=1,
        description="Peak learning rate ([SRC-2] 2e-5). Default: 2e-5; 1e-4 when `lora.enabled` and this is unset "
        "([SRC] 2502.07374 LoRA recipe: 'structure, not content').",
    )
    min_learning_rate: float = Field(default=2e-6, ge=0, le=1, description="Cosine floor ([SRC-2] 2e-6). Default: 2e-6.")
    lr_scheduler: Literal["cosine", "linear", "constant"] = Field(default="cosine", description="Schedule. Default: cosine.")
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1, description="Warm-up share of the steps ([SRC-2] 0.05). Default: 0.05.")
    global_batch_size: int = Field(
        default=64, ge=1, le=65536,
        description="Samples (conversations) per optimizer step over all GPUs, with or without packing, so the same data "
        "takes the same number of optimizer steps either way ([SRC-2] 64). With packing, each step's samples are packed "
        "into micro-batches of at most `microBatchSize` × `maxLength` tokens per GPU (dynamic batching; InfiR2: 32768 "
        "tokens per GPU). Default: 64.",
    )
    micro_batch_size: int = Field(
        default=1, ge=1, le=4096,
        description="Without packing: samples per GPU per forward pass. With packing: the per-GPU token budget of a forward "
        "pass in units of `maxLength` (1 = at most `maxLength` tokens of whole samples). Default: 1.",
    )
    max_length: int = Field(
        default=32768, ge=16, le=1_048_576,
        description="Tokens per sample (prompt + template + response); longer ones are dropped or cut and counted "
        "([SRC-2] 32k). Beyond the model's `max_position_embeddings` it needs `spec.stages.sft.rope`. Default: 32768.",
    )


def _default_phases() -> list[SftPhase]:
    return [SftPhase(name="phase1", fraction=0.44), SftPhase(name="phase2", fraction=1.0)]


class SftStage(ApiModel):
    """`sft`: two-phase curriculum SFT (TRL SFTTrainer + DeepSpeed, launched by torchrun)."""

    enabled: bool = Field(default=True, description="Run this stage. Default: true.")
    phases: list[SftPhase] = Field(
        default_factory=_default_phases, min_length=1, max_length=8, description="Curriculum phases in order ([SRC] easy, then full)."
    )
    packing: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="`auto` packs only with a varlen attention path (flash-attention, or segment-wise SDPA); otherwise "
        "padded batches. Packing never changes how many samples an optimizer step takes (`globalBatchSize`). Default: auto.",
    )
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = Field(
        default="auto", description="`auto`: flash_attention_2 on GPUs when installed, sdpa otherwise. Default: auto."
    )
    gradient_checkpointing: bool | None = Field(default=None, description="Empty: on for GPUs, off on CPU.")
    save_steps: int = Field(default=200, ge=1, le=1_000_000, description="Checkpoint interval in optimizer steps [RECON]. Default: 200.")
    keep_checkpoints: int = Field(default=2, ge=1, le=100, description="Checkpoints kept. Default: 2.")
    seed: int = Field(default=42, ge=0, le=2**31 - 1, description="Training seed. Default: 42.")
    rope: RopeSettings = Field(default_factory=RopeSettings, description="RoPE of the student for long-context training.")
    quick_eval: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="After each phase, greedy exact match on this many questions of the first benchmark (a health check, "
        "not the eval stage). 0 disables. Default: 0.",
    )
    quick_eval_max_tokens: int = Field(default=320, ge=16, le=32768, description="Generation budget of the quick check. Default: 320.")
    deepspeed: DeepSpeedSettings = Field(default_factory=DeepSpeedSettings, description="DeepSpeed ZeRO.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA.")
    resources: Resources = Field(default_factory=_gpu_resources, description="Pod resources (8 GPUs per node by default).")

    @model_validator(mode="after")
    def _lora_schedule(self) -> SftStage:
        # Resolved here, not in the trainer: the stage config is this model dumped in full, so the trainer would see
        # every field as set. Once resolved, the values are explicit and re-validating keeps them.
        if not self.lora.enabled:
            return self
        phases = [
            p.model_copy(update={k: v for k, v in (("learning_rate", LORA_LEARNING_RATE), ("epochs", LORA_EPOCHS)) if k not in p.model_fields_set})
            for p in self.phases
        ]
        object.__setattr__(self, "phases", phases)  # frozen model; still inside its own validation
        return self


# ---------------------------------------------------------------- prefs and dpo


class PrefsStage(ApiModel):
    """`prefs`: SFT-model errors vs verified expert answers → preference pairs ([SRC] 'pair SFT's fails with expert solutions')."""

    enabled: bool = Field(default=True, description="Run this stage. Default: true.")
    prompts_uri: ArtifactUri | None = Field(
        default=None, description="Use these challenge prompts (record schema, verified `response` and `answer`) instead of the `select` output."
    )
    samples: int = Field(default=8, ge=1, le=256, description="SFT samples per prompt [RECON]. Default: 8.")
    temperature: float = Field(default=0.7, ge=0, le=2, description="Sampling temperature [RECON]. Default: 0.7.")
    top_p: float = Field(default=0.95, gt=0, le=1, description="Nucleus sampling [RECON]. Default: 0.95.")
    max_tokens: int = Field(default=32768, ge=16, le=262144, description="Generation budget [RECON]. Default: 32768.")
    pairs: int = Field(default=10_000, ge=1, le=100_000_000, description="Pairs kept ([SRC] 10K). Default: 10000.")
    rejected: Literal["confident", "random"] = Field(
        default="confident", description="Which wrong sample becomes `rejected`: highest mean log-prob, or random [RECON]. Default: confident."
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Sampling and selection seed; each prompt's seed derives from it. Default: 0.")
    system_prompt: Annotated[str, StringConstraints(max_length=4096)] = Field(
        default="Please reason step by step, and put your final answer within \\boxed{}.",
        description="System prompt for the SFT model's samples; use the one SFT trained with [RECON, as eval's SRC-2 default]. Empty sends none.",
    )
    max_model_len: int | None = Field(
        default=None, ge=16, le=1_048_576, description="vLLM context length; must hold the prompt plus `maxTokens`. Empty: the model's own maximum."
    )
    tensor_parallel: int = Field(default=1, ge=1, le=16, description="GPUs per vLLM engine. Default: 1.")
    verification: VerificationSettings = Field(
        default_factory=VerificationSettings,
        description="How the SFT model's answers are checked against the reference (math-verify, code sandbox, LLM judge).",
    )
    max_pass_rate: float = Field(
        default=0.75,
        ge=0,
        le=1,
        description="Challenge selection: a prompt the model sometimes solves is kept only when its pass rate is at most this "
        "('wrong often but not always'; 0.75 = at least 2 of 8 samples wrong) [RECON]. Default: 0.75.",
    )
    include_all_wrong: bool = Field(
        default=True,
        description="Also pair prompts the model never solves, after the mixed ones (the paper pairs every prompt with a wrong "
        "sample) [RECON]. Default: true.",
    )
    decontaminate: bool = Field(
        default=True,
        description="Drop challenge prompts that overlap the SFT data or a benchmark with `decontaminate: true` (prompt 8-grams, "
        "fuzzy match; [SRC] 'Data Detox'). Default: true.",
    )
    shards: int = Field(default=1, ge=1, le=1024, description="Prompt shards = pods of the Indexed Job; shard 0 merges. Default: 1.")
    resources: Resources = Field(default_factory=_gpu_resources, description="Pod resources.")


DpoLossType = Literal[
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
    "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
]


class SageSettings(ApiModel):
    """SAGE stability-aware pair selection (arXiv 2602.01207). The paper's text was not available: every formula and
    default is a reconstruction (research/seeds-algorithms.md §2, each marked [RECON])."""

    enabled: bool = Field(default=False, description="Select pairs with SAGE; false trains uniform DPO on all pairs. Default: false.")
    stability_delta: float = Field(
        default=0.05, gt=0, le=10, description="δ' in score = σ(-u)²/(σ(u)σ(-u)+δ'); bounds the score at 1/δ' [RECON] §2.2. Default: 0.05."
    )
    boundary_tau: float = Field(
        default=0.1, ge=0, le=100, description="τ_b: a pair with |u| < τ_b sits on the decision boundary and is filtered as unstable [RECON] §2.3. Default: 0.1."
    )
    margin_tau: float = Field(
        default=2.0, ge=0, le=100, description="τ_m: a pair with u > τ_m is mastered and retired from the pool [RECON] §2.4. Default: 2.0."
    )
    competence: float = Field(
        default=0.7, gt=0, le=1, description="κ: admit the next tier when this share of the pool has u > 0 [RECON] §2.4. Default: 0.7."
    )
    refresh_steps: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="R: optimizer steps between pool refreshes, the first at step R (at step 0 every margin is 0). Empty: a third of "
        "an epoch, ceil(pairs / (3 × globalBatchSize)): 53 at the reconstruction's scale (10K pairs, batch 64, where §2.5 says 50), "
        "11 for 254 pairs of 8, where a fixed 50 is 1.6 epochs on one stale selection. A refresh scores the pool with forward "
        "passes (about a third of an epoch's training compute), so a third of an epoch roughly doubles a run's compute; raise R "
        "when compute matters more than steps (benchmarks/results/sage) [RECON] §2.4. Default: empty.",
    )
    select_fraction: float = Field(
        default=0.5, gt=0, le=1, description="ρ: share of the stable pool trained on until the next refresh, top by score [RECON] §2.4; never "
        "fewer pairs than one global batch (the least-mastered others fill it). Default: 0.5 (0.75 and 1 were tried and did not do better on the held-out curve; benchmarks/results/sage).",
    )
    tiers: int = Field(default=3, ge=1, le=16, description="K difficulty tiers [RECON] §2.4. Default: 3.")
    tier_pass_rates: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: [0.5, 0.125],
        max_length=15,
        description="Pass-rate bounds between tiers, descending (K-1 values): tier 1 has pass rate ≥ the first value. Pairs "
        "without a `difficulty` are split into K equal tiers by the length of `chosen` instead [RECON] §2.4. Default: [0.5, 0.125].",
    )
    explore_fraction: float = Field(
        default=0.1, ge=0, le=1, description="Share of each not-yet-admitted tier mixed into the pool from the start [RECON] §2.4. Default: 0.1."
    )
    ema_alpha: float = Field(default=0.5, gt=0, le=1, description="α of the margin's moving average over refreshes [RECON] §2.3. Default: 0.5.")
    flip_window: int = Field(default=3, ge=2, le=100, description="Refreshes looked back for sign flips [RECON] §2.3. Default: 3.")
    max_flips: int = Field(
        default=2, ge=1, le=99, description="A pair whose margin changed sign this many times within `flipWindow` refreshes is unstable [RECON] §2.3. Default: 2."
    )
    variance_quantile: float = Field(
        default=0.9, gt=0, le=1, description="Pairs whose margin variance over refreshes is above this quantile of all variances are unstable; 1 disables [RECON] §2.3. Default: 0.9."
    )
    length_normalised: bool = Field(
        default=True, description="Score with per-token log-ratios (long CoT responses differ in length up to 10×), rescaled by the mean response length so the thresholds keep the units of the summed margin; the loss stays summed [RECON] §2.2. Default: true."
    )
    sampling: Literal["top", "weighted"] = Field(
        default="top", description="`top`: the top-ρ pairs by score; `weighted`: ρ of the pool drawn without replacement with probability ∝ score^γ [RECON] §2.4. Default: top."
    )
    gamma: float = Field(default=1.0, gt=0, le=10, description="γ of `weighted` sampling [RECON] §2.4. Default: 1.")
    score_batch_size: int = Field(default=8, ge=1, le=4096, description="Pairs per scoring forward pass at a refresh (no gradients). Default: 8.")

    @model_validator(mode="after")
    def _bounds_per_tier(self) -> SageSettings:
        if len(self.tier_pass_rates) != self.tiers - 1:
            raise ValueError(
                f"tierPassRates has {len(self.tier_pass_rates)} values but tiers={self.tiers} needs {self.tiers - 1} "
                "(one bound between two neighbouring tiers); give tiers-1 descending pass rates"
            )
        if list(self.tier_pass_rates) != sorted(self.tier_pass_rates, reverse=True):
            raise ValueError(f"tierPassRates={self.tier_pass_rates} must be descending (tier 1 is the easiest: the highest pass rate)")
        if self.max_flips >= self.flip_window:
            raise ValueError(
                f"maxFlips={self.max_flips} must be below flipWindow={self.flip_window}: {self.flip_window} refreshes hold at most "
                f"{self.flip_window - 1} sign changes. Lower maxFlips or raise flipWindow."
            )
        return self


class DpoStage(ApiModel):
    """`dpo`: DPO from the last SFT phase's model (TRL DPOTrainer + DeepSpeed, launched by torchrun), with reference
    log-probs computed once and SAGE pair selection. Hyperparameters [RECON] (research/seeds-algorithms.md §1.9)."""

    enabled: bool = Field(default=True, description="Run this stage. Default: true.")
    pairs_uri: ArtifactUri | None = Field(default=None, description="Train on these pairs (pairs.py schema) instead of the `prefs` output.")
    beta: float = Field(default=0.1, gt=0, le=10, description="DPO β [RECON]. Default: 0.1.")
    loss_type: list[DpoLossType] = Field(
        default_factory=lambda: ["sigmoid"],
        min_length=1,
        max_length=8,
        description="TRL DPO losses, summed with `lossWeights`. `[sigmoid, sft]` is RPO (an NLL term on `chosen`). "
        "Default: [sigmoid] ([SRC] standard DPO).",
    )
    loss_weights: list[Annotated[float, Field(ge=0, le=1000)]] | None = Field(
        default=None, max_length=8, description="One weight per `lossType` entry. Empty: 1 each. RPO [RECON]: [1.0, 0.2]."
    )
    learning_rate: float = Field(default=5e-7, gt=0, le=1, description="Peak learning rate [RECON]. Default: 5e-7.")
    epochs: float = Field(default=2, gt=0, le=1000, description="Epochs [RECON]. Default: 2.")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1, description="Warm-up share [RECON]. Default: 0.1.")
    global_batch_size: int = Field(default=64, ge=1, le=65536, description="Pairs per optimizer step [RECON]. Default: 64.")
    micro_batch_size: int = Field(default=1, ge=1, le=4096, description="Pairs per device per forward. Default: 1.")
    max_length: int = Field(
        default=32768, ge=16, le=1_048_576, description="Tokens of prompt + response per pair member; longer ones are cut at the end. Default: 32768."
    )
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = Field(
        default="auto", description="`auto`: flash_attention_2 on GPUs when installed, sdpa otherwise. Default: auto."
    )
    gradient_checkpointing: bool | None = Field(default=None, description="Empty: on for GPUs, off on CPU.")
    save_steps: int = Field(default=200, ge=1, le=1_000_000, description="Checkpoint interval in optimizer steps [RECON]. Default: 200.")
    keep_checkpoints: int = Field(default=2, ge=1, le=100, description="Checkpoints kept. Default: 2.")
    seed: int = Field(default=42, ge=0, le=2**31 - 1, description="Training seed (data order, SAGE sampling). Default: 42.")
    sage: SageSettings = Field(default_factory=SageSettings, description="SAGE pair selection.")
    deepspeed: DeepSpeedSettings = Field(default_factory=DeepSpeedSettings, description="DeepSpeed ZeRO.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA.")
    resources: Resources = Field(default_factory=_gpu_resources, description="Pod resources.")

    @model_validator(mode="after")
    def _one_weight_per_loss(self) -> DpoStage:
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"lossWeights has {len(self.loss_weights)} values for {len(self.loss_type)} lossType entries {self.loss_type}; "
                "give one weight per loss or leave lossWeights empty"
            )
        if len(set(self.loss_type)) != len(self.loss_type):
            raise ValueError(f"lossType {self.loss_type} names a loss twice; list each loss once and weight it in lossWeights")
        return self


class EvalStage(ApiModel):
    """`eval`: every model the run produced × benchmarks → avg@k and pass@k (vLLM; [SRC-2] InfiR2 eval protocol)."""

    enabled: bool = Field(default=True, description="Run this stage. Default: true.")
    benchmarks: list[DnsLabel] | None = Field(
        default=None, max_length=64, description="Names from `spec.benchmarks` to evaluate on. Empty: every one with `evaluate: true`."
    )
    models: list[Literal["base", "sft", "dpo"]] = Field(
        default_factory=lambda: ["base", "sft", "dpo"],
        min_length=1,
        max_length=3,
        description="Which models to evaluate: `base`, `sft` (the model of every curriculum phase), `dpo`. Default: all three.",
    )
    temperature: float = Field(
        default=0.6, ge=0, le=2, description="Sampling temperature ([SRC] DeepSeek-R1 protocol 0.6; InfiR2 used 0.65). Default: 0.6."
    )
    top_p: float = Field(default=0.95, gt=0, le=1, description="Nucleus sampling ([SRC] DeepSeek-R1, [SRC-2] InfiR2: 0.95). Default: 0.95.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Sampling seed; each question's seed derives from it. Default: 0.")
    system_prompt: Annotated[str, StringConstraints(max_length=4096)] = Field(
        default="Please reason step by step, and put your final answer within \\boxed{}.",
        description="System prompt [SRC-2]. Empty sends none.",
    )
    max_model_len: int | None = Field(
        default=None, ge=16, le=1_048_576, description="vLLM context length. Empty: the model's own maximum."
    )
    tensor_parallel: int = Field(default=1, ge=1, le=16, description="GPUs per vLLM engine. Default: 1.")
    shards: int = Field(default=1, ge=1, le=1024, description="Question shards = pods of the Indexed Job; shard 0 merges and scores. Default: 1.")
    verification: VerificationSettings = Field(
        default_factory=VerificationSettings,
        description="How answers are checked (math-verify timeouts, the code sandbox's limits, the LLM judge for open answers).",
    )
    resources: Resources = Field(default_factory=lambda: Resources(gpusPerNode=1), description="Pod resources.")


class Stages(ApiModel):
    """The stages, in pipeline order. Each can be disabled; later stages then need an explicit input URI."""

    curate: CurateStage = Field(default_factory=CurateStage, description="Sources → candidate pool.")
    distill: DistillStage = Field(default_factory=DistillStage, description="Teacher chains of thought.")
    select: SelectStage = Field(default_factory=SelectStage, description="Pool → curriculum SFT sets and DPO prompts.")
    sft: SftStage = Field(default_factory=SftStage, description="Curriculum SFT.")
    prefs: PrefsStage = Field(default_factory=PrefsStage, description="Preference pairs.")
    dpo: DpoStage = Field(default_factory=DpoStage, description="DPO.")
    eval: EvalStage = Field(default_factory=EvalStage, description="Evaluation.")


# ---------------------------------------------------------------- storage, tracking, images, failures


class S3Storage(ApiModel):
    """Artifacts on MinIO or any S3 endpoint."""

    endpoint: Annotated[str, StringConstraints(max_length=512, pattern=r"^https?://\S+$")] | None = Field(
        default=None, description="The S3 endpoint, e.g. `http://minio.minio:9000`. Empty uses AWS."
    )
    bucket: Annotated[str, StringConstraints(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")] = Field(
        description="The bucket."
    )
    prefix: Annotated[str, StringConstraints(max_length=512, pattern=r"^[^\s]*$")] = Field(
        default="infialign", description="Key prefix; artifacts go under `<prefix>/<namespace>/<run>/<stage>/`. Default: infialign."
    )
    region: Annotated[str, StringConstraints(max_length=64)] = Field(default="us-east-1", description="Default: us-east-1.")
    secret_ref: S3SecretRef | None = Field(default=None, description="Credentials. Empty uses the pod's ambient identity.")


class LocalStorage(ApiModel):
    """Artifacts on a local or mounted path (laptops, a shared PVC)."""

    path: Annotated[str, StringConstraints(min_length=1, max_length=2048)] = Field(
        description="A directory; relative paths are relative to the work dir."
    )
    pvc_name: Annotated[str, StringConstraints(max_length=253)] | None = Field(
        default=None, description="In clusters: a ReadWriteMany PVC mounted at `path` in every pod."
    )


class Storage(ApiModel):
    """Where datasets and checkpoints go. Exactly one of `s3` and `local`."""

    s3: S3Storage | None = Field(default=None, description="S3 or MinIO.")
    local: LocalStorage | None = Field(default=None, description="A local or PVC path.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Storage:
        if (self.s3 is None) == (self.local is None):
            raise ValueError("set exactly one of `s3` and `local`")
        return self


def _default_storage() -> Storage:
    return Storage(local=LocalStorage(path="artifacts"))


class Tracking(ApiModel):
    """MLflow tracking: one parent run per AlignmentRun, one child run per stage attempt."""

    uri: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        default=None,
        description="MLflow tracking URI (`http://mlflow.infialign:5000`). Empty: the operator's default in clusters, "
        "a sqlite store under the work dir locally.",
    )
    experiment: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        default="infialign", description="Experiment name. Default: infialign."
    )
    secret_ref: SecretKeyRef | None = Field(default=None, description="A Secret key holding an MLflow token (`MLFLOW_TRACKING_TOKEN`).")
    artifacts_s3_endpoint: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        default=None,
        description="The S3 endpoint of this MLflow's artifact store, for an MLflow that does not proxy artifacts "
        "(no `--serve-artifacts`): stage pods upload there directly, as `MLFLOW_S3_ENDPOINT_URL`. Empty with `uri` set: "
        "artifacts go through the server (the chart's MLflow does that). Empty without `uri`: the operator's default.",
    )
    enabled: bool = Field(default=True, description="Set false to skip tracking. Default: true.")


class Images(ApiModel):
    """Default images per stage kind; a stage's `resources.image` overrides them."""

    pipeline: ImageRef = Field(default="ghcr.io/infialign/pipeline:0.1.0", description="CPU stages (curate, select).")
    trainer: ImageRef = Field(default="ghcr.io/infialign/trainer:0.1.0", description="Training stages (sft, dpo).")
    vllm: ImageRef = Field(default="ghcr.io/infialign/vllm:0.1.0", description="Generation stages (distill, prefs, eval).")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(default="IfNotPresent", description="Default: IfNotPresent.")


class FailurePolicy(ApiModel):
    """How failures are retried. Infrastructure disruptions do not use up `maxRestartsPerStage`."""

    max_restarts_per_stage: int = Field(default=3, ge=0, le=100, description="Application failures and hangs retried per stage. Default: 3.")
    max_infra_restarts: int = Field(default=20, ge=0, le=1000, description="Cap on disruption restarts per stage (a guard against loops). Default: 20.")
    fatal_exit_codes: list[Annotated[int, Field(ge=1, le=255)]] = Field(
        default_factory=lambda: [2], max_length=32, description="Exit codes that fail the run at once (2: bad config). Default: [2]."
    )
    startup_timeout_seconds: int = Field(
        default=900,
        ge=10,
        le=86400,
        description="How long a start error that cannot heal by waiting (an image that does not exist, an invalid image "
        "name, a missing Secret or ConfigMap key) is tolerated before the run fails permanently; time to push the image "
        "or create the Secret. Plain waiting (queued, unschedulable, slow pulls) never counts. Default: 900 (reconstruction).",
    )
    waiting_timeout_seconds: int | None = Field(
        default=None,
        ge=60,
        le=2592000,
        description="Optional deadline for one wait of a step's pods: in Kueue's queue, unschedulable until the autoscaler "
        "adds a node, under a ResourceQuota, or pulling a large image. Past it the run fails with `WaitingTimeout`. "
        "Empty (default): wait as long as it takes; the `Waiting` condition says why.",
    )
    stall_timeout_seconds: int = Field(
        default=1800,
        ge=60,
        le=604800,
        description="No new heartbeat for this long, after one of the current attempt was read, is a hang: kill and restart. "
        "Before the first heartbeat, or while the operator cannot read the store, the condition `HeartbeatUnavailable` "
        "says so and nothing is killed. Stage pods beat every min(30, stallTimeoutSeconds/4) s, but a stage can be busy "
        "between beats (sft's first gap is about 40 s), so the minimum is 60. Default: 1800.",
    )
    backoff_seconds: int = Field(default=30, ge=0, le=86400, description="First retry delay; doubles per failure. Default: 30.")
    max_backoff_seconds: int = Field(default=900, ge=0, le=86400, description="Retry delay cap. Default: 900.")


class AlignmentRunSpec(ApiModel):
    """An InfiAlign run: curate → distill → select → curriculum SFT → prefs → DPO → eval."""

    model: ModelSource = Field(
        description="The student base model ([SRC] Qwen2.5-Math-7B). Immutable.",
    )
    teacher: ModelSource | None = Field(
        default=None, description="The teacher for `distill` and expert answers in `prefs` ([SRC] DeepSeek-R1 / Qwen family)."
    )
    sources: list[DataSource] = Field(default_factory=list, max_length=64, description="Input datasets of `curate`.")
    benchmarks: list[Benchmark] = Field(default_factory=list, max_length=64, description="Benchmarks for decontamination and evaluation.")
    stages: Stages = Field(default_factory=Stages, description="Stage settings.")
    storage: Storage = Field(default_factory=_default_storage, description="Artifact storage. Default: local path `artifacts`.")
    tracking: Tracking = Field(default_factory=Tracking, description="MLflow tracking.")
    images: Images = Field(default_factory=Images, description="Container images.")
    failure_policy: FailurePolicy = Field(default_factory=FailurePolicy, description="Retries and timeouts.")
    service_account_name: Annotated[str, StringConstraints(max_length=253)] | None = Field(
        default=None, description="Service account of the stage pods (not the operator's). Empty uses the namespace default."
    )
    suspend: bool = Field(default=False, description="Stop the running stage and hold the run; set false to resume. Default: false.")
    pod_template_override: PodTemplateOverride | None = Field(
        default=None, description="Additions to every stage's pods (GPU fabrics, Multus, Kueue topology, pull secrets); a stage's "
        "`resources.podTemplateOverride` is merged over it."
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=60,
        le=31_536_000,
        description="Optional deadline for the whole run, counted from its first step's start (time queued, backing off or "
        "suspended counts too). Past it the running step is stopped and the run fails with reason `DeadlineExceeded`. "
        "Empty (default): no deadline.",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=604_800,
        ge=60,
        le=31_536_000,
        description="`ttlSecondsAfterFinished` of every stage Job: Kubernetes deletes a finished Job and its pods (and their "
        "logs) this long after it ended. The run and its status stay. Default: 604800 (a week, time to read a failed "
        "pod's logs after a weekend; reconstruction). Empty: never deleted (until the run is).",
    )

    def pod_override(self, stage: str) -> PodTemplateOverride | None:
        """The stage's `podTemplateOverride` merged over the run-wide one; None when neither is set."""
        own: PodTemplateOverride | None = getattr(self.stages, stage).resources.pod_template_override
        return own.merged_over(self.pod_template_override) if own is not None else self.pod_template_override
