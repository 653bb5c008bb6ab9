"""Class 10: a hang in ONE function; the others are correct and must keep their points.

softmax and causal_mask are the reference's (copied verbatim); scaled_dot_product_attention
loops forever in pure Python; attention_numpy and the module are not started. A grader
that stops a hanging test must not let the hang cost the tests that never call it: every
softmax and causal_mask test, public and hidden (24 points with the hidden tests), must
pass, and every other test fails.
"""

from __future__ import annotations

import math  # noqa: F401  (as in the reference)

import numpy as np  # noqa: F401
import torch
import torch.nn as nn


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    shifted = x - x.amax(dim=dim, keepdim=True)
    exps = shifted.exp()
    return exps / exps.sum(dim=dim, keepdim=True)


def causal_mask(q_len: int, k_len: int | None = None, device=None) -> torch.Tensor:
    k_len = q_len if k_len is None else k_len
    offset = k_len - q_len
    rows = torch.arange(q_len, device=device).unsqueeze(1)
    cols = torch.arange(k_len, device=device).unsqueeze(0)
    return cols <= rows + offset


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    while True:  # the hang: pure Python, interruptible by a signal
        pass


def attention_numpy(q, k, v, mask=None):
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise NotImplementedError
