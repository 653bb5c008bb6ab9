"""Train `checkpoints/gpt2-tiny-trained/`: a small GPT-2 on the fixture corpus.

    python checkpoints/train_gpt2.py            # ~5-10 minutes on one CPU core

The corpus (`fixtures/corpus/corpus.txt`, short simple stories separated by
`<|endoftext|>`) is tokenized with the course tokenizer (`checkpoints/tokenizer/`, the
week-1 BPE, 512 ids) and a `GPT2LMHeadModel` (n_embd 96, 3 layers, 4 heads, 128 positions,
tied head, no dropout) is trained on random 128-token windows with AdamW and a cosine
schedule. The last 5% of the tokens are held out for a validation loss. Everything is
seeded; the run is deterministic on one machine (floating-point reductions may differ on
another, so the README records the numbers of the committed run).

The result is small enough to load in a test in milliseconds and good enough that greedy
decoding of "Once upon a time" produces recognisable story text. The tokenizer is written
next to the model in Hugging Face format (`tokenizer.json`, `tokenizer_config.json`,
`special_tokens_map.json`, by `tokenizer/build.py`), so `AutoTokenizer.from_pretrained` and
`AutoModelForCausalLM.from_pretrained` both load the directory.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path

import tiktoken
import torch
from transformers import GPT2Config, GPT2LMHeadModel

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EOT = "<|endoftext|>"

STEPS = 500
BATCH = 12
BLOCK = 128
MAX_LR, MIN_LR, WARMUP = 3e-3, 3e-4, 40
SEED = 1337


def load_tokenizer(path: Path = HERE / "tokenizer" / "tokenizer.json") -> tiktoken.Encoding:
    """The course tokenizer as a tiktoken Encoding (the format of tokenizer/README.md)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    merges = [bytes.fromhex(a) + bytes.fromhex(b) for a, b in data["merges"]]
    ranks = {bytes([i]): i for i in range(256)}
    for token in merges:
        ranks[token] = len(ranks)
    return tiktoken.Encoding(
        name="llm-katas-512", pat_str=data["pattern"], mergeable_ranks=ranks,
        special_tokens=data["special_tokens"],
    )


def write_hf_tokenizer(out: Path) -> None:
    """The same tokenizer as Hugging Face files next to the model (tokenizer/build.py), so that
    AutoTokenizer and AutoModelForCausalLM load from one directory."""
    spec = importlib.util.spec_from_file_location("tokenizer_build", HERE / "tokenizer" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    build.write_hf(out)


def lr_at(step: int) -> float:
    if step < WARMUP:
        return MAX_LR * (step + 1) / WARMUP
    progress = (step - WARMUP) / max(1, STEPS - WARMUP)
    return MIN_LR + 0.5 * (MAX_LR - MIN_LR) * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(model, data: torch.Tensor, n: int = 32) -> float:
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(0, len(data) - BLOCK - 1, (n,), generator=g)
    x = torch.stack([data[s : s + BLOCK] for s in starts])
    y = torch.stack([data[s + 1 : s + BLOCK + 1] for s in starts])
    logits = model(x).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1)).item()


def main(out: Path = HERE / "gpt2-tiny-trained") -> None:
    torch.set_num_threads(1)  # reproducible reductions, and no thread thrashing on a busy machine
    torch.manual_seed(SEED)
    enc = load_tokenizer()
    eot = enc.encode(EOT, allowed_special="all")[0]
    text = (ROOT / "fixtures" / "corpus" / "corpus.txt").read_text(encoding="utf-8")
    ids = torch.tensor(enc.encode(text, allowed_special="all"), dtype=torch.long)
    split = int(0.95 * len(ids))
    train, val = ids[:split], ids[split:]
    print(f"{len(text)} chars -> {len(ids)} tokens ({len(train)} train, {len(val)} val)")

    config = GPT2Config(
        vocab_size=enc.n_vocab, n_positions=BLOCK, n_embd=96, n_layer=3, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, tie_word_embeddings=True,
    )
    model = GPT2LMHeadModel(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=MAX_LR, betas=(0.9, 0.95),
    )
    g = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    model.train()
    for step in range(STEPS):
        starts = torch.randint(0, len(train) - BLOCK - 1, (BATCH,), generator=g)
        x = torch.stack([train[s : s + BLOCK] for s in starts])
        y = torch.stack([train[s + 1 : s + BLOCK + 1] for s in starts])
        logits = model(x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == STEPS - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  lr {lr_at(step):.2e}  {time.time() - t0:.0f}s")
    model.eval()
    print(f"final train loss {evaluate(model, train):.3f}  val loss {evaluate(model, val):.3f}")
    model.save_pretrained(out, safe_serialization=True)
    write_hf_tokenizer(out)

    prompt = torch.tensor([enc.encode("Once upon a time")])
    mask = torch.ones_like(prompt)
    greedy = model.generate(prompt, attention_mask=mask, max_new_tokens=60, do_sample=False)
    print("greedy:", repr(enc.decode(greedy[0].tolist())))
    torch.manual_seed(0)
    sampled = model.generate(prompt, attention_mask=mask, max_new_tokens=60, do_sample=True, top_k=20, temperature=0.8)
    print("sampled:", repr(enc.decode(sampled[0].tolist())))
    (HERE / "TRAINED").touch()


if __name__ == "__main__":
    main()
