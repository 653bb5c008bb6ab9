"""Class 3: switch the forbidden-API guard off from inside, then call the library.

Student code shares its process with the harness, so at import time we replace the guard's
pieces with no-ops wherever they are bound: `forbid` / `no_new_threads` in the boundary,
and the torch modes' handlers in graders.guard. After that torch.softmax and
F.scaled_dot_product_attention run unseen. (The modules are reached through sys.modules
under names built at run time, and every forbidden function by a computed name.)

Why it must earn nothing: whatever the sandboxed process reports about itself can be
forged; a forbidden call must fail the test however the guard in that process was disarmed.
"""

import contextlib
import sys

import torch
import torch.nn as nn

F = torch.nn.functional
SOFTMAX = getattr(torch, "soft" + "max")
SDPA = getattr(F, "scaled_dot_product_" + "attention")


def _disarm():
    harness = "grad" + "ers"
    none = lambda *a, **k: contextlib.nullcontext()  # noqa: E731
    boundary = sys.modules.get(harness + ".boundary")
    guard = sys.modules.get(harness + ".guard")
    for module in (boundary, guard):
        if module is None:
            continue
        for name in ("forbid", "no_new_threads"):
            if hasattr(module, name):
                setattr(module, name, none)
    if guard is not None:
        passthrough = lambda self, func, types, args=(), kwargs=None: func(*args, **(kwargs or {}))  # noqa: E731
        for cls, method in (("_FunctionBan", "__torch_function__"), ("_OperatorBan", "__torch_dispatch__")):
            if hasattr(guard, cls):
                setattr(getattr(guard, cls), method, passthrough)


_disarm()


def _bottom_right(lq, lk):
    return torch.ones(lk, lk, dtype=torch.bool).tril()[lk - lq:]


def softmax(x, dim=-1):
    _disarm()
    return SOFTMAX(x, dim)


def causal_mask(q_len, k_len=None, device=None):
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    _disarm()
    allowed = _bottom_right(q.shape[-2], k.shape[-2]) if is_causal else None
    if mask is not None:
        allowed = mask if allowed is None else allowed & mask
    return SDPA(q, k, v, attn_mask=allowed)


def attention_numpy(q, k, v, mask=None):
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise NotImplementedError
