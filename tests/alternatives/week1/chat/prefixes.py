"""Chat written differently: turns rendered with lists and str.join, labels found by
rendering growing prefixes of the conversation with the module's own renderers, and a
decoding loop that re-runs the whole sequence each step and scans every stop string with
str.find (float64 argmax over the logits)."""

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

HEADERS = {"chatml": "<|im_start|>assistant\n", "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n"}
END_OF_TURN = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>"}


def render_chatml(messages, add_generation_prompt=False):
    lines = []
    for message in messages:
        lines += ["<|im_start|>", message["role"], "\n", message["content"], "<|im_end|>", "\n"]
    if add_generation_prompt:
        lines += ["<|im_start|>", "assistant", "\n"]
    return "".join(lines)


def render_llama3(messages, add_generation_prompt=False, bos_token="<|begin_of_text|>"):
    lines = [bos_token]
    for message in messages:
        lines += ["<|start_header_id|>", message["role"], "<|end_header_id|>", "\n\n", message["content"].strip(),
                  "<|eot_id|>"]
    if add_generation_prompt:
        lines += ["<|start_header_id|>", "assistant", "<|end_header_id|>", "\n\n"]
    return "".join(lines)


def tokenize_chat(messages, template, encode):
    renderers = {"chatml": render_chatml, "llama3": render_llama3}
    if template not in renderers:
        raise ValueError(f"unknown chat template {template!r}")
    render = renderers[template]
    input_ids = [int(i) for i in encode(render(messages))]
    labels = [IGNORE_INDEX for _ in input_ids]
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        # the turns before, then this turn's header: its tokens end where the answer starts
        start = len(encode(render(messages[:k]) + HEADERS[template]))
        turn = render(messages[:k + 1])
        # up to and including this turn's end-of-turn token (ChatML's "\n" after it is not trained)
        end = len(encode(turn[:turn.rindex(END_OF_TURN[template]) + len(END_OF_TURN[template])]))
        for t in range(start, end):
            labels[t] = input_ids[t]
    return input_ids, labels


def generate_with_stop(model, input_ids, max_new_tokens, decode, stop=(), eos_token_id=None):
    sequence = input_ids.clone()
    new_ids = []
    while len(new_ids) < max_new_tokens:
        with torch.no_grad():
            logits = model(sequence).logits[:, -1, :].double()
        token = int(torch.argmax(logits, dim=-1)[0])
        new_ids.append(token)
        if token == eos_token_id:
            return list(new_ids), decode(new_ids[:-1]), "stop"
        text = decode(new_ids)
        positions = [text.find(s) for s in stop]
        positions = [p for p in positions if p >= 0]
        if positions:
            return list(new_ids), text[:min(positions)], "stop"
        sequence = torch.cat((sequence, sequence.new_tensor([[token]])), dim=1)
    return list(new_ids), decode(new_ids), "length"
