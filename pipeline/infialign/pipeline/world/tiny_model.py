"""``builtin://tiny``: a tiny Qwen2 causal LM and byte-level BPE tokenizer, built locally on first use.

Why: the pipeline's training, generation and evaluation stages need a real model that transformers,
TRL and vLLM all load, and tests must run on a laptop CPU with no model hub. The model is built
deterministically (fixed seeds, a tokenizer trained on ``builtin://reasoning`` text) and cached under
``<cache>/tiny-<digest>/``; the digest covers the whole recipe, so a changed recipe gets a new folder
instead of a stale one.

Choices that matter downstream:

* The tokenizer mirrors Qwen2's pre-tokenization (every digit its own token), so arithmetic is
  learnable, and ``<think>``/``</think>`` are single, *non-special* added tokens: decoding with
  ``skip_special_tokens=True`` (vLLM's default) keeps them in the text.
* Head size 32 (hidden 128, 4 heads), one of the head sizes vLLM's CPU attention backend supports.
* The chat template is ``chat_template.CHATML_TRAINING_TEMPLATE``: it renders ``<think>`` verbatim and
  marks assistant tokens for ``return_assistant_tokens_mask``.

torch, transformers and tokenizers are imported inside the functions that need them, so importing
``infialign.pipeline.world`` stays cheap for the CPU-only curation image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from infialign.pipeline import chat_template
from infialign.pipeline.world import reasoning, tiny_pretrain

__all__ = ["TINY_URI", "TINY_MODEL_VERSION", "TinyModelSpec", "ensure_tiny_model", "tiny_model_dir", "resolve_model_uri"]

TINY_URI: Final = "builtin://tiny"
TINY_MODEL_VERSION: Final = "1"
"""Bump when the build code changes what it writes (the spec fields alone are hashed automatically)."""
METADATA_FILE: Final = "infialign-tiny.json"

THINK_TOKENS: Final = ("<think>", "</think>")
SPECIAL_TOKENS: Final = (chat_template.ENDOFTEXT, chat_template.IM_START, chat_template.IM_END, chat_template.PAD)
"""Special tokens get ids 0-3 in this order."""

# Qwen2's pre-tokenizer pattern: single digits, words with an optional leading non-letter, punctuation
# runs, newlines and spaces kept apart.
_SPLIT_PATTERN: Final = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True, slots=True)
class TinyModelSpec:
    """The recipe of ``builtin://tiny``. Every field goes into the cache digest."""

    hidden_size: int = 128
    """Head size 32 with 4 heads: supported by vLLM's CPU attention (its sizes start at 32)."""
    num_hidden_layers: int = 4
    """Reconstruction: 4 layers (~0.9 M parameters) learn multi-step chains noticeably better than
    2 while SFT on a few thousand records still takes minutes on 2 cores."""
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    """Grouped-query attention as in Qwen2, so the KV-head code paths get exercised."""
    intermediate_size: int = 384
    """3 × hidden, as the reference tiny model."""
    max_position_embeddings: int = 1024
    """Prompt + CoT fit in 512 tokens; 1024 leaves room for packing and long degenerate samples."""
    vocab_size: int = 1024
    """Target vocabulary including the special and ``<think>`` tokens; BPE may learn fewer merges."""
    rope_theta: float = 10000.0
    init_seed: int = 0
    corpus_records: int = 6000
    """Records of ``builtin://reasoning`` the tokenizer is trained on (seconds to train)."""
    corpus_seed: int = 7
    min_frequency: int = 2
    pretrain: tiny_pretrain.PretrainSpec = field(default_factory=tiny_pretrain.PretrainSpec)
    """The short next-token pretraining that gives the base copy heads (``tiny_pretrain``)."""

    def digest(self) -> str:
        """Hash of the recipe: the spec, the build version, the data generator and the chat template."""
        spec = dataclasses.asdict(self)
        if self.pretrain.steps == 0:
            # Not pretrained: the random-init recipe keeps the digest it had before pretraining existed,
            # so its cached builds (and the teacher built on it) stay valid.
            del spec["pretrain"]
        payload = {
            "spec": spec,
            "tiny_model_version": TINY_MODEL_VERSION,
            "generator_version": reasoning.GENERATOR_VERSION,
            "chat_template": chat_template.CHATML_TRAINING_TEMPLATE,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _default_cache_dir() -> Path:
    root = os.environ.get("INFIALIGN_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "infialign"
    return base / "models"


def tiny_model_dir(cache_dir: Path | None = None, spec: TinyModelSpec | None = None) -> Path:
    """Where the model for ``spec`` lives (built or not): ``<cache_dir>/tiny-<digest>``.

    ``cache_dir`` defaults to ``$INFIALIGN_CACHE/models``, or ``~/.cache/infialign/models`` when the
    variable is unset.
    """
    spec = spec or TinyModelSpec()
    return Path(cache_dir or _default_cache_dir()) / f"tiny-{spec.digest()}"


def ensure_tiny_model(cache_dir: Path | None = None, *, spec: TinyModelSpec | None = None) -> Path:
    """Return the directory of the tiny model, building it first if it is not cached.

    The directory loads with ``AutoTokenizer``/``AutoModelForCausalLM.from_pretrained`` and with vLLM
    (config.json, generation_config.json, model.safetensors, tokenizer files, chat_template.jinja).
    Builds go into a temporary sibling that is renamed into place, so a reader never sees a half
    written model; a lock file keeps concurrent processes from building the same model twice.
    """
    spec = spec or TinyModelSpec()
    final = tiny_model_dir(cache_dir, spec)
    if (final / METADATA_FILE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with _locked(final.parent / f"{final.name}.lock"):
        if (final / METADATA_FILE).is_file():  # another process finished while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            _build(tmp, spec)
            tmp.chmod(0o755)  # mkdtemp makes it owner-only; a shared cache must be readable by all
            if final.exists():  # a stale, incomplete directory (no metadata): replace it
                shutil.rmtree(final)
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if (final / METADATA_FILE).is_file():  # lost a race the lock could not see (e.g. another host)
                return final
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def resolve_model_uri(uri: str) -> str:
    """Resolve a ``builtin://`` model URI to a local directory (``builtin://tiny`` or ``builtin://tiny-teacher``).

    Other schemes (``hf://``, ``s3://``, local paths) are resolved by the stage runtime, not here.
    """
    if not uri.startswith("builtin://"):
        raise ValueError(f"model URI {uri!r} is not a builtin:// URI; only builtin models resolve here")
    name = uri.rstrip("/")
    if name == "builtin://tiny-teacher":
        from infialign.pipeline.world import tiny_teacher  # imports the trainer: only when the teacher is asked for

        return str(tiny_teacher.ensure_tiny_teacher())
    if name != TINY_URI:
        raise ValueError(f"unknown built-in model {uri!r}; known: {TINY_URI}, builtin://tiny-teacher")
    return str(ensure_tiny_model())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- building ----------------------------------------------------------------------------------


def _corpus(spec: TinyModelSpec) -> Iterator[str]:
    """Chat-formatted generator text; the ``<think>`` markers are dropped because they are added as
    whole tokens after training and should not use up merges."""
    table = reasoning.generate(spec.corpus_records, seed=spec.corpus_seed).table
    for messages, response in zip(table.column("messages").to_pylist(), table.column("response").to_pylist(), strict=True):
        text = f"{chat_template.IM_START}user\n{messages[0]['content']}{chat_template.IM_END}\n"
        text += f"{chat_template.IM_START}assistant\n{response or ''}{chat_template.IM_END}\n"
        for marker in THINK_TOKENS:
            text = text.replace(marker, "")
        yield text


def _train_tokenizer(spec: TinyModelSpec) -> Any:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size - len(THINK_TOKENS),
        min_frequency=spec.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(spec), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    return tok


def _build(out: Path, spec: TinyModelSpec) -> None:
    import torch
    import transformers

    started = time.monotonic()
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(spec),
        eos_token=chat_template.IM_END,
        pad_token=chat_template.PAD,
        model_max_length=spec.max_position_embeddings,
    )
    tok.chat_template = chat_template.CHATML_TRAINING_TEMPLATE
    tok.save_pretrained(out)

    ids = {t: tok.convert_tokens_to_ids(t) for t in (*SPECIAL_TOKENS, *THINK_TOKENS)}
    config = transformers.Qwen2Config(
        vocab_size=len(tok),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rope_theta=spec.rope_theta,
        tie_word_embeddings=True,
        bos_token_id=ids[chat_template.ENDOFTEXT],
        eos_token_id=ids[chat_template.IM_END],
        pad_token_id=ids[chat_template.PAD],
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
        torch.manual_seed(spec.init_seed)
        model = transformers.Qwen2ForCausalLM(config)
    pretraining = tiny_pretrain.pretrain(model, tok, spec.pretrain)
    model.generation_config.bos_token_id = config.bos_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)

    metadata = {
        "uri": TINY_URI,
        "digest": spec.digest(),
        "spec": dataclasses.asdict(spec),
        "tiny_model_version": TINY_MODEL_VERSION,
        "generator_version": reasoning.GENERATOR_VERSION,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tok),
        "token_ids": ids,
        "pretraining": pretraining,
        "build_seconds": round(time.monotonic() - started, 2),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    # Written last: its presence marks a complete build (and the rename makes it visible at once).
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
