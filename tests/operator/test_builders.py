"""Builders: golden YAML per case, and every object valid against the real Kubernetes OpenAPI schema (strict).

Regenerate the golden files after an intended change with `INFIALIGN_UPDATE_GOLDEN=1 pytest tests/operator/test_builders.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from infialign.operator import builders
from infialign.pipeline.api import AlignmentRun
from infialign.pipeline.runtime.config import RunIdentity, TrackingConfig, artifacts_root, build_stage_config

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
K8S_VERSIONS = ("1.30.0", "1.32.0")  # podFailurePolicy is GA from 1.31 and beta (on by default) in 1.30
UID = "6f9619ff-8b86-d011-b42d-00c04fc964ff"


def _qwen() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "manifests" / "examples" / "qwen-7b-infialign.yaml").read_text())


def _objects(doc: dict[str, Any], step: str, attempt: int, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    run = AlignmentRun.model_validate(doc)
    identity = RunIdentity(namespace=run.metadata.namespace, name=run.metadata.name, uid=UID)
    tracking = TrackingConfig(enabled=tracking_uri is not None, uri=tracking_uri, experiment_id="3", parent_run_id="0123abcd")
    config = build_stage_config(run.spec, identity, step, attempt, artifacts_root(run.spec), tracking)
    return builders.build_children(run.spec, identity, step, attempt, config)


def _case_curate(make_run: Any) -> list[dict[str, Any]]:
    return _objects(make_run().stage("curate", resources={"cpu": "4", "memory": "16Gi"}).dict(), "curate", 1)


def _case_sft_multinode(make_run: Any) -> list[dict[str, Any]]:
    return _objects(_qwen(), "sft-phase1", 2, tracking_uri="http://mlflow.infialign:5000")


def _case_distill_shards(make_run: Any) -> list[dict[str, Any]]:
    return _objects(_qwen(), "distill", 1, tracking_uri="http://mlflow.infialign:5000")


def _case_select_on_pvc(make_run: Any) -> list[dict[str, Any]]:
    doc = (
        make_run()
        .set("spec.storage", {"local": {"path": "artifacts", "pvcName": "shared-rwx"}})
        .set("spec.serviceAccountName", "trainer")
        .dict()
    )
    return _objects(doc, "select", 3)


_FABRIC = {
    # run-wide: every stage pulls from a private registry and opts out of the Istio sidecar
    "run": {"imagePullSecrets": ["registry-creds"], "labels": {"sidecar.istio.io/inject": "false"}},
    # sft: RDMA over a Multus network, Kueue topology-aware placement, a dataset cache, pinned memory, host networking
    "sft": {
        "extraResources": {"rdma/hca_shared_devices_a": 1, "vpc.amazonaws.com/efa": 4},
        "annotations": {
            "k8s.v1.cni.cncf.io/networks": "rdma-net",
            "kueue.x-k8s.io/podset-required-topology": "cloud.provider.com/topology-block",
        },
        "labels": {"team": "alignment"},
        "volumes": [
            {"name": "datasets", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}},
            {"name": "nccl-topo", "configMap": {"name": "nccl-topology"}},
        ],
        "volumeMounts": [{"name": "datasets", "mountPath": "/datasets", "readOnly": True}, {"name": "nccl-topo", "mountPath": "/etc/nccl"}],
        "capabilities": ["IPC_LOCK"],
        "hostNetwork": True,
    },
}


def _case_sft_fabric(make_run: Any) -> list[dict[str, Any]]:
    doc = _qwen()
    doc["spec"]["podTemplateOverride"] = _FABRIC["run"]
    doc["spec"]["stages"]["sft"]["resources"]["podTemplateOverride"] = _FABRIC["sft"]
    return _objects(doc, "sft-phase1", 1)


CASES = {
    "sft-fabric-override": _case_sft_fabric,
    "curate-cpu": _case_curate,
    "sft-multinode-kueue": _case_sft_multinode,
    "distill-shards": _case_distill_shards,
    "select-on-pvc": _case_select_on_pvc,
}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (stage.json) as literal blocks, so a golden diff reads like the file."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _str)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, make_run: Any) -> None:
    objects = CASES[case](make_run)
    # stage.json is the runtime's contract (tested with it); the golden pins what the builders add around it
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            config = json.loads(obj["data"]["stage.json"])
            obj["data"]["stage.json"] = f"<stage.json of step {config['step']}, attempt {config['attempt']}>"
    text = yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, width=160)
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("INFIALIGN_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run with INFIALIGN_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{case} drifted from {path}; if intended, regenerate with INFIALIGN_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_is_valid_kubernetes(case: str, version: str, make_run: Any) -> None:
    for obj in CASES[case](make_run):
        kubernetes_validate.validate(obj, version, strict=True)


def test_create_order_and_shape_of_a_multi_node_step(make_run: Any) -> None:
    configmap, service, job = _case_sft_multinode(make_run)
    assert [o["kind"] for o in (configmap, service, job)] == ["ConfigMap", "Service", "Job"]
    name = "qwen-7b-infialign-sft-phase1-a2"
    assert (configmap["metadata"]["name"], service["metadata"]["name"], job["metadata"]["name"]) == (f"{name}-config", name, name)
    for obj in (configmap, service, job):
        labels = obj["metadata"]["labels"]
        assert labels["infialign.dev/run"] == "qwen-7b-infialign" and labels["infialign.dev/stage"] == "sft-phase1"
        assert labels["infialign.dev/attempt"] == "2" and labels["app.kubernetes.io/managed-by"] == "infialign"
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "infialign.dev/v1alpha1",
            "kind": "AlignmentRun",
            "name": "qwen-7b-infialign",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-training" and job["spec"]["suspend"] is True
    assert "kueue.x-k8s.io/queue-name" not in job["spec"]["template"]["metadata"]["labels"]
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert rules[1]["onExitCodes"] == {"containerName": "stage", "operator": "In", "values": [2]}
    stage = yaml.safe_load(configmap["data"]["stage.json"])
    assert (stage["step"], stage["attempt"], stage["tracking"]["parent_run_id"]) == ("sft-phase1", 2, "0123abcd")


def test_secrets_only_by_reference_and_pod_hardening(make_run: Any) -> None:
    _, _, job = _case_sft_multinode(make_run)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name, secret in (
        ("AWS_ACCESS_KEY_ID", "minio-credentials"),
        ("AWS_SECRET_ACCESS_KEY", "minio-credentials"),
        ("HF_TOKEN", "hf-token"),
    ):
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"] == secret
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError" and pod["restartPolicy"] == "Never"
    assert container["command"] == ["infialign", "stage", "sft-phase1", "--config", "/etc/infialign/stage.json"]
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.infialign:5000"
    assert "HF_HUB_OFFLINE" not in env


def test_cpu_step_has_no_gpu_no_shm_no_torchrun_env(make_run: Any) -> None:
    _, job = _case_curate(make_run)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi", "ephemeral-storage": "20Gi"},
        "limits": {"cpu": "4", "memory": "16Gi"},
    }
    assert not any(e["name"].startswith(("PET_", "NCCL_")) for e in container["env"])
    assert [v["name"] for v in job["spec"]["template"]["spec"]["volumes"]] == ["config", "scratch"]
    assert "completionMode" not in job["spec"] and "suspend" not in job["spec"] and "subdomain" not in job["spec"]["template"]["spec"]


def test_generation_shards_are_an_indexed_job_without_a_service(make_run: Any) -> None:
    objects = _case_distill_shards(make_run)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Job"]
    job = objects[-1]
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 8, 8)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["INFIALIGN_SHARD_COUNT"]["value"] == "8"
    assert (
        env["INFIALIGN_SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )


def test_user_env_cannot_override_the_stage_contract(make_run: Any) -> None:
    env = [
        {"name": "PET_NNODES", "value": "99"},
        {"name": "INFIALIGN_STEP", "value": "x"},
        {"name": "NCCL_DEBUG", "value": "INFO"},
        {"name": "MY_KNOB", "value": "1"},
    ]
    doc = make_run().stage("sft", resources={"numNodes": 2, "gpusPerNode": 8, "env": env}).dict()
    job = _objects(doc, "sft-phase1", 1)[-1]
    names = [e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]]
    values = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert names.count("PET_NNODES") == 1 and values["PET_NNODES"] == "2" and values["INFIALIGN_STEP"] == "sft-phase1"
    assert values["NCCL_DEBUG"] == "INFO" and values["MY_KNOB"] == "1"  # defaults yield to the user
    assert len(names) == len(set(names))


def test_names_over_63_characters_are_refused(make_run: Any) -> None:
    doc = make_run().name("r" * 40).stage("sft", phases=[{"name": "p" * 30}]).dict()
    with pytest.raises(builders.ChildSpecError, match="more than"):
        _objects(doc, f"sft-{'p' * 30}", 1)


@pytest.mark.parametrize(("stall", "interval"), [(60, "15"), (1800, "30")])
def test_stage_pods_are_sealed_and_beat_often_enough_for_the_stall_timeout(make_run: Any, stall: int, interval: str) -> None:
    (*_, job) = _objects(make_run().policy(stallTimeoutSeconds=stall).dict(), "curate", 1)
    pod = job["spec"]["template"]["spec"]
    # a stage needs no Kubernetes API token and no environment for every Service in the namespace
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["INFIALIGN_HEARTBEAT_SECONDS"] == interval  # at least four heartbeats per stall timeout, at most one per 30 s


def test_the_fabric_override_adds_to_the_pod_and_never_replaces_what_the_operator_owns(make_run: Any) -> None:
    *_, job = _case_sft_fabric(make_run)
    template = job["spec"]["template"]
    pod, (container,) = template["spec"], template["spec"]["containers"]
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    # extended resources next to the GPUs, request = limit (they cannot be overcommitted)
    assert limits == {k: v for k, v in requests.items() if k != "ephemeral-storage"}
    assert limits["rdma/hca_shared_devices_a"] == "1" and limits["vpc.amazonaws.com/efa"] == "4"
    assert limits["nvidia.com/gpu"] == "8"
    labels = template["metadata"]["labels"]
    assert labels["infialign.dev/stage"] == "sft-phase1" and labels["infialign.dev/attempt"] == "1"  # the operator still finds its pods
    assert labels["team"] == "alignment" and labels["sidecar.istio.io/inject"] == "false"  # stage and run-wide labels merged
    assert template["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] == "rdma-net"
    assert [v["name"] for v in pod["volumes"]] == ["config", "scratch", "dshm", "datasets", "nccl-topo"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/etc/infialign", "/scratch", "/dev/shm", "/datasets", "/etc/nccl"]
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["IPC_LOCK"]},
        "runAsNonRoot": True,
    }
    assert (pod["hostNetwork"], pod["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")
    # the run-wide part reaches the other stages too, without the sft-only additions
    *_, curate = _objects(_qwen() | {"spec": {**_qwen()["spec"], "podTemplateOverride": _FABRIC["run"]}}, "curate", 1)
    curate_pod = curate["spec"]["template"]["spec"]
    assert curate_pod["imagePullSecrets"] == [{"name": "registry-creds"}] and "hostNetwork" not in curate_pod
    assert "add" not in curate_pod["containers"][0]["securityContext"]["capabilities"]


def test_a_stage_override_wins_over_the_run_wide_one_key_by_key(make_run: Any) -> None:
    doc = (
        make_run()
        .set("spec.podTemplateOverride", {"labels": {"a": "run", "b": "run"}, "volumes": [{"name": "v", "emptyDir": {}}], "hostNetwork": True})
        .stage("curate", resources={"podTemplateOverride": {"labels": {"a": "stage"}, "volumes": [{"name": "v", "configMap": {"name": "c"}}], "hostNetwork": False}})
        .dict()
    )
    *_, job = _objects(doc, "curate", 1)
    template = job["spec"]["template"]
    assert template["metadata"]["labels"]["a"] == "stage" and template["metadata"]["labels"]["b"] == "run"
    assert [v for v in template["spec"]["volumes"] if v["name"] == "v"] == [{"name": "v", "configMap": {"name": "c"}}]
    assert "hostNetwork" not in template["spec"]


@pytest.mark.parametrize(("ttl", "expected"), [(None, None), (3600, 3600)])
def test_finished_jobs_are_cleaned_up_after_their_ttl(make_run: Any, ttl: int | None, expected: int | None) -> None:
    *_, job = _objects(make_run().set("spec.ttlSecondsAfterFinished", ttl).dict(), "curate", 1)
    assert job["spec"].get("ttlSecondsAfterFinished") == expected
    *_, default = _objects(make_run().dict(), "curate", 1)
    assert default["spec"]["ttlSecondsAfterFinished"] == 604800  # a week by default


# ---------------------------------------------------------------- disk


def _scratch(job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    pod = job["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "scratch"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return volume, container["resources"], env


def test_caches_live_on_a_sized_scratch_disk_the_pod_requests(make_run: Any) -> None:
    _, cpu_job = _case_curate(make_run)
    volume, resources, env = _scratch(cpu_job)
    assert volume["emptyDir"] == {"sizeLimit": "20Gi"} and resources["requests"]["ephemeral-storage"] == "20Gi"
    assert "ephemeral-storage" not in resources["limits"]  # a limit would evict for logs and the image layer too
    for name in ("HF_HOME", "XDG_CACHE_HOME", "INFIALIGN_CACHE", "VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCH_EXTENSIONS_DIR"):
        assert env[name].startswith("/scratch/cache"), name

    gpu_job = _case_distill_shards(make_run)[-1]
    volume, resources, _ = _scratch(gpu_job)
    assert volume["emptyDir"]["sizeLimit"] == "200Gi" == resources["requests"]["ephemeral-storage"]


def test_scratch_size_and_a_user_cache_location_come_from_the_spec(make_run: Any) -> None:
    doc = make_run().stage("curate", resources={"scratchSize": "500Gi", "env": [{"name": "HF_HOME", "value": "/models/hf"}]}).dict()
    job = _objects(doc, "curate", 1)[-1]
    volume, resources, env = _scratch(job)
    assert volume["emptyDir"]["sizeLimit"] == "500Gi" == resources["requests"]["ephemeral-storage"]
    names = [e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.count("HF_HOME") == 1 and env["HF_HOME"] == "/models/hf"


def test_stage_pods_reach_mlflows_artifact_store_only_when_it_is_not_proxied(make_run: Any) -> None:
    def env_of(tracking: TrackingConfig) -> dict[str, str]:
        doc = make_run().dict()
        run = AlignmentRun.model_validate(doc)
        identity = RunIdentity(namespace="team-a", name="r1", uid="u1")
        config = build_stage_config(run.spec, identity, "curate", 1, artifacts_root(run.spec), tracking)
        job = builders.build_job(run.spec, identity, "curate", 1, config)
        return {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}

    proxied = env_of(TrackingConfig(uri="http://mlflow:5000"))
    assert "MLFLOW_S3_ENDPOINT_URL" not in proxied  # never the data store's endpoint: MLflow's store is its own
    direct = env_of(TrackingConfig(uri="http://mlflow:5000", artifacts_s3_endpoint="https://s3.mlflow.example.com"))
    assert direct["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.mlflow.example.com"
