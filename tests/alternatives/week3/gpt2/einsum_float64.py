"""A correct GPT-2 written differently from the reference.

- attention with einsum, computed in float64 and cast back; head split by reshape/permute;
- GELU and LayerNorm written out by hand (LayerNorm statistics in float64);
- the head as F.linear against the embedding table (tied by construction, no lm_head module);
- other internal names, and a loader that maps transformers' keys through a table;
- position embeddings by slicing the table; top-k by sorting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    layer_norm_epsilon: float = 1e-5


class Norm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        x64 = x.double()
        mu = x64.mean(-1, keepdim=True)
        var = ((x64 - mu) ** 2).mean(-1, keepdim=True)
        return ((x64 - mu) / torch.sqrt(var + self.eps)).to(x.dtype) * self.gain + self.shift


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg.n_embd
        self.heads = cfg.n_head
        self.norm_a = Norm(C, cfg.layer_norm_epsilon)
        self.qkv = nn.Linear(C, 3 * C)
        self.out = nn.Linear(C, C)
        self.norm_m = Norm(C, cfg.layer_norm_epsilon)
        self.up = nn.Linear(C, 4 * C)
        self.down = nn.Linear(4 * C, C)

    def attend(self, x, index, cache):
        B, T, C = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.update(index, k, v)
        L = k.shape[2]
        s = torch.einsum("bhqd,bhkd->bhqk", q.double(), k.double()) / math.sqrt(C // self.heads)
        future = torch.triu(torch.ones(T, L, dtype=torch.bool, device=x.device), diagonal=L - T + 1)
        s = s.masked_fill(future, -math.inf)
        y = torch.einsum("bhqk,bhkd->bhqd", s.softmax(-1), v.double()).to(x.dtype)
        return self.out(y.permute(0, 2, 1, 3).reshape(B, T, C))

    def forward(self, x, index, cache):
        x = x + self.attend(self.norm_a(x), index, cache)
        return x + self.down(gelu_tanh(self.up(self.norm_m(x))))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.positions = nn.Embedding(config.n_positions, config.n_embd)
        self.layers = nn.ModuleList([Layer(config) for _ in range(config.n_layer)])
        self.norm = Norm(config.n_embd, config.layer_norm_epsilon)

    def forward(self, idx, cache=None):
        start = 0 if cache is None else cache.seq_len
        T = idx.shape[1]
        if start + T > self.config.n_positions:
            raise ValueError("too many positions")
        x = self.tokens(idx) + self.positions.weight[start : start + T]
        for i, layer in enumerate(self.layers):
            x = layer(x, i, cache)
        return F.linear(self.norm(x), self.tokens.weight)

    def load_hf_state_dict(self, state_dict):
        table = {"wte.weight": ("tokens.weight", False), "wpe.weight": ("positions.weight", False),
                 "ln_f.weight": ("norm.gain", False), "ln_f.bias": ("norm.shift", False)}
        per_layer = {"ln_1.weight": ("norm_a.gain", False), "ln_1.bias": ("norm_a.shift", False),
                     "attn.c_attn.weight": ("qkv.weight", True), "attn.c_attn.bias": ("qkv.bias", False),
                     "attn.c_proj.weight": ("out.weight", True), "attn.c_proj.bias": ("out.bias", False),
                     "ln_2.weight": ("norm_m.gain", False), "ln_2.bias": ("norm_m.shift", False),
                     "mlp.c_fc.weight": ("up.weight", True), "mlp.c_fc.bias": ("up.bias", False),
                     "mlp.c_proj.weight": ("down.weight", True), "mlp.c_proj.bias": ("down.bias", False)}
        for i in range(self.config.n_layer):
            for hf, (mine, t) in per_layer.items():
                table[f"h.{i}.{hf}"] = (f"layers.{i}.{mine}", t)
        params = dict(self.named_parameters())
        with torch.no_grad():
            for hf, (mine, transpose) in table.items():
                w = state_dict[hf] if hf in state_dict else state_dict["transformer." + hf]
                params[mine].copy_(w.T if transpose else w)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        out = idx
        for _ in range(max_new_tokens):
            logits = self(out)[:, -1]
            if temperature == 0:
                choice = torch.argmax(logits, dim=-1).unsqueeze(1)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.shape[-1]:
                    threshold = logits.sort(dim=-1, descending=True).values[:, top_k - 1 : top_k]
                    logits = torch.where(logits >= threshold, logits, torch.full_like(logits, -math.inf))
                choice = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
            out = torch.cat((out, choice), 1)
        return out
