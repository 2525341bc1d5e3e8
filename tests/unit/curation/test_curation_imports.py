"""The CPU image must import the curation library without torch and the other heavy optional deps."""

from __future__ import annotations

import subprocess
import sys


def test_import_pulls_no_heavy_dependency():
    code = (
        "import sys, infialign.pipeline.curation as c; "
        "heavy = [m for m in ('torch', 'ray', 'sklearn', 'sentence_transformers', 'math_verify', 'rapidfuzz', "
        "'faiss', 'matplotlib', 'transformers', 'vllm') if m in sys.modules]; "
        "print(','.join(heavy)); assert set(c.__all__) <= set(dir(c))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=None, check=True)
    assert out.stdout.strip() == ""
