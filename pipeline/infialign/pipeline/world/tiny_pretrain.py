"""Pretraining of ``builtin://tiny``: a short next-token run on an unlabeled corpus that teaches copying.

Why: real InfiAlign starts from a *pretrained* base (Qwen2.5-7B-base), which already has induction
(copy) heads; SFT only teaches it the task's format and procedure. A random-init tiny model has to grow
copy heads during SFT, and within the quickstart's budget it does not (benchmarks/world_budget.md,
rounds 1-2: the format is learned, every number is a guess). So the tiny base is pretrained the way a
real base is, briefly, on text that rewards copying but contains no solution of any world problem:

* **induction documents**: lines of random items (numbers of 1-6 digits, words of the world's
  vocabulary, operator signs) where later lines repeat an earlier line or a span of it, in new context;
* **statement documents**: problem statements of ``builtin://reasoning`` (prompts only, from their own
  seed, never the bench split) followed by lines that quote the statement's numbers and words again in
  random order. No response, no answer, no ``\\boxed``.

The corpus functions are pure (a seeded ``random.Random`` in, text out); :func:`pretrain` is the only
part that runs torch. A plain torch loop rather than ``transformers.Trainer``: it is a fixture-building
step with no checkpoints, logging or distribution to manage, and on this model it runs more tokens per
CPU second (benchmarks/world_budget.md, round 3).
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from infialign.pipeline.world import reasoning

__all__ = ["PretrainSpec", "induction_document", "statement_document", "corpus", "pretrain"]

log = logging.getLogger(__name__)

_SIGNS: Final = ("+", "-", "×", "÷", "=", ",", ".", "(", ")", ":")
_WORD: Final = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class PretrainSpec:
    """How ``builtin://tiny`` is pretrained. Part of ``TinyModelSpec``, so every field is in the cache digest."""

    steps: int = 0
    """Optimizer steps; 0 keeps the random init (no pretraining)."""
    batch_size: int = 16
    seq_len: int = 256
    """Longer than a world record (~80-140 tokens), so copies span a whole prompt and response."""
    learning_rate: float = 3e-3
    """Reconstruction: the rate the SFT stages use on this model; cosine to a tenth after 5 % warmup."""
    seed: int = 11
    echo_share: float = 0.7
    """Share of lines in an induction document that repeat earlier material: the denser the copies, the
    sooner copy heads form."""
    statement_share: float = 0.5
    """Share of documents built around a world problem statement (the rest are pure induction documents)."""
    statement_records: int = 4000
    statement_seed: int = 101
    """Its own seed: not the quickstart's pool (seed 0), the teacher's (1234) or the tokenizer's (7)."""


# --- corpus (pure) --------------------------------------------------------------------------------


def _number(rng: random.Random) -> str:
    digits = rng.choice((1, 1, 2, 2, 3, 3, 4, 4, 5, 6))
    return str(rng.randrange(10 ** (digits - 1) if digits > 1 else 0, 10**digits))


def _item(rng: random.Random, words: Sequence[str]) -> str:
    r = rng.random()
    if r < 0.5:
        return _number(rng)
    if r < 0.85:
        return rng.choice(words)
    return rng.choice(_SIGNS)


def _line(rng: random.Random, words: Sequence[str], lo: int = 3, hi: int = 10) -> list[str]:
    return [_item(rng, words) for _ in range(rng.randint(lo, hi))]


def _echo(rng: random.Random, earlier: Sequence[list[str]], words: Sequence[str]) -> list[str]:
    """A new line that repeats an earlier line, or a span of one inside fresh items."""
    source = rng.choice(earlier)
    if rng.random() < 0.4:
        return list(source)
    start = rng.randrange(len(source))
    span = source[start : start + rng.randint(1, len(source) - start)]
    return _line(rng, words, 0, 3) + span + _line(rng, words, 0, 3)


def induction_document(rng: random.Random, words: Sequence[str], echo_share: float, lines: int = 12) -> str:
    """Lines of random items; ``echo_share`` of them repeat an earlier line or span (the copy to learn)."""
    out: list[list[str]] = [_line(rng, words)]
    for _ in range(lines - 1):
        out.append(_echo(rng, out, words) if rng.random() < echo_share else _line(rng, words))
    return "\n".join(" ".join(line) for line in out)


def statement_document(rng: random.Random, statement: str, words: Sequence[str], lines: int = 4) -> str:
    """A problem statement, then lines quoting its numbers and words among random items.

    The quotes are drawn at random, never computed, so the document holds no step of a solution.
    """
    own = reasoning.numbers_in(statement) + _WORD.findall(statement)
    out = [statement]
    for _ in range(lines):
        picked = [rng.choice(own) for _ in range(rng.randint(1, 4))] if own else []
        line = _line(rng, words, 0, 3) + picked
        rng.shuffle(line)
        out.append(" ".join(line))
    return "\n".join(out)


def statements(spec: PretrainSpec) -> list[str]:
    """Problem statements only: the user turn of ``builtin://reasoning`` records without the instruction
    suffix (it names ``\\boxed``, which the base must not know), no responses."""
    table = reasoning.generate(spec.statement_records, seed=spec.statement_seed, mix=reasoning.PlantMix().scaled(0.0)).table
    return [messages[0]["content"].removesuffix(reasoning.INSTRUCTION_SUFFIX) for messages in table.column("messages").to_pylist()]


def vocabulary(texts: Sequence[str]) -> list[str]:
    """The world's words, sorted so the draw is deterministic."""
    return sorted({w for t in texts for w in _WORD.findall(t)})


def corpus(spec: PretrainSpec, texts: Sequence[str]) -> Iterator[str]:
    """An endless, seeded stream of documents (induction and statement documents, mixed by ``statement_share``)."""
    rng = random.Random(f"tiny-pretrain/{spec.seed}")
    words = vocabulary(texts)
    while True:
        if rng.random() < spec.statement_share:
            yield statement_document(rng, rng.choice(texts), words)
        else:
            yield induction_document(rng, words, spec.echo_share)


def token_rows(docs: Iterator[str], encode: Callable[[str], list[int]], eos: int, seq_len: int, rows: int) -> list[list[int]]:
    """Pack documents (each followed by ``eos``) into ``rows`` rows of ``seq_len`` tokens."""
    need = rows * seq_len
    stream: list[int] = []
    while len(stream) < need:
        stream.extend(encode(next(docs)))
        stream.append(eos)
    return [stream[i * seq_len : (i + 1) * seq_len] for i in range(rows)]


def learning_rate(spec: PretrainSpec, step: int) -> float:
    """Linear warmup over 5 % of the steps, then cosine from the peak to a tenth of it."""
    warmup = max(1, spec.steps // 20)
    if step < warmup:
        return spec.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, spec.steps - warmup)
    return spec.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


# --- training (torch) -----------------------------------------------------------------------------


def pretrain(model: Any, tokenizer: Any, spec: PretrainSpec) -> dict[str, Any]:
    """Train ``model`` in place for ``spec.steps`` steps of next-token loss on every token; return figures."""
    import torch

    if spec.steps == 0:
        return {"steps": 0}
    texts = statements(spec)  # the induction documents draw their words from them too
    rows = token_rows(
        corpus(spec, texts),
        lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
        tokenizer.convert_tokens_to_ids(tokenizer.bos_token or "<|endoftext|>"),
        spec.seq_len,
        spec.steps * spec.batch_size,
    )
    data = torch.tensor(rows, dtype=torch.long)
    started_wall, started_cpu = time.monotonic(), time.process_time()
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, betas=(0.9, 0.95), weight_decay=0.01)
        for step in range(spec.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(spec, step)
            batch = data[step * spec.batch_size : (step + 1) * spec.batch_size]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if (step + 1) % max(1, spec.steps // 10) == 0 or step + 1 == spec.steps:
                recent = losses[-max(1, spec.steps // 10) :]
                log.info("pretraining builtin://tiny: step %d/%d, loss %.3f", step + 1, spec.steps, sum(recent) / len(recent))
        model.eval()
    cpu = time.process_time() - started_cpu
    tokens = spec.steps * spec.batch_size * spec.seq_len
    return {
        "steps": spec.steps,
        "tokens": tokens,
        "first_loss": round(sum(losses[:10]) / len(losses[:10]), 4),
        "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "seconds": round(time.monotonic() - started_wall, 1),
        "cpu_seconds": round(cpu, 1),
        "tokens_per_cpu_second": round(tokens / cpu) if cpu else None,
    }
