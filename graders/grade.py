"""`kata grade`: score a submission without ever running its code in the grader's process.

1. Build a sandbox (graders.sandbox) and run the trusted tests there against the
   submission, recording every crossing into student code. If the child dies (a crash,
   `os._exit`, the memory limit), run it again for the tests it had not reached; a kata
   that kills the child twice has its remaining tests marked as crashed.
2. Replay: run the same trusted tests here, in record/replay mode, answering student calls
   from the recording; the real assertions, the reference and hidden expected values run
   only here. This run's results are the score.
3. Report: per test (name, score, max_score, status, output, visibility — close to
   Gradescope's results.json), per kata and per week, as text, JSON, Markdown or JUnit XML.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest

from . import catalog, impl, sandbox
from .plugin import kata_totals


_replay_lock = threading.Lock()


@dataclass
class Report:
    submission: str
    tests: list[dict] = field(default_factory=list)
    katas: dict[str, dict] = field(default_factory=dict)
    protections: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(t["score"] for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t["max_score"] for t in self.tests)

    def weeks(self) -> dict[str, dict]:
        weeks: dict[str, dict] = {}
        for kata_id, t in self.katas.items():
            w = weeks.setdefault(kata_id.split("/")[0], {"score": 0.0, "max_score": 0.0})
            w["score"] += t["score"]
            w["max_score"] += t["max_score"]
        return weeks

    def as_json(self) -> dict:
        return {"score": self.score, "max_score": self.max_score, "submission": self.submission,
                "tests": self.tests, "katas": self.katas, "weeks": self.weeks(),
                "sandbox": {"protections": self.protections,
                            "note": "throughput tests time student code inside the sandbox"},
                "notes": self.notes}


def _select(course: Path, only: str | None) -> list[catalog.Kata]:
    katas = catalog.all_katas(course / "katas")
    if only:
        katas = [k for k in katas if k.id == only or k.week == only]
    return katas


def record(submission: Path, course: Path, katas: list[catalog.Kata], hidden: bool, limits: sandbox.Limits,
           work: Path) -> tuple[sandbox.Sandbox, dict[str, str]]:
    """Run the sandboxed child, one kata at a time (a kata that hangs, crashes or exhausts
    memory cannot cost another kata anything), restarting it past tests that kill it;
    returns the sandbox and {nodeid: why it has no recording}."""
    # Every kata module goes into the sandbox (kv_cache needs gpt2), even when grading one.
    box = sandbox.build(submission, course, work, catalog.all_katas(course / "katas"), katas)
    crashed: dict[str, str] = {}
    for kata in katas:
        files = catalog.test_files([kata], hidden, box.root / "katas")
        if not files:
            continue
        kills = 0
        while kills < 3:
            deselect = sorted(sandbox.recorded_nodeids(box) | set(crashed))
            run = sandbox.run_child(box, course, files, hidden, limits, deselect)
            if run.started is None and not run.timed_out:
                break  # the child got through every remaining test of this kata
            why = ("the sandbox's time limit for this kata ran out" if run.timed_out else
                   f"the sandboxed run died (exit status {run.returncode}): a crash, os._exit, or a resource limit")
            if run.started:
                crashed[run.started] = why
            kills += 1
            if run.timed_out or run.started is None:
                break
        else:
            why = "the sandboxed run died three times in this kata; its remaining tests were not run"
        if kills:
            done = sandbox.recorded_nodeids(box)
            for nodeid in _collect(files, box.root):
                if nodeid not in done:
                    crashed.setdefault(nodeid, why)
    return box, crashed


def _collect(files: list[str], root: Path) -> list[str]:
    class Collect:
        ids: list[str] = []

        def pytest_collection_finish(self, session):
            self.ids = [item.nodeid for item in session.items]

    collector = Collect()
    pytest.main([*files, "--collect-only", "-p", "no:terminal", "-p", "no:cacheprovider", "--hidden",
                 "--rootdir", str(root), "-c", str(root / "pytest.ini"), "--import-mode=importlib"],
                plugins=[collector])
    return collector.ids


def replay(submission: Path, course: Path, box: sandbox.Sandbox, katas: list[catalog.Kata],
           hidden: bool) -> tuple[list[dict], list[str]]:
    """Run the trusted tests here, one pytest session per kata, answering student calls from
    the recordings; returns the results and notes on katas whose replay could not run."""
    results: list[dict] = []
    notes: list[str] = []
    for kata in katas:
        files = catalog.test_files([kata], hidden, course / "katas")
        if not files:
            continue
        kata_results, exit_code = _replay_session(submission, course, box, files, hidden)
        if exit_code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not kata_results:
            notes.append(f"{kata.id}: the grader could not replay its tests (pytest exit status {int(exit_code)}); "
                         "this is a fault in the course, not the submission: run `pytest "
                         + " ".join(str(Path(f).relative_to(course)) for f in files) + " --impl reference`")
        results += kata_results
    return results, notes


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


def _replay_session(submission: Path, course: Path, box: sandbox.Sandbox, files: list[str],
                    hidden: bool) -> tuple[list[dict], pytest.ExitCode]:
    class Results:
        results: list[dict] = []

        def pytest_sessionfinish(self, session):
            self.results = session.config._kata_results

    collector = Results()
    args = [*files, "--impl", str(submission), "--kata-replay", str(box.recordings),
            "-p", "no:terminal", "-p", "no:cacheprovider", "--rootdir", str(course),
            "-c", str(course / "pyproject.toml"), "-o", "addopts=--import-mode=importlib",
            "--hypothesis-profile", "grading", "-p", "no:randomly", *(["--hidden"] if hidden else [])]
    with _replay_lock:  # pytest sessions in one process take turns (batch grading runs children in parallel)
        previous = impl.current()
        _forget_test_modules(course)
        try:
            exit_code = pytest.main(args, plugins=[collector])
        finally:
            impl.set_current(previous)
    return collector.results, pytest.ExitCode(exit_code)


def grade(submission: str | Path, course: str | Path | None = None, hidden: bool = False, only: str | None = None,
          limits: sandbox.Limits | None = None, hidden_feedback: bool = False) -> Report:
    submission = Path(submission).resolve()
    course = Path(course).resolve() if course else impl.PROJECT_ROOT
    katas = _select(course, only)
    report = Report(str(submission))
    if not submission.is_dir():
        raise FileNotFoundError(f"{submission} is not a directory")
    work = sandbox.workdir()
    try:
        box, crashed = record(submission, course, katas, hidden, limits or sandbox.Limits(), work)
        report.protections = box.protections
        report.notes += [f"{kata}: {why}" for kata, why in box.refused.items()]
        results, replay_notes = replay(submission, course, box, katas, hidden)
        report.notes += replay_notes
    finally:
        shutil.rmtree(work, ignore_errors=True)
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


# --- formats ------------------------------------------------------------------------------


def to_markdown(report: Report) -> str:
    lines = [f"## Grade: {report.score:g} / {report.max_score:g}", "", "| kata | points | tests passed |",
             "| --- | ---: | ---: |"]
    for kata_id, t in report.katas.items():
        lines.append(f"| {kata_id} | {t['score']:g} / {t['max_score']:g} | {t['passed']}/{t['passed'] + t['failed']} |")
    failures = [t for t in report.tests if t["status"] not in ("passed", "skipped")]
    if failures:
        lines += ["", "<details><summary>Failures</summary>", ""]
        for t in failures[:50]:
            lines += [f"**{t['name']}**", "", "```", t["output"][:1500], "```", ""]
        lines.append("</details>")
    lines += ["", f"Sandbox: {', '.join(report.protections)}."]
    return "\n".join(lines) + "\n"


def to_junit(report: Report) -> str:
    cases = []
    for t in report.tests:
        body = ""
        if t["status"] in ("failed", "error"):
            body = f"<failure message={quoteattr(t['output'][:200])}>{escape(t['output'])}</failure>"
        elif t["status"] == "skipped":
            body = "<skipped/>"
        cases.append(f'  <testcase classname={quoteattr(t["kata"] or "")} name={quoteattr(t["name"])}>{body}</testcase>')
    failures = sum(t["status"] in ("failed", "error") for t in report.tests)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="kata grade" tests="{len(report.tests)}" '
            f'failures="{failures}">\n' + "\n".join(cases) + "\n</testsuite>\n")


def to_text(report: Report) -> str:
    lines = [f"{kata_id:<28} {t['score']:>6g} / {t['max_score']:<6g}" for kata_id, t in report.katas.items()]
    lines.append(f"{'total':<28} {report.score:>6g} / {report.max_score:<6g}")
    lines.append(f"sandbox: {', '.join(report.protections)}")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.as_json(), indent=1) + "\n"
    if fmt == "markdown":
        return to_markdown(report)
    if fmt == "junit":
        return to_junit(report)
    return to_text(report)


# --- CLI ----------------------------------------------------------------------------------


def add_commands(sub) -> None:
    p = sub.add_parser("grade", help="grade a submission in a sandbox (record there, judge here)")
    p.add_argument("submission", nargs="?", help="a directory laid out like katas/")
    p.add_argument("--tests", default=None, help="trusted course root with katas/ and reference/ (default: this one)")
    p.add_argument("--hidden", action="store_true", help="include hidden tests")
    p.add_argument("--only", default=None, help="weekN or weekN/kata")
    p.add_argument("--hidden-feedback", action="store_true",
                   help="show hidden tests' failure messages (default: name and pass/fail only)")
    p.add_argument("--format", choices=list(FORMATS), default="text", help="the report's format on stdout")
    p.add_argument("--out", action="append", default=[], metavar="FILE",
                   help="write the report here instead of stdout, in the format its extension names "
                        "(.json, .md, .xml for JUnit, .txt); repeatable")
    p.add_argument("--batch", default=None, help="a directory of submissions (one sub-directory each)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at once with --batch")
    p.add_argument("--csv", default=None, help="with --batch: write the gradebook here")
    p.set_defaults(func=cmd_grade)


def cmd_grade(args, console) -> int:
    if args.batch:
        return _batch(args, console)
    if not args.submission:
        raise SystemExit("kata grade: name a submission directory (or --batch DIR)")
    report = grade(args.submission, args.tests, hidden=args.hidden, only=args.only,
                   hidden_feedback=args.hidden_feedback)
    for out in args.out:
        Path(out).write_text(render(report, _format_for(out, args.format)))
    if not args.out:
        console.print(render(report, args.format), end="", markup=False, highlight=False)
    return 0


FORMATS = {"text": ".txt", "json": ".json", "markdown": ".md", "junit": ".xml"}


def _format_for(path: str, default: str) -> str:
    suffix = Path(path).suffix.lower()
    return next((fmt for fmt, ext in FORMATS.items() if ext == suffix), default)


def _batch(args, console) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from rich.progress import Progress

    subs = sorted(p for p in Path(args.batch).iterdir() if p.is_dir())
    rows: dict[str, Report | str] = {}
    with Progress(console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("grading", total=len(subs))

        def one(path: Path):
            try:
                rows[path.name] = grade(path, args.tests, hidden=args.hidden, only=args.only,
                                        hidden_feedback=args.hidden_feedback)
            except Exception as exc:  # one broken submission never stops the batch
                rows[path.name] = f"error: {exc}"
            progress.advance(task)

        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            list(pool.map(one, subs))
    if args.csv:
        katas = sorted({k for r in rows.values() if isinstance(r, Report) for k in r.katas})
        lines = [",".join(["student", *katas, "total", "max", "error"])]
        for name, r in sorted(rows.items()):
            if isinstance(r, Report):
                lines.append(",".join([name, *(f"{r.katas.get(k, {}).get('score', 0):g}" for k in katas),
                                       f"{r.score:g}", f"{r.max_score:g}", ""]))
            else:
                lines.append(",".join([name, *([""] * len(katas)), "0", "", r.replace(",", ";")]))
        Path(args.csv).write_text("\n".join(lines) + "\n")
    for name, r in sorted(rows.items()):
        console.print(f"{name}: " + (f"{r.score:g} / {r.max_score:g}" if isinstance(r, Report) else r))
    return 0
