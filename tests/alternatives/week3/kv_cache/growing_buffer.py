"""A correct KV cache written differently: preallocated buffers that double when full,
returning views; seq_len kept as a counter; a while-loop decoder."""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, n_layers: int):
        self.buffers = [None] * n_layers  # (k_buf, v_buf) with spare room on dim 2
        self.lengths = [0] * n_layers

    def update(self, layer, k, v):
        n, t = self.lengths[layer], k.shape[2]
        buf = self.buffers[layer]
        if buf is None or n + t > buf[0].shape[2]:
            cap = max(2 * (n + t), 16)
            new = tuple(x.new_empty(x.shape[0], x.shape[1], cap, x.shape[3]) for x in (k, v))
            if buf is not None:
                new[0][:, :, :n] = buf[0][:, :, :n]
                new[1][:, :, :n] = buf[1][:, :, :n]
            buf = self.buffers[layer] = new
        buf[0][:, :, n : n + t] = k
        buf[1][:, :, n : n + t] = v
        self.lengths[layer] = n + t
        return buf[0][:, :, : n + t], buf[1][:, :, : n + t]

    @property
    def seq_len(self):
        return self.lengths[0]


def generate_greedy(model, idx, max_new_tokens, use_cache=True):
    with torch.no_grad():
        cache = KVCache(model.config.n_layer) if use_cache else None
        seq, feed = idx, idx
        while seq.shape[1] < idx.shape[1] + max_new_tokens:
            logits = model(feed, cache=cache) if use_cache else model(seq)
            token = logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, token], dim=1)
            feed = token
        return seq
