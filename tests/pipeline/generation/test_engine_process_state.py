"""The engine starts in a process that already imported flask (moto, an MLflow server, a notebook).

vLLM's CPU kernel-override scan probes every module global with `hasattr`; a werkzeug LocalProxy
raises RuntimeError there. CI caught this only when the whole suite ran in one process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from infialign.pipeline.generation import EngineOptions, Sampling
from infialign.pipeline.generation.engine import _modules_hidden_from_vllm_kernel_scan, open_engine
from infialign.pipeline.world import tiny_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_modules_with_context_bound_globals_are_hidden_then_restored() -> None:
    flask = pytest.importorskip("flask")
    with _modules_hidden_from_vllm_kernel_scan():
        assert "flask" not in sys.modules
        for module in list(sys.modules.values()):  # the scan vLLM makes now passes
            for value in list(getattr(module, "__dict__", {}).values()):
                hasattr(value, "__dict__")
    assert sys.modules["flask"] is flask


def test_engine_generates_after_flask_was_imported() -> None:
    pytest.importorskip("flask")
    model_dir = Path(tiny_model.resolve_model_uri("builtin://tiny"))
    with open_engine(model_dir, EngineOptions(max_model_len=256)) as engine:
        outputs = engine.llm.generate([{"prompt_token_ids": engine.render([{"role": "user", "content": "2+2?"}])}], engine.sampling_params(Sampling(n=1, temperature=0, top_p=1, max_tokens=4, seed=0), "p0"), use_tqdm=False)
    assert len(outputs[0].outputs[0].token_ids) >= 1
