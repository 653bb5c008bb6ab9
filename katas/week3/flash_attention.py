"""Week 3 — FlashAttention's algorithm: tiled attention with an online softmax.

Plain attention builds the whole [Lq, Lk] score matrix. For long sequences that matrix is
the memory bill (and on a GPU, the memory *traffic*). FlashAttention never builds it: it
walks over tiles of block_q queries x block_k keys and keeps, for every query row, three
running quantities:

    m    the largest score seen so far                   [..., block_q]
    l    sum of exp(score - m) over the keys seen so far [..., block_q]
    acc  sum of exp(score - m) * v over the same keys    [..., block_q, dv]

When a new tile brings a larger maximum m_new, everything accumulated so far was scaled
by exp(-m) instead of exp(-m_new), so BOTH l and acc are multiplied by
alpha = exp(m - m_new) before the new tile is added:

    s     = (q_tile @ k_tile^T) / sqrt(d)          (masked entries -inf)
    m_new = max(m, rowmax(s))
    p     = exp(s - m_new)
    alpha = exp(m - m_new)
    l     = alpha * l + rowsum(p)
    acc   = alpha * acc + p @ v_tile
    m     = m_new

and at the end out = acc / l and lse = m + log(l) (the log-sum-exp of the row's scores,
which the backward pass needs). Start with m = -inf, l = 0, acc = 0.

Optional, on a CUDA GPU: write the same loop as one Triton kernel,
`flash_attention_triton(q, k, v, is_causal=False) -> (out, lse)` for fp16 q, k, v
[..., L, d] with d a power of two. One program instance owns a tile of query rows of one
(batch, head) and keeps m, l and acc in registers while it walks the key tiles, so the
score tile never leaves the chip; `tl.dot` does both matmuls. One test checks it against
SDPA on small ragged shapes (lengths that are not multiples of your tiles, causal or not,
one or two leading dims); the GPU test times it against materialised attention and SDPA
itself. Without CUDA both are skipped, unless you set `TRITON_INTERPRET=1` (with
`pip install "triton>=3.7"`): Triton's interpreter then runs the kernel on CPU tensors,
slowly, and the correctness test runs there.

Run `pytest katas/week3/test_flash_attention.py`; `kata hint week3/flash_attention` for hints.

Run time: `pytest katas/week3/test_flash_attention.py` takes about 6 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
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
    """Attention computed tile by tile; returns `(out, lse)`.

    q: [..., Lq, d], k: [..., Lk, d], v: [..., Lk, dv] (any leading batch/head dims).
    out: [..., Lq, dv] in q's dtype, equal to softmax(q k^T / sqrt(d)) v.
    lse: [..., Lq], the natural-log log-sum-exp of each row's *scaled, masked* scores,
         logsumexp_j(q_i . k_j / sqrt(d)); float32 for float16/bfloat16/float32 inputs
         (float64 for float64). Accumulate m, l, acc in float32 for half inputs.

    Tiles: queries in blocks of `block_q` rows, keys in blocks of `block_k`. Lq and Lk need
    not be multiples of the blocks: the last tile of each is smaller ("ragged"), and
    Lq != Lk is allowed. Never materialise an [Lq, Lk] tensor — not the scores, not a
    mask, not a bias: the tests watch every tensor your call allocates, and the largest
    may have a whole row of tiles ([block_q, Lk]) or column ([Lq, block_k]), never both.

    is_causal: bottom-right aligned as in week 2: query i sits at position Lk - Lq + i and
    sees keys 0 .. Lk - Lq + i. Example Lq = 2, Lk = 4: query 0 sees keys 0..2, query 1
    sees 0..3. (torch's SDPA with is_causal=True aligns top-left when Lq != Lk; the
    tests pass it an explicit mask instead.) Tests keep Lq <= Lk when causal, so every query
    sees at least one key. Key tiles entirely to the right of a query tile's last query
    can be skipped; the tile that crosses the diagonal must be computed and masked.

    Forbidden: `F.scaled_dot_product_attention` and the aten attention kernels — use
    matmul, exp, max, sum.
    """
    raise NotImplementedError
