"""Run a kata's trusted tests against a submission in a sandboxed child, recording student calls.

The threat: a submission is arbitrary code written by someone who wants points, or the
grader's secrets. So the child that runs it sees only what it needs, and the grader reads
back only data it can check.

What the child sees (bubblewrap, `bwrap`, builds it as a new root):
- read-only: the system's `/usr`, the interpreter and its virtual environment, a trusted
  copy of the harness (`graders/`), fixtures and checkpoints, the submission's validated
  kata modules, and the test files of ONE kata of ONE visibility (public or hidden: the
  public child never holds hidden tests);
- writable: a private `/tmp` and `/dev/shm`, and one recordings directory of its own;
- a fresh `/proc`, no `/sys`, a network namespace whose only interface is a loopback that
  is up (tests start servers on 127.0.0.1), its own PID, IPC and UTS namespaces, a new
  session (no terminal to inject into), death with the grader (`--die-with-parent`);
- an environment built from an allowlist (nothing of the grader's, no secrets);
- a seccomp filter denying ptrace, mount, new namespaces, keyctl, bpf, perf_event_open and
  other calls no kata needs;
- as an unprivileged uid of its own when the grader runs as root (never root);
- resource limits (address space, processes, file size, core dumps) and a deadline per
  test, enforced by the grader, which kills the whole sandbox with SIGKILL.

What the grader reads back: control lines on a pipe (which test started or finished, which
student function was running), validated against the node ids it collected itself, and
the recording files, opened without following links or blocking, regular files only,
under size and nesting limits (`ingest`). The grader never creates, changes or follows
anything inside a directory the child can write.

Without bubblewrap, `kata grade` refuses to run a submission unless the caller passes
`--unsafe-no-sandbox` (a student's own machine), which every report then states.
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import itertools
import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import catalog, impl, runner
from .recording import timeout_text
from .events import recording_from_json, recording_to_json
from .untrusted import FileTooLarge, file_stem, nesting_depth_at_most, read_regular

MAX_SOURCE_BYTES = 512 * 1024
COPIED = ("graders", "fixtures", "checkpoints")
INSIDE = Path("/kata")  # where the trusted tree appears in the sandbox
RECORD_INSIDE = Path("/kata-record")
MAX_CONTROL_LINE = 4096


class SandboxUnavailable(RuntimeError):
    """The full sandbox cannot be built on this machine (and --unsafe-no-sandbox was not given)."""


@dataclass
class Limits:
    test_seconds: float = 60.0  # one test, unless it is marked with a longer timeout
    grace_seconds: float = 15.0  # after a test's own timeout, before the grader kills the sandbox
    short_test_seconds: float = 10.0  # per test, once a kata has used its timeouts
    timeouts_per_kata: int = 2  # full-length timeouts before the short limit applies
    kills_per_kata: int = 3  # sandbox deaths (crash, os._exit, memory) before a kata's rest is dropped
    memory_bytes: int = 8 * 2**30  # address space: torch alone maps a few GB
    processes: int = 256  # per uid, threads included (torch starts a few per process)
    file_bytes: int = 256 * 2**20
    output_bytes: int = 64 * 1024  # kept from the child's stdout/stderr
    recording_file_bytes: int = 80 * 2**20  # one recording file (tensors of one test: 64 MB, plus room)
    recording_total_bytes: int = 768 * 2**20  # all recordings of one child
    json_depth: int = 64  # recordings nest at most ~20 deep


@dataclass
class ChildRun:
    """What one start of the sandboxed child did, as the grader saw it."""

    returncode: int | None
    finished: list[str] = field(default_factory=list)  # tests whose recordings were saved
    failed: dict[str, str] = field(default_factory=dict)  # nodeid -> why it has no complete recording
    hung_functions: list[str] = field(default_factory=list)  # student functions that timed out
    output: str = ""


@dataclass
class Isolation:
    """How children are started here, and what that protects."""

    sandboxed: bool  # False only with --unsafe-no-sandbox
    protections: list[str]
    drop_to_uid: bool  # the grader is root: each child runs as an unprivileged uid of its own


# --- the trusted tree -----------------------------------------------------------------------


@dataclass
class Tree:
    """The trusted files laid out for children: one base, one test directory per child."""

    work: Path
    base: Path  # graders/, fixtures/, checkpoints/, submission/, pytest.ini
    refused: dict[str, str] = field(default_factory=dict)  # kata id -> why its module was refused

    @property
    def submission(self) -> Path:
        return self.base / "submission"


def _readable_tree(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)


def build(submission: Path, course: Path, work: Path, katas: list[catalog.Kata]) -> Tree:
    """Copy the trusted material and the submission's validated modules of all `katas`
    (kv_cache imports gpt2: every kata module goes in, even when grading one)."""
    base = work / "base"
    base.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "recipes", "READY", "TRAINED")
    for name in COPIED:
        if (course / name).is_dir():
            shutil.copytree(course / name, base / name, ignore=ignore, symlinks=False)
    (base / "pytest.ini").write_text("[pytest]\n")
    tree = Tree(work, base)
    for kata in katas:
        copy_kata_module(submission, tree, kata)
    _readable_tree(base)
    return tree


def tests_dir(tree: Tree, course: Path, kata: catalog.Kata, files: list[Path], tag: str) -> Path:
    """A directory `katas/weekN/` holding only `files` (one visibility of one kata) and the
    kata's toml, with expected values stripped from the tests' source."""
    from . import withhold

    root = tree.work / f"tests-{kata.week}-{kata.name}-{tag}"
    week_dir = root / "katas" / kata.week
    week_dir.mkdir(parents=True)
    for path in files:
        source = path.read_text(encoding="utf-8")
        (week_dir / path.name).write_text(withhold.strip_expected(source, path.name), encoding="utf-8")
    for toml in (course / "katas" / kata.week).glob(f"{kata.name}.toml"):
        shutil.copy2(toml, week_dir / toml.name)
    _readable_tree(root)
    return root


def copy_kata_module(submission: Path, tree: Tree, kata: catalog.Kata) -> None:
    """Copy `weekN/<kata>.py` if it is a plain, small, UTF-8 file; otherwise put a module
    in its place that fails to import with the reason (so the message reaches the student)."""
    source = submission / kata.week / f"{kata.name}.py"
    target = tree.submission / kata.week / f"{kata.name}.py"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not source.exists() and not source.is_symlink():
        return
    reason, data = None, b""
    if source.is_symlink() or any(p.is_symlink() for p in source.parents if p.is_relative_to(submission)):
        reason = "it is a symbolic link; submit the file itself"
    else:
        try:
            data = read_regular(source, MAX_SOURCE_BYTES)
            data.decode("utf-8")
        except FileTooLarge:
            reason = f"it is larger than {MAX_SOURCE_BYTES // 1024} KB"
        except UnicodeDecodeError as exc:
            reason = f"it is not valid UTF-8 (byte {exc.start})"
        except OSError:
            reason = "it is not a regular file"
    if reason:
        tree.refused[kata.id] = reason
        target.write_text(f"raise ImportError({('submission file refused: ' + reason)!r})\n")
    else:
        target.write_bytes(data)


# --- reading what a child wrote ----------------------------------------------------------------


def ingest(recordings: Path, nodeids: list[str], target: Path, limits: Limits) -> dict[str, str]:
    """Copy the recordings of `nodeids` from a child's directory into the grader's own
    `target`, re-encoding each after validating it. Returns {nodeid: why it was rejected}.

    The child is dead by now, but the files are still its own: each is opened without
    following links or blocking, must be a regular file under the size limit, must parse as
    JSON no deeper than the nesting limit (safetensors for tensors), and must name its test.
    """
    from safetensors.torch import load as load_tensors
    from safetensors.torch import save_file


    rejected: dict[str, str] = {}
    total = 0
    try:
        dir_fd = os.open(recordings, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {n: "the sandbox left no recordings" for n in nodeids}
    try:
        for nodeid in nodeids:
            stem = file_stem(nodeid)
            try:
                meta = read_regular(Path(stem + ".json"), limits.recording_file_bytes, dir_fd)
                data = read_regular(Path(stem + ".safetensors"), limits.recording_file_bytes, dir_fd)
                total += len(meta) + len(data)
                if total > limits.recording_total_bytes:
                    raise FileTooLarge(errno.EFBIG, "the recordings exceed the grader's limit")
                content = json.loads(meta.decode("utf-8"))
                if not nesting_depth_at_most(content, limits.json_depth):
                    raise ValueError("the recording nests too deeply")
                events = recording_from_json(content, nodeid)  # MalformedEvent: which event, and why
                tensors = load_tensors(data)
            except (OSError, ValueError, RecursionError, UnicodeDecodeError, MemoryError, Exception) as exc:
                rejected[nodeid] = f"its recording was rejected ({type(exc).__name__}: {str(exc)[:200]})"
                continue
            (target / f"{stem}.json").write_text(json.dumps(recording_to_json(nodeid, events)))
            save_file(tensors, str(target / f"{stem}.safetensors"))
    finally:
        os.close(dir_fd)
    return rejected


# --- isolation ---------------------------------------------------------------------------------

BASE_PROTECTIONS = ["resource limits", "per-test deadline with SIGKILL of the whole sandbox",
                    "allowlisted environment"]


def _paths_children_read() -> list[Path]:
    """What a child started without bubblewrap reads in place: the interpreter, its standard
    library, the installed packages, and the course."""
    packages = [importlib.util.find_spec(name) for name in ("pytest", "torch")]
    return [Path(sys.executable).resolve(), Path(os.__file__).resolve().parent,
            *(Path(spec.origin).resolve().parent for spec in packages if spec and spec.origin), impl.PROJECT_ROOT]


def _readable_by_others(path: Path) -> bool:
    """Whether a uid with no rights of its own can read `path`: every directory above it
    searchable by others, and the path itself readable (and searchable, for a directory)."""
    try:
        for parent in reversed(path.parents):
            if not parent.stat().st_mode & 0o001:
                return False
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & 0o004) and (not path.is_dir() or bool(mode & 0o001))


@functools.cache
def isolation(unsafe: bool = False) -> Isolation:
    """Probe once per process what can be had. Raises SandboxUnavailable, naming what to
    install, unless `unsafe`."""
    root = os.name == "posix" and os.geteuid() == 0
    drop = root and shutil.which("setpriv") is not None
    if unsafe:
        # Without bubblewrap the child reads the interpreter and the course where they are: an
        # unprivileged uid that cannot (a Python under /root) would run no test at all.
        unreadable = next((p for p in _paths_children_read() if not _readable_by_others(p)), None) if drop else None
        protections = BASE_PROTECTIONS + (["unprivileged uid per child"] if drop and unreadable is None else [])
        if unreadable is not None:
            protections.append(f"runs as root: {unreadable} is not readable by other users, so children keep "
                               "the grader's uid")
        return Isolation(False, protections + ["UNSAFE: no sandbox (--unsafe-no-sandbox)"],
                         drop and unreadable is None)
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable("kata grade sandboxes submissions with bubblewrap, which needs Linux; "
                                 "to grade your own code here, pass --unsafe-no-sandbox")
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable("kata grade needs bubblewrap to sandbox submissions: install it "
                                 "(Debian/Ubuntu: `apt-get install -y bubblewrap`), or, to grade your own "
                                 "code on your own machine, pass --unsafe-no-sandbox")
    if root and not drop:
        raise SandboxUnavailable("kata grade runs as root and needs `setpriv` (util-linux) to run submissions "
                                 "as an unprivileged user")
    try:
        seccomp_program()
    except Exception as exc:  # noqa: BLE001 - any failure means no filter
        raise SandboxUnavailable(f"kata grade needs libseccomp for its sandbox's system-call filter ({exc}): "
                                 "`pip install pyseccomp` and `apt-get install -y libseccomp2`, "
                                 "or pass --unsafe-no-sandbox") from None
    probe = subprocess.run(["bwrap", *_bwrap_flags(root), "--ro-bind", "/", "/", "true"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        raise SandboxUnavailable(f"bubblewrap cannot create its namespaces here: {probe.stderr.strip()[:300]} "
                                 "(in a container, allow user namespaces or run the grader as root); "
                                 "or pass --unsafe-no-sandbox")
    protections = BASE_PROTECTIONS + [
        "bubblewrap: new root with only the interpreter, harness, fixtures and submission (read-only)",
        "course reference/, other tests and .git not in the sandbox",
        "hidden tests in their own sandbox",
        "private /tmp and /dev/shm", "fresh /proc, no /sys",
        "no network (loopback only)", "own PID, IPC and UTS namespaces", "dies with the grader",
        "seccomp filter (no ptrace, mount, new namespaces, keyctl, bpf, perf_event_open)",
    ]
    if drop:
        protections.append("unprivileged uid per child")
    return Isolation(True, protections, drop)


def _bwrap_flags(root: bool) -> list[str]:
    # As root, bubblewrap needs no user namespace, and the child then drops to a real
    # unprivileged uid (setpriv). As a user, bubblewrap makes a user namespace of its own.
    namespaces = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    return (namespaces if root else ["--unshare-all"]) + ["--die-with-parent", "--new-session"]


DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root", "chroot",
    "unshare", "setns", "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon",
    "swapoff", "acct", "quotactl", "syslog", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm", "fanotify_init",
    "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
)


@functools.cache
def seccomp_program(no_spawn: bool = False, no_processes: bool = False) -> bytes:
    """The compiled (cBPF) filter bubblewrap installs in the child, made with libseccomp.
    `no_spawn` (timing runs): no new threads or processes either, so that nothing runs
    beside the measured work."""
    try:
        import seccomp  # libseccomp's own bindings (Debian: python3-seccomp)
    except ImportError:
        import pyseccomp as seccomp  # the same API over ctypes, from PyPI
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except Exception:  # noqa: BLE001 - a call this architecture does not have
            continue
    # New namespaces through clone(2); clone3 passes its flags in memory a filter cannot
    # read, so it reports "not implemented" and the C library falls back to clone(2).
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    if no_spawn:
        for name in ("clone", "fork", "vfork"):
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
    else:
        for flag in (0x10000000, 0x20000000, 0x40000000, 0x08000000, 0x04000000, 0x00020000, 0x02000000, 0x00000080):
            rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        if no_processes:  # katas with forbidden APIs: threads (refused at run time too) but no processes
            for name in ("fork", "vfork"):
                rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
            rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, 0x00010000, 0))
    with tempfile.TemporaryFile() as out:
        rules.export_bpf(out)
        out.seek(0)
        return out.read()


_uids = itertools.count()
_uid_lock = threading.Lock()


def child_uid() -> int:
    """An unprivileged uid of its own for each sandbox (the process limit counts per uid, and
    sandboxes graded side by side must not be able to signal each other)."""
    with _uid_lock:
        return 200_000 + (os.getpid() % 10_000) * 100 + next(_uids) % 100


def _host_paths() -> list[Path]:
    """What the interpreter needs, read-only: its prefixes (the virtual environment, the
    standard library) and site-packages; never the course (an editable install puts the
    course on sys.path: the sandbox gets the trusted copy of `graders/` instead)."""
    import site

    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent,
             Path(sys.executable).resolve().parent, *map(Path, site.getsitepackages())}
    paths = {p.resolve() for p in paths if p.is_dir()}
    paths = {p for p in paths if p.parts[:2] != ("/", "usr") and len(p.parts) > 2}
    # Keep only outermost directories (a venv's site-packages sits inside the venv).
    kept = []
    for p in sorted(paths, key=lambda q: len(q.parts)):
        if not any(p.is_relative_to(k) for k in kept):
            kept.append(p)
    return kept


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("lib", "lib64", "lib32", "bin", "sbin"):
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "hosts", "nsswitch.conf", "localtime", "alternatives"):
        host = Path("/etc") / name
        if host.exists():
            args += ["--ro-bind", str(host), f"/etc/{name}"]
    for device in sorted(Path("/dev").glob("nvidia*")):  # GPU tests need the driver's devices
        args += ["--dev-bind", str(device), str(device)]
    return args


def child_environment(inside: Path, record: Path) -> dict[str, str]:
    """The child's whole environment: an allowlist, never copied from the grader's."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "USER": "kata",
        "LANG": "C.UTF-8", "PYTHONPATH": str(inside), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "KATA_HYPOTHESIS_PROFILE": "grading",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
    }
    for name in ("CUDA_VISIBLE_DEVICES",):  # where the GPU tests run, which GPU
        if name in os.environ:
            env[name] = os.environ[name]
    return env


# --- one child run -------------------------------------------------------------------------------


@dataclass
class ChildSpec:
    """Everything one sandboxed run needs."""

    tree: Tree
    tests: Path  # from tests_dir: holds katas/weekN/
    files: list[str]  # test files, relative to the tree (katas/weekN/test_x.py)
    recordings: Path  # the child's own writable directory
    uid: int | None
    hidden: bool
    deselect: list[str]
    skip_functions: list[str]
    test_seconds: float  # pytest-timeout default inside the child
    cap_seconds: float | None  # every test's timeout at most this (after the kata's timeouts are used)
    timeout_budget: int = 2  # timeouts left before the child itself shortens every test's timeout
    short_seconds: float = 10.0
    timing_fd: int | None = None  # a timing run (graders.timing): the pipe it reads its side from
    no_processes: bool = False  # the kata forbids APIs: student code may not start processes


@dataclass(frozen=True)
class Launch:
    """How to start one child: its command line, the directory it starts in (bubblewrap
    changes to the course itself; without it the child starts in its own course root) and
    the environment it is started with."""
    argv: list[str]
    cwd: Path
    env: dict[str, str]


def _seccomp_file(spec: ChildSpec, iso: Isolation, **program) -> IO[bytes] | None:
    """The compiled filter in a file bubblewrap reads from a descriptor (None unsandboxed)."""
    if not iso.sandboxed:
        return None
    handle = tempfile.TemporaryFile(dir=spec.tree.work)
    handle.write(seccomp_program(**program))
    handle.seek(0)
    return handle


def launch(spec: ChildSpec, iso: Isolation, control_fd: int, seccomp_fd: int | None) -> Launch:
    inside = INSIDE if iso.sandboxed else _unsafe_root(spec)
    record = RECORD_INSIDE if iso.sandboxed else spec.recordings
    pytest_args = [
        "-s", "-m", "graders.child",
        *runner.arguments(spec.files, impl=str(inside / "submission"), hidden=spec.hidden, profile="grading",
                          root=inside, config=inside / "pytest.ini", quiet=False),
        # Plugin autoload is off in the child (its environment): only these load, and no conftest.
        "-p", "graders.plugin", "-p", "_hypothesis_pytestplugin", "-p", "pytest_timeout", "--noconftest",
        "-p", "no:unraisableexception", "-q",
        "--kata-record", str(record), "--kata-control-fd", str(control_fd), "--timeout", str(int(spec.test_seconds)),
        *(["--kata-max-test-seconds", str(int(spec.cap_seconds))] if spec.cap_seconds else []),
        "--kata-timeout-budget", str(spec.timeout_budget), "--kata-short-timeout", str(spec.short_seconds),
        *(["--kata-timing-fd", str(spec.timing_fd)] if spec.timing_fd is not None else []),
    ]
    for nodeid in spec.deselect:
        pytest_args += ["--deselect", nodeid]
    for name in spec.skip_functions:
        pytest_args += ["--kata-skip-function", name]
    python = [sys.executable, *pytest_args]
    drop = []
    if iso.drop_to_uid and spec.uid is not None:
        drop = ["setpriv", f"--reuid={spec.uid}", f"--regid={spec.uid}", "--clear-groups", "--no-new-privs",
                "--inh-caps=-all", "--bounding-set=-all"]
    if not iso.sandboxed:
        return Launch(drop + python, inside, child_environment(inside, record))
    root = os.geteuid() == 0
    # The fresh /proc, /dev and private /tmp first: a bind made later may sit inside them (a
    # virtual environment under /tmp, the GPU's device nodes), not be hidden by them.
    args = ["bwrap", *_bwrap_flags(root), "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
            "--perms", "1777", "--tmpfs", "/dev/shm", *_system_binds()]
    made: set[Path] = {Path("/tmp"), Path("/dev"), Path("/dev/shm")}  # mounted above, modes kept
    for path in _host_paths():
        # Directories above a bind are made by bubblewrap with the host's modes; a 0700 /root
        # (pyenv's interpreters live there) would lock the unprivileged child out.
        for parent in reversed(path.parents[:-1]):
            if parent not in made:
                made.add(parent)
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", str(path), str(path)]
    base = spec.tree.base
    args += ["--perms", "0755", "--dir", str(INSIDE)]
    for name in (*COPIED, "submission"):
        if (base / name).is_dir():
            args += ["--ro-bind", str(base / name), str(INSIDE / name)]
    args += ["--ro-bind", str(base / "pytest.ini"), str(INSIDE / "pytest.ini"),
             "--ro-bind", str(spec.tests / "katas"), str(INSIDE / "katas"),
             "--bind", str(spec.recordings), str(RECORD_INSIDE),
             "--chdir", str(INSIDE), "--clearenv"]
    for key, value in child_environment(INSIDE, RECORD_INSIDE).items():
        args += ["--setenv", key, value]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return Launch(args + drop + python, spec.tree.work, child_environment(INSIDE, RECORD_INSIDE))


def start_child(spec: ChildSpec, iso: Isolation, limits: Limits, control_fd: int, output: int,
                **program) -> subprocess.Popen:
    """Start a child (a grading run, or a timing run when `spec.timing_fd` is set) with its
    system-call filter (`program`: `seccomp_program`'s options). The descriptors it is handed,
    the control pipe's write end and a timing run's go pipe, are closed here once it has
    them. `output`: subprocess.PIPE (its stdout and stderr together) or subprocess.DEVNULL."""
    handed = [control_fd] + ([spec.timing_fd] if spec.timing_fd is not None else [])
    seccomp = _seccomp_file(spec, iso, **program)
    try:
        child = launch(spec, iso, control_fd, seccomp.fileno() if seccomp else None)
        return subprocess.Popen(child.argv, cwd=child.cwd, env=child.env, stdin=subprocess.DEVNULL, stdout=output,
                                stderr=subprocess.STDOUT, preexec_fn=_limits(limits), start_new_session=True,
                                close_fds=True, pass_fds=handed + ([seccomp.fileno()] if seccomp else []))
    finally:
        for fd in handed:
            os.close(fd)
        if seccomp is not None:
            seccomp.close()


def _unsafe_root(spec: ChildSpec) -> Path:
    """Without bubblewrap: one directory holding links to the trusted tree and the tests, and
    its own copy of the harness, which finds the course where its files are
    (`Path(__file__).resolve()`: through a link, that would be the trusted tree, without this
    kata's tests and toml)."""
    root = spec.tests / "root"
    if not root.exists():
        root.mkdir()
        for name in (*COPIED, "submission", "pytest.ini"):
            if name == "graders":
                shutil.copytree(spec.tree.base / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif (spec.tree.base / name).exists():
                (root / name).symlink_to(spec.tree.base / name)
        (root / "katas").symlink_to(spec.tests / "katas")
        _readable_tree(root / "graders")
    return root


def _limits(limits: Limits):
    def apply():
        for which, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_NPROC, limits.processes),
                             (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_CORE, 0)):
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


def _control_lines(fd: int, lines: "queue.Queue[bytes | None]") -> None:
    """Read the child's control pipe: lines, each cut at MAX_CONTROL_LINE, then None at EOF."""
    buffer = b""
    with os.fdopen(fd, "rb", buffering=0) as stream:
        for chunk in iter(lambda: stream.read(65536), b""):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                lines.put(line[:MAX_CONTROL_LINE])
            if len(buffer) > MAX_CONTROL_LINE:
                buffer = b""  # a line that never ends is dropped
    lines.put(None)


def _parse_control(line: bytes, known: dict[str, float]) -> dict | None:
    """A control message, if well formed and about a test the grader collected itself."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("e") not in ("started", "finished", "call", "timeout"):
        return None
    if "id" in message and message["id"] not in known:
        return None
    if "f" in message and not (isinstance(message["f"], str) and len(message["f"]) <= 200):
        return None
    return message


def run_child(spec: ChildSpec, limits: Limits, timeouts: dict[str, float], unsafe: bool = False) -> ChildRun:
    """Start the child, follow its control pipe, and kill the whole sandbox (SIGKILL) when a
    test runs past its deadline or the child stops talking. `timeouts`: the grader's own
    {nodeid: seconds} for every collected test."""
    iso = isolation(unsafe)
    read_end, write_end = os.pipe()
    process = start_child(spec, iso, limits, write_end, subprocess.PIPE, no_processes=spec.no_processes)
    sink: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(process.stdout, limits.output_bytes, sink), daemon=True)
    reader.start()
    lines: queue.Queue = queue.Queue()
    control = threading.Thread(target=_control_lines, args=(read_end, lines), daemon=True)
    control.start()

    run = ChildRun(None)
    running: str | None = None
    calling: str | None = None
    started: set[str] = set()  # a test starts once: a forged "started" cannot buy more time
    deadline = time.monotonic() + 120.0  # collection and imports (torch) before the first test
    # However the child talks, it cannot outlive every test's own limit, plus start-up.
    final = time.monotonic() + 120.0 + sum(min(s, spec.cap_seconds or s) + limits.grace_seconds
                                           for n, s in timeouts.items() if n not in spec.deselect)
    while True:
        try:
            line = lines.get(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
        except queue.Empty:
            line = b""
        if line is None:  # the child closed its pipe: it has ended
            break
        if not line and process.poll() is not None and lines.empty():
            time.sleep(0.2)  # the last lines may still be on their way
            if lines.empty():
                break
        if line:
            message = _parse_control(line, timeouts)
            if message is None:
                continue
            kind = message["e"]
            if kind == "started":
                if message["id"] in started:
                    continue
                started.add(message["id"])
                running, calling = message["id"], None
                limit = timeouts[running]
                if spec.cap_seconds or len(run.hung_functions) >= spec.timeout_budget:
                    limit = min(limit, spec.cap_seconds or spec.short_seconds)
                deadline = min(final, time.monotonic() + limit + limits.grace_seconds)
            elif kind == "call":
                calling = message["f"]
            elif kind == "timeout":
                run.failed.setdefault(message["id"], timeout_text(message.get("f"), timeouts[message["id"]]))
                run.hung_functions.append(message.get("f") or "")
            elif kind == "finished" and message["id"] == running:
                run.finished.append(running)
                running, calling = None, None
                deadline = min(final, time.monotonic() + 60.0)  # between tests: teardown, the next setup
            continue
        if time.monotonic() > deadline:
            _kill(process, spec.uid if iso.drop_to_uid else None)
            if running is not None:
                limit = timeouts[running] if not spec.cap_seconds else min(timeouts[running], spec.cap_seconds)
                run.failed[running] = timeout_text(calling, limit)
                run.hung_functions.append(calling or "")
            break
    process.wait()
    _kill(process, spec.uid if iso.drop_to_uid else None)  # anything the child left behind
    reader.join(timeout=5)
    run.returncode = process.returncode
    run.output = b"".join(sink).decode("utf-8", "replace")
    if running is not None and running not in run.failed:
        run.failed[running] = (f"the sandboxed run died in this test (exit status {process.returncode}): "
                               "a crash, os._exit, or a resource limit")
    return run


def _kill(process: subprocess.Popen, uid: int | None) -> None:
    """SIGKILL the sandbox: bubblewrap's process group (its PID namespace dies with it) and,
    when the child ran as a uid of its own, every process left with that uid."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is None:
        return
    for _ in range(3):
        found = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid == uid:
                    found = True
                    os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, FileNotFoundError):
                continue
        if not found:
            return
        time.sleep(0.05)


def recordings_dir(work: Path, tag: str, uid: int | None) -> Path:
    """A directory only the child (and root) can use: 0700, owned by the child's uid."""
    path = work / f"rec-{tag}"
    path.mkdir(mode=0o700)
    if uid is not None:
        os.chown(path, uid, uid)
    return path


def workdir() -> Path:
    """The grader's own directory for one grading: 0700, owned by the grader."""
    return Path(tempfile.mkdtemp(prefix="kata-grade-"))
