"""A correct attention written unlike the reference: einsum, float64 internals, log-sum-exp
softmax, a mask from triu, and per-head loops in the module."""

import math

import numpy as np
import torch
import torch.nn as nn


def softmax(x, dim=-1):
    x64 = x.double()
    lse = x64.amax(dim, keepdim=True)
    lse = lse + (x64 - lse).exp().sum(dim, keepdim=True).log()
    return (x64 - lse).exp().to(x.dtype)


def causal_mask(q_len, k_len=None, device=None):
    k_len = k_len or q_len
    blocked = torch.triu(torch.ones(q_len, k_len, dtype=torch.bool, device=device), diagonal=k_len - q_len + 1)
    return ~blocked


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    scores = torch.einsum("...qd,...kd->...qk", q.double(), k.double()) * (q.shape[-1] ** -0.5)
    keep = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device)
    if is_causal:
        keep = keep & causal_mask(q.shape[-2], k.shape[-2], device=q.device)
    if mask is not None:
        keep = keep & mask
    scores = torch.where(keep, scores, torch.tensor(-math.inf, dtype=scores.dtype))
    weights = softmax(scores, dim=-1)
    return torch.einsum("...qk,...kv->...qv", weights, v.double()).to(q.dtype)


def attention_numpy(q, k, v, mask=None):
    scores = np.einsum("...qd,...kd->...qk", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf).astype(q.dtype)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return np.einsum("...qk,...kv->...qv", weights, v).astype(q.dtype)


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        self.d_model, self.n_heads, self.causal = d_model, n_heads, causal
        self.w_qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x, mask=None):
        hd = self.d_model // self.n_heads
        qkv = self.w_qkv(x)
        heads = []
        for h in range(self.n_heads):
            q = qkv[..., h * hd:(h + 1) * hd]
            k = qkv[..., self.d_model + h * hd:self.d_model + (h + 1) * hd]
            v = qkv[..., 2 * self.d_model + h * hd:2 * self.d_model + (h + 1) * hd]
            head_mask = None if mask is None else mask[:, 0] if mask.dim() == 4 else mask
            heads.append(scaled_dot_product_attention(q, k, v, mask=head_mask, is_causal=self.causal))
        return self.w_o(torch.cat(heads, dim=-1))
