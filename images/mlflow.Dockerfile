# syntax=docker/dockerfile:1.7
# The chart's MLflow server (charts/infialign, mlflow.enabled): the official image plus what it lacks for
# our setup: boto3 (the server proxies artifacts to S3/MinIO: --artifacts-destination s3://…) and
# psycopg2-binary (a postgresql:// backend store). Non-root, like every infialign image.
#   docker build -f images/mlflow.Dockerfile -t ghcr.io/infialign/mlflow:3.17.2 images/
# MLflow 3.17.2: the newest release whose exact-pinned mlflow-skinny/-tracing resolve (research/mlflow-minio-helm.md §0).
ARG MLFLOW_IMAGE=ghcr.io/mlflow/mlflow:v3.17.2
FROM ${MLFLOW_IMAGE}

ARG BOTO3_VERSION=1.43.117
ARG PSYCOPG2_VERSION=2.9.10
RUN pip install --no-cache-dir "boto3==${BOTO3_VERSION}" "psycopg2-binary==${PSYCOPG2_VERSION}" \
 && python -c "import boto3, psycopg2, mlflow; assert mlflow.__version__ == '3.17.2', mlflow.__version__"
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin mlflow
ENV PYTHONUNBUFFERED=1 \
    HOME=/home/mlflow
USER 1000:1000
EXPOSE 5000
ENTRYPOINT ["mlflow"]
CMD ["server", "--host=0.0.0.0", "--port=5000"]
