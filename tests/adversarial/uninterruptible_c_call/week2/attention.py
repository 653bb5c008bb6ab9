"""Class 10: hangs inside C calls, where Python signal handlers never get to run.

- softmax: collections.deque(itertools.count(), maxlen=0) consumes an endless iterator in
  C without ever returning to the interpreter loop, so a SIGALRM handler (pytest-timeout's
  signal method) is never run; constant memory;
- causal_mask: time.sleep(10**6) with SIGALRM ignored (the sleep is not interrupted);
- scaled_dot_product_attention: one 8192 x 8192 float32 matmul after another (768 MB in
  all, minutes each on one thread), each a single call into torch.

Why the grader must finish (and this earns nothing): a per-test deadline has to be
enforced from outside the child (SIGKILL), not by a handler inside it.
"""

import collections
import itertools
import signal
import time

import torch
import torch.nn as nn


def softmax(x, dim=-1):
    collections.deque(itertools.count(), maxlen=0)


def causal_mask(q_len, k_len=None, device=None):
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(10**6)


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    a = torch.ones(8192, 8192)
    b = torch.ones(8192, 8192)
    while True:
        c = a @ b
        del c


def attention_numpy(q, k, v, mask=None):
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise NotImplementedError
