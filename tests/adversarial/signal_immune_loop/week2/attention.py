"""Class 10: a hang that ignores signals and swallows every exception.

softmax (and causal_mask) first ignore SIGALRM (pytest-timeout's signal method), SIGTERM,
SIGINT, SIGHUP, SIGUSR1/2, SIGXCPU and SIGVTALRM/SIGPROF, cancel any interval timer, then
spin in a loop that catches BaseException (so even an exception raised by a handler that
got through, or a KeyboardInterrupt, only restarts the loop).

Why the grader must finish (and this earns nothing): only SIGKILL, sent by the grader
from outside, can stop this; the grader's deadline must not depend on the child.
"""

import signal

import torch.nn as nn

IGNORED = [signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
           signal.SIGXCPU, signal.SIGVTALRM, signal.SIGPROF]


def _unstoppable():
    for sig in IGNORED:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError):
            pass
    for timer in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF):
        signal.setitimer(timer, 0)
    while True:
        try:
            while True:
                pass
        except BaseException:  # noqa: BLE001 - the point: nothing stops us
            continue


def softmax(x, dim=-1):
    _unstoppable()


def causal_mask(q_len, k_len=None, device=None):
    _unstoppable()


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    raise NotImplementedError


def attention_numpy(q, k, v, mask=None):
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise NotImplementedError
