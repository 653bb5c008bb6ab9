"""A correct week3/llama written differently: RMSNorm via F.normalize-free arithmetic with
`pow(-0.5)`, RoPE rotating explicit (even, odd) or (first half, second half) index lists,
a float64 table, head-by-head loops, and torch's SDPA (allowed in this kata)."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        h = x.to(torch.float32)
        scale = (h.square().sum(-1, keepdim=True) / h.shape[-1] + self.eps).pow(-0.5)
        return (self.weight * (h * scale)).to(x.dtype)


def rope_frequencies(head_dim, max_seq_len, theta=10000.0):
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    angle = torch.arange(max_seq_len, dtype=torch.float64)[:, None] * torch.pow(theta, -2 * i / head_dim)
    angle = angle.repeat(1, 2)
    return torch.cos(angle).to(torch.float32), torch.sin(angle).to(torch.float32)


def apply_rope(x, cos, sin, positions=None, interleaved=False):
    T, d = x.shape[-2], x.shape[-1]
    if positions is None:
        positions = torch.arange(T)
    idx = torch.arange(d // 2)
    first, second = (2 * idx, 2 * idx + 1) if interleaved else (idx, idx + d // 2)
    c = cos.index_select(0, positions)[:, : d // 2].double()
    s = sin.index_select(0, positions)[:, : d // 2].double()
    xd = x.double()
    a, b = xd[..., first], xd[..., second]
    out = torch.empty_like(xd)
    out[..., first] = a * c - b * s
    out[..., second] = a * s + b * c
    return out.to(x.dtype)


class SwiGLU(nn.Module):
    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x):
        return self.w2(nn.SiLU()(self.w1(x)) * self.w3(x))


def repeat_kv(x, n_rep):
    heads = [x[:, h : h + 1] for h in range(x.shape[1]) for _ in range(n_rep)]
    return torch.cat(heads, dim=1)


class GroupedQueryAttention(nn.Module):
    def __init__(self, d_model, n_heads, n_kv_heads, rope_theta=10000.0):
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        self.rope_theta = rope_theta
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=False)

    def forward(self, x, positions=None):
        B, T, _ = x.shape
        hd = self.head_dim
        positions = torch.arange(T) if positions is None else positions
        cos, sin = rope_frequencies(hd, int(positions.max()) + 1, self.rope_theta)
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        n_rep = self.n_heads // self.n_kv_heads
        outs = []
        for h in range(self.n_heads):
            kv = h // n_rep
            qh = apply_rope(q[..., h * hd : (h + 1) * hd], cos, sin, positions)
            kh = apply_rope(k[..., kv * hd : (kv + 1) * hd], cos, sin, positions)
            vh = v[..., kv * hd : (kv + 1) * hd]
            outs.append(F.scaled_dot_product_attention(qh, kh, vh, is_causal=True))
        return self.o_proj(torch.cat(outs, dim=-1))
