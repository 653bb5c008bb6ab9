"""A correct KV cache written differently: a list of chunks per layer, concatenated on
demand along dim 2 (positive index); seq_len summed from layer 0's chunks."""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, n_layers: int):
        self.k_chunks = [[] for _ in range(n_layers)]
        self.v_chunks = [[] for _ in range(n_layers)]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        self.k_chunks[layer].append(k)
        self.v_chunks[layer].append(v)
        if len(self.k_chunks[layer]) > 1:  # keep one chunk: concatenation stays linear per step
            self.k_chunks[layer] = [torch.cat(self.k_chunks[layer], dim=2)]
            self.v_chunks[layer] = [torch.cat(self.v_chunks[layer], dim=2)]
        return self.k_chunks[layer][0], self.v_chunks[layer][0]

    @property
    def seq_len(self) -> int:
        return sum(c.shape[2] for c in self.k_chunks[0])


@torch.no_grad()
def generate_greedy(model, idx, max_new_tokens, use_cache=True):
    tokens = [idx[:, i : i + 1] for i in range(idx.shape[1])]
    cache = KVCache(model.config.n_layer)
    pending = idx
    for _ in range(max_new_tokens):
        if use_cache:
            logits = model(pending, cache=cache)
        else:
            logits = model(torch.cat(tokens, dim=1))
        pending = logits[:, -1, :].argmax(dim=-1).view(-1, 1)
        tokens.append(pending)
    return torch.cat(tokens, dim=1)
