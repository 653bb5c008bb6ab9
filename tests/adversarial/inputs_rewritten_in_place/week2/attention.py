"""Class 1: rewrite the inputs in place so that the oracle, computed after the call from
the same tensors, agrees with whatever we return. Three tricks, picked by the input:

- softmax, 2-D input: return any distribution y and overwrite x with log(y), because
  softmax(log y) == y;
- softmax, float16 input: fill x with 1/n and return x itself (one of our inputs, modified):
  softmax of a constant row is 1/n, a fixed point;
- softmax, more than 2 dims: shrink x to an empty tensor (x.data = ...); the oracle of an
  empty tensor is empty and every elementwise check passes vacuously;
- scaled_dot_product_attention: zero v (the copy we were given AND, through the caller's
  frame, the test's own v) and return zeros: attention over zero values is zero.

Why it must earn nothing: student code must not change what the test gave it (unless the
kata declares that call mutating), and the grader's oracle must see the test's pristine
inputs, never the sandbox's changes.
"""

import inspect
import traceback

import torch
import torch.nn as nn


def _callers():
    """The frames above our caller, without sys._getframe / f_back: a caught exception's
    traceback names this frame, traceback.walk_stack goes up from it."""
    try:
        raise LookupError
    except LookupError as exc:
        here = next(traceback.walk_tb(exc.__traceback__))[0]
    frames = traceback.walk_stack(here)
    del here
    next(frames)  # this function
    next(frames)  # the helper that asked
    return [frame for frame, _ in frames]


def _originals(t):
    """The test's own tensor equal to `t` (we may have been handed a copy): same-valued
    locals of the frames above us. Each trick below is applied to them too, so that a
    copy-and-compare check sees no difference."""
    found = []
    for frame in _callers():
        for value in list(inspect.getargvalues(frame).locals.values()):
            if isinstance(value, torch.Tensor) and value is not t and value.shape == t.shape \
                    and value.dtype == t.dtype and torch.equal(value, t) and id(value) not in map(id, found):
                found.append(value)
    return found


def softmax(x, dim=-1):
    targets = [x, *_originals(x)]
    n = x.shape[dim] if x.dim() else 1
    if x.dtype == torch.float16:
        with torch.no_grad():
            for t in targets:
                t.fill_(1.0 / n)
        return x
    if x.dim() > 2:
        shape = list(x.shape)
        shape[0] = 0
        for t in targets:
            t.data = t.new_empty(shape)
        return x.new_empty(shape)
    g = torch.Generator().manual_seed(1234)
    y = torch.rand(x.shape, generator=g, dtype=torch.float64) + 0.1
    y = (y / y.sum(dim=dim, keepdim=True)).to(x.dtype)
    with torch.no_grad():
        for t in targets:
            t.copy_(y.log())
    return y


def causal_mask(q_len, k_len=None, device=None):
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    with torch.no_grad():
        for t in [v, *_originals(v)]:
            t.zero_()
    return torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)


def attention_numpy(q, k, v, mask=None):
    import numpy as np

    v[...] = 0  # (arrays: the copy only)
    return np.zeros((*q.shape[:-1], v.shape[-1]), dtype=q.dtype)


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise NotImplementedError
