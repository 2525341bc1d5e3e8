"""`status.mlflow.url` is the UI users can open: the chart's external URL, not the in-cluster tracking URI."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from infialign.operator.config import OperatorConfig

from .conftest import TEST_CONFIG


@pytest.fixture
def operator_config() -> OperatorConfig:
    return dataclasses.replace(TEST_CONFIG, mlflow_external_url="https://mlflow.example.com")


async def test_the_status_links_the_external_mlflow_url(operator: Any, cluster: Any, make_run: Any) -> None:
    await cluster.create_run(make_run().set("spec.tracking", {"uri": "http://infialign-mlflow.infialign:5000"}).dict())
    await cluster.eventually(lambda: (cluster.status().get("mlflow") or {}).get("url"), what="status.mlflow.url")
    assert cluster.status()["mlflow"]["url"] == "https://mlflow.example.com/#/experiments/7/runs/parent-r1"


def test_the_chart_variable_reaches_the_setting() -> None:
    config = OperatorConfig.from_env({"INFIALIGN_OPERATOR_MLFLOW_EXTERNAL_URL": "https://mlflow.example.com"})
    assert config.mlflow_external_url == "https://mlflow.example.com"


class TestMlflowArtifactEndpoint:
    """Stage pods upload to MLflow's artifact store only when it does not proxy, and only at its own endpoint."""

    @pytest.fixture
    def operator_config(self) -> OperatorConfig:
        return dataclasses.replace(TEST_CONFIG, mlflow_uri="http://mlflow.ml:5000", mlflow_s3_endpoint_url="https://s3.mlflow.example.com")

    @staticmethod
    def _env(cluster: Any) -> dict[str, str]:
        job = cluster.job((cluster.jobs() or [None])[0])
        return {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}

    async def test_the_default_mlflow_gets_the_operators_artifact_endpoint(self, operator: Any, cluster: Any, make_run: Any) -> None:
        await cluster.create_run(make_run().dict())
        await cluster.eventually(cluster.jobs, what="the first Job")
        assert self._env(cluster)["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.mlflow.example.com"

    async def test_a_runs_own_mlflow_does_not_inherit_it(self, operator: Any, cluster: Any, make_run: Any) -> None:
        await cluster.create_run(make_run().set("spec.tracking", {"uri": "http://team-mlflow:5000"}).dict())
        await cluster.eventually(cluster.jobs, what="the first Job")
        env = self._env(cluster)
        assert env["MLFLOW_TRACKING_URI"] == "http://team-mlflow:5000" and "MLFLOW_S3_ENDPOINT_URL" not in env
