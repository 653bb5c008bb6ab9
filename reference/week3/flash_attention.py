"""Tiled attention with an online softmax (FlashAttention's algorithm, in plain PyTorch).

Reference solution. Same names and signatures as the stub in `katas/week3/flash_attention.py`.
"""

from __future__ import annotations

import os

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


# --- optional: the same algorithm as one Triton kernel (CUDA only) ----------------------------
#
# One program instance owns BLOCK_M query rows of one (batch, head) and walks the key tiles,
# keeping m, l and acc in registers: the score tile never leaves the chip. Scores are kept
# in base 2 (scaled by log2(e)) because exp2 is the GPU's native instruction.

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs have no Triton; the kernel is optional
    triton = None

if triton is not None:

    @triton.jit
    def _flash_forward_kernel(Q, K, V, Out, Lse, scale_log2, Lq, Lk, offset,
                              IS_CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr,
                              BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
        tile, head = tl.program_id(0), tl.program_id(1)
        rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
        dims = tl.arange(0, HEAD_DIM)
        Q += head * Lq * HEAD_DIM  # q, k, v, out are contiguous [heads, L, HEAD_DIM]
        K += head * Lk * HEAD_DIM
        V += head * Lk * HEAD_DIM
        q = tl.load(Q + rows[:, None] * HEAD_DIM + dims[None, :], mask=rows[:, None] < Lq, other=0.0)

        m = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        k_end = Lk
        if IS_CAUSAL:  # key tiles right of this tile's last query are all masked: skip them
            k_end = tl.minimum(Lk, offset + (tile + 1) * BLOCK_M)
        for k0 in range(0, k_end, BLOCK_N):
            cols = k0 + tl.arange(0, BLOCK_N)
            k = tl.load(K + cols[None, :] * HEAD_DIM + dims[:, None], mask=cols[None, :] < Lk, other=0.0)
            s = tl.dot(q, k) * scale_log2  # [BLOCK_M, BLOCK_N], log2 units
            visible = cols[None, :] < Lk
            if IS_CAUSAL:
                visible = visible & (cols[None, :] <= rows[:, None] + offset)
            s = tl.where(visible, s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            p = tl.math.exp2(s - m_new[:, None])
            alpha = tl.math.exp2(m - m_new)
            l = l * alpha + tl.sum(p, 1)
            v = tl.load(V + cols[:, None] * HEAD_DIM + dims[None, :], mask=cols[:, None] < Lk, other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m = m_new

        out = acc / l[:, None]
        tl.store(Out + head * Lq * HEAD_DIM + rows[:, None] * HEAD_DIM + dims[None, :],
                 out.to(Out.dtype.element_ty), mask=rows[:, None] < Lq)
        # back to natural log: lse = (m + log2 l) * ln 2
        tl.store(Lse + head * Lq + rows, (m + tl.math.log2(l)) * 0.6931471805599453, mask=rows < Lq)


def flash_attention_triton(q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False) -> tuple[Tensor, Tensor]:
    """`flash_attention` as one fused Triton kernel: q, k, v CUDA fp16/bf16 [..., L, d], d = dv a power of 2."""
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"  # Triton's CPU interpreter, for debugging
    if triton is None or not (q.is_cuda or interpreted):
        raise RuntimeError("flash_attention_triton needs Triton and CUDA tensors (or TRITON_INTERPRET=1)")
    *batch, Lq, d = q.shape
    Lk = k.shape[-2]
    q3, k3, v3 = (t.reshape(-1, t.shape[-2], d).contiguous() for t in (q, k, v))
    out = torch.empty_like(q3)
    lse = torch.empty(q3.shape[:2], dtype=torch.float32, device=q.device)
    block_m, block_n = 128, 64
    grid = (triton.cdiv(Lq, block_m), q3.shape[0])
    _flash_forward_kernel[grid](q3, k3, v3, out, lse, d**-0.5 * 1.4426950408889634, Lq, Lk, Lk - Lq,
                                IS_CAUSAL=is_causal, BLOCK_M=block_m, BLOCK_N=block_n, HEAD_DIM=d,
                                num_warps=8, num_stages=3)
    return out.reshape(*batch, Lq, d), lse.reshape(*batch, Lq)
