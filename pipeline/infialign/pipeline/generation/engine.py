"""One vLLM engine, opened and closed around a block: `with open_engine(model_dir, options) as engine`.

This module is the only place that talks to vLLM. `generate` drives the engine through the public
`LLMEngine` API that `LLM.generate` itself uses (`add_request`, `step`, `has_unfinished_requests`),
so finished prompts can be written while the rest of the batch is still decoding — at the throughput
of one big batch, which chunked `LLM.generate` calls would lose at every chunk's tail.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infialign.pipeline.generation.settings import EngineOptions, Sampling, engine_plan, request_seed

__all__ = ["Engine", "EngineError", "open_engine", "model_identity", "current_device"]

log = logging.getLogger(__name__)

_IDENTITY_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


class EngineError(RuntimeError):
    """vLLM could not load the model (missing files, unsupported architecture, too little memory)."""


def model_identity(model_dir: Path) -> str:
    """A cheap identity of a model directory: its config and tokenizer bytes, and its weight files' names and sizes.

    Hashing a 15 GB checkpoint to decide whether a shard is done would cost minutes; a retrained model
    has new weight sizes or a new config only rarely, so callers that know a content digest (a step's
    `_SUCCESS.json`) pass it to `open_engine(identity=…)` instead.
    """
    h = hashlib.sha256()
    for name in _IDENTITY_FILES:
        path = model_dir / name
        if path.is_file():
            h.update(name.encode() + b"\0" + path.read_bytes())
    for path in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
        h.update(f"{path.name}:{path.stat().st_size}".encode())
    return "sha256:" + h.hexdigest()


def current_device() -> str:
    from vllm.platforms import current_platform

    return str(current_platform.device_type or "cpu")


@dataclass
class Engine:
    """A started `vllm.LLM` and what identifies it; `llm` is there for raw comparisons (benchmarks)."""

    llm: Any
    model_dir: Path
    options: EngineOptions
    identity: str
    device: str

    def render(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """The model's chat template applied to a conversation, ready for the assistant turn, as token ids."""
        tokenizer = self.llm.get_tokenizer()
        text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        # the template already wrote every special token (BOS included, for models that have one)
        return list(tokenizer.encode(text, add_special_tokens=False))

    def sampling_params(self, sampling: Sampling, prompt_id: str) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=request_seed(sampling.seed, prompt_id),
            # 0 = the sampled token's log-prob only; vLLM sums them into CompletionOutput.cumulative_logprob
            logprobs=0 if sampling.logprobs else None,
            flat_logprobs=sampling.logprobs,
            # one output per request with all n samples, as LLM.generate does (else n>1 streams per child)
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    def add(self, request_id: str, token_ids: list[int], params: Any) -> None:
        self.llm.llm_engine.add_request(request_id, {"prompt_token_ids": token_ids}, params)

    def step(self) -> list[Any]:
        return list(self.llm.llm_engine.step())

    def has_unfinished(self) -> bool:
        return bool(self.llm.llm_engine.has_unfinished_requests())

    def abort(self, request_ids: list[str]) -> None:
        if request_ids:
            self.llm.llm_engine.abort_request(request_ids)


@contextmanager
def open_engine(model_dir: Path, options: EngineOptions, *, identity: str | None = None) -> Iterator[Engine]:
    """Start one engine for `model_dir`; it is shut down and its memory released when the block ends."""
    device = current_device()
    plan = engine_plan(model_dir, options, device=device, env=os.environ)
    os.environ.update(plan.env)  # read by vLLM when the engine starts
    from vllm import LLM

    log.info("starting vLLM on %s: %s", device, {k: v for k, v in plan.kwargs.items() if k != "model"})
    try:
        with _modules_hidden_from_vllm_kernel_scan():
            llm = LLM(**plan.kwargs)
    except Exception as e:  # noqa: BLE001  vLLM raises many types for "cannot load"; all are the same to the caller
        raise EngineError(f"vLLM cannot load the model at {model_dir}: {type(e).__name__}: {e}") from e
    engine = Engine(llm=llm, model_dir=model_dir, options=options, identity=identity or model_identity(model_dir), device=device)
    try:
        yield engine
    finally:
        _close(llm)


@contextmanager
def _modules_hidden_from_vllm_kernel_scan() -> Iterator[None]:
    """Hide, while the engine starts, the modules whose globals break vLLM's kernel-override scan.

    On CPU, vLLM rebinds its Triton kernels by walking every module in `sys.modules` and calling
    `hasattr(value, "__dict__")` on each global. `hasattr` swallows only AttributeError, so a werkzeug
    `LocalProxy` (`flask.current_app`, `flask.g`; imported by moto, an MLflow server or a notebook in
    the same process) raises "Working outside of application context" and the engine fails to load.
    Those modules hold no vLLM kernels, so skipping them changes nothing the scan is for.
    """
    hidden = {name: module for name, module in list(sys.modules.items()) if _breaks_attribute_probes(module)}
    for name in hidden:
        del sys.modules[name]
    try:
        yield
    finally:
        for name, module in hidden.items():
            sys.modules.setdefault(name, module)


def _breaks_attribute_probes(module: Any) -> bool:
    namespace = getattr(module, "__dict__", None)
    if not isinstance(namespace, dict):
        return False
    for value in list(namespace.values()):
        try:
            hasattr(value, "__dict__")
        except Exception:  # noqa: BLE001  exactly the probe vLLM makes; any error but AttributeError escapes it
            return True
    return False


def _close(llm: Any) -> None:
    """Shut the engine core down and free the distributed state, so the next engine can start in this process."""
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception as e:  # noqa: BLE001  closing is best effort; the process may be exiting anyway
        log.debug("engine shutdown: %s", e)
    del llm
    gc.collect()
    try:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
    except Exception as e:  # noqa: BLE001
        log.debug("vLLM cleanup: %s", e)
