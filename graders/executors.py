"""Where `kata grade --batch` grades its submissions: here, or on a Ray cluster.

A batch is one `GradeJob` (the options of `kata grade`, the same for every student) applied to
many submission directories. An `Executor` decides where each grade runs and hands back
`(submission, result)` pairs as they finish, where the result is a `Report`, or an
`"error: ..."` string when that one submission could not be graded: one broken submission
never stops the batch.

- `LocalExecutor(jobs)`: threads in this process, `jobs` submissions at a time (what
  `--batch` has always done). Each `grade()` already runs the submission's code in sandboxed
  children, never in this process.
- `RayExecutor(address)`: each submission is one Ray task on a cluster worker. The task
  carries the submission's files (a tar in memory) and runs the real
  `kata grade DIR --format json` there, with the course installed on that worker; the
  JSON comes back and becomes a `Report` here. Ray is optional (`pip install
  'llm-katas[cluster]'`) and imported only by this class.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from . import catalog, impl, sandbox
from .grade import Collections, grade
from .reports import Report

Result = Report | str  # a Report, or "error: <why>" for a submission that could not be graded


@dataclass(frozen=True)
class GradeJob:
    """`kata grade`'s options for a whole batch: how to grade any one submission, here
    (`grade`) or as `kata grade` arguments for another machine (`options`)."""

    course: str | None = None  # --tests: the trusted course root (default: this checkout)
    hidden: bool = False
    only: str | None = None
    hidden_feedback: bool = False
    timeout: float | None = None  # the whole grade, per submission
    test_timeout: float = sandbox.Limits.test_seconds
    unsafe_no_sandbox: bool = False

    @classmethod
    def from_args(cls, args) -> GradeJob:
        return cls(args.tests, args.hidden, args.only, args.hidden_feedback, args.timeout, args.test_timeout,
                   args.unsafe_no_sandbox)

    def grade(self, submission: Path, workers: int | None = None, collections: Collections | None = None) -> Report:
        """Grade one submission in this process (its code runs in sandboxed children)."""
        return grade(submission, self.course, hidden=self.hidden, only=self.only,
                     hidden_feedback=self.hidden_feedback, unsafe_no_sandbox=self.unsafe_no_sandbox,
                     timeout=self.timeout, limits=sandbox.Limits(test_seconds=self.test_timeout),
                     workers=workers, collections=collections)

    def options(self) -> list[str]:
        """The same options as `kata grade` arguments. `--tests` is passed as an absolute path:
        a worker must have the trusted course at the same path as this machine."""
        args = ["--test-timeout", repr(float(self.test_timeout))]
        if self.course:
            args += ["--tests", str(Path(self.course).resolve())]
        if self.hidden:
            args.append("--hidden")
        if self.only:
            args += ["--only", self.only]
        if self.hidden_feedback:
            args.append("--hidden-feedback")
        if self.timeout is not None:
            args += ["--timeout", repr(float(self.timeout))]
        if self.unsafe_no_sandbox:
            args.append("--unsafe-no-sandbox")
        return args

    def has_gpu_tests(self) -> bool:
        """Whether the selected katas' test files mark any test `gpu` (`@pytest.mark.gpu`, or
        a module-wide `pytestmark`). Read from this machine's course, as text: cheap, and
        a file that merely mentions the marker only costs a GPU slot, never a wrong grade."""
        course = Path(self.course).resolve() if self.course else impl.PROJECT_ROOT
        katas = [k for k in catalog.all_katas(course / "katas") if not self.only or self.only in (k.id, k.week)]
        files = catalog.test_files(katas, self.hidden, course / "katas")
        return any("mark.gpu" in Path(f).read_text(encoding="utf-8") for f in files)


class Executor:
    """Grades a batch somewhere. Subclasses implement `grade_all`."""

    def grade_all(self, submissions: list[Path], job: GradeJob) -> Iterator[tuple[Path, Result]]:
        """Yield `(submission, Report or "error: ...")` for every submission, in the order they
        finish. An error grading one submission is that submission's result, never an
        exception out of here."""
        raise NotImplementedError


class ExecutorUnavailable(LookupError):
    """This executor cannot run here (Ray missing, cluster unreachable). A LookupError, so
    `kata grade` reports it as its other bad input: one line on stderr and exit status 2."""


def _error(exc: BaseException) -> str:
    """`error: <why>` on one line (the gradebook is CSV, the summary one line per student):
    the first line of a Ray error, whose later lines are a traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"error: {lines[0] if lines else type(exc).__name__}"


class LocalExecutor(Executor):
    """Threads in this process, `jobs` submissions at a time. The class's tests are collected
    once (`Collections`), and each grade runs its katas side by side on its share of the
    cores."""

    def __init__(self, jobs: int = 1):
        self.jobs = max(1, jobs)

    def grade_all(self, submissions: list[Path], job: GradeJob) -> Iterator[tuple[Path, Result]]:
        collections = Collections()
        workers = max(1, (os.cpu_count() or 1) // self.jobs)

        def one(path: Path) -> Result:
            try:
                return job.grade(path, workers=workers, collections=collections)
            except Exception as exc:  # one broken submission never stops the batch
                return f"error: {exc}"

        with ThreadPoolExecutor(self.jobs) as pool:
            futures = {pool.submit(one, path): path for path in submissions}
            for future in as_completed(futures):
                yield futures[future], future.result()


# --- Ray ------------------------------------------------------------------------------------

MAX_SUBMISSION_BYTES = 32 * 1024 * 1024  # what one task may carry: source files, not checkpoints


def pack(submission: Path, limit: int = MAX_SUBMISSION_BYTES) -> bytes:
    """The submission directory as a gzipped tar, in memory. Nothing outside it is read: a
    symbolic link travels as a link to itself (the grader refuses links anyway, with the same
    message as when grading here), and FIFOs, devices and sockets stay behind. Raises
    ValueError when its files add up to more than `limit` bytes."""
    size = sum(p.lstat().st_size for p in submission.rglob("*") if p.is_file() and not p.is_symlink())
    if size > limit:
        raise ValueError(f"{submission.name} holds {size / 2**20:.1f} MiB of files, more than the "
                         f"{limit / 2**20:g} MiB a grading task carries to the cluster")

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if info.issym():
            info.linkname = Path(info.name).name
            return info
        return info if info.isfile() or info.isdir() else None

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(submission, arcname=".", filter=keep)
    return buffer.getvalue()


def unpack(packed: bytes, into: Path) -> None:
    """Extract `pack`'s bytes into `into`, refusing anything that would land outside it
    (tarfile's "data" filter: Python 3.10.12 / 3.11.4 and later)."""
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
        tar.extractall(into, filter="data")


def grade_packed(packed: bytes, name: str, options: list[str], timeout: float | None = None) -> str:
    """What a Ray worker runs: unpack the submission into a fresh temporary directory, grade it
    with the real `kata grade --format json` of the course installed here, return the JSON.
    A grade that fails raises RuntimeError with `kata grade`'s own one-line reason."""
    with tempfile.TemporaryDirectory(prefix="kata-ray-") as tmp:
        submission = Path(tmp) / name
        submission.mkdir()
        unpack(packed, submission)
        env = {k: v for k, v in os.environ.items() if k != impl.ENV_VAR}
        done = subprocess.run([sys.executable, "-m", "graders.cli", "grade", str(submission), "--format", "json",
                               *options], cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or [f"exit status {done.returncode}"]
        raise RuntimeError(lines[-1].removeprefix("kata grade: "))
    return done.stdout


def report_from_json(text: str, submission: Path) -> Report:
    """The `Report` that `Report.as_json()` wrote (its totals are recomputed from the tests),
    named after the submission on this machine rather than the worker's temporary copy."""
    data = json.loads(text)
    return Report(str(submission.resolve()), tests=data["tests"], katas=data["katas"],
                  protections=data["sandbox"]["protections"], notes=data["notes"])


class RayExecutor(Executor):
    """One Ray task per submission, on whichever worker Ray picks.

    Every node needs the course checked out and installed (`pip install -e ".[cluster]"`) and
    bubblewrap, as for grading on one machine: workers grade with their own course, so all
    nodes must hold the same commit (and the same path, with `--tests`).

    Resources: each task asks for `cpus` CPUs (default 1), so Ray runs as many grades on a
    node as it has cores, like `--jobs` set to the core count. When the selected katas have
    `gpu` tests and the cluster has GPUs, each task also asks for one GPU, so those tests run
    instead of skipping; a cluster with G GPUs then grades G submissions at a time (grade
    the GPU weeks separately with `--only` if that is too slow). Without GPUs in the cluster,
    the tasks run on CPU workers, where `gpu` tests skip, as they do on any machine without
    one. Deciding per batch keeps it simple: every submission has the same selection.

    `address` is what `ray.init` takes: `auto` on a cluster node, `ray://head:10001` from
    elsewhere (Ray Client needs `ray[client]`). If Ray is already initialised in this
    process, that connection is used and left open.
    """

    def __init__(self, address: str | None = "auto", cpus: float = 1):
        try:
            import ray
        except ImportError:
            raise ExecutorUnavailable("--ray needs Ray: pip install 'llm-katas[cluster]'") from None
        self.ray, self.address, self.cpus = ray, address, cpus

    def grade_all(self, submissions: list[Path], job: GradeJob) -> Iterator[tuple[Path, Result]]:
        ray = self.ray
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, log_to_driver=False)
            except Exception as exc:
                raise ExecutorUnavailable(f"cannot reach the Ray cluster at {self.address!r}: "
                                          f"{_error(exc).removeprefix('error: ')}") from None
        try:
            gpus = 1 if job.has_gpu_tests() and ray.cluster_resources().get("GPU", 0) >= 1 else 0
            task = ray.remote(grade_packed).options(num_cpus=self.cpus, num_gpus=gpus)
            # a grade past its own --timeout has scored what it reached; this only ends a stuck one
            timeout = job.timeout + 600 if job.timeout else None
            pending = {}
            for path in submissions:
                try:
                    pending[task.remote(pack(path), path.name, job.options(), timeout)] = path
                except Exception as exc:
                    yield path, _error(exc)
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                path = pending.pop(done)
                try:
                    yield path, report_from_json(ray.get(done), path)
                except Exception as exc:  # a RayTaskError carries the worker's exception as .cause
                    yield path, _error(getattr(exc, "cause", None) or exc)
        finally:
            if started:
                ray.shutdown()

