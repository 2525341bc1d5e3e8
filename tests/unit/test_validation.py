"""`infialign validate`: one table row per rule, the CLI contract, and no traceback whatever the input."""

from __future__ import annotations

import json

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infialign.pipeline import validation

ROOT = Path(__file__).resolve().parents[2]


def _lines(doc: dict) -> list[str]:
    result = validation.load_manifest_text(yaml.safe_dump(doc))
    return [f"{p.path}: {p.message}" for p in result.problems if p.severity == "error"]


CASES = [
    # (id, builder mutation, expected error line)
    ("epochs-zero", lambda b: b.stage("sft", phases=[{"name": "p1", "epochs": 0}]), "spec.stages.sft.phases[0].epochs: must be ≥ 1, got 0"),
    ("fraction-zero", lambda b: b.stage("sft", phases=[{"name": "p1", "fraction": 0}]), "spec.stages.sft.phases[0].fraction: must be > 0, got 0"),
    ("fraction-above-one", lambda b: b.stage("sft", phases=[{"name": "p1", "fraction": 1.5}]), "spec.stages.sft.phases[0].fraction: must be ≤ 1, got 1.5"),
    ("wrong-type", lambda b: b.stage("select", targetSize="many"), 'spec.stages.select.targetSize: must be an integer, got "many"'),
    ("negative-count", lambda b: b.set("spec.failurePolicy", {"maxRestartsPerStage": -1}), "spec.failurePolicy.maxRestartsPerStage: must be ≥ 0, got -1"),
    ("typo", lambda b: b.stage("sft", pakcing="on"), "spec.stages.sft.pakcing: unknown field; did you mean 'packing'?"),
    ("missing-model", lambda b: b.set("spec", {k: v for k, v in b.doc["spec"].items() if k != "model"}), "spec.model: required field is missing"),
    ("bad-enum", lambda b: b.stage("sft", packing="maybe"), "spec.stages.sft.packing: must be one of 'auto', 'on' or 'off', got \"maybe\""),
    ("bad-name", lambda b: b.name("Bad_Name"), 'metadata.name: must match ^[a-z]([-a-z0-9]*[a-z0-9])?$, got "Bad_Name"'),
    ("secret-on-local-storage", lambda b: b.set("spec.storage", {"local": {"path": "x", "secretRef": {"name": "s"}}}),
     "spec.storage.local.secretRef: unknown field; secretRef is only for spec.storage.s3; a local path needs no credentials"),
    ("storage-one-of", lambda b: b.set("spec.storage", {"local": {"path": "x"}, "s3": {"bucket": "abc"}}), "spec.storage: set exactly one of `s3` and `local`"),
    ("select-without-pool", lambda b: b.disable("curate"),
     "spec.stages.select.poolUri: select needs 'pool' but no enabled stage produces it; enable curate or distill, or set poolUri"),
    ("sft-without-data", lambda b: b.disable("curate", "select"),
     "spec.stages.sft.phases[0].dataUri: phase 'sft-phase1' has no training data: select is disabled; enable select or set dataUri"),
    ("curate-without-sources", lambda b: b.set("spec.sources", []), "spec.sources: curate is enabled but no source is given; add a source or disable curate"),
    ("distill-without-teacher", lambda b: b.enable("distill"), "spec.teacher: distill is enabled but no teacher is given; set spec.teacher or disable distill"),
    ("distill-budget-beyond-context", lambda b: b.set("spec.teacher", {"uri": "builtin://tiny-teacher"}).enable("distill").stage("distill", maxTokens=512, maxModelLen=512),
     "spec.stages.distill.maxTokens: maxTokens 512 leaves no room for the prompt within maxModelLen 512; lower maxTokens or raise maxModelLen"),
    ("unknown-benchmark", lambda b: b.enable("eval").set("spec.benchmarks", [{"name": "aime24", "uri": "s3://b/a.parquet"}]).stage("eval", benchmarks=["aime25"], models=["base"]),
     "spec.stages.eval.benchmarks[0]: unknown benchmark 'aime25'; known: ['aime24']"),
    ("unknown-builtin", lambda b: b.set("spec.sources", [{"name": "x", "uri": "builtin://nope"}]),
     "spec.sources[0].uri: unknown built-in dataset 'nope'; known: ['reasoning', 'reasoning-bench']"),
    ("builtin-unknown-parameter", lambda b: b.set("spec.sources", [{"name": "x", "uri": "builtin://reasoning?n=10&wrong_answers=0.2"}]),
     "spec.sources[0].uri: builtin://reasoning?n=10&wrong_answers=0.2: unknown parameter 'wrong_answers'; allowed: n, seed, tiers, "
     "plant, exact_duplicate, near_duplicate, truncated_cot, missing_answer, wrong_answer, non_english, benchmark_leak, repetition, "
     "numbers_variant"),
    ("duplicate-phase", lambda b: b.stage("sft", phases=[{"name": "p"}, {"name": "p"}]), "spec.stages.sft.phases[1].name: duplicate phase name 'p'; names must be unique"),
    ("eval-model-disabled", lambda b: b.enable("eval").set("spec.benchmarks", [{"name": "b", "uri": "s3://b/a.parquet"}]).stage("eval", models=["base", "dpo"]),
     "spec.stages.eval.models: evaluates the 'dpo' model, but the dpo stage is disabled; remove 'dpo' or enable the stage"),
    ("eval-without-evaluable-benchmark", lambda b: b.enable("eval").set("spec.benchmarks", [{"name": "b", "uri": "s3://b/a.parquet", "evaluate": False}]).stage("eval", models=["base"]),
     "spec.benchmarks: eval is enabled but no benchmark has evaluate: true; add one or disable eval"),
    ("eval-chooses-only-unevaluated", lambda b: b.enable("eval").set("spec.benchmarks", [{"name": "a", "uri": "s3://b/a.parquet"}, {"name": "b", "uri": "s3://b/b.parquet", "evaluate": False}]).stage("eval", benchmarks=["b"], models=["base"]),
     "spec.stages.eval.benchmarks: names only benchmarks with evaluate: false (['b']); name one with evaluate: true or empty the list"),
    ("offload-params-zero2", lambda b: b.stage("sft", deepspeed={"zeroStage": 2, "offloadParams": True}),
     "spec.stages.sft.deepspeed.offloadParams: parameter offload needs zeroStage: 3, got 2"),
    ("min-lr-above-lr", lambda b: b.stage("sft", phases=[{"name": "p", "learningRate": 1e-5, "minLearningRate": 1e-4}]),
     "spec.stages.sft.phases[0].minLearningRate: must be ≤ learningRate (1e-05), got 0.0001"),
    ("job-name-too-long", lambda b: b.name("a" * 40).stage("sft", phases=[{"name": "p" * 20}]),
     f"spec.stages.sft.phases[0].name: the Job name {'a' * 40}-sft-{'p' * 20}-a<attempt> would exceed 59 characters (69); shorten the run or phase name"),
    ("judge-without-model", lambda b: b.stage("select", verification={"judge": {"endpoint": "http://judge:8000/v1"}}),
     "spec.stages.select.verification.judge: judge.model is required when judge.endpoint is set: name the model the endpoint serves"),
    ("dpo-offload-params-zero2", lambda b: b.enable("dpo").stage("dpo", pairsUri="s3://b/p.parquet", deepspeed={"zeroStage": 2, "offloadParams": True}),
     "spec.stages.dpo.deepspeed.offloadParams: parameter offload needs zeroStage: 3, got 2"),
    ("dpo-no-preference-loss", lambda b: b.enable("dpo").stage("dpo", pairsUri="s3://b/p.parquet", lossType=["sft"]),
     "spec.stages.dpo.lossType: ['sft'] has no preference loss, so rejected answers are never used; add 'sigmoid'"),
    ("dpo-loss-weights-length", lambda b: b.enable("dpo").stage("dpo", pairsUri="s3://b/p.parquet", lossType=["sigmoid", "sft"], lossWeights=[1.0]),
     "spec.stages.dpo: lossWeights has 1 values for 2 lossType entries ['sigmoid', 'sft']; give one weight per loss or leave lossWeights empty"),
    ("dpo-without-pairs", lambda b: b.enable("dpo"),
     "spec.stages.dpo.pairsUri: dpo needs 'pairs' but no enabled stage produces it; enable prefs or set pairsUri"),
    ("sage-tier-bounds", lambda b: b.enable("dpo").stage("dpo", pairsUri="s3://b/p.parquet", sage={"tiers": 2}),
     "spec.stages.dpo.sage: tierPassRates has 2 values but tiers=2 needs 1 (one bound between two neighbouring tiers); give tiers-1 descending pass rates"),
    ("env-one-of", lambda b: b.stage("sft", resources={"gpusPerNode": 1, "env": [{"name": "A"}]}), "spec.stages.sft.resources.env[0]: set exactly one of `value` and `secretKeyRef`"),
    ("prefs-model-len", lambda b: b.enable("prefs").stage("prefs", maxTokens=512, maxModelLen=512),
     "spec.stages.prefs.maxModelLen: must exceed maxTokens (512) to leave room for the prompt, got 512; raise maxModelLen or lower maxTokens"),
    ("prefs-no-challenge-pool", lambda b: b.enable("prefs").stage("select", challengeSize=0),
     "spec.stages.select.challengeSize: is 0, so prefs has no challenge prompts; raise it or set spec.stages.prefs.promptsUri"),
    # pod-template override (issue 13 item 7): only additions, never what the operator owns
    ("override-cpu-as-extra-resource", lambda b: b.set("spec.podTemplateOverride", {"extraResources": {"cpu": 4}}),
     "spec.podTemplateOverride.extraResources: extraResources: 'cpu' is not an extended resource (those are named <domain>/<name>, "
     "e.g. rdma/hca_shared_devices_a); cpu and memory have their own fields: resources.cpu and resources.memory"),
    ("override-gpu-as-extra-resource", lambda b: b.stage("sft", resources={"gpusPerNode": 1, "podTemplateOverride": {"extraResources": {"nvidia.com/gpu": 8}}}),
     "spec.stages.sft.resources.podTemplateOverride.extraResources: extraResources: nvidia.com/gpu has its own field; set resources.gpusPerNode instead"),
    ("override-kubernetes-io-resource", lambda b: b.set("spec.podTemplateOverride", {"extraResources": {"kubernetes.io/batteries": 1}}),
     "spec.podTemplateOverride.extraResources: extraResources: 'kubernetes.io/batteries' is in the kubernetes.io domain, which extended resources may not use"),
    ("override-our-label", lambda b: b.set("spec.podTemplateOverride", {"labels": {"infialign.dev/stage": "x"}}),
     "spec.podTemplateOverride.labels: 'infialign.dev/stage' is set by the operator (it finds its pods by it); remove it from the override"),
    ("override-managed-by-label", lambda b: b.set("spec.podTemplateOverride", {"labels": {"app.kubernetes.io/managed-by": "me"}}),
     "spec.podTemplateOverride.labels: 'app.kubernetes.io/managed-by' is set by the operator (it finds its pods by it); remove it from the override"),
    ("override-privileged-capability", lambda b: b.set("spec.podTemplateOverride", {"capabilities": ["SYS_ADMIN"]}),
     "spec.podTemplateOverride.capabilities[0]: must be one of 'IPC_LOCK', 'SYS_NICE', 'SYS_RESOURCE' or 'NET_RAW', got \"SYS_ADMIN\""),
    ("override-privileged-field", lambda b: b.set("spec.podTemplateOverride", {"privileged": True}),
     "spec.podTemplateOverride.privileged: unknown field; known fields: extraResources, annotations, labels, volumes, volumeMounts, "
     "imagePullSecrets, capabilities, hostNetwork"),
    ("override-host-path", lambda b: b.set("spec.podTemplateOverride", {"volumes": [{"name": "ib", "hostPath": {"path": "/dev/infiniband"}}]}),
     "spec.podTemplateOverride.volumes: volumes[0] (ib): hostPath is not allowed; use a device plugin resource in extraResources, or a PVC or CSI volume"),
    ("override-our-volume-name", lambda b: b.set("spec.podTemplateOverride", {"volumes": [{"name": "scratch", "emptyDir": {}}]}),
     "spec.podTemplateOverride.volumes: volumes[0].name 'scratch' is one of the operator's volumes ['artifacts', 'config', 'dshm', 'scratch']; rename it"),
    ("override-our-mount-path", lambda b: b.set("spec.podTemplateOverride", {"volumes": [{"name": "x", "emptyDir": {}}], "volumeMounts": [{"name": "x", "mountPath": "/dev/shm"}]}),
     "spec.podTemplateOverride.volumeMounts: volumeMounts[0].mountPath '/dev/shm' overlaps the operator's mounts ['/dev/shm', '/etc/infialign', '/scratch']"),
    ("override-mount-without-volume", lambda b: b.stage("curate", resources={"podTemplateOverride": {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}}),
     "spec.stages.curate.resources.podTemplateOverride.volumeMounts[0].name: mounts 'data', which no volume of the curate pods is named (none); add it to volumes"),
    # long context (issue 12): maxLength against the student's positions (builtin://tiny: 1024, θ 10000)
    ("sft-beyond-positions-without-rope", lambda b: b.stage("sft", phases=[{"name": "p", "maxLength": 2048}], rope={"scaling": "none"}),
     "spec.stages.sft.phases[0].maxLength: is 2048, above the model's max_position_embeddings 1024, and spec.stages.sft.rope.scaling is 'none': "
     "positions past 1024 were never trained. Set spec.stages.sft.rope.scaling to 'auto' (rope_theta 300000, as open-r1's "
     "Qwen2.5-Math-7B-RoPE-300k) or 'yarn', or lower spec.stages.sft.phases[0].maxLength to 1024."),
    ("sft-yarn-factor-too-small", lambda b: b.stage("sft", phases=[{"name": "p", "maxLength": 4096}], rope={"scaling": "yarn", "factor": 2}),
     "spec.stages.sft.phases[0].maxLength: is 4096 but spec.stages.sft.rope.factor 2 × max_position_embeddings 1024 covers 2048. "
     "Raise spec.stages.sft.rope.factor to 4 or leave it empty."),
    ("prefs-unverified", lambda b: b.enable("prefs").stage("prefs", verification={"enabled": False}),
     "spec.stages.prefs.verification.enabled: prefs needs verification: a rejected answer must be verified wrong; set it to true"),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(make_run, mutate, expected: str) -> None:
    builder = make_run()
    mutate(builder)
    assert expected in _lines(builder.doc)


def test_long_context_with_the_default_rope_is_valid(make_run) -> None:
    # auto raises rope_theta (training/rope.py); no error, no warning
    result = validation.load_manifest_text(yaml.safe_dump(make_run().stage("sft", phases=[{"name": "p", "maxLength": 32768}]).doc))
    assert not [p for p in result.problems if "maxLength" in p.path or "rope" in p.path]


def test_a_valid_minimal_run_has_no_errors(make_run) -> None:
    assert _lines(make_run().dict()) == []


def test_dpo_batch_not_divisible_by_the_cluster_devices_is_a_warning(make_run) -> None:
    doc = make_run().enable("dpo").stage("dpo", pairsUri="s3://b/p.parquet", globalBatchSize=12, resources={"gpusPerNode": 8}).dict()
    result = validation.load_manifest_text(yaml.safe_dump(doc))
    assert result.ok
    assert [f"{p.path}: {p.message}" for p in result.problems if p.severity == "warning"] == [
        "spec.stages.dpo.globalBatchSize: must be a multiple of microBatchSize × nodes × GPUs = 1 × 1 × 8 = 8 to run on a cluster, got 12"
    ]


def test_a_gpu_stage_on_cpu_is_a_warning_for_real_models_only(make_run) -> None:
    def problems(doc: dict) -> list[tuple[str, str]]:
        result = validation.load_manifest_text(yaml.safe_dump(doc))
        assert result.ok
        return [(p.path, p.severity) for p in result.problems]

    cpu = make_run().stage("sft", resources={"gpusPerNode": 0})
    assert problems(cpu.dict()) == []  # builtin://tiny on a CPU-only cluster (quickstart-cluster.yaml)
    real = cpu.set("spec.model", {"uri": "hf://Qwen/Qwen2.5-0.5B"}).dict()
    assert problems(real) == [("spec.stages.sft.resources.gpusPerNode", "warning")]


def test_distill_with_the_builtin_teacher_is_valid(make_run) -> None:
    doc = make_run().set("spec.teacher", {"uri": "builtin://tiny-teacher"}).enable("distill").dict()
    result = validation.load_manifest_text(yaml.safe_dump(doc))
    assert result.ok
    assert [p.path for p in result.problems if p.path.startswith(("spec.stages.distill", "spec.teacher"))] == []


def test_distill_votes_it_can_never_collect_are_a_warning(make_run) -> None:
    doc = make_run().set("spec.teacher", {"uri": "builtin://tiny-teacher"}).enable("distill").stage("distill", samples=2, maxRetries=0, minVotes=3).dict()
    result = validation.load_manifest_text(yaml.safe_dump(doc))
    assert result.ok
    assert [p.path for p in result.problems if p.severity == "warning"] == ["spec.stages.distill.minVotes"]


def test_launcher_owned_env_is_a_warning(make_run) -> None:
    doc = make_run().stage("sft", resources={"gpusPerNode": 8, "env": [{"name": "PET_NNODES", "value": "4"}]}).dict()
    result = validation.load_manifest_text(yaml.safe_dump(doc))
    assert result.ok
    assert [(p.path, p.severity) for p in result.problems] == [("spec.stages.sft.resources.env[0].name", "warning")]


def test_open_answers_without_a_judge_are_a_warning(make_run) -> None:
    doc = make_run().set("spec.sources", [{"name": "essays", "uri": "s3://b/e.parquet", "answerType": "open"}]).dict()
    result = validation.load_manifest_text(yaml.safe_dump(doc))
    assert result.ok
    assert [(p.path, p.severity) for p in result.problems] == [("spec.sources[0].answerType", "warning")]


def test_multi_document_files_prefix_the_document(make_run) -> None:
    good, bad = make_run().dict(), make_run().stage("sft", pakcing="on").dict()
    text = yaml.safe_dump(good) + "---\n" + yaml.safe_dump(bad)
    result = validation.load_manifest_text(text)
    assert [p.path for p in result.problems] == ["[2].spec.stages.sft.pakcing"]
    assert len(result.runs) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "(document): the file holds no YAML document; expected an AlignmentRun"),
        ("a: [1, 2\n", "line 2: invalid YAML"),
        ("- 1\n- 2\n", "(document): must be a mapping with apiVersion, kind, metadata and spec"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {}\n", "apiVersion: must be one of 'infialign.dev/v1alpha1'"),
    ],
)
def test_unusable_documents(text: str, expected: str) -> None:
    lines = [f"{p.path}: {p.message}" for p in validation.load_manifest_text(text).problems]
    assert any(line.startswith(expected) for line in lines), lines


def test_cli_exit_codes_and_line_format(tmp_path: Path, make_run) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(make_run().stage("sft", phases=[{"name": "p1", "epochs": 0}]).dict()))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(make_run().dict()))
    cli = [sys.executable, "-m", "infialign.pipeline.cli", "validate"]
    ok = subprocess.run([*cli, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    out = subprocess.run([*cli, str(good), str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert f"{bad}: spec.stages.sft.phases[0].epochs: must be ≥ 1, got 0" in out.stderr.splitlines()
    assert "Traceback" not in out.stderr
    missing = subprocess.run([*cli, str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr


def test_every_example_validates() -> None:
    for path in sorted((ROOT / "manifests" / "examples").glob("*.yaml")):
        result = validation.load_manifest(path)
        assert result.ok, [validation.format_problem(path.name, p) for p in result.problems]


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_no_traceback_for_any_text(text: str) -> None:
    result = validation.load_manifest_text(text)
    assert all(isinstance(p.message, str) and p.path for p in result.problems)


# make_run returns a stateless builder class, so sharing it across generated inputs is safe
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(spec=yaml_values, stages=yaml_values)
def test_no_traceback_for_any_structure(make_run, spec, stages) -> None:
    doc = make_run().dict()
    doc["spec"]["stages"] = stages
    doc["spec"]["extra"] = spec
    result = validation.load_manifest_text(yaml.safe_dump(doc, allow_unicode=True))
    assert not result.ok
    assert all(p.path for p in result.problems)


def test_prefs_pool_smaller_than_the_pairs_asked_for_is_a_warning(make_run) -> None:
    doc = make_run().enable("prefs").stage("select", challengeSize=100).stage("prefs", pairs=500).dict()
    result = validation.load_manifest_text(yaml.safe_dump(doc))
    assert result.ok
    assert [f"{p.path}: {p.message}" for p in result.problems if p.severity == "warning"] == [
        "spec.stages.prefs.pairs: asks for 500 pairs but spec.stages.select.challengeSize gives 100 prompts (one pair per prompt at most); "
        "raise challengeSize or lower pairs"
    ]
@pytest.mark.parametrize(
    ("storage", "paths"),
    [
        ({"local": {"path": "artifacts"}}, ["spec.storage.local.pvcName"]),  # each pod's own disk: rejected on a cluster
        ({"local": {"path": "/data", "pvcName": "shared"}}, []),
        ({"s3": {"bucket": "runs", "endpoint": "http://minio.minio:9000"}}, []),
    ],
)
def test_cluster_rules_need_shared_storage(make_run, storage: dict, paths: list[str]) -> None:
    from infialign.pipeline import validation

    spec = make_run().set("spec.storage", storage).spec()
    problems = validation.cluster_problems(spec)
    assert [p.path for p in problems] == paths
    assert all("storage.s3" in p.message and p.severity == "error" for p in problems)
    assert not [p for p in validation.semantic_problems(spec) if p.path.startswith("spec.storage")]  # the local executor keeps its default


def test_a_stall_timeout_the_heartbeat_cannot_honour_is_rejected(make_run) -> None:
    from infialign.pipeline import validation

    result = validation.load_manifest_text(json.dumps(make_run().policy(stallTimeoutSeconds=30).dict()))
    (problem,) = [p for p in result.problems if p.severity == "error"]
    assert problem.path == "spec.failurePolicy.stallTimeoutSeconds" and "60" in problem.message


def test_phase_fractions_below_one_everywhere_warn_that_part_of_the_selection_is_never_trained(make_run) -> None:
    def warnings(doc: dict) -> list[str]:
        result = validation.load_manifest_text(yaml.safe_dump(doc))
        assert result.ok
        return [p.path for p in result.problems if p.severity == "warning"]

    assert warnings(make_run().stage("sft", phases=[{"name": "p1", "fraction": 0.3}, {"name": "p2", "fraction": 1.0}]).dict()) == []
    half = make_run().stage("sft", phases=[{"name": "p1", "fraction": 0.3}, {"name": "p2", "fraction": 0.5}]).dict()
    assert warnings(half) == ["spec.stages.sft.phases[1].fraction"]
    result = validation.load_manifest_text(yaml.safe_dump(half))
    assert "50% of the selection is selected but never trained" in result.problems[0].message


def test_decontamination_without_benchmarks_is_a_warning(make_run) -> None:
    on = make_run().stage("curate", decontamination={"enabled": True})
    result = validation.load_manifest_text(yaml.safe_dump(on.dict()))
    assert [(p.path, p.severity) for p in result.problems] == [("spec.stages.curate.decontamination.enabled", "warning")]
    bench = on.set("spec.benchmarks", [{"name": "aime24", "uri": "s3://b/aime24.parquet"}]).dict()
    assert validation.load_manifest_text(yaml.safe_dump(bench)).problems == []
    bench["spec"]["benchmarks"][0]["decontaminate"] = False
    assert [p.path for p in validation.load_manifest_text(yaml.safe_dump(bench)).problems] == ["spec.stages.curate.decontamination.enabled"]
