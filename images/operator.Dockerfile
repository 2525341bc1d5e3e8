# syntax=docker/dockerfile:1.7
# The operator: Kopf + the Kubernetes client + the shared API, planner and marker reader. No torch.
#   docker build -f images/operator.Dockerfile -t ghcr.io/infialign/operator:0.1.0 .
# Not built in this repository's CI (no container engine there); the chart pins this tag.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY pipeline/ pipeline/
COPY operator/ operator/
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[operator]"

FROM ${PYTHON_IMAGE}
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin infialign
# DL3013: this installs infialign itself; its dependencies are pinned in pyproject.toml
# hadolint ignore=DL3013
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "infialign[operator]"
ENV PYTHONUNBUFFERED=1 \
    HOME=/home/infialign
USER 1000:1000
EXPOSE 8080 9090
ENTRYPOINT ["infialign"]
CMD ["operator", "--all-namespaces"]
