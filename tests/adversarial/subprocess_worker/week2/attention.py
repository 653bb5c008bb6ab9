"""Class 3: have another process do the forbidden work.

The forbidden-API guard lives in this process (torch modes, patched functions); a fresh
interpreter started from here has none of it. The worker is started with
posix.posix_spawn (the function os.posix_spawn is bound to: refusing the name on the os
module leaves it reachable on posix), talks over two pipes, and runs torch.softmax and
F.scaled_dot_product_attention on what we send it. Its source is a string, so no
forbidden name appears in this module's code. The worker exits when its stdin closes
(when this process ends), so nothing outlives the test run.

Why it must earn nothing: work done in another process is still the library's work; the
sandbox must refuse to start processes (or the grader must not trust what comes back).
"""

import io
import os
import posix
import struct
import sys

import torch
import torch.nn as nn

WORKER = r"""
import io, os, struct, sys, torch
import torch.nn.functional as F
def read(n):
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data
while True:
    (size,) = struct.unpack("<Q", read(8))
    name, args = torch.load(io.BytesIO(read(size)), weights_only=True)
    out = torch.softmax(*args) if name == "softmax" else F.scaled_dot_product_attention(*args[:3], attn_mask=args[3])
    buf = io.BytesIO()
    torch.save(out, buf)
    os.write(1, struct.pack("<Q", len(buf.getvalue())) + buf.getvalue())
"""

_worker = None  # (pid, to_worker, from_worker)


def _start():
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    actions = [(posix.POSIX_SPAWN_DUP2, to_r, 0), (posix.POSIX_SPAWN_DUP2, from_w, 1)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1"}
    pid = posix.posix_spawn(sys.executable, [sys.executable, "-c", WORKER], env, file_actions=actions)
    for fd in (to_r, from_w):
        os.close(fd)
    return pid, to_w, from_r


def _ask(name, *args):
    global _worker
    if _worker is None or os.waitpid(_worker[0], os.WNOHANG) != (0, 0):
        _worker = _start()
    _, to_w, from_r = _worker
    buf = io.BytesIO()
    torch.save((name, [a.detach() if isinstance(a, torch.Tensor) else a for a in args]), buf)
    os.write(to_w, struct.pack("<Q", len(buf.getvalue())) + buf.getvalue())

    def read(n):
        data = b""
        while len(data) < n:
            chunk = os.read(from_r, n - len(data))
            if not chunk:
                raise RuntimeError("worker died")
            data += chunk
        return data

    (size,) = struct.unpack("<Q", read(8))
    return torch.load(io.BytesIO(read(size)), weights_only=True)


def softmax(x, dim=-1):
    return _ask("softmax", x, dim)


def causal_mask(q_len, k_len=None, device=None):
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    lq, lk = q.shape[-2], k.shape[-2]
    allowed = torch.ones(lk, lk, dtype=torch.bool).tril()[lk - lq:] if is_causal else None
    if mask is not None:
        allowed = mask if allowed is None else allowed & mask
    return _ask("sdpa", q, k, v, allowed)


def attention_numpy(q, k, v, mask=None):
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise NotImplementedError
