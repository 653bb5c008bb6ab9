"""Class 3: no forbidden or dynamic name in the source: torch.load brings them in as data.

A source scan can only refuse what it can read. Here the four objects that matter travel
inside a pickle (a torch.save file, base64 below) and come back by reference through the
public torch.load(..., weights_only=False):
    softmax            torch.softmax
    sdpa               torch.nn.functional.scaled_dot_product_attention
    no_function_modes  torch._C.DisableTorchFunction         (switches torch-function modes off)
    no_dispatch_modes  torch.utils._python_dispatch._disable_current_modes  (dispatch modes off)
Made with: torch.save({"softmax": torch.softmax, ...}, buf, _use_new_zipfile_serialization=False).
With both kinds of mode off, the run-time guard (a TorchFunctionMode and a TorchDispatchMode)
sees nothing either. (An unpickler also runs any callable it is told to: torch.load of
student data is arbitrary code, whatever the scan found.)

Why it must earn nothing: the library does the work; the grader must not rely on reading
names, nor on a guard that lives in the student's process.
"""

import base64
import io

import torch
import torch.nn as nn

PAYLOAD = (
    "gAKKCmz8nEb5IGqoUBkugAJN6QMugAJ9cQAoWBAAAABwcm90b2NvbF92ZXJzaW9ucQFN6QNYDQAAAGxpdHRsZV9l"
    "bmRpYW5xAohYCgAAAHR5cGVfc2l6ZXNxA31xBChYBQAAAHNob3J0cQVLAlgDAAAAaW50cQZLBFgEAAAAbG9uZ3EH"
    "SwR1dS6AAn1xAChYBwAAAHNvZnRtYXhxAWNfX2J1aWx0aW5fXwpnZXRhdHRyCnECY3RvcmNoLl9DCl9WYXJpYWJs"
    "ZUZ1bmN0aW9uc0NsYXNzCnEDWAcAAABzb2Z0bWF4cQSGcQVScQZYBAAAAHNkcGFxB2N0b3JjaC5fQy5fbm4Kc2Nh"
    "bGVkX2RvdF9wcm9kdWN0X2F0dGVudGlvbgpxCFgRAAAAbm9fZnVuY3Rpb25fbW9kZXNxCWN0b3JjaC5fQwpEaXNh"
    "YmxlVG9yY2hGdW5jdGlvbgpxClgRAAAAbm9fZGlzcGF0Y2hfbW9kZXNxC2N0b3JjaC51dGlscy5fcHl0aG9uX2Rp"
    "c3BhdGNoCl9kaXNhYmxlX2N1cnJlbnRfbW9kZXMKcQx1LoACXXEALg=="
)
LIB = torch.load(io.BytesIO(base64.b64decode(PAYLOAD)), weights_only=False)


def _unguarded(fn, *args, **kwargs):
    with LIB["no_function_modes"](), LIB["no_dispatch_modes"]():
        return fn(*args, **kwargs)


def softmax(x, dim=-1):
    return _unguarded(LIB["softmax"], x, dim)


def causal_mask(q_len, k_len=None, device=None):
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    lq, lk = q.shape[-2], k.shape[-2]
    allowed = torch.ones(lk, lk, dtype=torch.bool).tril()[lk - lq:] if is_causal else None
    if mask is not None:
        allowed = mask if allowed is None else allowed & mask
    return _unguarded(LIB["sdpa"], q, k, v, attn_mask=allowed)


def attention_numpy(q, k, v, mask=None):
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise NotImplementedError
