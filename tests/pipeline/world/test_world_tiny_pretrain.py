"""builtin://tiny's pretraining: a seeded copy corpus with no solutions, and a spec that only changes the digest when used."""

from __future__ import annotations

import dataclasses
import itertools
import random
import json
from pathlib import Path

import pytest

from infialign.pipeline.world import reasoning, tiny_model, tiny_pretrain

SMALL = tiny_pretrain.PretrainSpec(steps=3, batch_size=2, seq_len=32, statement_records=60)


def _docs(spec: tiny_pretrain.PretrainSpec, n: int) -> list[str]:
    return list(itertools.islice(tiny_pretrain.corpus(spec, tiny_pretrain.statements(spec)), n))


def test_the_corpus_is_seeded() -> None:
    assert _docs(SMALL, 20) == _docs(SMALL, 20)
    assert _docs(SMALL, 20) != _docs(dataclasses.replace(SMALL, seed=SMALL.seed + 1), 20)


def test_the_corpus_holds_no_answer_format_and_no_solution() -> None:
    docs = _docs(dataclasses.replace(SMALL, statement_share=0.5), 300)
    text = "\n".join(docs)
    for marker in ("boxed", "<think>", "</think>", "The answer is"):
        assert marker not in text
    # no step of any solution of the statements' own problems appears (e.g. "109 - 1 = 108.")
    world = reasoning.generate(SMALL.statement_records, seed=SMALL.statement_seed, mix=reasoning.PlantMix().scaled(0.0)).table
    steps = {line for r in world.column("response").to_pylist() for line in r.split("\n") if "=" in line}
    assert not any(step in text for step in steps)


def test_induction_documents_repeat_earlier_lines() -> None:
    doc = tiny_pretrain.induction_document(random.Random(0), ["cat", "dog"], echo_share=1.0, lines=12)
    lines = doc.split("\n")
    assert len(lines) == 12 and len(set(lines)) < len(lines)  # some line is a verbatim repeat


def test_statement_documents_quote_the_statement() -> None:
    statement = "Evaluate the expression 4359 × 10."
    doc = tiny_pretrain.statement_document(random.Random(0), statement, ["cat"], lines=4)
    head, *quotes = doc.split("\n")
    assert head == statement and len(quotes) == 4
    assert any(w in q.split() for q in quotes for w in ("4359", "10", "Evaluate", "the", "expression"))


def test_rows_are_packed_to_the_sequence_length() -> None:
    rows = tiny_pretrain.token_rows(iter(["ab"] * 100), lambda t: [1, 2, 3], eos=0, seq_len=5, rows=3)
    assert rows == [[1, 2, 3, 0, 1], [2, 3, 0, 1, 2], [3, 0, 1, 2, 3]]


def test_learning_rate_warms_up_then_decays_to_a_tenth() -> None:
    spec = tiny_pretrain.PretrainSpec(steps=100, learning_rate=1e-3)
    rates = [tiny_pretrain.learning_rate(spec, s) for s in range(100)]
    assert rates[0] < rates[4] == pytest.approx(1e-3)
    assert rates[-1] == pytest.approx(1e-4, rel=0.01) and max(rates) == pytest.approx(1e-3)


def test_no_pretraining_keeps_the_random_init_digest() -> None:
    """Recipes without pretraining hash as before the field existed, so their caches (and teachers) stay valid."""
    plain = tiny_model.TinyModelSpec(pretrain=tiny_pretrain.PretrainSpec(steps=0))
    assert plain.digest() == tiny_model.TinyModelSpec(pretrain=tiny_pretrain.PretrainSpec(steps=0, seed=99)).digest()
    assert tiny_model.TinyModelSpec(pretrain=SMALL).digest() != plain.digest()


def test_pretraining_changes_every_weight_and_is_recorded(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    small = tiny_model.TinyModelSpec(num_hidden_layers=1, corpus_records=200, vocab_size=400, pretrain=tiny_pretrain.PretrainSpec(steps=0))
    plain = tiny_model.ensure_tiny_model(tmp_path, spec=small)
    trained = tiny_model.ensure_tiny_model(tmp_path, spec=dataclasses.replace(small, pretrain=SMALL))
    before, after = load_file(plain / "model.safetensors"), load_file(trained / "model.safetensors")
    assert before.keys() == after.keys()
    for name in before:
        assert not torch.equal(before[name], after[name]), name
    meta = json.loads((trained / tiny_model.METADATA_FILE).read_text())
    assert meta["pretraining"]["steps"] == 3 and meta["pretraining"]["tokens"] == 3 * 2 * 32
