"""A correct week3/flash_attention written differently: FlashAttention-1 bookkeeping (the
output kept normalised after every tile), an explicit loop over the flattened batch, tile
ends computed up front, and the causal skip decided per tile."""

import torch


def flash_attention(q, k, v, is_causal=False, block_q=64, block_k=64):
    *lead, Lq, d = q.shape
    Lk, dv = k.shape[-2], v.shape[-1]
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    qf = q.reshape(-1, Lq, d)
    kf = k.reshape(-1, Lk, d)
    vf = v.reshape(-1, Lk, dv)
    out = torch.zeros(qf.shape[0], Lq, dv, dtype=q.dtype)
    lse = torch.zeros(qf.shape[0], Lq, dtype=acc)
    q_tiles = [(s, min(s + block_q, Lq)) for s in range(0, Lq, block_q)]
    k_tiles = [(s, min(s + block_k, Lk)) for s in range(0, Lk, block_k)]
    for b in range(qf.shape[0]):
        for q0, q1 in q_tiles:
            qt = qf[b, q0:q1].to(acc) / d**0.5
            m = torch.full((q1 - q0, 1), -float("inf"), dtype=acc)
            l = torch.zeros(q1 - q0, 1, dtype=acc)
            o = torch.zeros(q1 - q0, dv, dtype=acc)
            for k0, k1 in k_tiles:
                if is_causal and k0 > Lk - Lq + q1 - 1:
                    break
                s = qt @ kf[b, k0:k1].to(acc).T
                if is_causal:
                    rows = torch.arange(q0, q1).unsqueeze(1) + (Lk - Lq)
                    cols = torch.arange(k0, k1).unsqueeze(0)
                    s[cols > rows] = -float("inf")
                m_new = torch.maximum(m, s.amax(1, keepdim=True))
                p = (s - m_new).exp()
                l_new = l * (m - m_new).exp() + p.sum(1, keepdim=True)
                o = (o * l * (m - m_new).exp() + p @ vf[b, k0:k1].to(acc)) / l_new
                m, l = m_new, l_new
            out[b, q0:q1] = o.to(q.dtype)
            lse[b, q0:q1] = (m + l.log()).squeeze(1)
    return out.reshape(*lead, Lq, dv), lse.reshape(*lead, Lq)
