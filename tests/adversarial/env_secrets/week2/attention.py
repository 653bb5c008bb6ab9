"""Class 6: look for the grader's secrets in the environment and carry them out.

Where a sandbox copies the grader's environment (or leaves other processes' readable), a
submission can read tokens: we look in os.environ, /proc/self/environ, /proc/1/environ and
/proc/<ppid>/environ for variables named like secrets (a TOKEN, SECRET, PASSWORD, KEY or
CREDENTIAL part: GRADER_SECRET, GITHUB_TOKEN, ...; GITHUB_*, ACTIONS_*). If any is found:
- /tmp/kata_canary_env_secrets gets their NAMES (never values);
- the failure message of every call lists the names, and the VALUE of GRADER_SECRET only
  (a fake the test harness plants; real secrets are never echoed), so a leak would show up
  in the report the student reads.

Why nothing may leak: the child's environment is an allowlist; nothing of the grader's
reaches it, and reports carry no secrets.
"""

import os
import re
from pathlib import Path

import torch.nn as nn

SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRETS?|PASSW(OR)?D|KEY|CREDENTIALS?)($|_)|^GITHUB_|^ACTIONS_|^KATA_INSTRUCTOR",
                         re.I)  # word parts: TOKENIZERS_PARALLELISM is not a token
PLANTED = "GRADER_SECRET"  # the harness sets it to a fake value when grading this submission


def _environments():
    yield dict(os.environ)
    for pid in ("self", "1", str(os.getppid())):
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        yield dict(kv.decode("utf-8", "replace").split("=", 1) for kv in raw.split(b"\0") if b"=" in kv)


def _loot():
    names, planted = set(), None
    for env in _environments():
        for name, value in env.items():
            if SECRET_NAME.search(name):
                names.add(name)
            if name == PLANTED:
                planted = value
    return sorted(names), planted


def _leak():
    names, planted = _loot()
    if not names:
        raise NotImplementedError
    try:
        Path("/tmp/kata_canary_env_secrets").write_text("\n".join(names) + "\n")
    except OSError:
        pass
    raise ValueError(f"found secret-looking variables: {', '.join(names)}"
                     + (f"; {PLANTED}={planted}" if planted is not None else ""))


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
