#!/usr/bin/env bash
# Build every infialign image with one tag, and optionally push it or load it into a kind cluster.
#
#   scripts/build-images.sh                        # build all, tag 0.1.0 (the chart's appVersion)
#   TAG=0.2.0 REGISTRY=registry.example.com/ml scripts/build-images.sh --push
#   scripts/build-images.sh --only operator,cpu,mlflow --kind infialign   # what e2e.yaml builds
#   scripts/build-images.sh --pin                  # resolve every base image tag to its digest first
#   scripts/build-images.sh --dry-run              # print the docker commands, run nothing
# Base images: each Dockerfile names its bases as `ARG <NAME>_IMAGE=<tag>`. `--pin` records their digests
# in images/base-images.lock (commit it); every build passes `<tag>@<digest>` for the bases the lock pins,
# so a rebuild gets the same bytes even when a tag moves. A lock line whose tag differs from the
# Dockerfile's is stale and ignored (re-run --pin after bumping a base).
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
PIN=0
DRY_RUN=0
KIND_CLUSTER=""
ONLY=""
LOCK="${BASE_IMAGES_LOCK:-$ROOT/images/base-images.lock}"

usage() { sed -n '2,23p' "$0"; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --push) PUSH=1 ;;
    --pin) PIN=1 ;;
    --dry-run) DRY_RUN=1 ;;
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
run() { if [[ $DRY_RUN == 1 ]]; then echo "+ $*"; else "$@"; fi; }

# "NAME TAG" for every `ARG NAME_IMAGE=TAG` of a Dockerfile
bases() { sed -n 's/^ARG \([A-Z_]*_IMAGE\)=\(.*\)$/\1 \2/p' "$1"; }

pin() {
  local dockerfile name tag digest
  for dockerfile in "$ROOT"/images/*.Dockerfile; do
    while read -r name tag; do
      digest="$(docker buildx imagetools inspect "$tag" --format '{{json .Manifest}}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["digest"])')"
      echo "$name $tag $digest"
    done < <(bases "$dockerfile")
  done | sort -u >"$LOCK"
  echo "pinned $(wc -l <"$LOCK") base images in $LOCK"
}

# --build-arg NAME=TAG@DIGEST for each base of a Dockerfile that the lock pins at the same tag
pinned_args() {
  local name tag digest
  [[ -f "$LOCK" ]] || return 0
  while read -r name tag; do
    digest="$(awk -v n="$name" -v t="$tag" '$1 == n && $2 == t { print $3 }' "$LOCK")"
    if [[ -n "$digest" ]]; then printf -- '--build-arg\n%s=%s@%s\n' "$name" "$tag" "$digest"; fi
  done < <(bases "$1")
}

if [[ $PIN == 1 ]]; then pin; fi

built=()
for entry in "${IMAGES[@]}"; do
  IFS='|' read -r name dockerfile context tag <<<"$entry"
  selected "$name" || continue
  ref="$REGISTRY/$name:$tag"
  echo ">>> $ref ($dockerfile)"
  mapfile -t args < <(pinned_args "$ROOT/$dockerfile")
  run env DOCKER_BUILDKIT=1 docker build "${args[@]}" -f "$ROOT/$dockerfile" -t "$ref" "$ROOT/$context"
  built+=("$ref")
done
[[ ${#built[@]} -gt 0 ]] || { echo "--only $ONLY matched no image" >&2; exit 2; }

for ref in "${built[@]}"; do
  if [[ $PUSH == 1 ]]; then run docker push "$ref"; fi
  if [[ -n "$KIND_CLUSTER" ]]; then run kind load docker-image "$ref" --name "$KIND_CLUSTER"; fi
done
printf 'built %s\n' "${built[@]}"
