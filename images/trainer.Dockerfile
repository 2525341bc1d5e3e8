# syntax=docker/dockerfile:1.7
# Training stages (sft, dpo) on NVIDIA GPUs: CUDA torch, DeepSpeed, TRL, flash-attention.
# Pods run `infialign stage <step> --config /etc/infialign/stage.json` with the PET_* torchrun env.
#   docker build -f images/trainer.Dockerfile -t ghcr.io/infialign/trainer:0.1.0 .
# The devel base carries nvcc: flash-attn compiles against it, DeepSpeed JIT-builds its ops at first use.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-devel-ubuntu22.04
FROM ${CUDA_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
ARG FLASH_ATTN_VERSION=2.8.3
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/home/infialign \
    TORCH_EXTENSIONS_DIR=/home/infialign/.cache/torch_extensions
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common git ninja-build \
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
# DL3013: this installs infialign itself; its dependencies are pinned in pyproject.toml
# hadolint ignore=DL3013
RUN pip install ".[train]" \
 && MAX_JOBS=4 pip install "flash-attn==${FLASH_ATTN_VERSION}" --no-build-isolation \
 && rm -rf /src
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin infialign
USER 1000:1000
WORKDIR /home/infialign
ENTRYPOINT ["infialign"]
CMD ["--help"]
