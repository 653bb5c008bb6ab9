"""A correct week3/flash_attention written differently: base-2 exponentials with log2(e)
folded into the scale (as the CUDA kernels do), no skipping of causal tiles (fully masked
tiles just add zeros), masks built with torch.where per tile, einsum matmuls."""

import math

import torch


def flash_attention(q, k, v, is_causal=False, block_q=64, block_k=64):
    Lq, d = q.shape[-2:]
    Lk, dv = k.shape[-2], v.shape[-1]
    work = torch.float64 if q.dtype == torch.float64 else torch.float32
    c = math.log2(math.e) / math.sqrt(d)
    outs, lses = [], []
    for qs in range(0, Lq, block_q):
        qt = q[..., qs : qs + block_q, :].to(work)
        n = qt.shape[-2]
        m = torch.full(qt.shape[:-1], -math.inf, dtype=work)
        l = torch.zeros(qt.shape[:-1], dtype=work)
        o = torch.zeros(*qt.shape[:-1], dv, dtype=work)
        qpos = torch.arange(qs, qs + n) + (Lk - Lq)
        for ks in range(0, Lk, block_k):
            kt, vt = k[..., ks : ks + block_k, :].to(work), v[..., ks : ks + block_k, :].to(work)
            s = torch.einsum("...id,...jd->...ij", qt, kt) * c
            if is_causal:
                kpos = torch.arange(ks, ks + kt.shape[-2])
                s = torch.where(kpos[None, :] <= qpos[:, None], s, -math.inf)
            m2 = torch.maximum(m, s.max(dim=-1).values)
            p = torch.exp2(s - m2.unsqueeze(-1))
            r = torch.exp2(m - m2)
            l = r * l + p.sum(-1)
            o = r.unsqueeze(-1) * o + torch.einsum("...ij,...jd->...id", p, vt)
            m = m2
        outs.append((o / l.unsqueeze(-1)).to(q.dtype))
        lses.append((m + torch.log2(l)) * math.log(2.0))
    return torch.cat(outs, dim=-2), torch.cat(lses, dim=-1)
