"""Packaging: the namespace layout never shadows the standard library, and the CLI lists its commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stdlib_operator_is_not_shadowed_from_the_repo_root() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import operator, sysconfig; print(operator.__file__); print(sysconfig.get_paths()['stdlib'])"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    module_file, stdlib = out.stdout.split()
    assert module_file.startswith(stdlib), module_file
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert not (ROOT / "pipeline" / "__init__.py").exists()


def test_stdlib_operator_with_the_repo_root_on_sys_path() -> None:
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import operator; print(operator.itemgetter.__module__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "operator"


def test_both_halves_of_the_namespace_import() -> None:
    import infialign.operator
    import infialign.pipeline.api

    assert "operator/infialign/operator" in Path(infialign.operator.__file__).as_posix()
    assert "pipeline/infialign/pipeline" in Path(infialign.pipeline.api.__file__).as_posix()


def test_cli_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "infialign.pipeline.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("run", "validate", "crd", "stage", "operator"):
        assert f"    {command} " in out.stdout, out.stdout
