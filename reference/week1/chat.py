"""Chat templates, assistant-only labels and stop sequences (reference)."""

from typing import Callable

import torch

IGNORE_INDEX = -100

# The chat special tokens, after the course tokenizer's 512 ids (<|endoftext|> is 511).
CHAT_SPECIAL_TOKENS = {
    "<|im_start|>": 512,
    "<|im_end|>": 513,
    "<|begin_of_text|>": 514,
    "<|start_header_id|>": 515,
    "<|end_header_id|>": 516,
    "<|eot_id|>": 517,
}

# The two templates as transformers' `apply_chat_template` reads them. Text inside
# {% generation %} ... {% endgeneration %} is what `return_assistant_tokens_mask` marks.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] + '<|im_end|>' -}}{% endgeneration %}"
    "{%- else -%}"
    "{{- message['content'] + '<|im_end|>' -}}"
    "{%- endif -%}"
    "{{- '\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)

LLAMA3_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] | trim + '<|eot_id|>' -}}{% endgeneration %}"
    "{%- else -%}"
    "{{- message['content'] | trim + '<|eot_id|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}"
)


def render_chatml(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    if add_generation_prompt:
        text += "<|im_start|>assistant\n"
    return text


def render_llama3(messages: list[dict[str, str]], add_generation_prompt: bool = False,
                  bos_token: str = "<|begin_of_text|>") -> str:
    text = bos_token
    for m in messages:
        text += f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>"
    if add_generation_prompt:
        text += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    return text


def tokenize_chat(messages: list[dict[str, str]], template: str,
                  encode: Callable[[str], list[int]]) -> tuple[list[int], list[int]]:
    # The conversation as consecutive pieces of text, each marked trained or not.
    pieces = []
    if template == "chatml":
        for m in messages:
            pieces.append((f"<|im_start|>{m['role']}\n", False))
            pieces.append((m["content"] + "<|im_end|>", m["role"] == "assistant"))
            pieces.append(("\n", False))
    elif template == "llama3":
        pieces.append(("<|begin_of_text|>", False))
        for m in messages:
            pieces.append((f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n", False))
            pieces.append((m["content"].strip() + "<|eot_id|>", m["role"] == "assistant"))
    else:
        raise ValueError(f"unknown template {template!r}: expected 'chatml' or 'llama3'")

    input_ids = list(encode("".join(text for text, _ in pieces)))
    labels = [IGNORE_INDEX] * len(input_ids)
    # Every piece ends where a token ends, so the token count of each prefix of the text
    # says where its piece's tokens stop.
    prefix, start = "", 0
    for text, trained in pieces:
        prefix += text
        end = len(encode(prefix))
        if trained:
            labels[start:end] = input_ids[start:end]
        start = end
    return input_ids, labels


def generate_with_stop(model, input_ids: torch.Tensor, max_new_tokens: int, decode: Callable[[list[int]], str],
                       stop: list[str] = (), eos_token_id: int | None = None) -> tuple[list[int], str, str]:
    new_ids: list[int] = []
    ids = input_ids
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_id = int(model(ids).logits[0, -1].argmax())
            new_ids.append(next_id)
            if next_id == eos_token_id:
                return new_ids, decode(new_ids[:-1]), "stop"
            # Search the generated text only, all of it: a stop string may span tokens.
            text = decode(new_ids)
            found = [text.find(s) for s in stop if s in text]
            if found:
                return new_ids, text[:min(found)], "stop"
            ids = torch.cat([ids, torch.tensor([[next_id]], dtype=ids.dtype, device=ids.device)], dim=1)
    return new_ids, decode(new_ids), "length"
