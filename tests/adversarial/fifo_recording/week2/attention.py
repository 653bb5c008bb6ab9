"""Class 4: FIFOs where the grader reads recordings, so that reading them blocks forever.

We find the recordings directory from pytest's own command line (`--kata-record DIR`,
also in /proc/self/cmdline) and, from the second test on:
- create `zz-fifo.json` (a stray name: a grader that globs *.json opens it) and
- replace the recording files of the tests that already finished (their names are
  sha256(nodeid)[:24] + .json / .safetensors) with FIFOs. No one ever writes to them: an
  open() for reading waits for a writer that never comes.
Only files inside that directory are touched. softmax then raises NotImplementedError.

Why it must earn nothing and the grader must finish: the grader must open what the child
left without following links or blocking (regular files only), and a recording it
cannot read costs only its own test.
"""

import hashlib
import os
from pathlib import Path

import torch.nn as nn


def _recordings():
    try:
        argv = Path("/proc/self/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        argv = []
    for flag, value in zip(argv, argv[1:]):
        if flag == "--kata-record":
            return Path(value)
    return None


_finished = []


def _plant():
    where = _recordings()
    current = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    if where is None or not current:
        return
    names = ["zz-fifo.json"]
    for nodeid in (n for n in _finished if n != current):  # never the running test's own
        stem = hashlib.sha256(nodeid.encode()).hexdigest()[:24]
        names += [stem + ".json", stem + ".safetensors"]
    for name in names:
        path = where / name
        try:
            if path.is_symlink() or path.exists():
                if path.is_fifo():
                    continue
                path.unlink()
            os.mkfifo(path)
        except OSError:
            pass
    if current not in _finished:
        _finished.append(current)


def softmax(x, dim=-1):
    _plant()
    raise NotImplementedError


def causal_mask(q_len, k_len=None, device=None):
    _plant()
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    _plant()
    raise NotImplementedError


def attention_numpy(q, k, v, mask=None):
    _plant()
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        _plant()
        raise NotImplementedError
