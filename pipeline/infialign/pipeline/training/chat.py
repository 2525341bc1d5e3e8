"""Records → training text → token ids and the loss mask, and the truncation report.

A record (records.py) holds the prompt as chat ``messages`` and the full ``response`` with its ``<think>``
block. The training conversation is ``[system?] + messages + [assistant: response]``, rendered with the
chat template. The loss covers the final assistant turn only: the whole response, ``<think>…</think>``
included, and the end-of-turn token, so the model learns to stop.

The mask comes from the template's ``{% generation %}`` markers through
``apply_chat_template(..., return_assistant_tokens_mask=True)`` (our ChatML template has them). For a
template without markers (``chat_template="model"``) it comes from the prompt prefix: the tokens of the
prompt rendered with ``add_generation_prompt=True`` must be a prefix of the full conversation's tokens.

Long CoT traps: TRL's default ``max_length=1024`` truncates 16–32K traces without a word
(huggingface/trl#3910). Here the cut is explicit (``apply_max_length``) and counted (``TruncationReport``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "ChatFormatError",
    "TokenisedConversation",
    "TruncationReport",
    "conversation",
    "has_generation_markers",
    "render_training_text",
    "tokenise_conversation",
    "tokenise_batch",
    "apply_max_length",
    "check_template_keeps_response",
]

_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")
MaskStrategy = Literal["generation", "prefix"]


class ChatFormatError(ValueError):
    """A record or the chat template cannot produce a correct training example. Names the record and the fix."""


@dataclass(frozen=True)
class TokenisedConversation:
    input_ids: list[int]
    assistant_masks: list[int]  # 1 on tokens under the loss


def has_generation_markers(template: str | None) -> bool:
    return bool(template and _GENERATION.search(template))


def conversation(record: Mapping[str, Any], *, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The training conversation of one record: optional system prompt, the prompt messages, the response."""
    rid = record.get("id", "?")
    response = record.get("response")
    if not response:
        raise ChatFormatError(f"record {rid!r}: `response` is empty; SFT needs the full CoT. Filter such records in `select`.")
    messages = [{"role": m["role"], "content": m["content"]} for m in record.get("messages") or []]
    if not messages:
        raise ChatFormatError(f"record {rid!r}: `messages` is empty; it must hold the prompt as chat messages.")
    if messages[-1]["role"] == "assistant":
        raise ChatFormatError(
            f"record {rid!r}: the last prompt message is from the assistant; `messages` is the prompt and `response` the "
            "answer to train on. Move the final assistant turn into `response`."
        )
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return [*messages, {"role": "assistant", "content": response}]


def render_training_text(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[Mapping[str, str]], *, chat_template: str | None = None
) -> str:
    """The exact text trained on (no tokenisation)."""
    return tokenizer.apply_chat_template(list(messages), chat_template=chat_template, tokenize=False)


def check_template_keeps_response(
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Mapping[str, Any]],
    *,
    system_prompt: str | None = None,
    chat_template: str | None = None,
) -> None:
    """Fail when the template does not render each record's response verbatim.

    Reasoning templates of some checkpoints (DeepSeek-R1-Distill, Qwen3) delete the ``<think>`` block from
    assistant turns, which removes the CoT from the training text (huggingface/trl#3432).
    """
    for record in records:
        text = render_training_text(tokenizer, conversation(record, system_prompt=system_prompt), chat_template=chat_template)
        if record["response"] not in text:
            raise ChatFormatError(
                f"record {record.get('id', '?')!r}: the chat template does not render the response verbatim (a reasoning "
                "template that strips <think>?). Use chat_template='infialign-chatml'."
            )


def _keep_last_span(mask: list[int]) -> list[int]:
    # Earlier assistant turns in a multi-turn prompt are context, not targets: keep the final contiguous span.
    end = len(mask)
    while end and not mask[end - 1]:
        end -= 1
    start = end
    while start and mask[start - 1]:
        start -= 1
    return [1 if start <= i < end else 0 for i in range(len(mask))]


def _prefix_mask(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], chat_template: str | None
) -> TokenisedConversation:
    full = tokenizer.apply_chat_template(messages, chat_template=chat_template, tokenize=True, return_dict=True)["input_ids"]
    prompt = tokenizer.apply_chat_template(
        messages[:-1], chat_template=chat_template, tokenize=True, return_dict=True, add_generation_prompt=True
    )["input_ids"]
    if full[: len(prompt)] != prompt:
        raise ChatFormatError(
            "the chat template renders the prompt differently alone (add_generation_prompt=True) and inside the full "
            "conversation, so the response cannot be located. Use chat_template='infialign-chatml' or a template with "
            "{% generation %} markers."
        )
    mask = [0] * len(prompt) + [1] * (len(full) - len(prompt))
    eos = tokenizer.eos_token_id
    if eos is not None and eos in full[len(prompt) :]:
        last = len(full) - 1 - full[::-1].index(eos)
        mask = [m if i <= last else 0 for i, m in enumerate(mask)]  # what the template adds after end-of-turn
    return TokenisedConversation(list(full), mask)


def tokenise_conversation(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Mapping[str, str]],
    *,
    chat_template: str | None = None,
    strategy: MaskStrategy | None = None,
) -> TokenisedConversation:
    """Token ids and loss mask of one conversation whose last message is the assistant response."""
    msgs = [dict(m) for m in messages]
    template = chat_template or tokenizer.chat_template
    if strategy is None:
        strategy = "generation" if has_generation_markers(template) else "prefix"
    if strategy == "prefix":
        out = _prefix_mask(tokenizer, msgs, chat_template)
    else:
        enc = tokenizer.apply_chat_template(
            msgs, chat_template=chat_template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        out = TokenisedConversation(list(enc["input_ids"]), _keep_last_span(list(enc["assistant_masks"])))
    if not any(out.assistant_masks):
        raise ChatFormatError(
            "no token of the response is under the loss mask. With a slow tokenizer or a template without "
            "{% generation %} markers the assistant mask is empty: use a fast tokenizer and "
            "chat_template='infialign-chatml'."
        )
    return out


def tokenise_batch(
    batch: Mapping[str, list[Any]],
    *,
    tokenizer: PreTrainedTokenizerBase,
    chat_template: str | None = None,
    system_prompt: str | None = None,
    strategy: MaskStrategy | None = None,
) -> dict[str, list[Any]]:
    """``datasets.Dataset.map(batched=True)`` function: record columns → input_ids, assistant_masks, num_tokens."""
    n = len(batch["response"])
    out: dict[str, list[Any]] = {"input_ids": [], "assistant_masks": [], "num_tokens": [], "loss_tokens": []}
    for i in range(n):
        record = {k: v[i] for k, v in batch.items()}
        try:
            tok = tokenise_conversation(
                tokenizer, conversation(record, system_prompt=system_prompt), chat_template=chat_template, strategy=strategy
            )
        except ChatFormatError as e:
            if str(e).startswith("record "):
                raise
            raise ChatFormatError(f"record {record.get('id', '?')!r}: {e}") from e
        out["input_ids"].append(tok.input_ids)
        out["assistant_masks"].append(tok.assistant_masks)
        out["num_tokens"].append(len(tok.input_ids))
        out["loss_tokens"].append(sum(tok.assistant_masks))
    return out


@dataclass(frozen=True)
class TruncationReport:
    """What ``max_length`` did to the data. Mergeable with ``+`` (per shard or per phase)."""

    max_length: int
    policy: str
    examples: int = 0  # tokenised examples in
    tokens: int = 0  # their tokens before any cut
    longest: int = 0  # the longest example, in tokens
    over_length_examples: int = 0  # examples longer than max_length
    over_length_tokens: int = 0  # Σ max(0, len − max_length): what truncation cuts
    truncated_examples: int = 0  # kept, cut to max_length
    dropped_examples: int = 0  # removed: over length with policy "drop", or nothing left to learn after the cut
    dropped_tokens: int = 0  # all tokens of the removed examples
    kept_examples: int = 0
    kept_tokens: int = 0

    @property
    def over_length_fraction(self) -> float:
        return self.over_length_examples / self.examples if self.examples else 0.0

    def __add__(self, other: TruncationReport) -> TruncationReport:
        if (self.max_length, self.policy) != (other.max_length, other.policy):
            raise ValueError("cannot add truncation reports of different max_length or policy")
        sums = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self) if f.name not in ("max_length", "policy", "longest")}
        return TruncationReport(self.max_length, self.policy, longest=max(self.longest, other.longest), **sums)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "over_length_fraction": self.over_length_fraction}

    def summary(self) -> str:
        return (
            f"max_length={self.max_length} policy={self.policy}: {self.over_length_examples}/{self.examples} examples "
            f"({self.over_length_fraction:.2%}) over length, {self.over_length_tokens} tokens beyond it; "
            f"truncated {self.truncated_examples}, dropped {self.dropped_examples} ({self.dropped_tokens} tokens); "
            f"longest {self.longest}"
        )


def _cut(batch: Mapping[str, list[Any]], max_length: int) -> dict[str, list[Any]]:
    masks = [m[:max_length] for m in batch["assistant_masks"]]
    return {
        "input_ids": [ids[:max_length] for ids in batch["input_ids"]],
        "assistant_masks": masks,
        "num_tokens": [min(n, max_length) for n in batch["num_tokens"]],
        "loss_tokens": [sum(m) for m in masks],
    }


def apply_max_length(dataset: Dataset, max_length: int, overlong: Literal["drop", "truncate"]) -> tuple[Dataset, TruncationReport]:
    """Drop or cut (keep the start) examples over ``max_length``; count what happened.

    ``dataset`` has the columns of ``tokenise_batch``. Only the small ``num_tokens``/``loss_tokens`` columns are
    read into memory; the token lists stay in Arrow.
    """
    import numpy as np

    if overlong not in ("drop", "truncate"):
        raise ValueError(f"overlong={overlong!r} is not 'drop' or 'truncate'")
    lengths = np.asarray(dataset["num_tokens"], dtype=np.int64)
    over = lengths > max_length
    report: dict[str, Any] = {
        "examples": int(lengths.size),
        "tokens": int(lengths.sum()),
        "longest": int(lengths.max()) if lengths.size else 0,
        "over_length_examples": int(over.sum()),
        "over_length_tokens": int((lengths[over] - max_length).sum()),
    }
    if overlong == "drop":
        keep = np.flatnonzero(~over)
        report.update(dropped_examples=int(over.sum()), dropped_tokens=int(lengths[over].sum()), truncated_examples=0)
        out = dataset.select(keep) if over.any() else dataset
    else:
        out = dataset.map(_cut, batched=True, fn_kwargs={"max_length": max_length}) if over.any() else dataset
        # A prompt longer than max_length leaves no response token: nothing to learn, so the example goes.
        has_loss = np.asarray(out["loss_tokens"], dtype=np.int64) > 0
        empty = np.flatnonzero(~has_loss)
        report.update(
            truncated_examples=int(over.sum()) - int(empty.size),
            dropped_examples=int(empty.size),
            dropped_tokens=int(lengths[empty].sum()),
        )
        if empty.size:
            out = out.select(np.flatnonzero(has_loss))
    kept = np.asarray(out["num_tokens"], dtype=np.int64)
    report.update(kept_examples=int(kept.size), kept_tokens=int(kept.sum()))
    return out, TruncationReport(max_length=max_length, policy=overlong, **report)
