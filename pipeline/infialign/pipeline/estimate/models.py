"""Model shapes: parameter counts and the sizes the FLOPs and memory formulas need.

A shape comes from a model's `config.json` (read at the edge, passed in as a dict), else from the table of
known names below (each row is that model's published `config.json`), else from `--params` alone. The count
follows the decoder layout of Qwen2 / Llama (GQA attention with q/k/v biases when `attention_bias` or
Qwen2, SwiGLU MLP, RMSNorm); for Qwen2.5-7B it gives 7,615,616,512 parameters, the number its model card states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["ModelShape", "KNOWN_MODELS", "shape_from_config", "known_shape", "params_only", "model_key", "UnknownModelError"]


class UnknownModelError(ValueError):
    """No parameter count for a model: the message names the spec field and the flag that gives one."""


@dataclass(frozen=True)
class ModelShape:
    name: str
    params: int  # every parameter (embedding, head, norms): what memory holds
    embedding_params: int  # the input embedding table: a lookup, not a matmul
    tied: bool  # the output head shares the embedding table
    layers: int | None = None
    hidden: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    intermediate: int | None = None
    vocab: int | None = None
    source: str = "config.json"

    @property
    def matmul_params(self) -> int:
        """N of the 6N rule: every parameter except the input embedding; a tied head counts once (as a matmul)."""
        return self.params - (0 if self.tied else self.embedding_params)

    @property
    def attn_width(self) -> int | None:
        """H·Q: query heads × head size."""
        return self.heads * self.head_dim if self.heads and self.head_dim else None

    @property
    def complete(self) -> bool:
        """False for a `--params`-only shape: no attention term, no activation or KV-cache sizes."""
        return None not in (self.layers, self.hidden, self.heads, self.kv_heads, self.head_dim, self.intermediate, self.vocab)

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> float | None:
        """KV cache per token: 2 (K and V) × layers × kv_heads × head_dim × bytes."""
        if not self.complete:
            return None
        assert self.layers and self.kv_heads and self.head_dim
        return 2.0 * self.layers * self.kv_heads * self.head_dim * dtype_bytes

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of the linear layers of one decoder layer: q, k, v, o, gate, up, down (the `all-linear` LoRA targets)."""
        assert self.complete and self.hidden and self.heads and self.kv_heads and self.head_dim and self.intermediate
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]


def shape_from_config(config: Mapping[str, Any], name: str, source: str = "config.json") -> ModelShape:
    """Count parameters from a Hugging Face decoder `config.json` (Qwen2, Llama, Mistral layouts)."""
    cfg = dict(config.get("text_config") or config)
    try:
        h = int(cfg["hidden_size"])
        layers = int(cfg["num_hidden_layers"])
        heads = int(cfg["num_attention_heads"])
        inter = int(cfg["intermediate_size"])
        vocab = int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise UnknownModelError(f"{name}: config.json lacks {e} (needs hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, vocab_size)") from e
    kv = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or h // heads)
    tied = bool(cfg.get("tie_word_embeddings", False))
    # Qwen2 has q/k/v biases by construction; Llama-style configs say so with `attention_bias`
    bias = str(cfg.get("model_type", "")).startswith("qwen2") or bool(cfg.get("attention_bias", False))
    q, k = heads * head_dim, kv * head_dim
    attention = h * q + 2 * h * k + q * h + ((q + 2 * k) if bias else 0)
    mlp = 3 * h * inter
    per_layer = attention + mlp + 2 * h  # two RMSNorms
    embedding = vocab * h
    params = layers * per_layer + embedding + (0 if tied else embedding) + h  # + the final norm
    return ModelShape(
        name=name, params=params, embedding_params=embedding, tied=tied, layers=layers, hidden=h, heads=heads,
        kv_heads=kv, head_dim=head_dim, intermediate=inter, vocab=vocab, source=source,
    )


def _qwen2(h: int, layers: int, heads: int, kv: int, inter: int, tied: bool, vocab: int = 152_064) -> dict[str, Any]:
    return {"model_type": "qwen2", "hidden_size": h, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv, "intermediate_size": inter, "vocab_size": vocab, "tie_word_embeddings": tied}


def _llama(h: int, layers: int, heads: int, kv: int, inter: int, vocab: int) -> dict[str, Any]:
    return {"model_type": "llama", "hidden_size": h, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv, "intermediate_size": inter, "vocab_size": vocab, "tie_word_embeddings": False}


# RoPE facts, where a row has them (training/rope.py checks `maxLength` against them): the Qwen2.5-Math bases are
# built for 4K context (their config.json: max_position_embeddings 4096, rope_theta 10000).
_MATH_POSITIONS: Final[dict[str, Any]] = {"max_position_embeddings": 4096, "rope_theta": 10000.0}

# Lower-cased hub names (the part after `hf://`) → the architecture fields of their published config.json
# (https://huggingface.co/<name>/blob/main/config.json). Fine-tunes share their base's shape.
KNOWN_MODELS: Final[dict[str, dict[str, Any]]] = {
    "qwen/qwen2.5-0.5b": _qwen2(896, 24, 14, 2, 4864, tied=True, vocab=151_936),
    "qwen/qwen2.5-1.5b": _qwen2(1536, 28, 12, 2, 8960, tied=True, vocab=151_936),
    "qwen/qwen2.5-math-1.5b": {**_qwen2(1536, 28, 12, 2, 8960, tied=True, vocab=151_936), **_MATH_POSITIONS},
    "qwen/qwen2.5-3b": _qwen2(2048, 36, 16, 2, 11008, tied=True, vocab=151_936),
    "qwen/qwen2.5-7b": _qwen2(3584, 28, 28, 4, 18944, tied=False),
    "qwen/qwen2.5-7b-instruct": _qwen2(3584, 28, 28, 4, 18944, tied=False),
    "qwen/qwen2.5-math-7b": {**_qwen2(3584, 28, 28, 4, 18944, tied=False), **_MATH_POSITIONS},
    "deepseek-ai/deepseek-r1-distill-qwen-7b": _qwen2(3584, 28, 28, 4, 18944, tied=False),
    "qwen/qwen2.5-14b": _qwen2(5120, 48, 40, 8, 13824, tied=False),
    "deepseek-ai/deepseek-r1-distill-qwen-14b": _qwen2(5120, 48, 40, 8, 13824, tied=False),
    "qwen/qwen2.5-32b": _qwen2(5120, 64, 40, 8, 27648, tied=False),
    "qwen/qwen2.5-32b-instruct": _qwen2(5120, 64, 40, 8, 27648, tied=False),
    "deepseek-ai/deepseek-r1-distill-qwen-32b": _qwen2(5120, 64, 40, 8, 27648, tied=False),
    "qwen/qwq-32b": _qwen2(5120, 64, 40, 8, 27648, tied=False),
    "qwen/qwen2.5-72b": _qwen2(8192, 80, 64, 8, 29568, tied=False),
    "meta-llama/llama-3.1-8b": _llama(4096, 32, 32, 8, 14336, 128_256),
    "meta-llama/llama-3.1-8b-instruct": _llama(4096, 32, 32, 8, 14336, 128_256),
    # builtin://tiny: world/tiny_model.TinyModelSpec (tied head, as transformers' Qwen2 default for it)
    "builtin://tiny": {**_qwen2(128, 4, 4, 2, 384, tied=True, vocab=1024), "max_position_embeddings": 1024, "rope_theta": 10000.0},
}


def model_key(uri: str) -> str:
    """`hf://Qwen/Qwen2.5-7B?x` → `qwen/qwen2.5-7b`; builtin URIs stay whole."""
    if uri.startswith("builtin://"):
        return uri.split("?", 1)[0].rstrip("/").lower()
    return uri.removeprefix("hf://").split("?", 1)[0].strip("/").lower()


def known_shape(uri: str) -> ModelShape | None:
    key = model_key(uri)
    if key == "builtin://tiny-teacher":  # trained longer, same shape as the tiny student
        key = "builtin://tiny"
    config = KNOWN_MODELS.get(key)
    return shape_from_config(config, uri, source="known-models table") if config is not None else None


def params_only(uri: str, params: float) -> ModelShape:
    """A shape from `--params` alone: counts, no layer sizes (no attention term, activations or KV cache)."""
    return ModelShape(name=uri, params=int(params), embedding_params=0, tied=True, source="--params")
