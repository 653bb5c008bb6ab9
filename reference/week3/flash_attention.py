"""Tiled attention with an online softmax (FlashAttention's algorithm, in plain PyTorch).

Reference solution. Same names and signatures as the stub in `katas/week3/flash_attention.py`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def flash_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    is_causal: bool = False,
    block_q: int = 64,
    block_k: int = 64,
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d)) v one (block_q x block_k) tile at a time; returns (out, lse)."""
    Lq, d = q.shape[-2], q.shape[-1]
    Lk, dv = k.shape[-2], v.shape[-1]
    batch = q.shape[:-2]
    acc_dtype = torch.promote_types(q.dtype, torch.float32)  # half in, float32 running sums
    scale = d**-0.5
    offset = Lk - Lq  # bottom-right causal: query i sits at key position offset + i

    out = torch.empty(*batch, Lq, dv, dtype=q.dtype, device=q.device)
    lse = torch.empty(*batch, Lq, dtype=acc_dtype, device=q.device)
    for q0 in range(0, Lq, block_q):
        q1 = min(q0 + block_q, Lq)
        qb = q[..., q0:q1, :].to(acc_dtype) * scale
        m = torch.full((*batch, q1 - q0), float("-inf"), dtype=acc_dtype, device=q.device)
        l = torch.zeros((*batch, q1 - q0), dtype=acc_dtype, device=q.device)
        acc = torch.zeros((*batch, q1 - q0, dv), dtype=acc_dtype, device=q.device)

        # the last query of this tile sees keys up to offset + q1 - 1; later tiles are all masked
        k_end = min(Lk, offset + q1) if is_causal else Lk
        for k0 in range(0, k_end, block_k):
            k1 = min(k0 + block_k, Lk)
            s = qb @ k[..., k0:k1, :].to(acc_dtype).transpose(-2, -1)  # [..., bq, bk]
            if is_causal and k1 - 1 > offset + q0:  # the tile crosses the diagonal
                rows = torch.arange(q0, q1, device=q.device)[:, None] + offset
                cols = torch.arange(k0, k1, device=q.device)[None, :]
                s = s.masked_fill(cols > rows, float("-inf"))
            m_new = torch.maximum(m, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])
            alpha = torch.exp(m - m_new)  # how much the old running max overestimated
            l = l * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ v[..., k0:k1, :].to(acc_dtype)
            m = m_new

        out[..., q0:q1, :] = (acc / l[..., None]).to(q.dtype)
        lse[..., q0:q1] = m + torch.log(l)
    return out, lse
