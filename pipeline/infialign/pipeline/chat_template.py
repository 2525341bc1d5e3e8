"""The ChatML training template shared by the built-in tiny model and the SFT stage.

Reasoning templates shipped with some checkpoints (DeepSeek-R1-Distill, Qwen3) strip the ``<think>``
block from assistant turns, which silently deletes the chain of thought from the training text
(huggingface/trl#3432). This template renders assistant content verbatim and wraps it in
``{% generation %}`` markers so ``return_assistant_tokens_mask=True`` gives the loss mask.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CHATML_TRAINING_TEMPLATE", "IM_START", "IM_END", "ENDOFTEXT", "PAD"]

IM_START: Final = "<|im_start|>"
IM_END: Final = "<|im_end|>"
ENDOFTEXT: Final = "<|endoftext|>"
PAD: Final = "<|pad|>"

CHATML_TRAINING_TEMPLATE: Final = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}{{- message['content'] + '<|im_end|>' -}}{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
