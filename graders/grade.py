"""`kata grade`: score a submission without ever running its code in the grader's process.

0. Collect: the grader collects the selected katas' tests itself, once (once per class with
   `--batch`): node ids, timeouts, which tests measure throughput. Nothing a child reports
   about tests is believed unless it names one of these.
1. Record: for each kata, run its public tests, then its hidden tests, in sandboxed
   children (graders.sandbox) against the submission, recording every crossing into
   student code. A test that hangs or kills the child costs that test: the child is started
   again past it, and a function that hung is not called again in that kata. Throughput
   tests are then timed by the grader itself (graders.timing). The recordings are checked
   and copied into the grader's own directory (sandbox.ingest).
2. Replay: run the same trusted tests here, in record/replay mode, answering student calls
   from the recording; the real assertions, oracles, the reference and hidden expected
   values run only here. This run's results are the score. Katas are recorded side by side
   and each is replayed as soon as its recording is in, while the next ones record.
3. Report: per test (name, score, max_score, status, output, visibility — close to
   Gradescope's results.json), per kata and per week, as text, JSON, Markdown or JUnit XML
   (graders.reports).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import catalog, impl, runner, sandbox, timing
from .reports import Report
from .plugin import kata_totals


# Pytest sessions (collection, replays) and parsing (the sandbox's copies of the tests) hold
# `runner.exclusive`; the katas' recording threads only wait on their sandboxed children.
_in_process_lock = runner.exclusive


def _select(course: Path, only: str | None) -> list[catalog.Kata]:
    katas = catalog.all_katas(course / "katas")
    if only:
        katas = [k for k in katas if k.id == only or k.week == only]
    return katas


@dataclass
class Recorded:
    """What the sandboxed runs left for the replay."""

    replay_dir: Path  # the grader's own copies of the validated recordings
    failed: dict[str, str] = field(default_factory=dict)  # nodeid -> why it has no (complete) recording
    refused: dict[str, str] = field(default_factory=dict)  # kata id -> why its module was refused
    protections: list[str] = field(default_factory=list)
    timings: dict[str, tuple[float, float] | None] = field(default_factory=dict)  # the grader's own


class Collections:
    """Collections already made, by files: a `--batch` collects the course's
    tests once, not once per submission (the files are the grader's own, never a submission's)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._made: dict[tuple, dict[str, runner.CollectedItem]] = {}

    def get(self, files: list[str], course: Path) -> dict[str, runner.CollectedItem]:
        key = (tuple(files), str(course))
        with self._lock:
            if key not in self._made:
                self._made[key] = collect(files, course)
            return self._made[key]


def collect(files: list[str], course: Path) -> dict[str, runner.CollectedItem]:
    """Every test in `files` (hidden ones included), as the grader collects them."""
    if not files:
        return {}
    with _in_process_lock:
        _forget_test_modules(course)
        results = runner.run(files, hidden=True, profile="grading", collect_only=True, root=course)
    return {item.nodeid: item for item in results.collected}


def _groups(kata: catalog.Kata, course: Path, hidden: bool) -> list[tuple[str, list[str]]]:
    """(visibility, test files) for the kata's sandboxed runs: public, then hidden."""
    public = catalog.test_files([kata], False, course / "katas")
    groups = [("public", public)]
    if hidden:
        groups.append(("hidden", [f for f in catalog.test_files([kata], True, course / "katas") if f not in public]))
    return [(visibility, files) for visibility, files in groups if files]


@dataclass
class KataBudget:
    """What one kata has spent on hangs: a function that timed out is not called again, and
    after `Limits.timeouts_per_kata` timeouts every further test gets the short limit."""

    hung: list[str] = field(default_factory=list)
    used_timeouts: int = 0


@dataclass
class Grading:
    """One submission's grade in progress: what the katas' threads share."""

    submission: Path
    course: Path
    hidden: bool
    limits: sandbox.Limits
    iso: sandbox.Isolation
    unsafe: bool
    tree: sandbox.Tree
    tests: dict[str, runner.CollectedItem]  # by node id: what the grader collected itself
    recorded: Recorded
    tests_dirs: dict[tuple[str, str], Path]  # (kata id, visibility) -> the child's katas/ tree
    deadline: float | None = None


def record_and_replay(submission: Path, course: Path, katas: list[catalog.Kata], hidden: bool,
                      limits: sandbox.Limits, work: Path, unsafe: bool = False, deadline: float | None = None,
                      workers: int | None = None, collections: Collections | None = None,
                      ) -> tuple[Recorded, list[dict], list[str]]:
    """Record each kata in sandboxed children, then replay it here; katas run side by side
    (`workers`, default: the machine's cores), so one kata's replay overlaps the next one's
    recording. Returns the recordings' summary, the results in kata order, and notes."""
    from concurrent.futures import ThreadPoolExecutor

    iso = sandbox.isolation(unsafe)
    if not iso.sandboxed and iso.drop_to_uid:
        work.chmod(0o711)  # no bubblewrap to bind it in: the child's uid must reach its files itself
    tree = sandbox.build(submission, course, work, catalog.all_katas(course / "katas"))
    recorded = Recorded(work / "replay", refused=dict(tree.refused), protections=list(iso.protections))
    recorded.replay_dir.mkdir(mode=0o700)
    files = [f for kata in katas for _, group in _groups(kata, course, hidden) for f in group]
    with _in_process_lock:  # the tests' sandbox copies are parsed and rewritten here, before any thread
        tests_dirs = {(kata.id, visibility): _tests_dir(tree, course, kata, group, visibility)
                      for kata in katas for visibility, group in _groups(kata, course, hidden)}
    grading = Grading(submission, course, hidden, limits, iso, unsafe, tree,
                      (collections or Collections()).get(files, course), recorded, tests_dirs, deadline)

    def one_kata(kata: catalog.Kata) -> tuple[list[dict], list[str]]:
        budget = KataBudget()  # shared by the kata's public and hidden runs, one after the other
        for visibility, group in _groups(kata, course, hidden):
            _record_group(grading, kata, group, visibility, budget)
        return _replay_kata(grading, kata)

    with ThreadPoolExecutor(max(1, workers or min(len(katas), os.cpu_count() or 1))) as pool:
        outcomes = list(pool.map(one_kata, katas))
    return recorded, [r for results, _ in outcomes for r in results], [n for _, notes in outcomes for n in notes]


def _tests_dir(tree: sandbox.Tree, course: Path, kata: catalog.Kata, files: list[str], visibility: str) -> Path:
    """The test files one child holds, expected values stripped. The hidden child also holds
    the public test module (public anyway): hidden tests import helpers from it. The public
    child never holds a hidden file."""
    public = [Path(f) for f in catalog.test_files([kata], False, course / "katas")]
    held = sorted({Path(f) for f in files} | (set(public) if visibility == "hidden" else set()))
    return sandbox.tests_dir(tree, course, kata, held, visibility)


def _record_group(grading: Grading, kata: catalog.Kata, files: list[str], visibility: str,
                  budget: KataBudget) -> None:
    """One kata, one visibility: run the child, restart it past tests that hang or kill it."""
    limits, recorded = grading.limits, grading.recorded
    relative = [str(Path("katas") / kata.week / Path(f).name) for f in files]
    tests = {n: t for n, t in grading.tests.items() if n.split("::", 1)[0] in relative}
    if grading.deadline is not None and time.monotonic() > grading.deadline:
        for nodeid in tests:
            recorded.failed[nodeid] = "not run: the whole grade's time limit ran out"
        return
    timeouts = {n: t.timeout or limits.test_seconds for n, t in tests.items()}
    tests_dir = grading.tests_dirs[(kata.id, visibility)]
    uid = sandbox.child_uid() if grading.iso.drop_to_uid else None
    recordings = sandbox.recordings_dir(grading.tree.work, f"{kata.week}-{kata.name}-{visibility}", uid)
    finished: set[str] = set()
    failed: dict[str, str] = {}
    kills = 0
    while True:
        spent = budget.used_timeouts >= limits.timeouts_per_kata
        spec = sandbox.ChildSpec(grading.tree, tests_dir, relative, recordings, uid, grading.hidden,
                                 sorted(finished | set(failed)), sorted({f for f in budget.hung if f}),
                                 limits.test_seconds, limits.short_test_seconds if spent else None,
                                 max(0, limits.timeouts_per_kata - budget.used_timeouts), limits.short_test_seconds,
                                 no_processes=bool(kata.forbidden) and not kata.forks)
        run = sandbox.run_child(spec, limits, timeouts, grading.unsafe)
        finished.update(run.finished)
        budget.hung += run.hung_functions
        budget.used_timeouts += len(run.hung_functions)
        new_failures = {n: w for n, w in run.failed.items() if n not in failed}
        failed.update(new_failures)
        remaining = [n for n in timeouts if n not in finished and n not in failed]
        if not remaining:
            break
        if not new_failures:
            for nodeid in remaining:  # the child ended without saying why (e.g. collection failed)
                failed[nodeid] = _child_gave_up(run)
            break
        kills += any(not why.startswith("TIMEOUT") for why in new_failures.values())
        if kills >= limits.kills_per_kata:
            for nodeid in remaining:
                failed[nodeid] = ("not run: the sandbox died three times in this kata "
                                  "(a crash, os._exit, or a resource limit)")
            break
    for nodeid in sorted(n for n in finished if tests[n].throughput):
        recorded.timings[nodeid] = timing.time_test(spec, nodeid, limits, timeouts[nodeid] + limits.grace_seconds,
                                                    grading.unsafe)
    rejected = sandbox.ingest(recordings, sorted(finished), recorded.replay_dir, limits)
    recorded.failed.update(failed)
    recorded.failed.update(rejected)


def _child_gave_up(run: sandbox.ChildRun) -> str:
    tail = run.output.strip().splitlines()[-1:] or [""]
    return f"not run: the sandboxed test run ended early (exit status {run.returncode}) {tail[0][:200]}".rstrip()


def _replay_kata(grading: Grading, kata: catalog.Kata) -> tuple[list[dict], list[str]]:
    """Run the kata's trusted tests here, answering student calls from the recordings."""
    course = grading.course
    files = catalog.test_files([kata], grading.hidden, course / "katas")
    if not files:
        return [], []
    results, exit_code = _replay_session(grading.submission, course, grading.recorded, files, grading.hidden)
    if exit_code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not results:
        return results, [f"{kata.id}: the grader could not replay its tests (pytest exit status {int(exit_code)}); "
                         "this is a fault in the course, not the submission: run `pytest "
                         + " ".join(str(Path(f).relative_to(course)) for f in files) + " --impl reference`"]
    return results, []


def _timings_file(recorded: Recorded) -> Path:
    path = recorded.replay_dir.parent / "timings.json"
    timings = dict(recorded.timings)  # one copy: other katas' threads add theirs meanwhile
    timing.write_timings({k: v for k, v in timings.items() if v is not None}, path)
    return path


def _forget_test_modules(course: Path) -> None:
    """Make the replay import the course's test modules afresh, as the sandboxed child did.

    pytest's importlib mode reuses a test module already in sys.modules (one collected
    earlier in this process, e.g. by `kata nbgrader build` or an outer pytest session), and
    hypothesis binds a `@given` test to the settings profile current at import: a module
    imported under another profile would draw other examples than the child recorded."""
    katas = course / "katas"
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).is_relative_to(katas):
            del sys.modules[name]


def _replay_session(submission: Path, course: Path, recorded: Recorded, files: list[str],
                    hidden: bool) -> tuple[list[dict], pytest.ExitCode]:
    with _in_process_lock:
        _forget_test_modules(course)
        results = runner.run(files, impl=str(submission), hidden=hidden, profile="grading", root=course,
                             extra=("--kata-replay", str(recorded.replay_dir),
                                    "--kata-timings", str(_timings_file(recorded))))
    return results.tests, results.exit_code


def grade(submission: str | Path, course: str | Path | None = None, hidden: bool = False, only: str | None = None,
          limits: sandbox.Limits | None = None, hidden_feedback: bool = False, unsafe_no_sandbox: bool = False,
          timeout: float | None = None, workers: int | None = None, collections: Collections | None = None) -> Report:
    """Grade one submission. Raises FileNotFoundError for a missing directory, LookupError for
    an unknown `only`, and sandbox.SandboxUnavailable when the sandbox cannot be built."""
    submission = Path(submission).resolve()
    course = Path(course).resolve() if course else impl.PROJECT_ROOT
    if not submission.is_dir():
        raise FileNotFoundError(f"{submission} is not a directory")
    katas = _select(course, only)
    if not katas:
        raise LookupError(f"no kata or week called {only!r}")
    report = Report(str(submission))
    deadline = time.monotonic() + timeout if timeout else None
    work = sandbox.workdir()
    try:
        recorded, results, replay_notes = record_and_replay(
            submission, course, katas, hidden, limits or sandbox.Limits(), work, unsafe=unsafe_no_sandbox,
            deadline=deadline, workers=workers, collections=collections)
        report.protections = recorded.protections
        report.notes += [f"{kata}: {why}" for kata, why in recorded.refused.items()]
        if unsafe_no_sandbox:
            report.notes.append("graded WITHOUT a sandbox (--unsafe-no-sandbox): not for grading others' code")
        report.notes += replay_notes
    finally:
        shutil.rmtree(work, ignore_errors=True)
    crashed = recorded.failed
    for r in results:
        key = r["nodeid"].split("katas/", 1)[-1]
        crash = next((why for nodeid, why in crashed.items() if nodeid.endswith(key)), None)
        output = r["message"].strip()
        if crash and r["outcome"] != "passed":
            output = f"{crash}\n{output}"
        visible = not r["hidden"] or hidden_feedback
        report.tests.append({
            "name": r["nodeid"].split("katas/", 1)[-1],
            "kata": r["kata"],
            "score": (r["points"] or 0) if r["outcome"] == "passed" else 0,
            "max_score": 0 if r["outcome"] == "skipped" else (r["points"] or 0),
            "status": r["outcome"],
            "output": output if visible else ("passed" if r["outcome"] == "passed" else "failed (hidden test)"),
            "visibility": "visible" if not r["hidden"] else "after_published",
            "hidden": r["hidden"],
        })
    for kata_id, t in kata_totals(results).items():
        report.katas[kata_id] = {"score": t["earned"], "max_score": t["possible"], "passed": t["passed"],
                                 "failed": t["failed"]}
    return report
