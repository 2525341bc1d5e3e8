# syntax=docker/dockerfile:1.7
# CPU stages (curate, select): the `cpu` extra, and no torch or vllm (house rule 13).
#   docker build -f images/pipeline.Dockerfile -t ghcr.io/infialign/pipeline:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY pipeline/ pipeline/
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[cpu]"

FROM ${PYTHON_IMAGE}
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin infialign
# DL3013: this installs infialign itself; its dependencies are pinned in pyproject.toml
# hadolint ignore=DL3013
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "infialign[cpu]" \
 && python -c "import importlib.util as u; assert u.find_spec('torch') is None and u.find_spec('vllm') is None"
ENV PYTHONUNBUFFERED=1 \
    HOME=/home/infialign \
    OMP_NUM_THREADS=1
USER 1000:1000
WORKDIR /home/infialign
ENTRYPOINT ["infialign"]
CMD ["--help"]
