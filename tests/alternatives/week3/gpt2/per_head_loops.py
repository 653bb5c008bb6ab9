"""A correct GPT-2 written differently from the reference.

- separate q, k, v projections (c_attn's weight and bias split in three when loading);
- attention one head at a time in a Python loop, with an additive -inf mask;
- nn.GELU(approximate="tanh") and nn.LayerNorm; pos ids built with arange + offset;
- the head is an nn.Linear whose weight is re-tied after loading; top-k by scatter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class GPTConfig:
    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    layer_norm_epsilon: float = 1e-5


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, self.H = c.n_embd, c.n_head
        self.ln1 = nn.LayerNorm(C, eps=c.layer_norm_epsilon)
        self.q, self.k, self.v = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)
        self.o = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C, eps=c.layer_norm_epsilon)
        self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(approximate="tanh"), nn.Linear(4 * C, C))

    def forward(self, x, layer, cache):
        B, T, C = x.shape
        hd = C // self.H
        h = self.ln1(x)
        split = lambda t: t.view(B, T, self.H, hd).transpose(1, 2)
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        if cache is not None:
            k, v = cache.update(layer, k, v)
        L = k.size(2)
        qpos = torch.arange(L - T, L).unsqueeze(1)
        bias = torch.zeros(T, L).masked_fill(torch.arange(L).unsqueeze(0) > qpos, float("-inf"))
        heads = []
        for i in range(self.H):
            w = torch.softmax(q[:, i] @ k[:, i].transpose(1, 2) * (1.0 / math.sqrt(hd)) + bias, dim=-1)
            heads.append(w @ v[:, i])
        x = x + self.o(torch.cat(heads, dim=-1))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, C)
        self.wpe = nn.Embedding(config.n_positions, C)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(C, eps=config.layer_norm_epsilon)
        self.head = nn.Linear(C, config.vocab_size, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx, cache=None):
        T = idx.size(1)
        offset = cache.seq_len if cache is not None else 0
        if T + offset > self.config.n_positions:
            raise ValueError(f"{T + offset} positions > n_positions={self.config.n_positions}")
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device) + offset)
        for i, b in enumerate(self.blocks):
            x = b(x, i, cache)
        return self.head(self.ln_f(x))

    def load_hf_state_dict(self, state_dict):
        sd = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in state_dict.items()}
        C = self.config.n_embd
        with torch.no_grad():
            self.wte.weight.copy_(sd["wte.weight"])
            self.wpe.weight.copy_(sd["wpe.weight"])
            self.ln_f.weight.copy_(sd["ln_f.weight"])
            self.ln_f.bias.copy_(sd["ln_f.bias"])
            for i, b in enumerate(self.blocks):
                p = f"h.{i}."
                b.ln1.weight.copy_(sd[p + "ln_1.weight"]); b.ln1.bias.copy_(sd[p + "ln_1.bias"])
                b.ln2.weight.copy_(sd[p + "ln_2.weight"]); b.ln2.bias.copy_(sd[p + "ln_2.bias"])
                w, bias = sd[p + "attn.c_attn.weight"], sd[p + "attn.c_attn.bias"]
                for j, lin in enumerate((b.q, b.k, b.v)):
                    lin.weight.copy_(w[:, j * C : (j + 1) * C].t())
                    lin.bias.copy_(bias[j * C : (j + 1) * C])
                b.o.weight.copy_(sd[p + "attn.c_proj.weight"].t()); b.o.bias.copy_(sd[p + "attn.c_proj.bias"])
                b.mlp[0].weight.copy_(sd[p + "mlp.c_fc.weight"].t()); b.mlp[0].bias.copy_(sd[p + "mlp.c_fc.bias"])
                b.mlp[2].weight.copy_(sd[p + "mlp.c_proj.weight"].t()); b.mlp[2].bias.copy_(sd[p + "mlp.c_proj.bias"])
        self.head.weight = self.wte.weight

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        for _ in range(max_new_tokens):
            logits = self.forward(idx)[:, -1, :]
            if temperature == 0:
                nxt = logits.max(dim=-1).indices[:, None]
            else:
                logits = logits / temperature
                if top_k is not None:
                    vals, ids = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits = torch.full_like(logits, float("-inf")).scatter(-1, ids, vals)
                nxt = torch.multinomial(torch.softmax(logits, -1), num_samples=1, generator=generator)
            idx = torch.cat([idx, nxt], dim=-1)
        return idx
