"""builtin://tiny: builds deterministically, loads with transformers, renders the training template."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from infialign.pipeline import chat_template
from infialign.pipeline.world import reasoning, tiny_model

EXPECTED_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    tiny_model.METADATA_FILE,
}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):  # noqa: ANN201  (transformers types are imported lazily)
    import transformers

    return transformers.AutoTokenizer.from_pretrained(tiny_model_path)


@pytest.fixture(scope="module")
def conversation() -> list[dict[str, str]]:
    record = reasoning.generate(5, seed=0, mix=reasoning.PlantMix().scaled(0.0)).table.to_pylist()[0]
    return [*record["messages"], {"role": "assistant", "content": record["response"]}]


def test_the_build_writes_a_complete_small_model(tiny_model_path: Path) -> None:
    assert EXPECTED_FILES <= {p.name for p in tiny_model_path.iterdir()}
    assert tiny_model_path.name == f"tiny-{tiny_model.TinyModelSpec().digest()}"
    meta = json.loads((tiny_model_path / tiny_model.METADATA_FILE).read_text())
    assert 500_000 < meta["parameters"] < 2_000_000
    assert meta["vocab_size"] <= tiny_model.TinyModelSpec().vocab_size
    assert (tiny_model_path / "model.safetensors").stat().st_size < 10_000_000


def test_loads_with_auto_classes_and_runs(tiny_model_path: Path, tokenizer) -> None:  # noqa: ANN001
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert model.config.model_type == "qwen2" and model.config.tie_word_embeddings
    assert model.config.hidden_size // model.config.num_attention_heads == 32  # a vLLM CPU head size
    assert model.get_input_embeddings().weight.dtype == torch.float32
    assert tokenizer.eos_token == chat_template.IM_END and tokenizer.pad_token == chat_template.PAD
    assert model.config.eos_token_id == tokenizer.eos_token_id
    ids = tokenizer("What is 12 + 30?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size)
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] <= ids.shape[1] + 4


def test_think_markers_are_single_non_special_tokens(tokenizer) -> None:  # noqa: ANN001
    for marker in tiny_model.THINK_TOKENS:
        ids = tokenizer(marker, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1
    ids = tokenizer("<think>\n12 + 30 = 42.\n</think>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>\n12 + 30 = 42.\n</think>"
    assert tokenizer.tokenize("1234")[-4:] == ["1", "2", "3", "4"]  # every digit is its own token


def test_chat_template_keeps_the_cot_and_masks_the_assistant_turn(tokenizer, conversation) -> None:  # noqa: ANN001
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert f"{chat_template.IM_START}assistant\n<think>\n" in text
    assert conversation[1]["content"] + chat_template.IM_END in text
    out = tokenizer.apply_chat_template(conversation, tokenize=True, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask) and 0 < sum(mask) < len(ids)
    masked = tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert masked == conversation[1]["content"] + chat_template.IM_END
    prompt = tokenizer.apply_chat_template(conversation[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith(f"{chat_template.IM_START}assistant\n")


def test_second_call_is_a_cache_hit(tiny_model_path: Path, tiny_cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> None:
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(tiny_model, "_build", fail)
    before = (tiny_model_path / "model.safetensors").stat().st_mtime_ns
    assert tiny_model.ensure_tiny_model(tiny_cache_root / "models") == tiny_model_path
    monkeypatch.setenv("INFIALIGN_CACHE", str(tiny_cache_root))
    assert tiny_model.resolve_model_uri("builtin://tiny") == str(tiny_model_path)
    assert (tiny_model_path / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("uri", "message"),
    [("builtin://huge", "unknown built-in model 'builtin://huge'"), ("hf://Qwen/Qwen2.5-0.5B", "not a builtin:// URI")],
)
def test_resolve_model_uri_rejects_other_names(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_model.resolve_model_uri(uri)


def test_concurrent_builds_build_once_and_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tiny_model.TinyModelSpec(num_hidden_layers=1, corpus_records=200, vocab_size=400)
    calls: list[Path] = []
    real_build = tiny_model._build

    def counting_build(out: Path, s: tiny_model.TinyModelSpec) -> None:
        calls.append(out)
        real_build(out, s)

    monkeypatch.setattr(tiny_model, "_build", counting_build)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(tiny_model.ensure_tiny_model(tmp_path, spec=spec))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(results)) == 1 and len(results) == 2
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [results[0].name]  # no temp dir left


def test_the_build_is_deterministic(tiny_model_path: Path, tmp_path: Path) -> None:
    """A rebuild of the recipe gives the same weights and tokenizer (only the timing metadata differs)."""
    again = tiny_model.ensure_tiny_model(tmp_path)
    for name in EXPECTED_FILES - {tiny_model.METADATA_FILE}:
        assert (again / name).read_bytes() == (tiny_model_path / name).read_bytes(), name
