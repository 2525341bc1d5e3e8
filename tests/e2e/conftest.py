"""The e2e tests reuse the operator suite's kmock harness (API-server shim, kubeconfig, resources).

`tests/` is not a package (pytest runs with `--import-mode=importlib`), so the operator conftest is
loaded by path and its fixtures are re-exported here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_infialign_operator_harness", Path(__file__).parents[1] / "operator" / "conftest.py")
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness  # dataclasses look their module up while the module executes
_spec.loader.exec_module(harness)

kmock_options = harness.kmock_options
kubeconfig = harness.kubeconfig
k8s_resources = harness.k8s_resources
cluster = harness.cluster


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: the real operator and the real stage processes together (minutes on CPU)")
    config.addinivalue_line("filterwarnings", "ignore:read_binary is deprecated:DeprecationWarning")
