"""The `kata` command: list, check, hint, fixtures (and grading, in graders.grade).

Everything here runs pytest — there is no second test runner — and shows the results
with rich: a progress bar while tests run, then a table of points per kata, the first
failure of the kata you are working on with its hint, and a total.

Two rules for everything printed here. Strings that students or tests control (failure
messages, test names, a kata's title and hints) are `Text`, never markup: a message such as
`expected [/B] got [red]` would otherwise crash rich, and `[b' tt']` or a regex `[sdmt]`
would silently vanish. And the tables fit 80 columns without cutting the kata id a student
has to type next: titles shorten with an ellipsis instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from . import catalog, checking, fixtures, impl, runner, sandbox
from .checking import (first_failure, first_to_fix, load_results, run_tests, save_results, select,
                       skipped_tests, source_digest)
from .grade import grade
from .reports import FORMATS, Report, plain, render
from .plugin import kata_totals, status_of

STATUS_STYLE = {"passing": "green", "failing": "red", "syntax error": "red", "import error": "red",
                "not started": "dim", "no tests": "dim", "changed": "yellow", "unknown": "dim"}


# --- commands -----------------------------------------------------------------------------


def kata_table(title: str, *columns: str) -> Table:
    """A table of katas: the id first, never cut or wrapped (it is what the student types
    next), then the title, which gives way first when the terminal is narrow (its cells are
    `one_line`), then `columns` (points, counts, a status), never wrapped either."""
    table = Table(title=Text(title), title_justify="left")
    table.add_column("kata", no_wrap=True)
    table.add_column("title")
    for column in columns:
        table.add_column(column, no_wrap=True, justify="right" if column in ("points", "tests") else "left")
    return table


def one_line(text: str) -> Text:
    """A title as one line of plain text, cut with an ellipsis where its column ends."""
    return Text(text, no_wrap=True, overflow="ellipsis")


def status_cell(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, "white"))


def points_table(katas: list[catalog.Kata], totals: dict, title: str) -> tuple[Table, float, float]:
    table = kata_table(title, "points", "tests", "status")
    earned = possible = 0.0
    for kata in katas:
        t = totals.get(kata.id)
        if t is None:
            table.add_row(kata.id, one_line(kata.title), "-", "-", Text("no tests ran", style="dim"))
            continue
        earned += t["earned"]
        possible += t["possible"]
        table.add_row(kata.id, one_line(kata.title), f"{t['earned']:g} / {t['possible']:g}",
                      f"{t['passed']}/{t['passed'] + t['failed']}", status_cell(t.get("status") or status_of(t)))
    return table, earned, possible


def cmd_check(args, console: Console) -> int:
    katas = select(args.target)
    implementation = impl.resolve(args.impl)
    hidden = bool(args.hidden)
    try:
        run = run_tests(catalog.test_files(katas, hidden), str(implementation.root), hidden, console)
    except KeyboardInterrupt:  # outside pytest's own handling (its set-up or the progress display)
        run = None
    if run is None or run.exit_code == pytest.ExitCode.INTERRUPTED:
        # A partial run would look like a result: `kata list` keeps the last complete one.
        console.print(Text("interrupted: nothing recorded (kata list shows your last complete check)",
                           style="yellow"))
        return 130
    results = run.tests
    save_results(implementation, katas, results)
    totals = kata_totals(results)
    table, earned, possible = points_table(katas, totals, f"kata check — {implementation.label}")
    console.print(table)
    for line in skipped_tests(results):
        console.print(line)
    current = next((k for k in katas if k.id in totals and status_of(totals[k.id]) != "passing"), None)
    if current is not None:
        failure = first_to_fix(results, current.id)
        console.print(first_failure(current.id, failure))
        console.print(f"More help: [bold]kata hint {current.id}[/]")
    complete = possible > 0 and earned == possible
    console.print(f"[bold]Total: {earned:g} / {possible:g} points[/]" + (" — all passing" if complete else ""))
    return 0 if complete else 1


def last_check(kata: catalog.Kata, saved: dict | None, implementation: impl.Implementation
               ) -> tuple[str, float | None]:
    """A kata's status and points earned at its last `kata check`: `not run` (never checked
    with this implementation), `changed` (its file was edited since), or the status it had."""
    if saved is None:
        return "not run", None
    if saved.get("source") != source_digest(implementation, kata):
        return "changed", saved["earned"]
    return status_of(saved), saved["earned"]


def _points_cell(status: str, earned: float | None, available: float) -> str:
    if earned is None:
        return f"- / {available:g}"
    return f"{earned:g}{'?' if status == 'changed' else ''} / {available:g}"


def cmd_list(args, console: Console) -> int:
    implementation = impl.resolve(args.impl)
    katas = select(args.target)
    state = load_results(implementation)
    possible = _points_available(katas)
    table = kata_table(f"katas — {implementation.label}", "points", "status")
    earned_in_all = 0.0
    for kata in katas:
        status, earned = last_check(kata, state.get(kata.id), implementation)
        available = possible.get(kata.id, 0.0)
        earned_in_all += earned or 0.0
        table.add_row(kata.id, one_line(kata.title), _points_cell(status, earned, available), status_cell(status))
    available_in_all = sum(possible.get(kata.id, 0.0) for kata in katas)
    # Rounded down: 99.6% is not done.
    percent = int(100 * earned_in_all / available_in_all) if available_in_all else 0
    table.add_section()
    table.add_row(Text("total", style="bold"), one_line(catalog.counted(len(katas), "kata")),
                  Text(f"{earned_in_all:g} / {available_in_all:g}", style="bold"), Text(f"{percent}%", style="bold"))
    console.print(table)
    console.print(Text("status: from your last `kata check`; changed: the file was edited since", style="dim"))
    return 0


def _points_available(katas: list[catalog.Kata]) -> dict[str, float]:
    points: dict[str, float] = {}
    for item in runner.run(catalog.test_files(katas, False), collect_only=True).collected:
        points[item.kata] = points.get(item.kata, 0.0) + (item.points or 0.0)
    return points


def cmd_hint(args, console: Console) -> int:
    kata = select(args.kata)
    if len(kata) != 1:
        raise SystemExit("kata hint: name one kata, e.g. `kata hint week2/attention`")
    kata = kata[0]
    if not kata.hints:
        console.print(f"{kata.id} has no hints yet.", markup=False)
        return 0
    state_path = checking.STATE_DIR / "hints.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    shown = len(kata.hints) if args.all else min(state.get(kata.id, 0) + 1, len(kata.hints))
    if args.reset:
        shown = 0
    state[kata.id] = shown
    checking.STATE_DIR.mkdir(exist_ok=True)
    state_path.write_text(json.dumps(state, indent=1))
    for i, text in enumerate(kata.hints[:shown], 1):
        console.print(Panel(Text(text), title=f"{kata.id} — hint {i} of {len(kata.hints)}", expand=False))
    if shown < len(kata.hints):
        console.print(f"[dim]Run `kata hint {kata.id}` again for the next hint ({len(kata.hints) - shown} left).[/]")
    return 0


def cmd_fixtures(args, console: Console) -> int:
    if args.regenerate:
        written = fixtures.regenerate(args.katas or None)
        for kata_id, digest in written.items():
            console.print(f"wrote fixtures/{kata_id}.safetensors  sha256 {digest[:16]}…", markup=False)
        if args.katas and not written:
            raise SystemExit(f"kata fixtures: no recipe for {args.katas}")
        return 0
    problems = fixtures.check()
    for problem in problems:
        console.print(Text.assemble(("✗", "red"), " ", problem))
    if not problems:
        console.print(f"[green]✓[/] {len(fixtures.read_manifest())} fixture files match fixtures/manifest.json")
    return 1 if problems else 0


def cmd_release(args, console: Console) -> int:
    from .release import release

    try:
        files = release(args.out_dir)
    except FileExistsError as exc:
        raise SystemExit(f"kata release: {exc}")
    console.print(f"wrote the student copy to {args.out_dir} ({len(files)} files; no reference/, no hidden tests)",
                  markup=False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kata", description="llm-katas: check your katas, get hints, grade.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_impl(p):
        p.add_argument("--impl", default=None, help="katas (default), reference, or a submission directory")
        return p

    p = with_impl(sub.add_parser("check", help="run the tests and show points per kata"))
    p.add_argument("target", nargs="?", help="weekN or weekN/kata (default: everything)")
    p.add_argument("--hidden", action="store_true", help="include hidden tests (instructors)")
    p.set_defaults(func=cmd_check)

    p = with_impl(sub.add_parser("list", help="weeks and katas, points available, last known status"))
    p.add_argument("target", nargs="?", help="weekN or weekN/kata")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("hint", help="show the next hint for a kata")
    p.add_argument("kata", help="weekN/kata")
    p.add_argument("--all", action="store_true", help="show every hint")
    p.add_argument("--reset", action="store_true", help="forget which hints were shown")
    p.set_defaults(func=cmd_hint)

    p = sub.add_parser("fixtures", help="regenerate or verify the golden fixtures")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--regenerate", action="store_true", help="rebuild from the reference")
    group.add_argument("--check", action="store_true", help="verify files against the manifest")
    p.add_argument("katas", nargs="*", help="weekN/kata ids (default: all)")
    p.set_defaults(func=cmd_fixtures)

    add_grade_command(sub)

    from . import gradescope, nbgrader, serve, watch  # commands that live in their own modules

    nbgrader.add_commands(sub)
    gradescope.add_parser(sub)
    watch.add_parser(sub)
    serve.add_parser(sub)

    p = sub.add_parser("release", help="write the student copy (no reference, no hidden tests)")
    p.add_argument("out_dir")
    p.set_defaults(func=cmd_release)
    return parser


# --- kata grade -----------------------------------------------------------------------------


def add_grade_command(sub) -> None:
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
                        "(.json, .md, .xml for JUnit, .txt); repeatable; with --batch, FILE names each "
                        "student's report with {student} (e.g. reports/{student}.md)")
    p.add_argument("--batch", default=None, help="a directory of submissions (one sub-directory each)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded at once with --batch")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="grade on a Ray cluster (address as ray.init takes it, e.g. auto or ray://head:10001); "
                        "needs the [cluster] extra")
    p.add_argument("--csv", default=None, help="with --batch: write the gradebook here")
    p.add_argument("--timeout", type=float, default=3 * 3600, metavar="SECONDS",
                   help="the whole grade's time limit, per submission (default 3 hours); katas not reached "
                        "by then score 0, and the report says why")
    p.add_argument("--test-timeout", type=float, default=sandbox.Limits.test_seconds, metavar="SECONDS",
                   help="one test's time limit in the sandbox, unless the test sets a longer one (default 60)")
    p.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="grade without bubblewrap (your own code, on your own machine): the report says so")
    p.set_defaults(func=cmd_grade)


def cmd_grade(args, console) -> int:
    try:
        sandbox.isolation(args.unsafe_no_sandbox)  # a missing bwrap is one clear line, before any work
        if args.batch:
            if not Path(args.batch).is_dir():
                raise FileNotFoundError(f"{args.batch} is not a directory")
            unnamed = [out for out in args.out if "{student}" not in out]
            if unnamed:
                raise LookupError(f"with --batch, --out names each student's report with {{student}}: {unnamed[0]}")
            return _batch(args, console)
        if not args.submission:
            raise LookupError("name a submission directory (or --batch DIR)")
        report = grade(args.submission, args.tests, hidden=args.hidden, only=args.only,
                       hidden_feedback=args.hidden_feedback, unsafe_no_sandbox=args.unsafe_no_sandbox,
                       timeout=args.timeout, limits=sandbox.Limits(test_seconds=args.test_timeout))
    except (sandbox.SandboxUnavailable, FileNotFoundError, LookupError) as exc:
        print(f"kata grade: {exc}", file=sys.stderr)
        return 2
    for out in args.out:
        _write(Path(out), render(report, _format_for(out, args.format)))
    if not args.out:
        # Plain bytes: a console renderer would wrap lines inside JSON strings and XML.
        sys.stdout.write(render(report, args.format))
        sys.stdout.flush()
    return 0


def _write(path: Path, text: str) -> None:
    """A report or gradebook, in a directory made if missing (not lost after a long grade)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _format_for(path: str, default: str) -> str:
    suffix = Path(path).suffix.lower()
    return next((fmt for fmt, ext in FORMATS.items() if ext == suffix), default)


def _batch(args, console) -> int:
    from rich.progress import Progress

    from .executors import GradeJob, LocalExecutor, RayExecutor

    subs = sorted(p for p in Path(args.batch).iterdir() if p.is_dir())
    # Ray missing or unreachable: an ExecutorUnavailable, a LookupError (one line, exit 2)
    executor = RayExecutor(args.ray) if getattr(args, "ray", None) else LocalExecutor(args.jobs)
    rows: dict[str, Report | str] = {}
    with Progress(console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("grading", total=len(subs))
        for path, result in executor.grade_all(subs, GradeJob.from_args(args)):
            rows[path.name] = result
            progress.advance(task)
    if args.csv:
        katas = sorted({k for r in rows.values() if isinstance(r, Report) for k in r.katas})
        lines = [",".join(["student", *katas, "total", "max", "error"])]
        for name, r in sorted(rows.items()):
            if isinstance(r, Report):
                lines.append(",".join([name, *(f"{r.katas.get(k, {}).get('score', 0):g}" for k in katas),
                                       f"{r.score:g}", f"{r.max_score:g}", ""]))
            else:
                lines.append(",".join([name, *([""] * len(katas)), "0", "", r.replace(",", ";")]))
        _write(Path(args.csv), "\n".join(lines) + "\n")
    for name, r in sorted(rows.items()):
        if isinstance(r, Report):
            for out in args.out:
                _write(Path(out.replace("{student}", name)), render(r, _format_for(out, "text")))
    for name, r in sorted(rows.items()):
        console.print(f"{name}: " + (f"{r.score:g} / {r.max_score:g}" if isinstance(r, Report) else plain(r, 300)),
                      markup=False, highlight=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(highlight=False)
    try:
        return args.func(args, console)
    except KeyboardInterrupt:  # Ctrl-C outside a test session: one word, not a traceback
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
