"""Week 2 — attention from first principles.

Attention lets every query position read a weighted average of value vectors, with weights
from how well the query matches each key:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V

Shapes used throughout (`...` is any number of batch dimensions, e.g. batch and heads):

    q: (..., Lq, d)     k: (..., Lk, d)     v: (..., Lk, dv)     out: (..., Lq, dv)

Masks are boolean with True = "this query may attend to this key" — the convention of
`torch.nn.functional.scaled_dot_product_attention`. A masked score becomes -inf before the
softmax, so its weight is exactly 0.

Not allowed here (the tests refuse them while your code runs): `F.scaled_dot_product_attention`
and the ATen attention kernels, `nn.MultiheadAttention`; and inside `softmax` itself any
library softmax (`torch.softmax`, `F.softmax`, `Tensor.softmax`, `nn.Softmax`,
`torch.special.softmax`, `log_softmax`). Once your `softmax` passes, using a library
softmax inside `scaled_dot_product_attention` and the module is fine.

Mistakes the tests are built to catch:
- a missing or wrong 1/sqrt(d) scale (sqrt of the wrong width, or no scale at all);
- softmax over the wrong axis (the weights of one query must sum to 1 over the keys);
- mask polarity flipped (True means *allowed*);
- causal diagonal off by one (a query always sees itself);
- the cache-offset causal mask wrong when q_len < k_len (see `causal_mask`);
- heads split in the wrong order in the multi-head module;
- overflow for large logits (softmax of 1e4 must not be nan).

Run time: `pytest katas/week2/test_attention.py` takes about 3 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax along `dim`, numerically stable.

    softmax(x)_i = exp(x_i) / sum_j exp(x_j). Computed naively, exp(1000.0) overflows to
    inf and inf / inf is nan. Softmax does not change if you subtract the same number from
    every element along `dim`, so subtract the maximum first: the largest exponent is then
    exp(0) = 1 and nothing overflows. Rows may contain -inf (masked entries): they must come
    out as exactly 0, as long as the row has at least one finite entry.

    Args:
        x: any shape, floating dtype. Values may be as large as ±1e4.
        dim: the axis to normalise over.
    Returns:
        Same shape and dtype as x; non-negative; sums to 1 along `dim`.
    """
    raise NotImplementedError


def causal_mask(q_len: int, k_len: int | None = None, device=None) -> torch.Tensor:
    """Boolean mask [q_len, k_len], True where query i may attend to key j.

    The mask is aligned bottom-right: the q_len queries are the *last* q_len positions of a
    k_len-long sequence, so query i sits at position `k_len - q_len + i` and may attend to
    every key j <= that position. `k_len` defaults to `q_len` (the usual square triangle).

    This alignment is what decoding with a KV cache needs: after 5 cached tokens, one new
    query (q_len=1, k_len=6) must see all 6 keys.

        causal_mask(3)        causal_mask(2, 4)
        [[1, 0, 0],           [[1, 1, 1, 0],
         [1, 1, 0],            [1, 1, 1, 1]]
         [1, 1, 1]]

    (Careful: torch's own `is_causal=True` aligns top-left when Lq != Lk — a different mask.)
    Tests use q_len <= k_len. Returns a torch.bool tensor on `device`.
    """
    raise NotImplementedError


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + masking) v, over any leading batch dimensions.

    Args:
        q: (..., Lq, d); k: (..., Lk, d); v: (..., Lk, dv). d may differ from dv.
        mask: optional bool, broadcastable to (..., Lq, Lk); True = may attend.
        is_causal: also apply `causal_mask(Lq, Lk)` (bottom-right). With both `mask` and
            `is_causal`, a key must be allowed by both (`mask & causal`): one replacing the
            other (`mask = causal_mask(...)` after `mask` was given) drops a mask.
    Returns:
        (..., Lq, dv), the dtype of q.

    Why 1/sqrt(d): with unit-variance q and k, q·k has variance d, so for wide heads the
    scores grow and the softmax saturates to one-hot, with vanishing gradients. Dividing by
    sqrt(d) — d is the width of q and k, not of v — keeps the scores' variance at 1.
    Inputs never leave a query with no allowed key.
    """
    raise NotImplementedError


def attention_numpy(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The same attention in NumPy, for arrays (..., Lq, d), (..., Lk, d), (..., Lk, dv).

    `mask` is an optional bool array broadcastable to (..., Lq, Lk), True = may attend.
    Keep the input's float dtype: float32 in, float32 out. Under NumPy 2's promotion rules
    `float32_array / np.sqrt(d)` is float64, because `np.sqrt` returns a NumPy float64
    scalar and NumPy scalars now count as much as arrays; a Python float (`math.sqrt(d)`)
    does not. The same goes for a float64 fill value for masked scores.
    """
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with one fused input projection.

    Layout (the tests copy weights into it, so it must be exactly this):
        self.w_qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
            output features [0, d_model) are q, [d_model, 2 d_model) are k, the rest v;
            inside each, head h owns features [h * hd, (h + 1) * hd), hd = d_model // n_heads.
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    forward(x: (B, T, d_model), mask=None) -> (B, T, d_model):
        1. q, k, v = split w_qkv(x) into three (B, T, d_model) tensors;
        2. view each as (B, T, n_heads, hd) and move heads forward: (B, n_heads, T, hd);
        3. attention per head (causal if `causal`; `mask`, broadcastable to (B, 1, T, T),
           is combined with the causal mask);
        4. move heads back and merge: (B, T, n_heads * hd), then w_o.

    The classic bug is step 2 done as `.view(B, n_heads, T, hd)`: same shape, scrambled
    heads — each "head" then mixes positions and features.
    """

    def __init__(self, d_model: int, n_heads: int, causal: bool = True, bias: bool = True):
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError
