"""Incremental decoding with a key/value cache (week 3, reference solution)."""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, n_layers: int):
        self.n_layers = n_layers
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = k, v
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=-2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=-2)
        return self.keys[layer], self.values[layer]

    @property
    def seq_len(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]


@torch.no_grad()
def generate_greedy(model, idx: torch.Tensor, max_new_tokens: int, use_cache: bool = True) -> torch.Tensor:
    if max_new_tokens <= 0:
        return idx
    if not use_cache:
        for _ in range(max_new_tokens):
            nxt = model(idx)[:, -1, :].argmax(dim=-1, keepdim=True)
            idx = torch.cat([idx, nxt], dim=1)
        return idx
    cache = KVCache(model.config.n_layer)
    logits = model(idx, cache=cache)  # prefill: the whole prompt at once
    out = [idx]
    for step in range(max_new_tokens):
        nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True)
        out.append(nxt)
        if step + 1 < max_new_tokens:
            logits = model(nxt, cache=cache)  # only the new token
    return torch.cat(out, dim=1)
