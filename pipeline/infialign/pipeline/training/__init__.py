"""Training library: records → TRL SFTTrainer, pairs → TRL DPOTrainer (+ DeepSpeed, torchrun) → exported HF model.

What the stage glue calls:

* ``SftSettings.from_api(stage, phase)`` → settings; ``train_sft(settings, model_path, records, output_dir,
  resume=…, heartbeat=…, metrics_sink=…, checkpoint_store=CheckpointStore.from_uri(…))`` → ``SftResult``,
  in-process for one CPU process;
* ``DpoSettings.from_api(stage)`` → settings; ``train_dpo(settings, model_path, pairs, output_dir, model_digest=…,
  ref_logps_uri=…, resume=…, …)`` → ``DpoResult`` (reference log-probs stored once, SAGE when enabled);
* for several processes or GPUs: write a ``WorkerConfig`` JSON, then run
  ``build_torchrun_argv(TorchrunSpec.from_env(os.environ), path)`` with ``build_worker_env(...)``; the result
  arrives in ``<output_dir>/<kind>_result.json``, progress in the heartbeat/metrics files.

Names resolve lazily (PEP 562), so importing the launch helpers or the settings does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    # settings and plan
    "TrainingSettings",
    "TrainingPlan",
    "plan_training",
    "SftSettings",
    "DpoSettings",
    "plan_dpo",
    "DeepSpeedOptions",
    "LoraOptions",
    "RopeOptions",
    "SftPlan",
    "SettingsError",
    "plan_sft",
    # training
    "train_sft",
    "SftResult",
    "train_dpo",
    "DpoResult",
    "RuntimeFacts",
    "detect_runtime",
    # data
    "PackingMode",
    "PackingDecision",
    "PackingError",
    "decide_packing",
    "build_train_dataset",
    "DatasetStats",
    "StepBatching",
    "StepBatchSampler",
    "plan_step_batches",
    "RopePlan",
    "RopeError",
    "plan_rope",
    "model_positions",
    "TruncationReport",
    "ChatFormatError",
    "conversation",
    "render_training_text",
    "tokenise_conversation",
    "tokenise_batch",
    "apply_max_length",
    "check_template_keeps_response",
    # deepspeed
    "build_deepspeed_config",
    "resolve_auto",
    # checkpoints
    "CheckpointStore",
    "CheckpointPublisher",
    "CheckpointPublishError",
    "find_resume_checkpoint",
    "read_marker",
    # progress
    "HeartbeatCallback",
    "MetricsCallback",
    "FlopsModel",
    "peak_flops_for",
    "PEAK_BF16_FLOPS",
    # launch
    "TorchrunSpec",
    "LaunchError",
    "build_torchrun_argv",
    "build_worker_env",
    "WorkerConfig",
]

# Which module defines each public name. One table instead of eager imports: torch/transformers load only
# when a training name is used.
_WHERE = {
    **dict.fromkeys(
        ["TrainingSettings", "TrainingPlan", "plan_training", "SftSettings", "DeepSpeedOptions", "LoraOptions", "RopeOptions",
         "SftPlan", "SettingsError", "plan_sft"],
        "settings",
    ),
    **dict.fromkeys(["DpoSettings", "plan_dpo"], "dpo_settings"),
    **dict.fromkeys(["train_sft", "SftResult"], "sft"),
    **dict.fromkeys(["RuntimeFacts", "detect_runtime"], "runner"),
    **dict.fromkeys(["train_dpo", "DpoResult"], "dpo"),
    **dict.fromkeys(
        ["PackingMode", "PackingDecision", "PackingError", "decide_packing", "build_train_dataset", "DatasetStats", "StepBatching",
         "StepBatchSampler", "plan_step_batches"],
        "data",
    ),
    **dict.fromkeys(["RopePlan", "RopeError", "plan_rope", "model_positions"], "rope"),
    **dict.fromkeys(
        ["TruncationReport", "ChatFormatError", "conversation", "render_training_text", "tokenise_conversation",
         "tokenise_batch", "apply_max_length", "check_template_keeps_response"],
        "chat",
    ),
    **dict.fromkeys(["build_deepspeed_config", "resolve_auto"], "deepspeed_config"),
    **dict.fromkeys(
        ["CheckpointStore", "CheckpointPublisher", "CheckpointPublishError", "find_resume_checkpoint", "read_marker"], "checkpoints"
    ),
    **dict.fromkeys(["HeartbeatCallback", "MetricsCallback", "FlopsModel", "peak_flops_for", "PEAK_BF16_FLOPS"], "progress"),
    **dict.fromkeys(["TorchrunSpec", "LaunchError", "build_torchrun_argv", "build_worker_env"], "launch"),
    "WorkerConfig": "worker",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
