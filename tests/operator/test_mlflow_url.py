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
