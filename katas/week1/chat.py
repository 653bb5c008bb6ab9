"""Week 1 — chat templates, assistant-only labels and stop sequences.

A chat model is a language model that reads one long string. The conversation

    [{"role": "user", "content": "What does a duck say?"}, {"role": "assistant", "content": "Quack."}]

becomes text with special tokens around every turn (the model's *chat template*), and the
model learned, during instruction tuning, to answer after an assistant header and to end
its turn with an end-of-turn token. Three things make or break it, and this kata builds them:

1. Rendering (`render_chatml`, `render_llama3`): the exact string of two real templates,
   character for character. A model tuned on one layout sees anything else as unfamiliar
   text: one missing newline and the answers get worse.
2. Labels for training (`tokenize_chat`): only the assistant's answers, each with its
   end-of-turn token, are trained; the model must learn to answer and to stop, not to write
   the user's questions or the headers (the same -100 convention as week-7 SFT).
3. Stopping (`generate_with_stop`): generation ends at the end-of-turn token or at a stop
   string, which may span several tokens or sit inside one, and is not returned (OpenAI's
   `stop` parameter).

The special tokens sit after the course tokenizer's 512 ids (`CHAT_SPECIAL_TOKENS`, ids
512-517). The templates are also given as Jinja (`CHATML_TEMPLATE`, `LLAMA3_TEMPLATE`): the
form transformers' `apply_chat_template` reads, which your tests use as the oracle. You may
not use Jinja or `apply_chat_template` yourself: write the strings with Python.

`checkpoints/gpt2-tiny-instruct/` is the course's tiny GPT-2 after instruction tuning on
ChatML conversations (checkpoints/make_instruct.py, which uses this kata's reference
`tokenize_chat`); the tests compare it with the base `checkpoints/gpt2-tiny-trained/`
through your functions: the instruct model answers and ends its turn, the base one rambles.

Run the tests:   pytest katas/week1/test_chat.py
Hints:           kata hint week1/chat

Run time: `pytest katas/week1/test_chat.py` takes about 5 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

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
    """The ChatML text of a conversation (the layout of Qwen, SmolLM and OpenAI's ChatML).

    Each message, in order, becomes

        <|im_start|>{role}\\n{content}<|im_end|>\\n

    with the content VERBATIM: leading and trailing spaces and newlines are kept (ChatML
    never trims). Note the newline AFTER <|im_end|>: it belongs to every turn, the last too.
    With `add_generation_prompt=True` the text ends with the header of the turn the model
    is to write, `<|im_start|>assistant\\n` (and nothing else: no content, no <|im_end|>).
    No default system message is added (some real ChatML templates add one; this one does not).

    Worked example:
        render_chatml([{"role": "user", "content": " Hi! "}], add_generation_prompt=True)
        == "<|im_start|>user\\n Hi! <|im_end|>\\n<|im_start|>assistant\\n"
    """
    raise NotImplementedError


def render_llama3(messages: list[dict[str, str]], add_generation_prompt: bool = False,
                  bos_token: str = "<|begin_of_text|>") -> str:
    """The Llama-3 text of a conversation.

    `bos_token` once, at the very start of the text (not once per message), then each message
    as

        <|start_header_id|>{role}<|end_header_id|>\\n\\n{content.strip()}<|eot_id|>

    The content is stripped of leading and trailing whitespace (the template's Jinja `trim`,
    which is Python's `str.strip()`), and NOTHING follows <|eot_id|>: the next header starts
    right after it (unlike ChatML's newline after <|im_end|>). With
    `add_generation_prompt=True` the text ends with `<|start_header_id|>assistant<|end_header_id|>\\n\\n`.
    `bos_token=""` leaves the BOS out (for a tokenizer that adds it itself). Messages are
    non-empty.

    Worked example (the two templates differ exactly here):
        messages = [{"role": "user", "content": " Hi! "}, {"role": "assistant", "content": "Hello.\\n"}]
        render_llama3(messages) == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\nHi!<|eot_id|>"
                                    "<|start_header_id|>assistant<|end_header_id|>\\n\\nHello.<|eot_id|>")
        render_chatml(messages) == ("<|im_start|>user\\n Hi! <|im_end|>\\n"
                                    "<|im_start|>assistant\\nHello.\\n<|im_end|>\\n")
    """
    raise NotImplementedError


def tokenize_chat(messages: list[dict[str, str]], template: str,
                  encode: Callable[[str], list[int]]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a conversation for supervised fine-tuning.

    `template` is "chatml" or "llama3" (anything else: ValueError); the text is the
    conversation rendered by that template (no generation prompt; Llama-3 with its default
    BOS), and `input_ids == encode(text)` exactly. `encode` turns text into ids and knows
    the special tokens (it gives 513 for "<|im_end|>").

    `labels` has one entry per input id, ALIGNED with them (labels[t] is input_ids[t] or
    -100, as in week-7 SFT: the loss shifts, not the data). A token is trained (its label is
    its id) when it belongs to an assistant message's content or to that message's
    end-of-turn token (<|im_end|> or <|eot_id|>). Everything else is -100: system and user
    turns, every header (`<|im_start|>assistant\\n` too: the model is given the header at
    inference, it never has to write it), BOS, and ChatML's "\\n" after <|im_end|> (the
    model stops at <|im_end|>; the newline is the template's, not the answer's).

    Worked example (ChatML), messages [user "Hi", assistant "Hello"]: the text, in pieces,

        "<|im_start|>user\\n"  "Hi<|im_end|>"  "\\n"  "<|im_start|>assistant\\n"  "Hello<|im_end|>"  "\\n"
              -100                  -100        -100            -100                   trained        -100

    so labels are -100 for every token of the other pieces, and for "Hello<|im_end|>" the
    ids themselves: the ids of "Hello", then 513.

    The special tokens and the newlines around contents fall between tokens, so each piece
    of the text (header, content + end-of-turn, ...) is a whole number of tokens: how many,
    `encode` can tell you. (A content that starts with a newline would merge with the
    header's last newline into one token; the tests use no such content.)
    """
    raise NotImplementedError


def generate_with_stop(model, input_ids: torch.Tensor, max_new_tokens: int, decode: Callable[[list[int]], str],
                       stop: list[str] = (), eos_token_id: int | None = None) -> tuple[list[int], str, str]:
    """Greedy decoding with stop strings: returns (new_ids, text, finish_reason).

    `model(ids)` is a transformers causal LM: `.logits` is [1, T, V]; the next token is the
    argmax of the last position's logits (greedy; no gradients needed). `input_ids` is a
    LongTensor [1, T] (the prompt; do not change it); prompt + new tokens fit the model's
    positions. At most `max_new_tokens` tokens are generated. After each new token:

    - if it is `eos_token_id` (None: no eos), stop: it is kept in `new_ids`, and the text is
      the decoded tokens before it (the eos itself is not text);
    - else decode ALL the new tokens so far (`decode(new_ids)`, the generated text only,
      never the prompt) and stop if that text contains any of the `stop` strings. The token
      that completed it is kept in `new_ids`; `text` is cut just before the EARLIEST
      occurrence of any stop string (the stop string is not returned, as in OpenAI's API).

    `finish_reason` is "stop" for eos or a stop string, "length" when `max_new_tokens`
    tokens were generated without either (then `text` is all of them, decoded). `new_ids` is
    a list of Python ints.

    Worked example: stop=["ear"] and the model generates " be", "ar", " said" -> after " be"
    the text " be" has no "ear"; after "ar" the text " bear" does: new_ids holds the ids of
    " be" and "ar", text == " b", finish_reason "stop". A stop string can also sit inside
    one token ("sai" in " said"), so neither a single token's text nor the stop string's own
    token ids can find it: search the decoded text. A prompt that contains a stop string
    does not stop anything: only generated text counts.
    """
    raise NotImplementedError
