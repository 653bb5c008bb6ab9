"""Chat written differently: turns built from (text, trained) pieces shared by rendering and
labelling, each piece encoded on its own; greedy decoding with the model's key/value cache and
the stop strings found by a regex over the generated text."""

import re

import torch

IGNORE_INDEX = -100

CHAT_SPECIAL_TOKENS = {
    "<|im_start|>": 512,
    "<|im_end|>": 513,
    "<|begin_of_text|>": 514,
    "<|start_header_id|>": 515,
    "<|end_header_id|>": 516,
    "<|eot_id|>": 517,
}

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


def _chatml_pieces(messages):
    for m in messages:
        yield "<|im_start|>" + m["role"] + "\n", False
        yield m["content"] + "<|im_end|>", m["role"] == "assistant"
        yield "\n", False


def _llama3_pieces(messages, bos_token):
    if bos_token:
        yield bos_token, False
    for m in messages:
        yield "<|start_header_id|>" + m["role"] + "<|end_header_id|>\n\n", False
        yield m["content"].strip() + "<|eot_id|>", m["role"] == "assistant"


def render_chatml(messages, add_generation_prompt=False):
    parts = [text for text, _ in _chatml_pieces(messages)]
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def render_llama3(messages, add_generation_prompt=False, bos_token="<|begin_of_text|>"):
    parts = [text for text, _ in _llama3_pieces(messages, bos_token)]
    if add_generation_prompt:
        parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


def tokenize_chat(messages, template, encode):
    if template == "chatml":
        pieces = _chatml_pieces(messages)
    elif template == "llama3":
        pieces = _llama3_pieces(messages, "<|begin_of_text|>")
    else:
        raise ValueError(f"template must be 'chatml' or 'llama3', not {template!r}")
    input_ids, labels = [], []
    for text, trained in pieces:
        ids = [int(i) for i in encode(text)]
        input_ids += ids
        labels += ids if trained else [IGNORE_INDEX] * len(ids)
    return input_ids, labels


def generate_with_stop(model, input_ids, max_new_tokens, decode, stop=(), eos_token_id=None):
    pattern = re.compile("|".join(re.escape(s) for s in stop)) if stop else None
    new_ids = []
    past, step_input = None, input_ids
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            out = model(step_input, past_key_values=past, use_cache=True)
            past = out.past_key_values
            token = out.logits[0, -1].argmax().item()
            new_ids.append(token)
            if eos_token_id is not None and token == eos_token_id:
                return new_ids, decode(new_ids[:-1]), "stop"
            text = decode(new_ids)
            match = pattern.search(text) if pattern else None
            if match:
                return new_ids, text[:match.start()], "stop"
            step_input = torch.tensor([[token]], device=input_ids.device)
    return new_ids, decode(new_ids), "length"
