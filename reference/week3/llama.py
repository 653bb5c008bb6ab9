"""The GPT-2 -> LLaMA upgrades: RMSNorm, rotary embeddings, SwiGLU and grouped-query attention.

Reference solution. Same names and signatures as the stub in `katas/week3/llama.py`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x**2) + eps) * weight, computed in float32, returned in x's dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


def rope_frequencies(head_dim: int, max_seq_len: int, theta: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos, sin tables [max_seq_len, head_dim] for the rotate-half layout (float32)."""
    # pair i turns at rate theta ** (-2i / head_dim); angles built in float64 so that
    # large positions do not lose digits, then stored as float32
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(max_seq_len, dtype=torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)  # column i and i + d/2 share an angle
    return angles.cos().float(), angles.sin().float()


def apply_rope(
    x: Tensor,
    cos: Tensor,
    sin: Tensor,
    positions: Tensor | None = None,
    interleaved: bool = False,
) -> Tensor:
    """Rotate the pairs of x[..., T, head_dim] by their position's angles."""
    T, d = x.shape[-2], x.shape[-1]
    if positions is None:
        positions = torch.arange(T, device=x.device)
    half = d // 2
    ct = torch.promote_types(x.dtype, torch.float32)  # half inputs rotate in float32
    c = cos[positions, :half].to(ct)  # [T, d/2]
    s = sin[positions, :half].to(ct)
    xf = x.to(ct)
    if interleaved:
        x1, x2 = xf[..., 0::2], xf[..., 1::2]
    else:
        x1, x2 = xf[..., :half], xf[..., half:]
    r1 = x1 * c - x2 * s
    r2 = x1 * s + x2 * c
    if interleaved:
        out = torch.stack([r1, r2], dim=-1).flatten(-2)
    else:
        out = torch.cat([r1, r2], dim=-1)
    return out.to(x.dtype)


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x): the LLaMA feed-forward block."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)  # gate
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)  # up
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)  # down

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """[B, n_kv, T, hd] -> [B, n_kv * n_rep, T, hd]; output head h reads kv head h // n_rep."""
    B, n_kv, T, hd = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(B, n_kv, n_rep, T, hd).reshape(B, n_kv * n_rep, T, hd)


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with n_heads query heads sharing n_kv_heads key/value heads."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, rope_theta: float = 10000.0):
        super().__init__()
        assert d_model % n_heads == 0 and n_heads % n_kv_heads == 0
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = d_model // n_heads
        self.rope_theta = rope_theta
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=False)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        B, T, _ = x.shape
        hd = self.head_dim
        if positions is None:
            positions = torch.arange(T, device=x.device)
        q = self.q_proj(x).view(B, T, self.n_heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, hd).transpose(1, 2)

        cos, sin = rope_frequencies(hd, int(positions.max()) + 1, self.rope_theta)
        cos, sin = cos.to(x.device), sin.to(x.device)
        q = apply_rope(q, cos, sin, positions)
        k = apply_rope(k, cos, sin, positions)

        n_rep = self.n_heads // self.n_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)

        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # [B, H, T, T]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        att = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        y = (att @ v).transpose(1, 2).reshape(B, T, self.n_heads * hd)
        return self.o_proj(y)
