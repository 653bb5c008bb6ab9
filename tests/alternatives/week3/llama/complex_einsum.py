"""A correct week3/llama written differently: float64 RMSNorm, float32 angle tables built the
way transformers builds them, complex multiplication for interleaved RoPE, repeat_interleave,
and einsum attention that groups query heads instead of copying k/v."""

import math

import torch
import torch.nn as nn
from torch import Tensor


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x64 = x.double()
        y = x64 / torch.sqrt((x64 * x64).mean(-1, keepdim=True) + self.eps) * self.weight.double()
        return y.to(x.dtype)


def rope_frequencies(head_dim: int, max_seq_len: int, theta: float = 10000.0):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = torch.outer(torch.arange(max_seq_len).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x, cos, sin, positions=None, interleaved=False):
    T, d = x.shape[-2:]
    pos = torch.arange(T) if positions is None else positions
    c, s = cos[pos].float(), sin[pos].float()
    if not interleaved:
        return (x.float() * c + _rotate_half(x.float()) * s).to(x.dtype)
    rot = torch.complex(c[:, : d // 2], s[:, : d // 2])
    z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * rot).reshape(x.shape).to(x.dtype)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x):
        gate = self.w1(x)
        return self.w2(gate * torch.sigmoid(gate) * self.w3(x))


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    return torch.repeat_interleave(x, n_rep, dim=1)


class GroupedQueryAttention(nn.Module):
    def __init__(self, d_model, n_heads, n_kv_heads, rope_theta=10000.0):
        super().__init__()
        self.h, self.h_kv, self.hd, self.theta = n_heads, n_kv_heads, d_model // n_heads, rope_theta
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.hd, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.hd, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x, positions=None):
        B, T, _ = x.shape
        g = self.h // self.h_kv
        pos = torch.arange(T) if positions is None else positions
        cos, sin = rope_frequencies(self.hd, int(pos.max()) + 1, self.theta)
        # q as [B, H_kv, g, T, hd]: query head h = kv * g + j
        q = self.q_proj(x).view(B, T, self.h_kv, g, self.hd).permute(0, 2, 3, 1, 4)
        k = self.k_proj(x).view(B, T, self.h_kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.h_kv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin, pos), apply_rope(k, cos, sin, pos)
        att = torch.einsum("bkgtd,bksd->bkgts", q, k) / math.sqrt(self.hd)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        att = att.masked_fill(future, -math.inf).softmax(-1)
        y = torch.einsum("bkgts,bksd->btkgd", att, v).reshape(B, T, -1)
        return self.o_proj(y)
