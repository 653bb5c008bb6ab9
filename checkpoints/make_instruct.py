"""Fine-tune `checkpoints/gpt2-tiny-trained/` into a tiny chat model: `checkpoints/gpt2-tiny-instruct/`.

    python checkpoints/make_instruct.py         # a few minutes on one CPU core

The base model only continues stories. This script teaches it one chat format, ChatML
(`<|im_start|>role\\n...<|im_end|>\\n`), on conversations the script writes itself: short
instructions built from templates (opposites, animal sounds, colours, counting, small sums,
greetings, repeating a phrase, a two-sentence story) with their answers, sometimes after a
system message, sometimes two exchanges long. Everything is seeded.

1. The course tokenizer gains the six chat special tokens of the week-1 chat kata
   (`CHAT_SPECIAL_TOKENS`, ids 512-517), and the model's tied embedding grows from 512 to
   518 rows (the new rows start at the mean of the old ones, transformers' default).
2. Each conversation is rendered with ChatML and labelled by the week-1 reference
   `tokenize_chat`: only the assistant's answers and their `<|im_end|>` are trained, so the
   model learns to answer and to stop, not to write questions.
3. AdamW on batches of 16 conversations, padded on the right with `<|endoftext|>`.

The result answers in the chat format and ends its turn with `<|im_end|>` (id 513, the
model's eos), where the base model, given the same prompt, rambles on. The tokenizer is
written next to it with the ChatML template, so that `AutoTokenizer.from_pretrained(...)
.apply_chat_template(messages, add_generation_prompt=True)` builds its prompts.
"""

from __future__ import annotations

import importlib.util
import math
import random
import time
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASE = HERE / "gpt2-tiny-trained"
OUT = HERE / "gpt2-tiny-instruct"

N_CONVERSATIONS = 4000
STEPS = 500
BATCH = 16
MAX_LR, MIN_LR, WARMUP = 2e-3, 1e-4, 20
SEED = 2024
MAX_LEN = 96


def load_chat_reference():
    spec = importlib.util.spec_from_file_location("reference_chat", ROOT / "reference" / "week1" / "chat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the conversations -------------------------------------------------------------------

OPPOSITES = [("hot", "cold"), ("big", "small"), ("up", "down"), ("happy", "sad"), ("fast", "slow"),
             ("day", "night"), ("old", "new"), ("wet", "dry"), ("light", "dark"), ("hard", "soft"),
             ("loud", "quiet"), ("full", "empty"), ("tall", "short"), ("in", "out"), ("good", "bad")]
SOUNDS = [("cow", "moo"), ("dog", "woof"), ("cat", "meow"), ("duck", "quack"), ("sheep", "baa"),
          ("pig", "oink"), ("lion", "roar"), ("owl", "hoot"), ("frog", "ribbit"), ("horse", "neigh"),
          ("bee", "buzz"), ("bird", "tweet")]
COLOURS = [("sky", "blue"), ("grass", "green"), ("sun", "yellow"), ("snow", "white"), ("night", "black"),
           ("apple", "red"), ("banana", "yellow"), ("sea", "blue"), ("leaf", "green"), ("cloud", "white")]
NAMES = ["Ella", "Sara", "Finn", "Leo", "Lucy", "Tom", "Mia", "Ben", "Lily", "Max", "Anna", "Sam"]
ANIMALS = ["bear", "turtle", "bunny", "fox", "cat", "dog", "bird", "horse", "frog", "mouse"]
PLACES = ["park", "garden", "forest", "house", "pond"]
THINGS = ["ball", "star", "box", "kite", "shell", "toy"]
PHRASES = ["I like the sun.", "The cat is big.", "We can play.", "The dog runs fast.", "I love my mom.",
           "The sky is blue.", "Let's go to the park.", "The bird can sing."]
SYSTEMS = ["You are a helpful assistant.", "You are a kind teacher.", "Answer in one short sentence."]


def exchange(rng: random.Random) -> tuple[str, str]:
    """One (instruction, answer) pair."""
    kind = rng.randrange(8)
    if kind == 0:
        a, b = rng.choice(OPPOSITES)
        a, b = (a, b) if rng.random() < 0.5 else (b, a)
        return rng.choice([f"What is the opposite of {a}?", f"Tell me the opposite of {a}."]), \
            f"The opposite of {a} is {b}."
    if kind == 1:
        animal, sound = rng.choice(SOUNDS)
        return rng.choice([f"What does a {animal} say?", f"What sound does a {animal} make?"]), \
            f"A {animal} says {sound}."
    if kind == 2:
        thing, colour = rng.choice(COLOURS)
        return f"What color is the {thing}?", f"The {thing} is {colour}."
    if kind == 3:
        n = rng.randint(2, 6)
        return f"Count from 1 to {n}.", ", ".join(str(i) for i in range(1, n + 1)) + "."
    if kind == 4:
        a, b = rng.randint(0, 5), rng.randint(0, 4)
        return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
    if kind == 5:
        name = rng.choice(NAMES)
        return rng.choice([f"Say hello to {name}.", f"Greet {name}."]), f"Hello, {name}! How are you today?"
    if kind == 6:
        phrase = rng.choice(PHRASES)
        return f"Repeat after me: {phrase}", phrase
    name, animal = rng.choice(NAMES), rng.choice(ANIMALS)
    place, thing = rng.choice(PLACES), rng.choice(THINGS)
    return (f"Tell me a story about a {animal} named {name}.",
            f"Once upon a time, there was a {animal} named {name}. {name} found a {thing} in the {place} "
            f"and was very happy.")


def conversation(rng: random.Random) -> list[dict[str, str]]:
    messages = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
    for _ in range(2 if rng.random() < 0.3 else 1):
        question, answer = exchange(rng)
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


# ---- the tokenizer -------------------------------------------------------------------------


def chat_tokenizer(chat) -> PreTrainedTokenizerFast:
    """The course tokenizer plus the chat special tokens (ids 512-517), with the ChatML template."""
    tok = Tokenizer.from_file(str(HERE / "tokenizer" / "hf" / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in chat.CHAT_SPECIAL_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token="<|endoftext|>", model_max_length=128, clean_up_tokenization_spaces=False,
    )
    assert [fast.convert_tokens_to_ids(s) for s in chat.CHAT_SPECIAL_TOKENS] == list(chat.CHAT_SPECIAL_TOKENS.values())
    fast.chat_template = chat.CHATML_TEMPLATE
    return fast


# ---- training ------------------------------------------------------------------------------


def lr_at(step: int) -> float:
    if step < WARMUP:
        return MAX_LR * (step + 1) / WARMUP
    progress = (step - WARMUP) / max(1, STEPS - WARMUP)
    return MIN_LR + 0.5 * (MAX_LR - MIN_LR) * (1 + math.cos(math.pi * progress))


def batch_of(examples: list[tuple[list[int], list[int]]], pad_id: int):
    width = max(len(ids) for ids, _ in examples)
    x = torch.full((len(examples), width), pad_id)
    y = torch.full((len(examples), width), -100)
    mask = torch.zeros(len(examples), width, dtype=torch.long)
    for i, (ids, labels) in enumerate(examples):
        x[i, :len(ids)], y[i, :len(ids)], mask[i, :len(ids)] = torch.tensor(ids), torch.tensor(labels), 1
    return x, y, mask


def main(out: Path = OUT) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    chat = load_chat_reference()
    tok = chat_tokenizer(chat)
    encode = lambda text: tok.encode(text, add_special_tokens=False)
    rng = random.Random(SEED)
    examples = []
    while len(examples) < N_CONVERSATIONS:
        ids, labels = chat.tokenize_chat(conversation(rng), "chatml", encode)
        if len(ids) <= MAX_LEN:  # room left in the 128 positions for a prompt's answer
            examples.append((ids, labels))
    n_tokens = sum(len(ids) for ids, _ in examples)
    n_trained = sum(sum(lab != -100 for lab in labels) for _, labels in examples)
    print(f"{len(examples)} conversations, {n_tokens} tokens, {n_trained} trained; longest "
          f"{max(len(ids) for ids, _ in examples)}")

    model = GPT2LMHeadModel.from_pretrained(BASE)
    model.resize_token_embeddings(len(tok))
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    model.config.eos_token_id = model.generation_config.eos_token_id = eos
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=MAX_LR, betas=(0.9, 0.95))
    order = torch.Generator().manual_seed(SEED)
    model.train()
    t0 = time.time()
    for step in range(STEPS):
        picks = torch.randint(0, len(examples), (BATCH,), generator=order).tolist()
        x, y, mask = batch_of([examples[i] for i in picks], tok.pad_token_id)
        loss = model(input_ids=x, attention_mask=mask, labels=y).loss  # shifts inside
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == STEPS - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}  lr {lr_at(step):.2e}  {time.time() - t0:.0f}s")
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)

    for messages in ([{"role": "user", "content": "What is the opposite of big?"}],
                     [{"role": "user", "content": "What does a duck say?"}],
                     [{"role": "user", "content": "Tell me a story about a fox named Mia."}]):
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                         return_dict=True)
        new = model.generate(**prompt, max_new_tokens=40, do_sample=False, pad_token_id=tok.pad_token_id)
        print(repr(messages[0]["content"]), "->", repr(tok.decode(new[0, prompt["input_ids"].shape[1]:])))


if __name__ == "__main__":
    main()
