"""Class 9: put the hidden tests' source into the failure messages of public tests.

A public test's failure output is shown to the student. If the sandbox that runs the
public tests also holds the hidden ones, any call from a public test can read them: we look
for test_*_hidden.py near the test files (the rootdir and test paths on our command line,
the working directory, sys.path, /kata) and raise an error whose message is their source,
week2/attention's first.

Why it must not work: the public sandbox holds no hidden test, and hidden tests' outputs
are not shown; the report must not contain a line of their source.
"""

import os
import sys
from pathlib import Path

import torch.nn as nn


def _places():
    try:
        argv = Path("/proc/self/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        argv = list(sys.argv)
    places = [Path.cwd(), Path("/kata")] + [Path(p) for p in sys.path if p]
    for i, arg in enumerate(argv):
        if arg.endswith(".py") and "test_" in arg:
            places.append(Path(arg).parent)
        if arg in ("--rootdir", "--impl") and i + 1 < len(argv):
            places.append(Path(argv[i + 1]))
    return [p for p in dict.fromkeys(places) if p.is_dir()]


def _hidden_sources():
    found = {}
    for place in _places():
        for pattern in ("test_*_hidden.py", "*/test_*_hidden.py", "katas/*/test_*_hidden.py"):
            try:
                for path in place.glob(pattern):
                    found.setdefault(path.name, path)
            except OSError:
                continue
    ordered = sorted(found.values(), key=lambda p: (p.name != "test_attention_hidden.py", p.name))
    texts = []
    for path in ordered:
        try:
            texts.append(f"===== {path.name} =====\n{path.read_text()}")
        except OSError:
            continue
    return "\n".join(texts)


def _leak():
    source = _hidden_sources()
    raise ValueError("HIDDEN TESTS:\n" + source if source else "no hidden tests visible from here")


def softmax(x, dim=-1):
    _leak()


def causal_mask(q_len, k_len=None, device=None):
    _leak()


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    _leak()


def attention_numpy(q, k, v, mask=None):
    _leak()


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        _leak()
