"""Class 3: a library softmax under a name the forbidden list does not have.

The kata forbids torch.softmax, F.softmax, Tensor.softmax, aten::_softmax, aten::softmax
and the log variants. ATen has another softmax kernel, `_masked_softmax` (used by torch's
fused transformer path): with an all-False mask it is exactly softmax, numerically stable,
-inf handled, dtype kept. It is spelled out plainly (no dynamic access), it is not
`torch._...` (torch.ops is public), and its operator name `aten::_masked_softmax` matches
none of the forbidden patterns, so neither the source scan nor the run-time guard sees a
forbidden call.

Why it must earn nothing: softmax must be written from tensor operations; a denylist of
kernel names has to cover every library softmax (or the kata has to check otherwise).
"""

import torch
import torch.nn as nn


def softmax(x, dim=-1):
    dim = dim % x.dim() if x.dim() else 0
    nothing_masked = torch.zeros(x.shape, dtype=torch.bool)
    return torch.ops.aten._masked_softmax(x, nothing_masked, dim)


def causal_mask(q_len, k_len=None, device=None):
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    raise NotImplementedError


def attention_numpy(q, k, v, mask=None):
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise NotImplementedError
