"""`kata grade`: score a submission without ever running its code in the grader's process.

0. Collect: the grader collects the selected katas' tests itself, once (once per class with
   `--batch`): node ids, timeouts, which tests measure throughput. Nothing a child reports
   about tests is believed unless it names one of these.
1. Record: for each kata, run its public tests, then its hidden tests, in runs forked by
   the submission's sandboxes (`Sandboxes`: per visibility, one for each kata with
   forbidden APIs and one for the others), recording every crossing into student code. A test that hangs or kills the run costs that test: a new
   run starts past it, and a function that hung is not called again in that kata.
   Throughput tests are then timed by the grader itself (graders.timing). The recordings
   are checked and copied into the grader's own directory (sandbox.ingest).
2. Replay: run the same trusted tests in a trusted process (graders.replay), answering
   student calls from the recording; the real assertions, oracles, the reference and
   hidden expected values run only there. Its results are the score. Katas are recorded
   side by side and each is replayed as soon as its recording is in, while the next ones
   record.
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

from . import catalog, impl, replay, runner, sandbox, timing
from .reports import Report
from .plugin import kata_totals


# The collection (a pytest session in this process) and parsing (the sandbox's copies of the
# tests) hold `runner.exclusive`; the katas' threads only wait on other processes.
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
    sandboxes: Sandboxes
    replays: replay.ReplayServer
    work: Path
    deadline: float | None = None


def record_and_replay(submission: Path, course: Path, katas: list[catalog.Kata], hidden: bool,
                      limits: sandbox.Limits, work: Path, unsafe: bool = False, deadline: float | None = None,
                      workers: int | None = None, collections: Collections | None = None,
                      replays: replay.ReplayServer | None = None) -> tuple[Recorded, list[dict], list[str]]:
    """Record each kata in the sandbox, then replay it (graders.replay: `replays`, or a server
    of its own); katas run side by side (`workers`, default: the machine's cores), so one
    kata's replay overlaps the next one's recording. Returns the recordings' summary, the
    results in kata order, and notes."""
    from concurrent.futures import ThreadPoolExecutor

    iso = sandbox.isolation(unsafe)
    if not iso.sandboxed and iso.drop_to_uid:
        work.chmod(0o711)  # no bubblewrap to bind it in: the child's uid must reach its files itself
    tree = sandbox.build(submission, course, work, catalog.all_katas(course / "katas"))
    recorded = Recorded(work / "replay", refused=dict(tree.refused), protections=list(iso.protections))
    recorded.replay_dir.mkdir(mode=0o700)
    files = [f for kata in katas for _, group in _groups(kata, course, hidden) for f in group]
    sandboxes = Sandboxes(tree, course, katas, limits, unsafe, work)
    workers = max(1, workers or min(len(katas), os.cpu_count() or 1))
    own_replays = replays is None
    try:
        for kata in katas[:workers]:  # their imports overlap the collection below
            sandboxes.get(kata, "public")
        if own_replays:
            replays = replay.ReplayServer(sandbox.test_imports([Path(f) for f in files]))
        grading = Grading(submission, course, hidden, limits, iso, unsafe, tree,
                          (collections or Collections()).get(files, course), recorded, sandboxes, replays, work,
                          deadline)
    except BaseException:
        sandboxes.close()
        if own_replays and replays is not None:
            replays.close()
        raise

    def one_kata(kata: catalog.Kata) -> tuple[list[dict], list[str]]:
        budget = KataBudget()  # shared by the kata's public and hidden runs, one after the other
        for visibility, group in _groups(kata, course, hidden):
            try:
                _record_group(grading, kata, group, visibility, budget)
            finally:
                sandboxes.release(kata, visibility)
        return _replay_kata(grading, kata)

    try:
        with ThreadPoolExecutor(workers) as pool:
            outcomes = list(pool.map(one_kata, katas))
    finally:
        sandboxes.close()
        if own_replays:
            replays.close()
    return recorded, [r for results, _ in outcomes for r in results], [n for _, notes in outcomes for n in notes]


def _tag(kata: catalog.Kata) -> str:
    return f"{kata.week}-{kata.name}"


class Sandboxes:
    """The submission's sandboxes (graders.sandbox.Zygote), started when first needed.

    The public and hidden tests never share a sandbox. Nor does a kata with forbidden APIs
    share one with any other kata: the runs of one sandbox can talk to each other (its /tmp,
    its loopback network), and a run that may call anything could compute, for a run that
    may not, what it is forbidden to compute. So such a kata has a sandbox of its own per
    visibility, stopped once its tests are recorded, and the other katas share one."""

    def __init__(self, tree: sandbox.Tree, course: Path, katas: list[catalog.Kata], limits: sandbox.Limits,
                 unsafe: bool, work: Path):
        self.tree, self.course, self.katas, self.limits, self.unsafe, self.work = tree, course, katas, limits, unsafe, work
        self.iso = sandbox.isolation(unsafe)
        self._lock = threading.Lock()
        self._started: dict[tuple[str, str], sandbox.Zygote] = {}

    @staticmethod
    def _group(kata: catalog.Kata) -> str:
        return _tag(kata) if kata.forbidden else "shared"

    def get(self, kata: catalog.Kata, visibility: str) -> sandbox.Zygote:
        group = self._group(kata)
        with self._lock:
            if (visibility, group) not in self._started:
                katas = [k for k in self.katas if self._group(k) == group]
                tag = f"{visibility}-{group}"
                with _in_process_lock:  # parsing the tests' sandbox copies
                    tests = _tests_dir(self.tree, self.course, katas, visibility, tag)
                    preload = sandbox.test_imports(sorted(tests.glob("katas/*/test_*.py")))
                uid = sandbox.child_uid() if self.iso.drop_to_uid else None
                recordings = sandbox.recordings_root(self.work, tag, uid, [_tag(k) for k in katas])
                self._started[(visibility, group)] = sandbox.Zygote(self.tree, tests, recordings, uid, self.limits,
                                                                    self.unsafe, preload)
            return self._started[(visibility, group)]

    def release(self, kata: catalog.Kata, visibility: str) -> None:
        """The kata's tests of this visibility are recorded: stop its sandbox if it is its own."""
        if kata.forbidden:
            with self._lock:
                zygote = self._started.pop((visibility, self._group(kata)), None)
            if zygote is not None:
                zygote.close()

    def close(self) -> None:
        with self._lock:
            started, self._started = list(self._started.values()), {}
        for zygote in started:
            zygote.close()


def _tests_dir(tree: sandbox.Tree, course: Path, katas: list[catalog.Kata], visibility: str, tag: str) -> Path:
    """The test files one sandbox holds, expected values stripped: the katas' public tests,
    and for a hidden sandbox their hidden tests as well (hidden tests import helpers from the
    public module, public anyway). A public sandbox never holds a hidden file."""
    files = []
    for kata in katas:
        held = {Path(f) for f in catalog.test_files([kata], False, course / "katas")}
        if visibility == "hidden":
            held |= {Path(f) for f in catalog.test_files([kata], True, course / "katas")}
        files.append((kata, sorted(held)))
    return sandbox.tests_dir(tree, course, files, tag)


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
    zygote = grading.sandboxes.get(kata, visibility)
    recordings = zygote.recordings / _tag(kata)
    finished: set[str] = set()
    failed: dict[str, str] = {}
    kills = 0
    while True:
        spent = budget.used_timeouts >= limits.timeouts_per_kata
        spec = sandbox.ChildSpec(grading.tree, zygote.tests, relative, recordings, zygote.uid, grading.hidden,
                                 sorted(finished | set(failed)), sorted({f for f in budget.hung if f}),
                                 limits.test_seconds, limits.short_test_seconds if spent else None,
                                 max(0, limits.timeouts_per_kata - budget.used_timeouts), limits.short_test_seconds,
                                 no_processes=bool(kata.forbidden))
        run = sandbox.run_child(spec, zygote, limits, timeouts)
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
        recorded.timings[nodeid] = timing.time_test(spec, zygote, nodeid, timeouts[nodeid] + limits.grace_seconds)
    rejected = sandbox.ingest(recordings, sorted(finished), recorded.replay_dir, limits)
    recorded.failed.update(failed)
    recorded.failed.update(rejected)


def _child_gave_up(run: sandbox.ChildRun) -> str:
    tail = run.output.strip().splitlines()[-1:] or [""]
    return f"not run: the sandboxed test run ended early (exit status {run.returncode}) {tail[0][:200]}".rstrip()


def _replay_kata(grading: Grading, kata: catalog.Kata) -> tuple[list[dict], list[str]]:
    """Run the kata's trusted tests (graders.replay), answering student calls from the recordings."""
    course = grading.course
    files = catalog.test_files([kata], grading.hidden, course / "katas")
    if not files:
        return [], []
    timings = grading.work / f"timings-{_tag(kata)}.json"
    timing.write_timings({n: t for n, t in dict(grading.recorded.timings).items() if t is not None}, timings)
    results = replay.replay(grading.replays, files, grading.submission, course, grading.hidden,
                            grading.recorded.replay_dir, timings, grading.work)
    if not results.ran or not results.tests:
        tail = results.output.strip().splitlines()[-1:] or [""]
        return results.tests, [f"{kata.id}: the grader could not replay its tests (pytest exit status "
                               f"{int(results.exit_code)}: {tail[0][:300]}); this is a fault in the course, not the "
                               "submission: run `pytest " + " ".join(str(Path(f).relative_to(course)) for f in files)
                               + " --impl reference`"]
    return results.tests, []


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


def grade(submission: str | Path, course: str | Path | None = None, hidden: bool = False, only: str | None = None,
          limits: sandbox.Limits | None = None, hidden_feedback: bool = False, unsafe_no_sandbox: bool = False,
          timeout: float | None = None, workers: int | None = None, collections: Collections | None = None,
          replays: replay.ReplayServer | None = None) -> Report:
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
            deadline=deadline, workers=workers, collections=collections, replays=replays)
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
