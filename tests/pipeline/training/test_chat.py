"""Rendering and loss masks: the whole CoT is trained, the prompt is not; max_length is explicit and counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infialign.pipeline.chat_template import IM_END
from infialign.pipeline.training import chat

RESPONSE = "<think>\n12 + 30: 10 + 30 = 40, then 2 more is 42.\n</think>\n\nThe answer is \\boxed{42}."


def record(**overrides: Any) -> dict[str, Any]:
    base = {"id": "r1", "messages": [{"role": "user", "content": "What is 12 + 30?"}], "response": RESPONSE}
    base.update(overrides)
    return base


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def split(tokenizer, tok: chat.TokenisedConversation) -> tuple[str, str]:
    trained = tokenizer.decode([t for t, m in zip(tok.input_ids, tok.assistant_masks, strict=True) if m])
    context = tokenizer.decode([t for t, m in zip(tok.input_ids, tok.assistant_masks, strict=True) if not m])
    return trained, context


def test_rendered_text_keeps_the_whole_think_block(tokenizer) -> None:
    text = chat.render_training_text(tokenizer, chat.conversation(record()))
    assert RESPONSE in text
    assert text.count("<think>") == 1 and text.count("</think>") == 1


@pytest.mark.parametrize("strategy", ["generation", "prefix"])
def test_mask_covers_the_response_and_end_of_turn_but_not_the_prompt(tokenizer, strategy: str) -> None:
    tok = chat.tokenise_conversation(tokenizer, chat.conversation(record()), strategy=strategy)
    trained, context = split(tokenizer, tok)
    assert trained == RESPONSE + IM_END  # all of <think>…</think>, the answer, and the stop token
    assert "What is 12 + 30?" in context and "<think>" not in context
    # the mask is one contiguous span at the end (followed only by the template's trailing newline)
    first = tok.assistant_masks.index(1)
    assert all(tok.assistant_masks[first : first + sum(tok.assistant_masks)])


def test_both_mask_strategies_agree(tokenizer) -> None:
    conv = chat.conversation(record())
    assert chat.tokenise_conversation(tokenizer, conv, strategy="generation") == chat.tokenise_conversation(
        tokenizer, conv, strategy="prefix"
    )


def test_system_prompt_is_optional_and_never_trained(tokenizer) -> None:
    plain = chat.conversation(record())
    with_system = chat.conversation(record(), system_prompt="Think step by step.")
    assert [m["role"] for m in plain] == ["user", "assistant"]
    assert [m["role"] for m in with_system] == ["system", "user", "assistant"]
    trained, context = split(tokenizer, chat.tokenise_conversation(tokenizer, with_system))
    assert trained == RESPONSE + IM_END and "Think step by step." in context
    # a record that brings its own system message keeps it
    own = record(messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi?"}])
    assert chat.conversation(own, system_prompt="Other")[0]["content"] == "Be terse."


def test_earlier_assistant_turns_are_context(tokenizer) -> None:
    multi = record(
        messages=[
            {"role": "user", "content": "What is 1 + 1?"},
            {"role": "assistant", "content": "<think>\n1 + 1 = 2\n</think>\n\n2"},
            {"role": "user", "content": "And 12 + 30?"},
        ]
    )
    trained, context = split(tokenizer, chat.tokenise_conversation(tokenizer, chat.conversation(multi)))
    assert trained == RESPONSE + IM_END
    assert "1 + 1 = 2" in context


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"response": None}, "`response` is empty"),
        ({"messages": []}, "`messages` is empty"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "Move the final assistant turn"),
    ],
)
def test_bad_records_name_the_field(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(chat.ChatFormatError, match="record 'r1'") as info:
        chat.conversation(record(**overrides))
    assert fragment in str(info.value)


def test_a_template_that_strips_think_is_caught(tokenizer) -> None:
    stripping = (
        "{%- for m in messages -%}{%- set c = m['content'] -%}"
        "{%- if m['role'] == 'assistant' and '</think>' in c -%}{%- set c = c.split('</think>')[-1] -%}{%- endif -%}"
        "{{- '<|im_start|>' + m['role'] + '\\n' + c + '<|im_end|>\\n' -}}{%- endfor -%}"
    )
    with pytest.raises(chat.ChatFormatError, match="does not render the response verbatim"):
        chat.check_template_keeps_response(tokenizer, [record()], chat_template=stripping)


def tokenised(tokenizer, responses: list[str]):
    from datasets import Dataset

    batch = {
        "id": [f"r{i}" for i in range(len(responses))],
        "messages": [[{"role": "user", "content": "Q?"}]] * len(responses),
        "response": responses,
    }
    return Dataset.from_dict(chat.tokenise_batch(batch, tokenizer=tokenizer))


def test_truncation_report_drop(tokenizer) -> None:
    short, long = "<think>\nok\n</think>\n\n1", "<think>\n" + "1 + 1 = 2. " * 40 + "\n</think>\n\n2"
    ds = tokenised(tokenizer, [short, long, short])
    lengths = ds["num_tokens"]
    limit = lengths[0] + 5
    kept, report = chat.apply_max_length(ds, limit, "drop")
    assert len(kept) == 2 and max(kept["num_tokens"]) <= limit
    assert report.examples == 3 and report.over_length_examples == 1 and report.dropped_examples == 1
    assert report.over_length_tokens == lengths[1] - limit
    assert report.dropped_tokens == lengths[1] and report.truncated_examples == 0
    assert report.kept_tokens == 2 * lengths[0] and report.longest == lengths[1]
    assert report.over_length_fraction == pytest.approx(1 / 3)


def test_truncation_report_truncate_keeps_the_start(tokenizer) -> None:
    short, long = "<think>\nok\n</think>\n\n1", "<think>\n" + "1 + 1 = 2. " * 40 + "\n</think>\n\n2"
    ds = tokenised(tokenizer, [short, long])
    lengths = ds["num_tokens"]
    limit = lengths[0] + 5
    cut, report = chat.apply_max_length(ds, limit, "truncate")
    assert cut["num_tokens"] == [lengths[0], limit]
    assert cut["input_ids"][1] == ds["input_ids"][1][:limit]
    assert report.truncated_examples == 1 and report.dropped_examples == 0
    assert report.over_length_tokens == lengths[1] - limit and report.kept_tokens == lengths[0] + limit


def test_truncation_drops_examples_left_without_response_tokens(tokenizer) -> None:
    ds = tokenised(tokenizer, ["<think>\nok\n</think>\n\n1"])
    prompt_len = ds["assistant_masks"][0].index(1)
    cut, report = chat.apply_max_length(ds, prompt_len, "truncate")
    assert len(cut) == 0 and report.dropped_examples == 1 and report.truncated_examples == 0


def test_truncation_reports_add_up() -> None:
    a = chat.TruncationReport(100, "drop", examples=3, tokens=300, longest=150, over_length_examples=1, dropped_examples=1)
    b = chat.TruncationReport(100, "drop", examples=2, tokens=100, longest=60)
    total = a + b
    assert (total.examples, total.tokens, total.longest, total.dropped_examples) == (5, 400, 150, 1)
    with pytest.raises(ValueError, match="different max_length"):
        a + chat.TruncationReport(200, "drop")
