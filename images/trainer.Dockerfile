# syntax=docker/dockerfile:1.7
# Training stages (sft, dpo) on NVIDIA GPUs: CUDA torch, DeepSpeed with its ops prebuilt, TRL, flash-attention.
# Pods run `infialign stage <step> --config /etc/infialign/stage.json` with the PET_* torchrun env.
#   docker build -f images/trainer.Dockerfile -t ghcr.io/infialign/trainer:0.1.0 .
#   docker build -f images/trainer.Dockerfile --build-arg FLASH_ATTN_WHEEL=<url of a flash-attn release wheel> ...
# Two stages: everything that compiles (DeepSpeed ops, flash-attn when no wheel is given) happens once, in
# `build`, on the devel base; pods get the runtime base and never call nvcc or JIT-build an op at start.
# scripts/build-images.sh --pin replaces the tags below by digests (images/base-images.lock).
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:12.6.3-cudnn-devel-ubuntu22.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04

FROM ${CUDA_DEVEL_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
ARG FLASH_ATTN_VERSION=2.8.3
# A prebuilt flash-attn wheel matching torch, CUDA 12 and cp311 (the flash-attn GitHub releases); empty builds
# one here, once, which takes an hour or more.
ARG FLASH_ATTN_WHEEL=""
# Ampere, Ada, Hopper, Blackwell: the GPUs a training cluster has today. +PTX keeps newer ones working.
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0;10.0;12.0+PTX"
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST}
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common git ninja-build libaio-dev \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get install -y --no-install-recommends python3.11 python3.11-dev python3.11-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CUDA torch first: the `train` extra pins torch==${TORCH_VERSION}, which this local-versioned wheel satisfies
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY pipeline/ pipeline/
COPY operator/ operator/
# DeepSpeed's ops that ZeRO uses (fused and CPU Adam, the flatten utils) compiled at install, not per pod.
# DL3013: this installs infialign itself; its dependencies are pinned in pyproject.toml
# hadolint ignore=DL3013
RUN DS_BUILD_FUSED_ADAM=1 DS_BUILD_CPU_ADAM=1 DS_BUILD_UTILS=1 pip install ".[train]" --no-build-isolation \
 && ds_report
# hadolint ignore=DL3013
RUN if [ -n "${FLASH_ATTN_WHEEL}" ]; then pip install "${FLASH_ATTN_WHEEL}"; \
    else MAX_JOBS=4 pip install "flash-attn==${FLASH_ATTN_VERSION}" --no-build-isolation; fi \
 && python -c "import flash_attn, deepspeed, trl, infialign.pipeline.cli; print('flash-attn', flash_attn.__version__)"

FROM ${CUDA_RUNTIME_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    HOME=/home/infialign \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common libaio1 \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && apt-get purge -y software-properties-common && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin infialign
COPY --from=build /opt/venv /opt/venv
# the prebuilt ops load without a compiler: this image has no nvcc, so a JIT build here would fail the build
RUN python -c "import importlib; importlib.import_module('deepspeed.ops.adam.fused_adam_op'); import flash_attn, infialign.pipeline.cli"
USER 1000:1000
WORKDIR /home/infialign
ENTRYPOINT ["infialign"]
CMD ["--help"]
