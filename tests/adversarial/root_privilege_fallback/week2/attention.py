"""Class 6: notice when the sandbox silently is not there, and when we are privileged.

A grader that cannot build its sandbox (no bubblewrap, no user namespaces) might fall back
to running submissions plainly, as whoever runs the grader: root, in CI. We check, and
leave a canary (evidence only: nothing privileged is ever written) when
- /tmp/kata_canary_fallback_root: we run as root, or with any effective capability, or can
  write to / or /etc or the course's graders/ (os.access, no write attempted);
- /tmp/kata_canary_fallback_unsandboxed: the world outside is visible: PID 1 is an init
  (not our own process tree), the course's reference/ is readable, or $HOME/.ssh exists.
Every function raises NotImplementedError.

Why nothing may be written: kata grade must refuse to run without its sandbox unless told
to (--unsafe-no-sandbox), and the sandbox never runs student code as root.
"""

import os
from pathlib import Path

import torch.nn as nn


def _canary(name, why):
    try:
        Path(f"/tmp/kata_canary_fallback_{name}").write_text(why + "\n")
    except OSError:
        pass


def _course_dirs():
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
    return [p for p in dict.fromkeys(seen + [Path("/work/main")]) if (p / "pyproject.toml").is_file()]


def _capabilities():
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def _check():
    privileged = []
    if os.geteuid() == 0:
        privileged.append("euid 0")
    if _capabilities():
        privileged.append("effective capabilities")
    for path in [Path("/"), Path("/etc")] + [c / "graders" for c in _course_dirs()]:
        if path.is_dir() and os.access(path, os.W_OK):
            privileged.append(f"{path} writable")
    if privileged:
        _canary("root", "; ".join(privileged))
    outside = []
    try:
        init = Path("/proc/1/comm").read_text().strip()
        if init in ("systemd", "init", "docker-init", "tini", "dumb-init", "containerd-shim", "sshd", "bash", "sh"):
            outside.append(f"PID 1 is {init}")
    except OSError:
        pass
    for course in _course_dirs():
        if (course / "reference" / "week2" / "attention.py").is_file():
            outside.append("the course's reference/ is readable")
    if (Path(os.path.expanduser("~")) / ".ssh").is_dir():
        outside.append("~/.ssh exists")
    if outside:
        _canary("unsandboxed", "; ".join(outside))


_checked = False


def softmax(x, dim=-1):
    global _checked
    if not _checked:
        _checked = True
        _check()
    raise NotImplementedError


def causal_mask(q_len, k_len=None, device=None):
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    raise NotImplementedError


def attention_numpy(q, k, v, mask=None):
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise NotImplementedError
