"""Class 5: what can the sandbox see and do? One canary file per thing it should not.

Each probe, on the first call, leaves a canary (never any content it read) when it works:
- /tmp/kata_canary_probe_proc: another process's environment or command line is readable
  and is not the sandbox's own (the grader's, the host's: /proc/1, /proc/<ppid>, /proc/*);
- /tmp/kata_canary_probe_sys: /sys shows network interfaces other than lo;
- /tmp/kata_canary_probe_userns: a new user namespace can be made (unshare(CLONE_NEWUSER),
  where root inside could mount over what hides the course);
- /tmp/kata_canary_probe_network: a non-loopback address is routable: a TCP connect to
  192.0.2.1:80 (TEST-NET-1, reserved, nobody answers) fails with anything but "network is
  unreachable" (1 s timeout);
- /tmp/kata_canary_probe_ptrace: PTRACE_SEIZE on the parent process succeeds (we detach at
  once: interrupt, collect the stop, PTRACE_DETACH).
A canary written inside a private /tmp is invisible outside: that is a pass. Every function
raises NotImplementedError.

Why nothing may be written: the sandbox must show only its own processes, no /sys, no
route out, and refuse namespaces and ptrace.
"""

import ctypes
import errno
import os
import posix
import socket
from pathlib import Path

import torch.nn as nn

OWN_ENV = {"PATH", "HOME", "TMPDIR", "LANG", "USER", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE",
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "KATA_HYPOTHESIS_PROFILE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
           "OMP_NUM_THREADS", "MKL_NUM_THREADS", "KATA_IMPL", "PYTEST_CURRENT_TEST", "CUDA_VISIBLE_DEVICES",
           "PYTEST_VERSION", "PYTEST_XDIST_WORKER", "_", "SHLVL", "PWD", "OLDPWD", "OPENBLAS_NUM_THREADS",
           "RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM"}


def _canary(name, why):
    try:
        Path(f"/tmp/kata_canary_probe_{name}").write_text(why + "\n")
    except OSError:
        pass


def _foreign_environ():
    mine = {os.getpid(), os.getppid()} if os.getpid() == 1 else {os.getpid()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            names = {kv.split(b"=", 1)[0].decode("utf-8", "replace")
                     for kv in (entry / "environ").read_bytes().split(b"\0") if b"=" in kv}
        except OSError:
            continue
        if names - OWN_ENV - set(os.environ):  # variables the sandbox was not given
            return f"/proc/{entry.name}/environ readable with variables the sandbox does not have"
    return None


def _probe():
    found = _foreign_environ()
    if found:
        _canary("proc", found)
    try:
        interfaces = set(os.listdir("/sys/class/net")) - {"lo"}
        if interfaces:
            _canary("sys", f"/sys/class/net lists {len(interfaces)} interfaces besides lo")
    except OSError:
        pass
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        pid = posix.fork()  # the namespace is made in a child that exits at once
    except OSError:
        pid = -1
    if pid == 0:
        os._exit(0 if libc.unshare(0x10000000) == 0 else 1)  # CLONE_NEWUSER
    if pid > 0 and os.waitpid(pid, 0)[1] == 0:
        _canary("userns", "unshare(CLONE_NEWUSER) succeeded")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.connect(("192.0.2.1", 80))
        _canary("network", "connected to 192.0.2.1:80")
    except OSError as exc:
        if exc.errno not in (errno.ENETUNREACH, errno.EACCES, errno.EPERM):
            _canary("network", f"192.0.2.1 is routable ({type(exc).__name__})")
    finally:
        sock.close()
    PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH = 0x4206, 0x4207, 17
    parent = os.getppid()
    if parent > 1 and libc.ptrace(PTRACE_SEIZE, parent, None, None) == 0:
        _canary("ptrace", "PTRACE_SEIZE on the parent succeeded")
        # let go at once: stop it (the only way to detach), collect the stop, detach
        libc.ptrace(PTRACE_INTERRUPT, parent, None, None)
        try:
            os.waitpid(parent, 0x40000000)  # __WALL
        except OSError:
            pass
        libc.ptrace(PTRACE_DETACH, parent, None, None)


_probed = False


def _once():
    global _probed
    if not _probed:
        _probed = True
        _probe()


def softmax(x, dim=-1):
    _once()
    raise NotImplementedError


def causal_mask(q_len, k_len=None, device=None):
    _once()
    raise NotImplementedError


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    raise NotImplementedError


def attention_numpy(q, k, v, mask=None):
    raise NotImplementedError


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True, bias=True):
        super().__init__()
        raise NotImplementedError
