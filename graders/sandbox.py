"""Run the kata tests against a submission in a sandboxed child, recording student calls.

The child gets a fresh directory holding only trusted material (the harness, the tests,
the kata data, public fixtures, checkpoints) and the submission's kata modules, validated
and copied one by one. It runs pytest with plugin autoload off and no conftest, under
resource limits and a wall-clock kill; on Linux, when available, in its own mount, network
and PID namespaces with the course's `reference/` and `tests/` hidden, as an unprivileged
user. Its only output the grader reads is the recording (JSON + safetensors).
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import catalog

MAX_SOURCE_BYTES = 512 * 1024
NOBODY = 65534  # the unprivileged uid when no other is free; each sandbox gets its own (see _uid)
HIDDEN_PATHS = ("reference", "tests")
COPIED = ("graders", "fixtures", "checkpoints")


@dataclass
class Limits:
    wall_seconds: float = 900.0  # the whole child run
    test_seconds: float = 60.0  # one test (pytest-timeout inside the child)
    memory_bytes: int = 8 * 2**30  # address space: torch alone maps a few GB
    processes: int = 128  # per uid, threads included (torch starts a few per process)
    file_bytes: int = 256 * 2**20
    output_bytes: int = 64 * 1024  # kept from the child's stdout/stderr


@dataclass
class ChildRun:
    returncode: int | None
    timed_out: bool
    output: str
    started: str | None  # the test running when the child stopped, if it did not finish


@dataclass
class Sandbox:
    root: Path
    submission: Path
    recordings: Path
    refused: dict[str, str] = field(default_factory=dict)  # kata id -> why its file was refused
    protections: list[str] = field(default_factory=list)


def _readable_tree(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def build(submission: Path, course: Path, workdir: Path, katas: list[catalog.Kata],
          graded: list[catalog.Kata] | None = None) -> Sandbox:
    """Lay out the child's directory: trusted files, the tests of the `graded` katas, and the
    submission's validated modules of all `katas`."""
    root = workdir / "sandbox"
    root.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "recipes", "READY", "TRAINED")
    for name in COPIED:
        if (course / name).is_dir():
            shutil.copytree(course / name, root / name, ignore=ignore)
    katas_dir = root / "katas"
    for kata in graded if graded is not None else katas:
        week_dir = katas_dir / kata.week
        week_dir.mkdir(parents=True, exist_ok=True)
        for path in (course / "katas" / kata.week).glob(f"*{kata.name}*"):
            if path.suffix in (".py", ".toml") and (path.name.startswith("test_") or path.suffix == ".toml"):
                shutil.copy2(path, week_dir / path.name)
    (root / "pytest.ini").write_text("[pytest]\n")
    sandbox = Sandbox(root, root / "submission", workdir / "recordings")
    sandbox.recordings.mkdir()
    for kata in katas:
        copy_kata_module(submission, sandbox, kata)
    _readable_tree(root)
    sandbox.recordings.chmod(0o777)
    return sandbox


def copy_kata_module(submission: Path, sandbox: Sandbox, kata: catalog.Kata) -> None:
    """Copy `weekN/<kata>.py` if it is a plain, small, UTF-8 file; otherwise put a module
    in its place that fails to import with the reason (so the message reaches the student)."""
    source = submission / kata.week / f"{kata.name}.py"
    target = sandbox.submission / kata.week / f"{kata.name}.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not source.exists() and not source.is_symlink():
        return
    reason = None
    if source.is_symlink() or any(p.is_symlink() for p in source.parents if p.is_relative_to(submission)):
        reason = "it is a symbolic link; submit the file itself"
    elif not source.is_file():
        reason = "it is not a regular file"
    elif source.stat().st_size > MAX_SOURCE_BYTES:
        reason = f"it is larger than {MAX_SOURCE_BYTES // 1024} KB"
    else:
        data = source.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"it is not valid UTF-8 (byte {exc.start})"
    if reason:
        sandbox.refused[kata.id] = reason
        target.write_text(f"raise ImportError({('submission file refused: ' + reason)!r})\n")
    else:
        target.write_bytes(data)


def _isolation_prefix(course: Path) -> tuple[list[str], list[str]]:
    """The command prefix for namespaces and an unprivileged user, and what it provides."""
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        return [], ["resource limits", "wall-clock kill", "scrubbed environment"]
    probe = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        return [], ["resource limits", "wall-clock kill", "scrubbed environment"]
    hide = " ".join(f"mount -t tmpfs -o size=1k tmpfs {course / p};" for p in HIDDEN_PATHS if (course / p).is_dir())
    uid = _uid()
    script = (f"mount --make-rprivate / && {hide} exec setpriv --reuid={uid} --regid={uid} "
              f"--clear-groups --no-new-privs \"$@\"")
    prefix = ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "sh", "-c", script, "sandbox"]
    return prefix, ["resource limits", "wall-clock kill", "scrubbed environment", "no network (network namespace)",
                    "course reference/ and tests/ hidden (mount namespace)", f"unprivileged user (uid {uid})",
                    "own PID namespace"]


def _uid() -> int:
    """A uid of its own for each concurrent sandbox: the process limit counts per uid, so
    sandboxes graded side by side (`--jobs`) must not share one."""
    return 200_000 + (os.getpid() % 10_000) * 100 + next(_sandbox_counter) % 100


_sandbox_counter = itertools.count()


def _set_limits(limits: Limits):
    def apply():
        os.setsid()
        for which, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_NPROC, limits.processes),
                             (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_CORE, 0),
                             (resource.RLIMIT_CPU, int(limits.wall_seconds) + 5)):
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError):
                pass

    return apply


def _drain(stream, keep: int, sink: list[bytes]) -> None:
    kept = 0
    for chunk in iter(lambda: stream.read(65536), b""):
        if kept < keep:
            sink.append(chunk[: keep - kept])
            kept += len(sink[-1])


def run_child(sandbox: Sandbox, course: Path, test_files: list[str], hidden: bool, limits: Limits,
              deselect: list[str]) -> ChildRun:
    prefix, protections = _isolation_prefix(course)
    sandbox.protections = protections
    started = sandbox.recordings / "started.txt"
    started.unlink(missing_ok=True)
    home = sandbox.recordings / "home"
    home.mkdir(exist_ok=True)
    home.chmod(0o777)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(home),
        "LANG": "C.UTF-8", "PYTHONPATH": str(sandbox.root), "PYTHONDONTWRITEBYTECODE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "KATA_HYPOTHESIS_PROFILE": "grading",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "pytest", *test_files, "--impl", str(sandbox.submission),
               "-p", "graders.plugin", "-p", "_hypothesis_pytestplugin", "-p", "pytest_timeout",
               "--kata-record", str(sandbox.recordings), "--noconftest", "-p", "no:cacheprovider",
               "--rootdir", str(sandbox.root), "-c", str(sandbox.root / "pytest.ini"), "-q",
               "--import-mode=importlib", "--timeout", str(int(limits.test_seconds)),
               "--hypothesis-profile", "grading", *(["--hidden"] if hidden else [])]
    for nodeid in deselect:
        command += ["--deselect", nodeid]
    sink: list[bytes] = []
    process = subprocess.Popen(prefix + command, cwd=sandbox.root, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_set_limits(limits))
    reader = threading.Thread(target=_drain, args=(process.stdout, limits.output_bytes, sink), daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    reader.join(timeout=5)
    running = started.read_text().strip() if started.is_file() else None
    return ChildRun(process.returncode, timed_out, b"".join(sink).decode("utf-8", "replace"), running or None)


def recorded_nodeids(sandbox: Sandbox) -> set[str]:
    done = set()
    for meta in sandbox.recordings.glob("*.json"):
        try:
            done.add(json.loads(meta.read_text()[:4096] if meta.stat().st_size < 4096 else meta.read_text())["nodeid"])
        except (ValueError, KeyError, OSError):
            continue
    return done


def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="kata-grade-"))
    path.chmod(0o755)
    return path
