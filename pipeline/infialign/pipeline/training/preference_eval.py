"""Implicit-reward preference accuracy of a policy against its reference on (held-out) pairs.

For each pair, r(y) = β·(log π(y|x) − log π_ref(y|x)) summed over the response tokens; the pair is ranked right
when r(chosen) > r(rejected). This is DPO's own yardstick (TRL logs it per batch as ``rewards/accuracies``); here
it is computed on pairs the policy never trained on, with plain forward passes, for tests and benchmarks. Small
models on CPU: it materialises the logits of a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from infialign.pipeline import pairs as _pairs

__all__ = ["PreferenceEval", "response_logps", "implicit_preference"]


@dataclass(frozen=True)
class PreferenceEval:
    accuracy: float  # share of pairs with r(chosen) > r(rejected)
    mean_margin: float  # mean of r(chosen) − r(rejected)
    margins: np.ndarray


def response_logps(
    model: Any, tokenizer: Any, prompts: Sequence[Sequence[dict[str, str]]], responses: Sequence[str], *, batch_size: int = 8
) -> np.ndarray:
    """Summed log-probabilities of each response after its prompt (chat template, generation prompt)."""
    import torch

    out: list[float] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            seqs, starts = [], []
            for prompt, response in zip(prompts[start : start + batch_size], responses[start : start + batch_size], strict=True):
                head = tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
                full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": response}], tokenize=False)
                head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
                full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
                seqs.append(full_ids)
                starts.append(len(head_ids))
            width = max(len(s) for s in seqs)
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            for row, (seq, first) in enumerate(zip(seqs, starts, strict=True)):
                out.append(float(logp[row, first - 1 : len(seq) - 1].sum()))
    return np.asarray(out, dtype=np.float64)


def implicit_preference(
    policy_dir: str | Path, reference_dir: str | Path, pairs: pa.Table, *, beta: float, batch_size: int = 8
) -> PreferenceEval:
    """Preference accuracy and mean implicit-reward margin of ``policy_dir`` against ``reference_dir`` on ``pairs``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    table = _pairs.validate_pairs(pairs)
    prompts = table.column("prompt").to_pylist()
    chosen, rejected = table.column("chosen").to_pylist(), table.column("rejected").to_pylist()
    tokenizer = AutoTokenizer.from_pretrained(str(policy_dir))
    scores = {}
    for name, path in (("policy", policy_dir), ("reference", reference_dir)):
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype="float32").eval()
        scores[name] = (
            response_logps(model, tokenizer, prompts, chosen, batch_size=batch_size),
            response_logps(model, tokenizer, prompts, rejected, batch_size=batch_size),
        )
        del model
    margins = beta * ((scores["policy"][0] - scores["reference"][0]) - (scores["policy"][1] - scores["reference"][1]))
    return PreferenceEval(accuracy=float(np.mean(margins > 0)), mean_margin=float(np.mean(margins)), margins=margins)
