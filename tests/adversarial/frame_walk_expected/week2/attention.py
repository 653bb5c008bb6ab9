"""Class 1: take the oracle's answer from the caller's frames.

Several public tests compute the expected value BEFORE they call student code, e.g.
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    check.close(attention.scaled_dot_product_attention(q, k, v, mask=mask), expected)
so while our function runs, `expected` is a local of a frame above us. We walk up the stack
and hand back a copy of the first tensor/array of the right shape held in a local that
looks like an expected value. Nothing here computes attention. The walk spells none of the
usual names (sys._getframe, f_back, f_locals, inspect.stack): a caught exception's
traceback gives our frame, traceback.walk_stack the ones above it, and
inspect.getargvalues(frame).locals is a frame's own locals dict.

Why it must earn nothing: an expected value must never exist in the process that runs
student code (the grader withholds oracles there and judges only in its own process).
"""

import inspect
import traceback

import numpy as np
import torch
import torch.nn as nn

NAMES = ("expected", "want", "wanted", "target", "oracle_out", "reference_out")


def _stack():
    """The frames above us, innermost first, without sys._getframe / f_back: the traceback of
    an exception we catch names this frame, and traceback.walk_stack goes up from it."""
    try:
        raise LookupError
    except LookupError as exc:
        here = next(traceback.walk_tb(exc.__traceback__))[0]
    frames = traceback.walk_stack(here)
    del here
    next(frames)  # this function's own frame
    return [frame for frame, _ in frames]


def _steal(shape):
    for frame in _stack():
        for name, value in list(inspect.getargvalues(frame).locals.items()):
            if not (name in NAMES or name.startswith("expected")):
                continue
            if isinstance(value, tuple) and value:  # `expected, _ = oracle(x, x, x)`
                value = value[0]
            if isinstance(value, (torch.Tensor, np.ndarray)) and tuple(value.shape) == tuple(shape):
                return value.copy() if isinstance(value, np.ndarray) else value.detach().clone()
    raise NotImplementedError("no expected value found above us")


def softmax(x, dim=-1):
    raise NotImplementedError  # its oracle is computed after the call: nothing to take


def causal_mask(q_len, k_len=None, device=None):
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    return _steal((*q.shape[:-1], v.shape[-1]))


def attention_numpy(q, k, v, mask=None):
    return _steal((*q.shape[:-1], v.shape[-1]))


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        self.w_qkv = nn.Linear(d_model, 3 * d_model, bias=bias)  # the layout the tests copy weights into
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x, mask=None):
        return _steal(x.shape)
