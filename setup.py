"""Package layout only; everything else is in pyproject.toml.

`infialign` is a PEP 420 namespace package split across two folders, `pipeline/infialign/pipeline`
and `operator/infialign/operator`. pyproject's `packages.find` cannot map one namespace onto two
roots, so the mapping is spelled out here.
"""

from setuptools import find_namespace_packages, setup

ROOTS = {"infialign.pipeline": "pipeline/infialign/pipeline", "infialign.operator": "operator/infialign/operator"}

packages = [
    pkg
    for folder in ("pipeline", "operator")
    for pkg in find_namespace_packages(folder, include=["infialign.*"])
]

setup(packages=packages, package_dir=ROOTS)
