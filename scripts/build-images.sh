#!/usr/bin/env bash
# Build every infialign image with one tag, and optionally push it or load it into a kind cluster.
#
#   scripts/build-images.sh                        # build all, tag 0.1.0 (the chart's appVersion)
#   TAG=0.2.0 REGISTRY=registry.example.com/ml scripts/build-images.sh --push
#   scripts/build-images.sh --only operator,cpu,mlflow --kind infialign   # what e2e.yaml builds
#
# Images (name ← Dockerfile, build context):
#   operator ← images/operator.Dockerfile  (.)        the Kopf operator; also runs the chart's hook Jobs
#   pipeline ← images/pipeline.Dockerfile  (.)        CPU stages curate, select
#   cpu      ← images/cpu.Dockerfile       (.)        every stage on CPU (kind, CI)
#   trainer  ← images/trainer.Dockerfile   (.)        sft, dpo on NVIDIA GPUs
#   vllm     ← images/vllm.Dockerfile      (.)        distill, prefs, eval on NVIDIA GPUs
#   mlflow   ← images/mlflow.Dockerfile    (images/) the chart's MLflow server; tagged with its MLflow version
# Needs Docker with BuildKit (the Dockerfiles use `RUN --mount`). Run from anywhere.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/charts/infialign/Chart.yaml")}"
REGISTRY="${REGISTRY:-ghcr.io/infialign}"
MLFLOW_TAG="${MLFLOW_TAG:-3.17.2}"
PUSH=0
KIND_CLUSTER=""
ONLY=""

usage() { sed -n '2,17p' "$0"; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --push) PUSH=1 ;;
    --kind) KIND_CLUSTER="${2:?--kind needs a cluster name}"; shift ;;
    --only) ONLY="${2:?--only needs a comma-separated list of image names}"; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument $1" >&2; usage 2 ;;
  esac
  shift
done

# name|dockerfile|context|tag
IMAGES=(
  "operator|images/operator.Dockerfile|.|$TAG"
  "pipeline|images/pipeline.Dockerfile|.|$TAG"
  "cpu|images/cpu.Dockerfile|.|$TAG"
  "trainer|images/trainer.Dockerfile|.|$TAG"
  "vllm|images/vllm.Dockerfile|.|$TAG"
  "mlflow|images/mlflow.Dockerfile|images|$MLFLOW_TAG"
)

selected() { [[ -z "$ONLY" || ",$ONLY," == *",$1,"* ]]; }

built=()
for entry in "${IMAGES[@]}"; do
  IFS='|' read -r name dockerfile context tag <<<"$entry"
  selected "$name" || continue
  ref="$REGISTRY/$name:$tag"
  echo ">>> $ref ($dockerfile)"
  DOCKER_BUILDKIT=1 docker build -f "$ROOT/$dockerfile" -t "$ref" "$ROOT/$context"
  built+=("$ref")
done
[[ ${#built[@]} -gt 0 ]] || { echo "--only $ONLY matched no image" >&2; exit 2; }

for ref in "${built[@]}"; do
  if [[ $PUSH == 1 ]]; then docker push "$ref"; fi
  if [[ -n "$KIND_CLUSTER" ]]; then kind load docker-image "$ref" --name "$KIND_CLUSTER"; fi
done
printf 'built %s\n' "${built[@]}"
