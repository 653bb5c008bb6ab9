"""Hidden tests for week1/chat: fresh seeded conversations and prompts, expected values from the
reference (and apply_chat_template's assistant mask), ids from the transformers tokenizer."""

import random

import pytest
import torch

from graders import check, oracle, reference, student

from .test_chat import (base_model, chatml_mistake, decode, encode, hf_tokenize, hf_tokenizer, instruct_model,
                        label_mistake, llama3_mistake, text_mistake)

pytestmark = pytest.mark.hidden

chat = student("week1.chat")
model_solution = reference("week1.chat")

WORDS = ["the", "cat", "sat", "on", "a", "mat", "Why", "is", "sky", "blue?", "Ella", "said", "yes!", "3", "42,",
         "don't", "(really)", "sun", "moon", "and"]
LEADING = ["", " ", "  "]  # never a newline: it would share a token with the header's newline
TRAILING = ["", " ", "\n", " \n ", "\n\n", "\t"]


def random_conversation(seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    messages = [{"role": "system", "content": "You are " + rng.choice(WORDS) + "."}] if rng.random() < 0.5 else []
    for _ in range(rng.randint(1, 3)):
        for role in ("user", "assistant"):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
            messages.append({"role": role, "content": rng.choice(LEADING) + words + rng.choice(TRAILING)})
    if rng.random() < 0.3:
        messages.pop()  # ends with the user's turn
    return messages


def hf_encode(text: str) -> list[int]:
    """The transformers tokenizer's ids (the same as the tiktoken ones), no BOS added."""
    return hf_tokenizer().encode(text, add_special_tokens=False)


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [101, 102, 103, 104])
def test_render_chatml_on_fresh_conversations(seed):
    messages = random_conversation(seed)
    for prompt in (False, True):
        out = chat.render_chatml(messages, add_generation_prompt=prompt)
        check.equal(out, model_solution.render_chatml(messages, add_generation_prompt=prompt),
                    what=f"render_chatml(add_generation_prompt={prompt})", hint=oracle(chatml_mistake, out, messages, prompt))


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [201, 202, 203, 204])
def test_render_llama3_on_fresh_conversations(seed):
    messages = random_conversation(seed)
    for prompt, bos in ((False, "<|begin_of_text|>"), (True, "")):
        out = chat.render_llama3(messages, add_generation_prompt=prompt, bos_token=bos)
        check.equal(out, model_solution.render_llama3(messages, add_generation_prompt=prompt, bos_token=bos),
                    what=f"render_llama3(add_generation_prompt={prompt}, bos_token={bos!r})",
                    hint=oracle(llama3_mistake, out, messages, prompt, bos))


@pytest.mark.points(3)
@pytest.mark.parametrize("template", ["chatml", "llama3"])
@pytest.mark.parametrize("seed", [301, 302, 303])
def test_tokenize_chat_on_fresh_conversations(seed, template):
    messages = random_conversation(seed)
    ids, labels = chat.tokenize_chat(messages, template, hf_encode)
    want = model_solution.tokenize_chat(messages, template, hf_encode)
    check.equal(list(ids), want[0], what=f"input_ids ({template})")
    check.equal(list(labels), want[1], what=f"labels ({template})", hint=oracle(label_mistake, labels, messages, template))
    check.equal(list(labels), oracle(hf_tokenize, messages, template)[1], what=f"labels vs apply_chat_template ({template})")


PROMPTS = [("Lily and Ben", [" the"]), ("One day, a little girl", ["ar", "Yes"]), ("The bear said", ["."]),
           ("Once upon a time", ["named", "Ella"])]


@pytest.mark.points(2)
@pytest.mark.parametrize("prompt,stop", PROMPTS, ids=[p for p, _ in PROMPTS])
def test_generate_with_stop_on_fresh_prompts(prompt, stop):
    ids = torch.tensor([encode(prompt)])
    new_ids, text, reason = chat.generate_with_stop(base_model(), ids, 30, decode, stop)
    want = model_solution.generate_with_stop(base_model(), ids, 30, decode, stop)
    check.equal(list(new_ids), want[0], what=f"new_ids (stop={stop})", hint="stop_per_token",
                likely_if="your generate_with_stop passes the public tests without stop strings")
    check.equal(text, want[1], what="text", hint=oracle(text_mistake, text, want[0], stop))
    check.equal(reason, want[2], what="finish_reason", hint="finish_reason")


QUESTIONS = ["What color is the sky?", "Say hello to Ben.", "Repeat after me: We can play."]


@pytest.mark.points(2)
@pytest.mark.parametrize("question", QUESTIONS)
def test_instruct_answers_with_eos_and_stop_strings(question):
    ids = torch.tensor([encode(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")])
    for stop in ((), ["is"]):
        new_ids, text, reason = chat.generate_with_stop(instruct_model(), ids, 40, decode, stop, eos_token_id=513)
        want = model_solution.generate_with_stop(instruct_model(), ids, 40, decode, stop, eos_token_id=513)
        check.equal(list(new_ids), want[0], what=f"new_ids (eos 513, stop={list(stop)})")
        check.equal(text, want[1], what="text")
        check.equal(reason, want[2], what="finish_reason", hint="finish_reason")
