"""`kata watch [weekN[/kata]]`: re-run a kata every time you save its file, as rustlings does.

    kata watch                     # from the first kata not known to pass
    kata watch week2/attention     # from this kata (a week: from its first kata)
    kata watch --impl path/to/dir  # another implementation root, as `kata check --impl`

The current kata's public tests run at once; its first failure is shown with the hint its
check names. Then the implementation root is watched (the watchfiles library: the
operating system's file events, no polling by hand): saving `weekN/<kata>.py` (or its test
file) re-runs that kata, and saving any other `.py` file of the root re-runs the current
one. When a kata passes, watch says so and moves on to the next kata of the course
(catalog order), skipping those that already passed with the same source (`kata list`'s
record, which watch updates as `kata check` does). Ctrl-C ends it with a one-line goodbye
and exit code 0; a run stopped by Ctrl-C is not recorded.

The loop (`watch_loop`) takes any iterable of change batches, as `watchfiles.watch` yields
them (sets of `(Change, path)`), so tests drive it with a list. Each run happens in this
process through `kata check`'s own helpers (graders.checking).
The implementation's modules are dropped from `sys.modules` before each run, so the saved
file is imported afresh.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from . import catalog, checking, impl
from .plugin import kata_totals, status_of

GOODBYE = "Stopped watching. Bye!"
Changes = Iterable[set]  # batches of (watchfiles.Change, path) pairs


def add_parser(subparsers) -> None:
    """Register `kata watch` on `kata`'s argparse subparsers."""
    p = subparsers.add_parser("watch", help="re-run a kata each time you save it; move on when it passes")
    p.add_argument("target", nargs="?", help="weekN or weekN/kata to start from "
                                             "(default: the first kata not known to pass)")
    p.add_argument("--impl", default=None, help="katas (default), reference, or a submission directory")
    p.set_defaults(func=run)


def run(args, console: Console) -> int:
    implementation = impl.resolve(args.impl)
    if not implementation.root.is_dir():
        print(f"kata watch: {implementation.root} is not a directory", file=sys.stderr)
        return 2
    course = catalog.all_katas()
    start = checking.select(args.target)[0] if args.target else first_unfinished(course, implementation)
    return watch_loop(course, start, implementation, _changes(implementation.root), console)


def _changes(root: Path, stop_event: threading.Event | None = None, **options) -> Changes:
    """watchfiles' generator of change batches under `root`, `.py` files only."""
    import watchfiles

    return watchfiles.watch(root, watch_filter=watchfiles.PythonFilter(), stop_event=stop_event,
                            raise_interrupt=True, **options)


def first_unfinished(course: list[catalog.Kata], implementation: impl.Implementation) -> catalog.Kata:
    return next((k for k in course if not known_passing(k, implementation)), course[0])


def known_passing(kata: catalog.Kata, implementation: impl.Implementation) -> bool:
    """The last run of `kata` (check or watch) passed, and its file has not changed since."""
    saved = checking.load_results(implementation).get(kata.id)
    return (saved is not None and status_of(saved) == "passing"
            and saved.get("source") == checking.source_digest(implementation, kata))


def kata_for_changes(batch: Iterable, root: Path, course: list[catalog.Kata],
                     current: catalog.Kata | None) -> catalog.Kata | None:
    """The kata to run after these changes: a changed kata module or test file (the current
    kata first, else the earliest in the course); any other `.py` file of the root: the
    current kata (it may import it); nothing else (editors' backups, caches): None."""
    root = root.resolve()
    by_id = {k.id: k for k in course}
    changed: list[catalog.Kata] = []
    other_python = False
    for _change, path in batch:
        path = Path(path)
        if path.suffix != ".py" or "__pycache__" in path.parts:
            continue
        try:
            relative = path.resolve().relative_to(root)
        except ValueError:
            continue
        kata_id = catalog.kata_id_for_test_file(relative)
        if kata_id is None and len(relative.parts) == 2:
            kata_id = f"{relative.parts[0]}/{relative.stem}"
        if kata_id in by_id:
            changed.append(by_id[kata_id])
        else:
            other_python = True
    if current is not None and current in changed:
        return current
    if changed:
        return min(changed, key=course.index)
    return current if other_python else None


def forget_modules(implementation: impl.Implementation) -> None:
    """Drop the implementation's modules so the next run imports the files as saved now."""
    for name in [n for n in sys.modules if implementation.owns_module(n)]:
        del sys.modules[name]
    importlib.invalidate_caches()


class _Interrupted(Exception):
    pass


class _Watch:
    def __init__(self, course, implementation, console, run_tests):
        self.course, self.implementation, self.console = course, implementation, console
        self.run_tests = run_tests or checking.run_tests
        self.ctrl_c = threading.Event()

    def run_kata(self, kata: catalog.Kata) -> bool:
        """Run one kata's public tests; show the outcome; True when it passes."""
        self.console.rule(Text(kata.id), style="dim")
        forget_modules(self.implementation)
        run = self.run_tests(catalog.test_files([kata], False), str(self.implementation.root), False, self.console)
        results = getattr(run, "tests", run)  # run_tests's runner.Results (or its records alone)
        if self.ctrl_c.is_set() or getattr(run, "exit_code", None) == pytest.ExitCode.INTERRUPTED:
            raise _Interrupted  # pytest stopped at the Ctrl-C: a partial result, never recorded
        checking.save_results(self.implementation, [kata], results)
        totals = kata_totals(results).get(kata.id)
        for line in checking.skipped_tests(results):  # GPU tests skipped here, and why
            self.console.print(line)
        if totals is None or status_of(totals) == "no tests":
            self.console.print(Text(f"{kata.id}: no test ran here; moving on."))
            return True
        points = f"{totals['earned']:g} / {totals['possible']:g} points"
        if status_of(totals) == "passing":
            self.console.print(Text.assemble(("✓ ", "green"), (f"{kata.id} passes: {points}", "bold green")))
            return True
        tests = f"{totals['passed']}/{totals['passed'] + totals['failed']} tests passing"
        self.console.print(Text.assemble(("✗ ", "red"), f"{kata.id}: {status_of(totals)}, {tests}, {points}"))
        failure = checking.first_to_fix(results, kata.id)
        self.console.print(checking.first_failure(kata.id, failure))
        self.console.print(Text(f"More help: kata hint {kata.id}"))
        return False

    def advance_from(self, kata: catalog.Kata) -> catalog.Kata | None:
        """Run `kata`, and while it passes the next ones; the first failing kata, or None."""
        index = self.course.index(kata)
        while index < len(self.course):
            kata = self.course[index]
            if not self.run_kata(kata):
                return kata
            index += 1
            while index < len(self.course) and known_passing(self.course[index], self.implementation):
                self.console.print(Text(f"{self.course[index].id} already passes (unchanged since its last run)."))
                index += 1
            if index < len(self.course):
                self.console.print(Text(f"Moving on to the next kata: {self.course[index].id}", style="bold"))
        return None



def watch_loop(course: list[catalog.Kata], start: catalog.Kata, implementation: impl.Implementation,
               changes: Changes, console: Console, run_tests: Callable | None = None) -> int:
    """Run `start`, then re-run katas as `changes` arrive, until every kata from the current
    one on passes, the changes end, or Ctrl-C. `run_tests`, with `checking.run_tests`'s
    signature, replaces it (tests pass a fake).
    Returns the exit code: 0."""
    watch = _Watch(course, implementation, console, run_tests)

    def on_ctrl_c(signum, frame):
        watch.ctrl_c.set()
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_ctrl_c) if in_main_thread else None
    # No .pyc of the student's files: one written by a run would hide a second save of the
    # same size within the same second (a .pyc records the source's mtime in whole seconds).
    dont_write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        current = watch.advance_from(start)
        if current is None:
            return _all_done(console, start)
        _waiting(console, current, implementation)
        for batch in changes:
            kata = kata_for_changes(batch, implementation.root, course, current)
            if kata is None:
                continue
            current = watch.advance_from(kata)
            if current is None:
                return _all_done(console, kata)
            _waiting(console, current, implementation)
        return 0
    except (KeyboardInterrupt, _Interrupted):
        console.print(Text(GOODBYE))
        return 0
    finally:
        sys.dont_write_bytecode = dont_write_bytecode
        if in_main_thread:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def _all_done(console: Console, start: catalog.Kata) -> int:
    console.print(Text(f"Every kata from {start.id} on passes: nothing left to watch.", style="bold green"))
    return 0


def _waiting(console: Console, kata: catalog.Kata, implementation: impl.Implementation) -> None:
    path = implementation.path_of(kata.module)
    try:
        path = path.relative_to(Path.cwd())
    except ValueError:
        pass
    console.print(Text(f"Watching: save {path} to re-run it. Ctrl-C to quit.", style="dim"))
