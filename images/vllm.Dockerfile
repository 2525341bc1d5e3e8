# syntax=docker/dockerfile:1.7
# Generation stages (distill, prefs, eval) on NVIDIA GPUs: one vLLM engine per pod (shard).
#   docker build -f images/vllm.Dockerfile -t ghcr.io/infialign/vllm:0.1.0 .
# vLLM's own image brings CUDA, torch and vllm in versions tested together; we add infialign on top.
ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0
FROM ${VLLM_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/home/infialign
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY pipeline/ pipeline/
COPY operator/ operator/
# core + verifiers; torch and vllm stay the base image's (no extra pulls them in again)
# The check imports what a generation pod runs beside vLLM: a missing dependency fails the build, not a shard.
RUN pip install . "math-verify>=0.7" \
 && python -c "import vllm, math_verify; from infialign.pipeline import generation, verifiers; from infialign.pipeline.stages import distill, prefs, eval" \
 && rm -rf /src
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin infialign
USER 1000:1000
WORKDIR /home/infialign
ENTRYPOINT ["infialign"]
CMD ["--help"]
