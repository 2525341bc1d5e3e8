"""Implicit-reward preference accuracy of a policy against its reference on (held-out) pairs, once or as a curve.

For each pair, r(y) = β·(log π(y|x) − log π_ref(y|x)) summed over the response tokens; the pair is ranked right
when r(chosen) > r(rejected). This is DPO's own yardstick (TRL logs it per batch as ``rewards/accuracies``); here
it is computed on pairs the policy never trained on, with plain forward passes, for tests and benchmarks. Small
models on CPU: it materialises the logits of a batch.

* ``implicit_preference(policy_dir, reference_dir, pairs)``: one number after training;
* ``curve_callback(...)``: a ``TrainerCallback`` that evaluates the held-out pairs every K optimizer steps during
  training and records ``(step, accuracy, mean_margin)``. The reference log-probs of the held-out pairs are
  computed once (``reference_logps``) and passed in, so a curve costs one policy pass per point.

The decisions (``preference_from_logps``, ``curve_due``) are pure and unit-tested on plain arrays; torch and
transformers are imported inside the functions that need them, so importing this module stays light.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from infialign.pipeline import pairs as _pairs
from infialign.pipeline.training import sage as _sage

__all__ = [
    "CurvePoint",
    "EncodedPairs",
    "PairLogps",
    "PreferenceEval",
    "curve_callback",
    "curve_due",
    "encode_pairs",
    "implicit_preference",
    "pair_logps",
    "preference_from_logps",
    "reference_logps",
    "response_logps",
]


@dataclass(frozen=True)
class PreferenceEval:
    accuracy: float  # share of pairs with r(chosen) > r(rejected)
    mean_margin: float  # mean of r(chosen) − r(rejected)
    margins: np.ndarray


@dataclass(frozen=True)
class PairLogps:
    """Summed response log-probs of each pair's two members under one model."""

    chosen: np.ndarray
    rejected: np.ndarray


@dataclass(frozen=True)
class EncodedPairs:
    """Token ids of prompt + response for both members of each pair, and where each response starts."""

    chosen: list[tuple[list[int], int]]
    rejected: list[tuple[list[int], int]]

    def __len__(self) -> int:
        return len(self.chosen)


@dataclass(frozen=True)
class CurvePoint:
    """One held-out evaluation during training."""

    step: int
    accuracy: float
    mean_margin: float
    train_s: float  # wall seconds of training up to this step (SAGE refreshes included, curve evaluations excluded)
    eval_s: float  # wall seconds this evaluation took


# ---------------------------------------------------------------------------------------------- pure


def preference_from_logps(policy: PairLogps, reference: PairLogps, *, beta: float) -> PreferenceEval:
    """Accuracy and mean of the implicit-reward margins β·((π_w − ref_w) − (π_l − ref_l)); a tie (margin 0) counts wrong."""
    pc, pr = np.asarray(policy.chosen, dtype=np.float64), np.asarray(policy.rejected, dtype=np.float64)
    rc, rr = np.asarray(reference.chosen, dtype=np.float64), np.asarray(reference.rejected, dtype=np.float64)
    if not pc.shape == pr.shape == rc.shape == rr.shape:
        raise ValueError(f"policy ({pc.shape}, {pr.shape}) and reference ({rc.shape}, {rr.shape}) log-probs differ in shape")
    if pc.size == 0:
        raise ValueError("no pairs to evaluate")
    margins = _sage.dpo_margins(pc, pr, rc, rr, beta=beta)
    return PreferenceEval(accuracy=float(np.mean(margins > 0)), mean_margin=float(np.mean(margins)), margins=margins)


def curve_due(step: int, every: int, max_steps: int | None = None) -> bool:
    """A curve point is due at step 0, every ``every`` optimizer steps, and at the last step (``max_steps``)."""
    if every < 1:
        raise ValueError(f"curve interval every={every} must be at least 1 step")
    return step % every == 0 or (max_steps is not None and step == max_steps)


# ---------------------------------------------------------------------------------------------- forward passes


def _encode(tokenizer: Any, prompts: Sequence[Sequence[dict[str, str]]], responses: Sequence[str]) -> list[tuple[list[int], int]]:
    out = []
    for prompt, response in zip(prompts, responses, strict=True):
        head = tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": response}], tokenize=False)
        out.append((tokenizer(full, add_special_tokens=False)["input_ids"], len(tokenizer(head, add_special_tokens=False)["input_ids"])))
    return out


def encode_pairs(tokenizer: Any, pairs: pa.Table) -> EncodedPairs:
    """Render each pair's prompt with the chat template (generation prompt) and append each response."""
    table = _pairs.validate_pairs(pairs)
    prompts = table.column("prompt").to_pylist()
    return EncodedPairs(
        chosen=_encode(tokenizer, prompts, table.column("chosen").to_pylist()),
        rejected=_encode(tokenizer, prompts, table.column("rejected").to_pylist()),
    )


def _sequence_logps(model: Any, encoded: Sequence[tuple[list[int], int]], *, pad_id: int, batch_size: int) -> np.ndarray:
    import torch

    device = next(model.parameters()).device
    out: list[float] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(encoded), batch_size):
                chunk = encoded[start : start + batch_size]
                width = max(len(ids) for ids, _ in chunk)
                ids = torch.tensor([s + [pad_id] * (width - len(s)) for s, _ in chunk], device=device)
                mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s, _ in chunk], device=device)
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
                logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
                for row, (seq, first) in enumerate(chunk):
                    out.append(float(logp[row, first - 1 : len(seq) - 1].sum()))
    finally:
        model.train(was_training)
    return np.asarray(out, dtype=np.float64)


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def pair_logps(model: Any, encoded: EncodedPairs, *, pad_id: int, batch_size: int = 8) -> PairLogps:
    """Summed response log-probs of both members of each pair under ``model`` (eval mode, no gradients)."""
    return PairLogps(
        chosen=_sequence_logps(model, encoded.chosen, pad_id=pad_id, batch_size=batch_size),
        rejected=_sequence_logps(model, encoded.rejected, pad_id=pad_id, batch_size=batch_size),
    )


def response_logps(
    model: Any, tokenizer: Any, prompts: Sequence[Sequence[dict[str, str]]], responses: Sequence[str], *, batch_size: int = 8
) -> np.ndarray:
    """Summed log-probabilities of each response after its prompt (chat template, generation prompt)."""
    return _sequence_logps(model, _encode(tokenizer, prompts, responses), pad_id=_pad_id(tokenizer), batch_size=batch_size)


def reference_logps(model_dir: str | Path, encoded: EncodedPairs, *, pad_id: int, batch_size: int = 8) -> PairLogps:
    """The held-out pairs' log-probs under the frozen reference (the start model), computed once for a whole curve."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="float32").eval()
    try:
        return pair_logps(model, encoded, pad_id=pad_id, batch_size=batch_size)
    finally:
        del model


def implicit_preference(
    policy_dir: str | Path, reference_dir: str | Path, pairs: pa.Table, *, beta: float, batch_size: int = 8
) -> PreferenceEval:
    """Preference accuracy and mean implicit-reward margin of ``policy_dir`` against ``reference_dir`` on ``pairs``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(policy_dir))
    encoded = encode_pairs(tokenizer, pairs)
    pad = _pad_id(tokenizer)
    policy = reference_logps(policy_dir, encoded, pad_id=pad, batch_size=batch_size)
    reference = reference_logps(reference_dir, encoded, pad_id=pad, batch_size=batch_size)
    return preference_from_logps(policy, reference, beta=beta)


# ---------------------------------------------------------------------------------------------- curve during training


@functools.cache
def _curve_callback_class() -> type:
    from transformers import TrainerCallback

    class HeldOutCurve(TrainerCallback):
        """Evaluate held-out pairs under the training policy at step 0, every ``every`` steps and at the last step.

        Runs on every rank with the same pairs (ZeRO-3 forwards are collective); each rank records the same points.
        The clock starts at ``on_train_begin``; the time spent in these evaluations is subtracted, so ``train_s``
        is what training itself (SAGE refreshes included) took to reach each step.
        """

        def __init__(self, encoded: EncodedPairs, reference: PairLogps, *, beta: float, every: int, pad_id: int, batch_size: int) -> None:
            if len(reference.chosen) != len(encoded):
                raise ValueError(f"{len(reference.chosen)} reference log-probs for {len(encoded)} held-out pairs")
            curve_due(0, every)  # validates `every` before training starts
            self.encoded, self.reference = encoded, reference
            self.beta, self.every, self.pad_id, self.batch_size = beta, every, pad_id, batch_size
            self.points: list[CurvePoint] = []
            self._started: float | None = None
            self._eval_total = 0.0

        def _evaluate(self, step: int, model: Any) -> None:
            if self.points and self.points[-1].step == step:
                return
            began = time.perf_counter()
            result = preference_from_logps(pair_logps(model, self.encoded, pad_id=self.pad_id, batch_size=self.batch_size), self.reference,
                                           beta=self.beta)
            took = time.perf_counter() - began
            train_s = began - (self._started or began) - self._eval_total
            self._eval_total += took
            self.points.append(CurvePoint(step=step, accuracy=result.accuracy, mean_margin=result.mean_margin, train_s=train_s, eval_s=took))

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self._started, self._eval_total = time.perf_counter(), 0.0
            if curve_due(state.global_step, self.every, state.max_steps):
                self._evaluate(state.global_step, model)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if curve_due(state.global_step, self.every, state.max_steps):
                self._evaluate(state.global_step, model)

    return HeldOutCurve


def curve_callback(
    tokenizer: Any, held_out: pa.Table, reference: str | Path | PairLogps, *, beta: float, every: int, batch_size: int = 8
) -> Any:
    """A ``TrainerCallback`` recording a held-out preference curve; pass it to ``train_dpo(callbacks=[...])``.

    ``reference`` is the start model's directory (scored once here) or log-probs already computed with
    ``reference_logps`` (share them between runs on the same pairs). After training, ``callback.points`` holds one
    ``CurvePoint`` per evaluation.
    """
    encoded = encode_pairs(tokenizer, held_out)
    pad = _pad_id(tokenizer)
    ref = reference if isinstance(reference, PairLogps) else reference_logps(reference, encoded, pad_id=pad, batch_size=batch_size)
    return _curve_callback_class()(encoded, ref, beta=beta, every=every, pad_id=pad, batch_size=batch_size)
