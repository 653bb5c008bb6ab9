"""Class 4: recordings too big to read and tensor files with invalid headers.

In the recordings directory (`--kata-record DIR` on our command line), from the second
test on, the recordings of tests that already finished are replaced, in turn, by:
- a 100 MB JSON recording (valid, right nodeid, one huge string): written in 1 MB pieces,
  so this process never holds it; one such file in all;
- safetensors files whose 8-byte header length says 2**63, or whose header is not JSON,
  or names a dtype that does not exist, or offsets past the end of the file.
Only files in that directory are written; every function raises NotImplementedError.

Why it must earn nothing and the grader must finish: recordings are read under size
limits and validated; a bad one costs its own test, never the grader's memory or the run.
"""

import hashlib
import json
import os
import struct
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


def _header(obj) -> bytes:
    text = json.dumps(obj).encode()
    return struct.pack("<Q", len(text)) + text


BAD_SAFETENSORS = [
    struct.pack("<Q", 2**63) + b"{}",
    struct.pack("<Q", 9) + b"not json!",
    _header({"t0": {"dtype": "F128", "shape": [2], "data_offsets": [0, 32]}}) + b"\0" * 32,
    _header({"t0": {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 8]}}) + b"\0" * 8,
    _header({"t0": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}) + b"\0" * 16,
]

_finished = []
_huge_written = False


def _write_huge(path: Path, nodeid: str):
    chunk = "x" * (1 << 20)
    with open(path, "w") as f:
        f.write('{"version": 1, "nodeid": ' + json.dumps(nodeid) + ', "events": [], "pad": "')
        for _ in range(100):
            f.write(chunk)
        f.write('"}')


def _spoil():
    global _huge_written
    where = _recordings()
    current = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    if where is None or not current:
        return
    for i, nodeid in enumerate(n for n in _finished if n != current):
        stem = where / hashlib.sha256(nodeid.encode()).hexdigest()[:24]
        try:
            if not _huge_written:
                _write_huge(Path(f"{stem}.json"), nodeid)
                _huge_written = True
            else:
                Path(f"{stem}.safetensors").write_bytes(BAD_SAFETENSORS[i % len(BAD_SAFETENSORS)])
        except OSError:
            pass
    if current not in _finished:
        _finished.append(current)


def softmax(x, dim=-1):
    _spoil()
    raise NotImplementedError


def causal_mask(q_len, k_len=None, device=None):
    _spoil()
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    _spoil()
    raise NotImplementedError


def attention_numpy(q, k, v, mask=None):
    _spoil()
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        _spoil()
        raise NotImplementedError
