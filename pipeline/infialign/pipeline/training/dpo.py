"""``train_dpo``: DPO on TRL's DPOTrainer from the SFT model, with stored reference log-probs and SAGE.

Flow: resolve the plan (dpo_settings.plan_dpo) → turn the pairs into TRL's conversational preference format
(system prompt, prompt messages, one assistant turn each) and drop pairs longer than ``max_length`` (counted:
cutting a CoT drops its answer, the part the two responses differ in) → attach the stored reference log-probs
when ``pairs-ref.parquet`` matches (reflogps.py), else let TRL compute them once with the start model and store
them → DPOTrainer with ``precompute_ref_log_probs=True`` and no reference model → SAGE, when on, as a sampler the
Trainer draws from plus a callback that refreshes it every R steps → train, resuming from the newest published
checkpoint → export ``<output_dir>/model``.

The shared machinery (torchrun, DeepSpeed config, checkpoints, heartbeat, metrics, export) is runner.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from transformers import TrainerCallback

from infialign.pipeline import pairs as _pairs
from infialign.pipeline.training import checkpoints as _ckpt
from infialign.pipeline.training import dpo_settings as _dpo_settings
from infialign.pipeline.training import progress as _progress
from infialign.pipeline.training import reflogps as _ref
from infialign.pipeline.training import runner as _runner
from infialign.pipeline.training import sage as _sage
from infialign.pipeline.training import settings as _settings

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "DpoResult",
    "PairData",
    "SAGE_STATE_FILE",
    "SageCallback",
    "build_pair_data",
    "pair_margins",
    "train_dpo",
]

log = logging.getLogger(__name__)

SAGE_STATE_FILE = "sage_state.json"
_MODEL_INPUTS = ("prompt_ids", "chosen_ids", "rejected_ids", *_ref.REF_COLUMNS)


@dataclass(kw_only=True)
class DpoResult(_runner.TrainingResult):
    """What a finished DPO run reports: the shared training result, the pairs it trained on and SAGE's refreshes."""

    pairs: int
    dropped_overlong: int
    ref_logps: str  # "stored" (read from pairs-ref.parquet), "computed" (and stored), or "live" (reference model)
    sage_refreshes: list[dict[str, Any]] = field(default_factory=list)

    def _own_fields(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "dropped_overlong": self.dropped_overlong, "ref_logps": self.ref_logps, "sage_refreshes": self.sage_refreshes}


# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class PairData:
    """The pairs in TRL's conversational preference format, after the length filter."""

    rows: list[dict[str, Any]]  # id, prompt, chosen, rejected (messages)
    table: pa.Table  # the kept pairs (pair schema), same order as rows
    chosen_tokens: np.ndarray  # tokens of each kept `chosen` response (SAGE tiers when difficulty is null)
    rejected_tokens: np.ndarray
    dropped_overlong: int

    @property
    def mean_response_tokens(self) -> float:
        return float(np.mean(np.concatenate([self.chosen_tokens, self.rejected_tokens]))) if len(self.rows) else 0.0


def _conversation_prompt(prompt: Sequence[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def build_pair_data(pairs: pa.Table, tokenizer: PreTrainedTokenizerBase, settings: _dpo_settings.DpoSettings) -> PairData:
    """Validate, render with the training chat template, and drop pairs whose longer member exceeds ``max_length``."""
    table = _pairs.validate_pairs(pairs)
    rows: list[dict[str, Any]] = []
    texts: list[str] = []
    for r in table.select(["id", "prompt", "chosen", "rejected"]).to_pylist():
        prompt = _conversation_prompt(r["prompt"], settings.system_prompt)
        row = {
            "id": r["id"],
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        rows.append(row)
        texts.append(tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True))
        texts.append(tokenizer.apply_chat_template(prompt + row["chosen"], tokenize=False))
        texts.append(tokenizer.apply_chat_template(prompt + row["rejected"], tokenize=False))
    lengths = np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]], dtype=np.int64).reshape(-1, 3)
    keep = np.maximum(lengths[:, 1], lengths[:, 2]) <= settings.max_length
    dropped = int((~keep).sum())
    if not keep.any():
        raise _settings.SettingsError(
            f"every one of the {len(rows)} pairs is longer than max_length={settings.max_length} tokens (shortest pair: "
            f"{int(np.maximum(lengths[:, 1], lengths[:, 2]).min())}); raise spec.stages.dpo.maxLength"
        )
    if dropped:
        log.warning("dropped %d of %d pairs longer than max_length=%d tokens (a cut CoT loses its answer)", dropped, len(rows), settings.max_length)
    kept = np.flatnonzero(keep)
    return PairData(
        rows=[rows[i] for i in kept],
        table=table.take(pa.array(kept)),
        chosen_tokens=(lengths[kept, 1] - lengths[kept, 0]),
        rejected_tokens=(lengths[kept, 2] - lengths[kept, 0]),
        dropped_overlong=dropped,
    )


# ---------------------------------------------------------------------------------------------- margins


def _disable_checkpointing(model: Any, args: Any) -> Any:
    import contextlib

    try:
        from trl.models.utils import disable_gradient_checkpointing
    except ImportError:  # another TRL layout: the forward under no_grad works anyway, with a warning
        return contextlib.nullcontext()
    return disable_gradient_checkpointing(model, args.gradient_checkpointing_kwargs)


def pair_margins(
    trainer: Any, indices: np.ndarray, *, beta: float, length_scale: float | None, batch_size: int
) -> np.ndarray:
    """The DPO margin u of each pair ``indices`` names under the *current* policy: forward passes, no gradients.

    Collective: every rank must call it with the same ``indices``; each scores a strided share and the margins are
    exchanged, so every rank ends with all of them (the SAGE selection must be the same on every rank).
    """
    if len(indices) == 0:  # every pair mastered: nothing to score (the same on every rank, so no collective is skipped unevenly)
        return np.empty(0, dtype=np.float64)
    import torch

    dataset = trainer.train_dataset.select_columns(list(_MODEL_INPUTS))
    world, rank = trainer.accelerator.num_processes, trainer.accelerator.process_index
    mine = [int(i) for i in indices[rank::world]]
    per_rank = math.ceil(len(indices) / world) if len(indices) else 0
    padded = mine + [int(indices[0])] * (per_rank - len(mine))  # equal work per rank: ZeRO-3 forwards are collective
    model = trainer.model
    device = trainer.accelerator.device
    out: list[float] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _disable_checkpointing(model, trainer.args), trainer.accelerator.autocast():
            for start in range(0, len(padded), batch_size):
                chunk = padded[start : start + batch_size]
                batch = trainer.data_collator([dataset[i] for i in chunk])
                completion_mask = batch["completion_mask"].to(device)
                input_ids = batch["input_ids"].to(device)
                labels = input_ids.masked_fill(completion_mask == 0, -100)
                outputs = model(
                    input_ids=input_ids, attention_mask=batch["attention_mask"].to(device), labels=labels, use_cache=False,
                    fused_lm_head=True,
                )
                shift_mask = completion_mask[..., 1:]
                logps = outputs.log_probs[:, -shift_mask.size(1) :].sum(dim=1).float().cpu().numpy()
                tokens = shift_mask.sum(dim=1).float().cpu().numpy()
                n = len(chunk)
                u = _sage.dpo_margins(
                    logps[:n], logps[n:], batch["ref_chosen_logps"].numpy(), batch["ref_rejected_logps"].numpy(), beta=beta,
                    chosen_tokens=tokens[:n] if length_scale else None, rejected_tokens=tokens[n:] if length_scale else None,
                    length_scale=length_scale or 1.0,
                )
                out.extend(float(v) for v in u)
    finally:
        model.train(was_training)
    gathered = _ckpt.exchange({"rank": rank, "u": out[: len(mine)]})
    margins = np.empty(len(indices), dtype=np.float64)
    for part in gathered:
        margins[part["rank"] :: world] = part["u"]
    return margins


# ---------------------------------------------------------------------------------------------- SAGE in the Trainer


def _make_sampler(selector: _sage.SageSelector, length: int, seed: int) -> Any:
    import torch

    class SageSampler(torch.utils.data.Sampler[int]):
        """Pair indices drawn from the selector's current selection, shuffled, without replacement within a window.

        ``length`` indices per epoch keep the step budget of uniform DPO. A refresh (the callback) replaces the
        selection; the next index comes from the new one (the data loader runs at most one batch ahead).
        """

        def __init__(self) -> None:
            self.epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __len__(self) -> int:
            return length

        def __iter__(self) -> Iterator[int]:
            version, cycle, order = -1, 0, []
            for _ in range(length):
                if selector.refreshes != version:
                    version, cycle, order = selector.refreshes, 0, []
                if not order:
                    pool = selector.selection if selector.selection.size else np.arange(selector.n)
                    rng = np.random.default_rng([seed, 2, self.epoch, version, cycle])
                    order, cycle = list(rng.permutation(pool)), cycle + 1
                yield int(order.pop())

    return SageSampler()


class SageCallback(TrainerCallback):
    """Refresh the SAGE selection every R optimizer steps (sage.refresh_due); save its state with checkpoints.

    ``score(indices) -> margins`` runs the forward passes (``pair_margins``); ``report(metrics, step)`` logs a refresh
    (MLflow on world rank 0, the heartbeat on each node).
    """

    def __init__(
        self,
        selector: _sage.SageSelector,
        score: Callable[[np.ndarray], np.ndarray],
        report: Callable[[dict[str, float], int], None],
    ) -> None:
        self.selector = selector
        self.score = score
        self.report = report
        self.reports: list[dict[str, Any]] = []

    def _refresh(self, step: int) -> None:
        indices = self.selector.to_score()
        started = time.perf_counter()
        margins = self.score(indices)
        result = self.selector.refresh(step, indices, margins)
        metrics = result.metrics()
        metrics["sage.refresh_s"] = time.perf_counter() - started
        self.reports.append({**dataclasses.asdict(result), "refresh_s": metrics["sage.refresh_s"]})
        log.info(
            "SAGE refresh %d at step %d: pool %d %s, competence %.2f, unstable %.0f%%, retired %d, selected %d%s%s",
            result.refresh, step, result.pool, result.pool_by_tier, result.competence, 100 * result.unstable_fraction,
            result.retired_total, result.selected,
            f" ({result.topped_up} of them least-mastered others, to fill one global batch)" if result.topped_up else "",
            f" ({result.fallback})" if result.fallback else "",
        )
        self.report(metrics, step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step < state.max_steps and self.selector.due(state.global_step):
            self._refresh(state.global_step)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Before the publisher uploads the checkpoint (runner.standard_callbacks puts us first), on each node.
        if state.is_local_process_zero:
            target = Path(args.output_dir) / f"checkpoint-{state.global_step}" / SAGE_STATE_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(self.selector.state_dict()))


# ---------------------------------------------------------------------------------------------- trainer


def _make_trainer_class() -> type:
    from trl import DPOTrainer

    class InfiDPOTrainer(DPOTrainer):
        """DPOTrainer that computes the reference log-probs in memory (or reuses stored ones) and can draw from SAGE.

        * ``_precompute_ref_logps``: TRL 1.16 writes the values to a cache file next to the dataset from the main
          process and reads it back on every rank; for an in-memory dataset that file is in a per-process temp
          directory, so other ranks fail, and across nodes only node 0 would see it. Every rank gathers the values
          anyway (``gather_for_metrics``), so we add them as columns in memory, and we skip the pass when the columns
          are already there (stored in pairs-ref.parquet; TRL cannot load precomputed values, huggingface/trl#3985).
          The per-batch computation stays TRL's (``compute_ref_log_probs``: PEFT adapters off, autocast, ``ld_alpha``).
          Exit: drop the override when TRL keeps the values in memory and reuses existing columns.
        * ``_get_train_sampler``: the SAGE sampler when one is set, else the Trainer's own.
        """

        sage_sampler: Any = None
        ref_logps_computed = False

        def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
            import torch
            from torch.utils.data import DataLoader
            from trl.models import prepare_deepspeed

            if all(c in dataset.column_names for c in _ref.REF_COLUMNS):
                return dataset
            self.ref_logps_computed = True
            inputs = dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"])
            loader = self.accelerator.prepare(
                DataLoader(inputs, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False, num_workers=0)
            )
            if self.ref_model is None and self.is_deepspeed_enabled:
                # Before `train`, the ZeRO parameters are not placed yet; TRL's own pass wraps the model the same way.
                if getattr(self, "_precompute_engine", None) is None:
                    self._precompute_engine = prepare_deepspeed(self.model, self.accelerator)
                model = self._precompute_engine
            else:
                model = self.ref_model or self.model
            chosen: list[torch.Tensor] = []
            rejected: list[torch.Tensor] = []
            for batch in loader:
                c, r = self.compute_ref_log_probs(model, batch)
                c, r = self.accelerator.gather_for_metrics((c, r))  # every rank gets every value, in dataset order
                chosen.append(c.float().cpu())
                rejected.append(r.float().cpu())
            values = {
                _ref.REF_COLUMNS[0]: torch.cat(chosen).tolist(),
                _ref.REF_COLUMNS[1]: torch.cat(rejected).tolist(),
            }
            if len(values[_ref.REF_COLUMNS[0]]) != dataset.num_rows:
                raise RuntimeError(f"reference pass over {name} returned {len(values[_ref.REF_COLUMNS[0]])} values for {dataset.num_rows} pairs")
            for column, column_values in values.items():
                dataset = dataset.add_column(column, column_values)
            return dataset

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            if self.sage_sampler is not None:
                return self.sage_sampler
            return super()._get_train_sampler(train_dataset)

    return InfiDPOTrainer


def train_dpo(
    settings: _dpo_settings.DpoSettings,
    model_path: str,
    pairs: pa.Table,
    output_dir: Path | str,
    *,
    model_digest: str,
    ref_logps_uri: str | None = None,
    storage_options: dict[str, Any] | None = None,
    resume: bool = False,
    heartbeat: _progress.Heartbeat | None = None,
    metrics_sink: _progress.MetricsSink | None = None,
    checkpoint_store: _ckpt.CheckpointStore | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> DpoResult:
    """Train DPO from ``model_path`` on ``pairs`` and export the model to ``output_dir/model``.

    Args:
        settings: the run's settings.
        model_path: a local HF model directory (the SFT model); also the frozen reference.
        pairs: a table in the pair schema (pairs.py).
        output_dir: local working directory.
        model_digest: the content digest of ``model_path`` (part of the reference log-probs' fingerprint).
        ref_logps_uri: where the reference log-probs live (fsspec URI). Empty: ``output_dir/pairs-ref.parquet``.
        storage_options: fsspec options for ``ref_logps_uri`` (an S3 endpoint).
        resume: continue from the newest checkpoint (see sft.train_sft).
        heartbeat, metrics_sink, checkpoint_store, callbacks: as for ``train_sft``.
    """
    return _runner.isolated_run(
        lambda: _train(
            settings, model_path, pairs, Path(output_dir), model_digest=model_digest,
            ref_logps_uri=ref_logps_uri or str(Path(output_dir) / "pairs-ref.parquet"), storage_options=storage_options,
            resume=resume, heartbeat=heartbeat, metrics_sink=metrics_sink, checkpoint_store=checkpoint_store, callbacks=callbacks,
        )
    )


def _train(
    settings: _dpo_settings.DpoSettings,
    model_path: str,
    pairs: pa.Table,
    output_dir: Path,
    *,
    model_digest: str,
    ref_logps_uri: str,
    storage_options: dict[str, Any] | None,
    resume: bool,
    heartbeat: _progress.Heartbeat | None,
    metrics_sink: _progress.MetricsSink | None,
    checkpoint_store: _ckpt.CheckpointStore | None,
    callbacks: Sequence[TrainerCallback],
) -> DpoResult:
    from datasets import Dataset
    from trl import DPOConfig

    started = time.perf_counter()
    facts = _runner.detect_runtime()
    plan = _dpo_settings.plan_dpo(
        settings, device=facts.device, world_size=facts.world_size, flash_attn_available=facts.flash_attn_available,
        deepspeed_available=facts.deepspeed_available,
    )
    if facts.rank == 0:
        log.info("DPO plan: %s", plan.describe())
    deepspeed_cfg = _runner.setup_deepspeed(plan, settings, facts, output_dir)
    tokenizer = _runner.prepare_tokenizer(model_path, settings)
    data = build_pair_data(pairs, tokenizer, settings)
    stored = settings.reference == "stored"
    args = DPOConfig(
        **_runner.common_args(settings, plan, output_dir, deepspeed_cfg),
        beta=settings.beta,
        loss_type=list(settings.loss_type),
        loss_weights=list(settings.loss_weights) if settings.loss_weights is not None else None,
        precompute_ref_log_probs=stored,
        precompute_ref_batch_size=settings.ref_batch_size or settings.micro_batch_size,
        truncation_mode="keep_start",  # a no-op: build_pair_data dropped the over-long pairs
        dataset_num_proc=settings.dataset_num_proc,
    )
    _runner.log_distributed(facts)

    ids = [r["id"] for r in data.rows]
    fp = _ref.fingerprint(
        model_digest=model_digest, pairs=data.table, chat_template=tokenizer.chat_template, system_prompt=settings.system_prompt,
        max_length=settings.max_length, precision=plan.precision,
    )
    found = _ref.load(ref_logps_uri, fp, ids, storage_options=storage_options) if stored else None
    columns: dict[str, list[Any]] = {k: [r[k] for r in data.rows] for k in ("id", "prompt", "chosen", "rejected")}
    if found is not None:
        columns[_ref.REF_COLUMNS[0]] = found.chosen.tolist()
        columns[_ref.REF_COLUMNS[1]] = found.rejected.tolist()
        if facts.rank == 0:
            log.info("reference log-probs: reusing %s (%d pairs)", ref_logps_uri, len(ids))
    train_ds = Dataset.from_dict(columns)

    model = _runner.load_model(model_path, plan)
    selector = None
    if settings.sage.enabled:
        difficulty = data.table.column("difficulty").to_pylist()
        tiers = _sage.assign_tiers(difficulty, data.chosen_tokens, settings.sage.tier_pass_rates, settings.sage.tiers)
        selector = _sage.SageSelector(settings.sage, tiers=tiers, seed=settings.seed, global_batch_size=settings.global_batch_size)
        if facts.rank == 0:
            log.info("SAGE: %d pairs in %d tiers, refresh every %d steps", selector.n, settings.sage.tiers, selector.refresh_steps)
    sage_cb: SageCallback | None = None
    cbs_holder: dict[str, _runner.Callbacks] = {}

    def report(metrics: dict[str, float], step: int) -> None:
        hb = cbs_holder["cbs"].heartbeat
        if hb is not None:
            hb.add_metrics(metrics)
        if metrics_sink is not None and facts.rank == 0:
            try:
                metrics_sink(metrics, step)
            except Exception:  # tracking outages must not end training
                log.exception("metrics sink failed for a SAGE refresh at step %d", step)

    trainer_holder: dict[str, Any] = {}
    if selector is not None:
        sage_cb = SageCallback(
            selector,
            lambda idx: pair_margins(
                trainer_holder["trainer"], idx, beta=settings.beta,
                length_scale=data.mean_response_tokens if settings.sage.length_normalised else None,
                batch_size=settings.sage.score_batch_size,
            ),
            report,
        )
    mean_tokens = float(np.mean(data.chosen_tokens)) if len(data.chosen_tokens) else 0.0
    cbs = _runner.standard_callbacks(
        settings, facts, flops=_progress.flops_model_for(model, mean_tokens), checkpoint_store=checkpoint_store, heartbeat=heartbeat,
        metrics_sink=metrics_sink, before_publish=[sage_cb] if sage_cb else [], extra=callbacks,
    )
    cbs_holder["cbs"] = cbs
    trainer_cls = _make_trainer_class()
    # Not under main_process_first: TRL's reference pass is collective (broadcast, gather), and its dataset
    # preparation orders the ranks itself.
    trainer = trainer_cls(
        model=model, args=args, train_dataset=train_ds, processing_class=tokenizer, peft_config=_runner.lora_config(settings),
        callbacks=cbs.all,
    )
    trainer_holder["trainer"] = trainer
    _runner.check_engine(trainer, plan)
    if trainer.train_dataset.num_rows != len(ids) or trainer.train_dataset["id"] != ids:
        raise RuntimeError(
            f"TRL kept {trainer.train_dataset.num_rows} of {len(ids)} pairs; the reference log-probs and SAGE index pairs by "
            "position, so a row dropped inside the trainer would misalign them"
        )
    if not stored:
        ref_source = "live"
    elif found is not None:
        ref_source = "stored"
    else:
        ref_source = "computed"
        if facts.rank == 0:
            values = _ref.RefLogps(
                ids,
                np.asarray(trainer.train_dataset[_ref.REF_COLUMNS[0]], dtype=np.float64),
                np.asarray(trainer.train_dataset[_ref.REF_COLUMNS[1]], dtype=np.float64),
            )
            _ref.save(ref_logps_uri, fp, values, storage_options=storage_options)
            log.info("reference log-probs: computed once for %d pairs and stored in %s", len(ids), ref_logps_uri)
        trainer.accelerator.wait_for_everyone()

    resume_from = _runner.resume_checkpoint(resume, checkpoint_store, args, output_dir, facts)
    if selector is not None:
        if resume_from and (Path(resume_from) / SAGE_STATE_FILE).exists():
            selector.load_state_dict(json.loads((Path(resume_from) / SAGE_STATE_FILE).read_text()))
            if facts.rank == 0:
                log.info("SAGE: resumed after refresh %d (pool %d, retired %d)", selector.refreshes, int(selector.in_pool.sum()),
                         int(selector.retired.sum()))
        trainer.sage_sampler = _make_sampler(selector, len(ids), settings.seed)

    output = trainer.train(resume_from_checkpoint=resume_from)
    model_dir = _runner.export_model(trainer, settings, model_path, tokenizer, output_dir)

    metrics = {k: float(v) for k, v in output.metrics.items() if isinstance(v, int | float)}
    metrics.update(cbs.metrics.last)
    metrics.update(_runner.run_calibration(trainer, cbs, metrics, settings, facts))
    return DpoResult(
        model_dir=model_dir if trainer.is_world_process_zero() else None,
        plan=plan,
        pairs=len(ids),
        dropped_overlong=data.dropped_overlong,
        ref_logps=ref_source,
        global_step=trainer.state.global_step,
        train_loss=float(output.training_loss) if output.training_loss is not None else None,
        metrics=metrics,
        sage_refreshes=sage_cb.reports if sage_cb else [],
        resumed_from=resume_from,
        last_checkpoint=(cbs.publisher.last_published if cbs.publisher else None) or _runner.last_local_checkpoint(args),
        runtime_s=time.perf_counter() - started,
        world_size=facts.world_size,
        rank=facts.rank,
    )
