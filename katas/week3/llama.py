"""Week 3 — the GPT-2 -> LLaMA upgrades.

LLaMA keeps GPT-2's decoder-only skeleton and swaps four parts:

    GPT-2                       LLaMA
    LayerNorm                   RMSNorm            (no mean subtraction, no bias)
    learned position table      rotary embeddings  (RoPE: rotate q and k by position)
    GELU MLP                    SwiGLU             (a gated MLP with SiLU)
    multi-head attention        grouped-query attention (fewer k/v heads than q heads)

You write each part; the tests compare it with transformers' own LLaMA code
(`transformers.models.llama.modeling_llama`) with the same weights copied in.

Shapes used below: B batch, T sequence length, H query heads, H_kv key/value heads,
hd = head_dim = d_model // H.

Run `pytest katas/week3/test_llama.py`; `kata hint week3/llama` gives hints one at a time.

Run time: `pytest katas/week3/test_llama.py` takes about 8 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class RMSNorm(nn.Module):
    """Root-mean-square layer norm.

        y = x / sqrt(mean(x ** 2, over the last dim) + eps) * weight

    Unlike LayerNorm there is no mean subtraction and no bias: RMSNorm only rescales.
    `eps` goes INSIDE the square root (it guards the mean of squares, not the root).

    Attributes: `weight`, an `nn.Parameter` of shape [dim] initialised to ones; `eps`.

    dtype: compute in float32 for half inputs (x ** 2 overflows float16 for |x| > 256,
    and bfloat16's 8-bit mantissa makes the mean noisy), then return the input's dtype:
    bfloat16 in, bfloat16 out. (transformers' `LlamaRMSNorm` multiplies by a float32
    weight after casting back, so it returns float32 for bfloat16 input; the tests compare
    values, not dtype, against it.)

    Example: x = [3, 4] -> mean(x**2) = 12.5 -> y ≈ [0.8485, 1.1314] (with weight = 1).

    Pitfalls: `x.var()` or `x - x.mean()` (that is LayerNorm); `sqrt(ms) + eps`.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """x: [..., dim] -> [..., dim], same dtype as x."""
        raise NotImplementedError


def rope_frequencies(head_dim: int, max_seq_len: int, theta: float = 10000.0) -> tuple[Tensor, Tensor]:
    """Rotary-embedding tables `cos, sin`, each float32 of shape [max_seq_len, head_dim].

    RoPE splits a head vector into head_dim/2 pairs and turns pair i (i = 0 .. hd/2 - 1)
    by the angle

        angle[pos, i] = pos * theta ** (-2 * i / head_dim)

    so pair 0 spins fastest (one radian per position) and the last pair slowest. Note the
    exponent is 2i/hd, i.e. `torch.arange(0, hd, 2) / hd`, not `torch.arange(hd // 2) / hd`.

    Layout (the "rotate-half" layout of transformers' LLaMA): column i and column
    i + hd/2 hold the same angle, i.e.

        cos[pos] = [cos(angle[pos, 0]), ..., cos(angle[pos, hd/2 - 1]),
                    cos(angle[pos, 0]), ..., cos(angle[pos, hd/2 - 1])]

    (`torch.cat([angles, angles], dim=-1)`); the same for sin.

    Precision: angles reach thousands of radians at long positions, where float32 keeps
    only ~4 decimal digits of the angle. Building angles in float64 and casting the cos/sin
    to float32 is the most accurate; building them in float32 as transformers does is also
    accepted (the tests' tolerance grows with position).

    Example: head_dim=4, theta=10000 -> rates [1, 0.01]; cos[2] = [cos 2, cos 0.02, cos 2, cos 0.02].
    """
    raise NotImplementedError


def apply_rope(
    x: Tensor,
    cos: Tensor,
    sin: Tensor,
    positions: Tensor | None = None,
    interleaved: bool = False,
) -> Tensor:
    """Rotate each pair of x's last dim by its position's angle.

    x: [..., T, head_dim] (e.g. [B, H, T, hd]); cos, sin: [max_seq_len, head_dim] tables from
    `rope_frequencies` (float32 or float64); positions: LongTensor [T], the position of each
    of the T rows (default `0 .. T-1`; a cache or packed sequences give other positions —
    always index the tables with them). Returns a tensor shaped and typed like x.

    A pair (a, b) turned by angle t becomes

        (a * cos t - b * sin t,  a * sin t + b * cos t)

    i.e. complex multiplication (a + ib) * e^{it}. Which coordinates form pair i:

    - `interleaved=False` (default, transformers' LLaMA, "rotate half"):
      pair i = (x[i], x[i + hd/2]).  Equivalent form:
      `x * cos + rotate_half(x) * sin` with `rotate_half(x) = cat([-x2, x1])`,
      where x1, x2 are the first and second halves of x.
    - `interleaved=True` (the RoPE paper, Meta's original LLaMA code):
      pair i = (x[2i], x[2i + 1]).

    Either way pair i turns by angle[pos, i], read from column i (i < hd/2) of the same
    cos, sin tables. Worked example, hd = 4, x = [1, 2, 3, 4], angles (t0, t1):
      rotate-half pairs (1, 3) by t0 and (2, 4) by t1;
      interleaved pairs (1, 2) by t0 and (3, 4) by t1.

    dtype: rotate half-precision inputs in float32 and cast the result back to x's dtype.
    """
    raise NotImplementedError


class SwiGLU(nn.Module):
    """LLaMA's feed-forward block: a gated MLP with the SiLU (swish) activation.

        y = w2( silu(w1(x)) * w3(x) )        silu(z) = z * sigmoid(z)

    Attributes (all `nn.Linear`, bias=False): `w1` [dim -> hidden_dim] the gate, `w3`
    [dim -> hidden_dim] the up projection, `w2` [hidden_dim -> dim] the down projection.
    (transformers calls them gate_proj, up_proj, down_proj.)

    Only the gate goes through the activation, and it is SiLU, not GELU.
    x: [..., dim] -> [..., dim].
    """

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """Share key/value heads between groups of query heads: [B, H_kv, T, hd] -> [B, H_kv * n_rep, T, hd].

    Grouped order: output head h is a copy of kv head h // n_rep, so query heads
    0 .. n_rep-1 all read kv head 0, the next n_rep read kv head 1, and so on.
    Example with H_kv = 2, n_rep = 2: heads [k0, k1] -> [k0, k0, k1, k1]
    (NOT [k0, k1, k0, k1], which is what `x.repeat(1, n_rep, 1, 1)` gives).
    n_rep == 1 returns x unchanged.
    """
    raise NotImplementedError


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with RoPE, where H query heads share H_kv key/value heads.

    Attributes (all `nn.Linear`, bias=False):
      `q_proj` [d_model -> H * hd], `k_proj` [d_model -> H_kv * hd],
      `v_proj` [d_model -> H_kv * hd], `o_proj` [H * hd -> d_model], with hd = d_model // H.
    Head j of a projection is columns j*hd .. (j+1)*hd - 1 of its output (as transformers).

    forward(x: [B, T, d_model], positions: LongTensor [T] | None) -> [B, T, d_model]:
      1. project and split heads: q [B, H, T, hd]; k, v [B, H_kv, T, hd]
      2. RoPE (rotate-half layout, `rope_theta`) on q and k at `positions`
         (default 0..T-1) — never on v
      3. `repeat_kv` k and v up to H heads (query head h uses kv head h // (H // H_kv))
      4. scores = q k^T / sqrt(hd); causal mask: row t sees keys 0..t (the T tokens are in
         order; `positions` changes the rotation angles, not the mask); softmax; times v
      5. merge heads back to [B, T, H * hd] and apply o_proj.

    `F.scaled_dot_product_attention` is allowed here (your week-2 attention too).
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, rope_theta: float = 10000.0):
        super().__init__()
        raise NotImplementedError

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        raise NotImplementedError
