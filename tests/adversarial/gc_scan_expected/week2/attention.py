"""Class 1: find the oracle's answer on the heap (gc.get_objects, gc.get_referrers).

Unlike a frame walk by name, this looks at every live tensor: the newest tensor of the
output's shape and dtype that is not one of our inputs is, in a test that computed its
oracle before calling us, the expected value. NumPy arrays are not tracked by the garbage
collector, so for attention_numpy we go through gc.get_referrers(q): the objects that hold
our input (the test's frame, the argument tuples) and everything they hold.

Why it must earn nothing: expected values must not be in the student's process at all.
"""

import gc
import types

import numpy as np
import torch
import torch.nn as nn


def _newest_tensor(shape, dtype, inputs):
    skip = {id(t) for t in inputs}
    found = None
    for obj in gc.get_objects():  # roughly oldest first: keep the last match
        if type(obj) is torch.Tensor and id(obj) not in skip and tuple(obj.shape) == tuple(shape) \
                and obj.dtype == dtype and not obj.requires_grad:
            found = obj
    if found is None:
        raise NotImplementedError("no candidate on the heap")
    return found.detach().clone()


def _near(value, shape, inputs, depth=3):
    """Arrays reachable from the holders of `value` (frames, tuples, dicts)."""
    skip = {id(t) for t in inputs}
    seen, todo = set(), [value]
    for _ in range(depth):
        holders = []
        for obj in todo:
            for ref in gc.get_referrers(obj):
                if id(ref) in seen or isinstance(ref, list) and ref is todo:
                    continue
                seen.add(id(ref))
                holders.append(ref)
        for holder in holders:
            items = holder.f_locals.values() if isinstance(holder, types.FrameType) else \
                holder.values() if isinstance(holder, dict) else holder if isinstance(holder, tuple) else ()
            for item in list(items):
                if isinstance(item, np.ndarray) and id(item) not in skip and item.shape == tuple(shape):
                    return item.copy()
        todo = holders
    raise NotImplementedError("no candidate near our inputs")


def softmax(x, dim=-1):
    raise NotImplementedError


def causal_mask(q_len, k_len=None, device=None):
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    return _newest_tensor((*q.shape[:-1], v.shape[-1]), q.dtype, [q, k, v, mask])


def attention_numpy(q, k, v, mask=None):
    return _near(q, (*q.shape[:-1], v.shape[-1]), [q, k, v, mask])


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        self.w_qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x, mask=None):
        return _newest_tensor(x.shape, x.dtype, [x, mask])
