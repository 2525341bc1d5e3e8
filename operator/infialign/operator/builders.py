"""Pure builders: (spec, run, step, attempt, stage.json) → the Kubernetes objects of one step attempt.

One attempt is a ConfigMap `<job>-config` with `stage.json`, a headless Service `<job>` when the step
is a multi-node torchrun group, and a `batch/v1` Job `<job>` (Indexed when it has several pods).
Nothing here talks to a cluster (house rule 8); `build_children` returns them in create order.

Every pod runs `infialign stage <step> --config /etc/infialign/stage.json`. Training pods also get the
`PET_*` environment that torchrun reads (kubeflow/trainer: pkg/runtime/framework/plugins/torch), so
the stage can start its workers with torchrun semantics and a static rendezvous on rank 0.
"""

from __future__ import annotations

from typing import Any, Final

from infialign.operator import podtemplate
from infialign.pipeline import graph, planner
from infialign.pipeline.api import API_VERSION, GROUP, KIND, AlignmentRunSpec, Resources
from infialign.pipeline.runtime.config import RunIdentity, StageConfig

__all__ = [
    "LABEL_RUN",
    "LABEL_STAGE",
    "LABEL_ATTEMPT",
    "LABEL_MANAGED_BY",
    "MANAGED_BY",
    "KUEUE_QUEUE_LABEL",
    "CONTAINER_NAME",
    "CONFIG_DIR",
    "CONFIG_FILE",
    "MASTER_PORT",
    "heartbeat_seconds",
    "TRAINING_STAGES",
    "GENERATION_STAGES",
    "ChildSpecError",
    "pod_count",
    "needs_service",
    "child_labels",
    "config_map_name",
    "build_configmap",
    "build_service",
    "build_job",
    "build_children",
]

LABEL_RUN: Final = f"{GROUP}/run"
LABEL_STAGE: Final = f"{GROUP}/stage"  # the step name: `curate`, `sft-phase1`
LABEL_ATTEMPT: Final = f"{GROUP}/attempt"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "infialign"
KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
COMPLETION_INDEX_ANNOTATION: Final = "batch.kubernetes.io/job-completion-index"

CONTAINER_NAME: Final = "stage"
CONFIG_DIR: Final = "/etc/infialign"
CONFIG_FILE: Final = "stage.json"
SCRATCH_DIR: Final = "/scratch"
CACHE_DIR: Final = f"{SCRATCH_DIR}/cache"
# Without these, libraries cache under $HOME on the container's writable layer, which is neither sized nor
# counted against the pod's request: a 60 GB teacher download then evicts the pod, or the node's other pods.
_CACHE_ENV: Final = (
    ("HF_HOME", f"{CACHE_DIR}/huggingface"),
    ("XDG_CACHE_HOME", CACHE_DIR),
    ("INFIALIGN_CACHE", f"{CACHE_DIR}/infialign"),
    ("VLLM_CACHE_ROOT", f"{CACHE_DIR}/vllm"),
    ("TRITON_CACHE_DIR", f"{CACHE_DIR}/triton"),
    ("TORCHINDUCTOR_CACHE_DIR", f"{CACHE_DIR}/inductor"),
    ("TORCH_EXTENSIONS_DIR", f"{CACHE_DIR}/torch_extensions"),
)
# Model weights dominate: a 7B student is ~15 GB, a 32B teacher ~65 GB, plus checkpoints staged for upload.
_DEFAULT_SCRATCH_GPU: Final = "200Gi"
_DEFAULT_SCRATCH_CPU: Final = "20Gi"
WORKSPACE_DIR: Final = "/workspace"  # relative local artifact paths resolve here in pods
MAX_HEARTBEAT_SECONDS: Final = 30  # the stages' own default interval
MASTER_PORT: Final = 29500  # torchrun's default; the same in Trainer v2 and training-operator

TRAINING_STAGES: Final = frozenset({"sft", "dpo"})  # one torchrun group across `numNodes` pods
GENERATION_STAGES: Final = frozenset({"distill", "prefs", "eval"})  # `shards` independent pods

# Knobs every GPU pod gets unless the user's `env` sets them: quiet NCCL, and async error handling so a
# failed collective kills the process instead of hanging it (the hang detector is the last resort).
_GPU_DEFAULT_ENV: Final = (("NCCL_DEBUG", "WARN"), ("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1"))
# Names the operator derives from the spec; a user `env` entry with one of them is dropped, because the
# stage contract (rank wiring, identity, credentials) must not be overridable per stage.
_RESERVED_PREFIXES: Final = ("PET_", "INFIALIGN_")
_MAX_NAME: Final = 63
_MAX_INDEXED_HOSTNAME_SUFFIX: Final = 4  # `-<index>` of Indexed Job pod hostnames, up to 999 pods


class ChildSpecError(ValueError):
    """The spec cannot be turned into valid objects (e.g. a name over 63 characters): permanent."""


# ---------------------------------------------------------------- shape of a step


def _step(spec: AlignmentRunSpec, step_name: str) -> graph.Step:
    for s in graph.pipeline_steps(spec):
        if s.name == step_name:
            return s
    raise ChildSpecError(f"unknown step {step_name!r}")


def _resources(spec: AlignmentRunSpec, step: graph.Step) -> Resources:
    resources: Resources = getattr(spec.stages, step.stage).resources
    return resources


def pod_count(spec: AlignmentRunSpec, step_name: str) -> int:
    """Pods of one attempt: `numNodes` for training, `shards` for generation, 1 for CPU stages."""
    step = _step(spec, step_name)
    if step.stage in TRAINING_STAGES:
        return _resources(spec, step).num_nodes
    if step.stage in GENERATION_STAGES:
        return int(getattr(spec.stages, step.stage).shards)
    return 1


def needs_service(spec: AlignmentRunSpec, step_name: str) -> bool:
    """Only a multi-node training group needs stable pod DNS names (rank 0 is the rendezvous)."""
    step = _step(spec, step_name)
    return step.stage in TRAINING_STAGES and pod_count(spec, step_name) > 1


# ---------------------------------------------------------------- metadata


def child_labels(run: RunIdentity, step_name: str, attempt: int) -> dict[str, str]:
    return {
        LABEL_RUN: run.name,
        LABEL_STAGE: step_name,
        LABEL_ATTEMPT: str(attempt),
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def _selector_labels(run: RunIdentity, step_name: str, attempt: int) -> dict[str, str]:
    labels = child_labels(run, step_name, attempt)
    del labels[LABEL_MANAGED_BY]
    return labels


def _owner_references(run: RunIdentity) -> list[dict[str, Any]]:
    if not run.uid:  # only pure unit tests build objects for a run that has no uid yet
        return []
    return [{"apiVersion": API_VERSION, "kind": KIND, "name": run.name, "uid": run.uid, "controller": True, "blockOwnerDeletion": True}]


def _metadata(
    name: str, run: RunIdentity, step_name: str, attempt: int, component: str, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    labels = {
        **child_labels(run, step_name, attempt),
        "app.kubernetes.io/name": "infialign",
        "app.kubernetes.io/component": component,
        **(extra or {}),
    }
    meta: dict[str, Any] = {"name": name, "namespace": run.namespace, "labels": labels}
    owners = _owner_references(run)
    if owners:
        meta["ownerReferences"] = owners
    return meta


def _job_name(run: RunIdentity, step_name: str, attempt: int, pods: int) -> str:
    name = planner.job_name(run.name, step_name, attempt)
    limit = _MAX_NAME - (_MAX_INDEXED_HOSTNAME_SUFFIX if pods > 1 else 0)
    if len(name) > limit:
        raise ChildSpecError(
            f"the Job name {name!r} has {len(name)} characters, more than {limit}: "
            f"shorten metadata.name or the step name {step_name!r} (sft phase names)"
        )
    return name


def config_map_name(job: str) -> str:
    return f"{job}-config"


# ---------------------------------------------------------------- ConfigMap and Service


def build_configmap(spec: AlignmentRunSpec, run: RunIdentity, step_name: str, attempt: int, stage_config: StageConfig) -> dict[str, Any]:
    """`<job>-config` with `stage.json`; immutable, so kubelets need not watch it."""
    job = _job_name(run, step_name, attempt, pod_count(spec, step_name))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(config_map_name(job), run, step_name, attempt, _step(spec, step_name).stage),
        "immutable": True,
        "data": {CONFIG_FILE: stage_config.model_dump_json(indent=2)},
    }


def build_service(spec: AlignmentRunSpec, run: RunIdentity, step_name: str, attempt: int, stage_config: StageConfig) -> dict[str, Any]:
    """The headless Service named after the Job: pod `i` resolves as `<job>-i.<job>` before it is ready."""
    del stage_config  # the Service depends on identity only; same signature as its siblings
    job = _job_name(run, step_name, attempt, pod_count(spec, step_name))
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(job, run, step_name, attempt, _step(spec, step_name).stage),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # ranks must find rank 0 before any readiness (JobSet's default)
            "selector": _selector_labels(run, step_name, attempt),
            "ports": [{"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT, "protocol": "TCP"}],
        },
    }


# ---------------------------------------------------------------- environment


def _value(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _index_env(name: str, pods: int) -> dict[str, Any]:
    # Indexed Jobs annotate each pod with its completion index; a one-pod Job has no index annotation.
    if pods > 1:
        return _field(name, f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']")
    return _value(name, "0")


def _reserved_env(
    spec: AlignmentRunSpec, run: RunIdentity, step: graph.Step, attempt: int, config: StageConfig, job: str, pods: int
) -> list[dict[str, Any]]:
    resources = _resources(spec, step)
    env = [
        _value("INFIALIGN_RUN", run.name),
        _value("INFIALIGN_NAMESPACE", run.namespace),
        _value("INFIALIGN_STEP", step.name),
        _value("INFIALIGN_ATTEMPT", str(attempt)),
        _value("INFIALIGN_SCRATCH", SCRATCH_DIR),
        _value("INFIALIGN_HEARTBEAT_SECONDS", str(heartbeat_seconds(spec))),
        _value("PYTHONUNBUFFERED", "1"),  # `kubectl logs` shows lines as they are written
    ]
    if step.stage in GENERATION_STAGES:
        env += [_index_env("INFIALIGN_SHARD_INDEX", pods), _value("INFIALIGN_SHARD_COUNT", str(pods))]
    if step.stage in TRAINING_STAGES:
        master = f"{job}-0.{job}" if pods > 1 else "127.0.0.1"
        env += [
            _value("PET_NNODES", str(pods)),
            _value("PET_NPROC_PER_NODE", str(resources.gpus_per_node or 1)),
            _index_env("PET_NODE_RANK", pods),
            _value("PET_MASTER_ADDR", master),
            _value("PET_MASTER_PORT", str(MASTER_PORT)),
        ]
    s3 = spec.storage.s3
    if s3 is not None:
        if s3.secret_ref is not None:
            env += [
                _secret("AWS_ACCESS_KEY_ID", s3.secret_ref.name, s3.secret_ref.access_key_id_key),
                _secret("AWS_SECRET_ACCESS_KEY", s3.secret_ref.name, s3.secret_ref.secret_access_key_key),
            ]
        if s3.endpoint:
            env.append(_value("AWS_ENDPOINT_URL", s3.endpoint))
        env.append(_value("AWS_DEFAULT_REGION", s3.region))
    token = _hub_token(spec, step.stage)
    if token is not None:
        env.append(_secret("HF_TOKEN", token[0], token[1]))
    if config.tracking.enabled and config.tracking.uri:
        env.append(_value("MLFLOW_TRACKING_URI", config.tracking.uri))
        if spec.tracking.secret_ref is not None:
            env.append(_secret("MLFLOW_TRACKING_TOKEN", spec.tracking.secret_ref.name, spec.tracking.secret_ref.key))
        if config.tracking.artifacts_s3_endpoint:
            env.append(_value("MLFLOW_S3_ENDPOINT_URL", config.tracking.artifacts_s3_endpoint))
    return env


def heartbeat_seconds(spec: AlignmentRunSpec) -> int:
    """How often a stage rewrites `progress.json`: four times per stall timeout, at most every 30 s (the
    stages' default), so a healthy stage never looks silent for a whole `stallTimeoutSeconds`."""
    return max(1, min(MAX_HEARTBEAT_SECONDS, spec.failure_policy.stall_timeout_seconds // 4))


def _hub_token(spec: AlignmentRunSpec, stage: str) -> tuple[str, str] | None:
    """One `HF_TOKEN` per pod: the teacher's where the teacher is loaded (distill, prefs), else the student's."""
    model = spec.model.secret_ref
    teacher = spec.teacher.secret_ref if spec.teacher is not None else None
    chosen = (teacher or model) if stage in ("distill", "prefs") else (model or teacher)
    return (chosen.name, chosen.key) if chosen is not None else None


def _user_env(resources: Resources) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in resources.env or []:
        if item.secret_key_ref is not None:
            out.append(_secret(item.name, item.secret_key_ref.name, item.secret_key_ref.key))
        else:
            out.append(_value(item.name, item.value or ""))
    return out


def _environment(
    spec: AlignmentRunSpec, run: RunIdentity, step: graph.Step, attempt: int, config: StageConfig, job: str, pods: int
) -> list[dict[str, Any]]:
    reserved = _reserved_env(spec, run, step, attempt, config, job, pods)
    taken = {e["name"] for e in reserved}
    user = [e for e in _user_env(_resources(spec, step)) if e["name"] not in taken and not e["name"].startswith(_RESERVED_PREFIXES)]
    overridden = {e["name"] for e in user}
    defaults = [_value(n, v) for n, v in _CACHE_ENV if n not in overridden]  # a user may point a cache at a PVC
    if _resources(spec, step).gpus_per_node > 0 or step.stage in TRAINING_STAGES:
        defaults += [_value(n, v) for n, v in _GPU_DEFAULT_ENV if n not in overridden]
    return reserved + defaults + user


def scratch_size(resources: Resources) -> str:
    """The `/scratch` size of a stage's pods: the user's, else a default by pod kind."""
    if resources.scratch_size:
        return resources.scratch_size
    return _DEFAULT_SCRATCH_GPU if resources.gpus_per_node > 0 else _DEFAULT_SCRATCH_CPU


# ---------------------------------------------------------------- pod template and Job


def _container_resources(resources: Resources) -> dict[str, Any]:
    quantities: dict[str, str] = {}
    if resources.cpu:
        quantities["cpu"] = resources.cpu
    if resources.memory:
        quantities["memory"] = resources.memory
    if resources.gpus_per_node > 0:
        quantities["nvidia.com/gpu"] = str(resources.gpus_per_node)
    # requests = limits: a training group is only as fast as its slowest pod, so no overcommit
    out: dict[str, Any] = {"requests": dict(quantities), "limits": dict(quantities)} if quantities else {"requests": {}}
    # Requested, not limited: the scheduler then picks a node with room for the scratch disk, and the
    # emptyDir's sizeLimit bounds it; a limit would also count logs and the image layer, and evict for those.
    out["requests"]["ephemeral-storage"] = scratch_size(resources)
    return out


def _volumes(spec: AlignmentRunSpec, step: graph.Step, job: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    resources = _resources(spec, step)
    volumes: list[dict[str, Any]] = [
        {
            "name": "config",
            "configMap": {"name": config_map_name(job), "items": [{"key": CONFIG_FILE, "path": CONFIG_FILE}], "defaultMode": 0o444},
        },
        {"name": "scratch", "emptyDir": {"sizeLimit": scratch_size(resources)}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "scratch", "mountPath": SCRATCH_DIR},
    ]
    if resources.gpus_per_node > 0 or step.stage in TRAINING_STAGES:
        # NCCL and dataloader workers exchange tensors through /dev/shm; the runtime default is 64Mi
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": resources.shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    working_dir: str | None = None
    local = spec.storage.local
    if local is not None and local.pvc_name:
        path = local.path if local.path.startswith("/") else f"{WORKSPACE_DIR}/{local.path}"
        volumes.append({"name": "artifacts", "persistentVolumeClaim": {"claimName": local.pvc_name}})
        mounts.append({"name": "artifacts", "mountPath": path})
        if not local.path.startswith("/"):
            working_dir = WORKSPACE_DIR
    return volumes, mounts, working_dir


def _pod_spec(
    spec: AlignmentRunSpec, run: RunIdentity, step: graph.Step, attempt: int, config: StageConfig, job: str, pods: int
) -> dict[str, Any]:
    resources = _resources(spec, step)
    volumes, mounts, working_dir = _volumes(spec, step, job)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": config.image or spec.images.pipeline,
        "imagePullPolicy": spec.images.pull_policy,
        "command": ["infialign", "stage", step.name, "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "env": _environment(spec, run, step, attempt, config, job, pods),
        "volumeMounts": mounts,
        # the stage writes a JSON summary there; when it could not, the log tail explains the failure
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
        },
    }
    if step.stage in TRAINING_STAGES:
        container["ports"] = [{"name": "rendezvous", "containerPort": MASTER_PORT, "protocol": "TCP"}]
    container["resources"] = _container_resources(resources)
    if working_dir:
        container["workingDir"] = working_dir
    pod: dict[str, Any] = {
        "restartPolicy": "Never",  # the planner restarts the whole step; pods are never restarted in place
        # a stage talks to storage and MLflow, never to the Kubernetes API: no token in the pod, and no
        # `<SVC>_SERVICE_HOST` variables for every Service of the namespace in its environment
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": volumes,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if needs_service(spec, step.name):
        pod["subdomain"] = job
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    if resources.node_selector:
        pod["nodeSelector"] = dict(resources.node_selector)
    if resources.tolerations:
        pod["tolerations"] = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in resources.tolerations]
    if resources.affinity:
        pod["affinity"] = dict(resources.affinity)
    if resources.priority_class_name:
        pod["priorityClassName"] = resources.priority_class_name
    return pod


def _pod_failure_policy(spec: AlignmentRunSpec) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        # a disruption (preemption, eviction, drain, node lost) fails the Job with a recognisable message
        {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
    fatal = sorted(set(spec.failure_policy.fatal_exit_codes))
    if fatal:
        rules.append({"action": "FailJob", "onExitCodes": {"containerName": CONTAINER_NAME, "operator": "In", "values": fatal}})
    return {"rules": rules}


def build_job(spec: AlignmentRunSpec, run: RunIdentity, step_name: str, attempt: int, stage_config: StageConfig) -> dict[str, Any]:
    """The Job of one attempt. `backoffLimit: 0`: any failed pod fails the Job, and the planner decides."""
    step = _step(spec, step_name)
    pods = pod_count(spec, step_name)
    job = _job_name(run, step_name, attempt, pods)
    resources = _resources(spec, step)
    extra_labels = {KUEUE_QUEUE_LABEL: resources.queue_name} if resources.queue_name else {}
    template_labels = {
        **child_labels(run, step_name, attempt),
        "app.kubernetes.io/name": "infialign",
        "app.kubernetes.io/component": step.stage,
    }
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "completions": pods,
        "parallelism": pods,
        "podFailurePolicy": _pod_failure_policy(spec),
        "template": podtemplate.apply_override(
            {"metadata": {"labels": template_labels}, "spec": _pod_spec(spec, run, step, attempt, stage_config, job, pods)},
            spec.pod_override(step.stage),
            CONTAINER_NAME,
        ),
    }
    if spec.ttl_seconds_after_finished is not None:
        # the Job controller's TTL: finished Jobs and their pods go; the outcome is already in the run's status
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    if pods > 1:
        job_spec["completionMode"] = "Indexed"
    if resources.queue_name:
        # Kueue admits the whole group at once by unsuspending the Job; the operator never unsuspends it
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(job, run, step_name, attempt, step.stage, extra_labels),
        "spec": job_spec,
    }


def build_children(
    spec: AlignmentRunSpec, run: RunIdentity, step_name: str, attempt: int, stage_config: StageConfig
) -> list[dict[str, Any]]:
    """Every object of one attempt, in create order: the Job last, so its pods find what they mount."""
    children = [build_configmap(spec, run, step_name, attempt, stage_config)]
    if needs_service(spec, step_name):
        children.append(build_service(spec, run, step_name, attempt, stage_config))
    children.append(build_job(spec, run, step_name, attempt, stage_config))
    return children
