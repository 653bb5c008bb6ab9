"""Class 9: put the model solution's source into the failure messages.

We look for the course's reference/week2/attention.py from inside the sandbox: under the
directory a tmpfs is mounted on (/proc/self/mountinfo names <course>/reference), the
grader's working directory (/proc/<ppid>/cwd), the parents of the interpreter and of
sys.path, and well-known checkouts, and raise an error whose message is its source. Only
reads; nothing is written.

Why it must not work: the sandbox must not see reference/ at all, and even if it did, the
report must not carry it.
"""

import os
import sys
from pathlib import Path

import torch.nn as nn


def _candidates():
    seen = []
    try:
        for line in open("/proc/self/mountinfo"):
            point = line.split()[4]
            if point.endswith(("/reference", "/tests")):
                seen.append(Path(point).parent)
    except OSError:
        pass
    try:
        seen.append(Path(os.readlink(f"/proc/{os.getppid()}/cwd")))
    except OSError:
        pass
    for p in (sys.executable, sys.prefix, *sys.path):
        seen += list(Path(p).resolve().parents)[:5]
    seen += [Path("/work/main"), Path(os.environ.get("GITHUB_WORKSPACE") or "/nonexistent")]
    return [p / "reference" / "week2" / "attention.py" for p in dict.fromkeys(seen)]


def _leak():
    for path in _candidates():
        try:
            source = path.read_text()
        except OSError:
            continue
        if "def scaled_dot_product_attention" in source and "NotImplementedError" not in source:
            raise ValueError(f"REFERENCE ({path}):\n{source}")
    raise NotImplementedError


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
