"""What `kata check` does, shared with `kata watch`: select katas, run their tests in this
process behind a progress line, remember the last results for `kata list`, and show the
first failure worth fixing.

graders.cli registers both commands; graders.watch imports this module, not the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

from . import catalog, impl, runner
from .plugin import kata_totals
from .reports import plain

STATE_DIR = Path(os.environ.get("KATA_STATE_DIR", impl.PROJECT_ROOT / ".kata"))


# --- selecting katas and running their tests --------------------------------------------


def select(target: str | None) -> list[catalog.Kata]:
    """`None` (everything), `weekN`, or `weekN/kata`."""
    katas = catalog.all_katas()
    if not target:
        return katas
    target = target.strip("/")
    chosen = [k for k in katas if k.id == target or k.week == target]
    if not chosen:
        known = ", ".join(sorted({k.week for k in katas} | {k.id for k in katas}))
        raise SystemExit(f"kata: no kata or week called {target!r}. Known: {known}")
    return chosen


class _CountColumn(MofNCompleteColumn):
    """`done/total` tests; blank while pytest is still collecting (no frozen-looking `0/?`)."""

    def render(self, task):
        return Text("") if task.total is None else super().render(task)


class _Progress:
    """A pytest plugin that drives a rich progress line: the test running now, how many are
    done, and the time so far.

    The name changes when a test starts (`logstart`), not when it ends, so a test that hangs
    is named while it hangs; the clock and spinner are redrawn by rich's own thread, so they
    keep moving during a slow collection or a student's endless loop."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task = progress.add_task("collecting…", total=None)

    def pytest_collection_finish(self, session):
        self.progress.update(self.task, total=len(session.items), description="starting…")

    def pytest_runtest_logstart(self, nodeid, location):
        self.progress.update(self.task, description=nodeid.split("::")[-1])

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.progress.advance(self.task)


def progress_display(console: Console) -> Progress:
    """The line `kata check` shows while tests run. Test names are data (parametrize ids
    contain brackets), so the name column shows them as plain text, cut to a fixed width."""
    name = TextColumn("{task.description}", markup=False,
                      table_column=Column(width=40, no_wrap=True, overflow="ellipsis"))
    return Progress(SpinnerColumn(), name, BarColumn(bar_width=15), _CountColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def run_tests(files: list[str], implementation: str, hidden: bool, console: Console,
              extra: list[str] | None = None) -> runner.Results:
    with progress_display(console) as progress:
        results = runner.run(files, impl=implementation, hidden=hidden, plugins=(_Progress(progress),),
                             extra=tuple(extra or ()))
    if results.exit_code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR):
        raise SystemExit(f"kata: pytest could not run ({results.exit_code.name})")
    return results


# --- remembering the last results (for `kata list`) ---------------------------------------


def source_digest(implementation: impl.Implementation, kata: catalog.Kata) -> str | None:
    path = implementation.path_of(kata.module)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _state_file(implementation: impl.Implementation) -> Path:
    digest = hashlib.sha1(str(implementation.root).encode()).hexdigest()[:12]
    return STATE_DIR / f"results-{digest}.json"


def save_results(implementation: impl.Implementation, katas: list[catalog.Kata], results: list[dict]) -> None:
    path = _state_file(implementation)
    state = json.loads(path.read_text()) if path.is_file() else {}
    totals = kata_totals(results)
    for kata in katas:
        if kata.id in totals:
            state[kata.id] = {**totals[kata.id], "source": source_digest(implementation, kata)}
    STATE_DIR.mkdir(exist_ok=True)
    path.write_text(json.dumps(state, indent=1))


def load_results(implementation: impl.Implementation) -> dict:
    path = _state_file(implementation)
    return json.loads(path.read_text()) if path.is_file() else {}


# --- the first failure, and what was skipped -------------------------------------------


def first_failure(kata_id: str, failure: dict) -> Panel:
    """The first failing test of the kata being worked on: its message as the test wrote it
    (plain text: brackets in it are data, not rich markup)."""
    message = plain(failure["message"]).strip() or failure["outcome"]
    return Panel(Text(message), title=Text(f"{kata_id}: first failure"),
                 subtitle=Text(plain(failure["nodeid"].split("::")[-1])), border_style="red", expand=False)


def first_to_fix(results: list[dict], kata_id: str) -> dict:
    """The kata's first failure to show: one that is not only the consequence of another
    function failing its own tests (those carry `prerequisites`), when there is one."""
    failures = [r for r in results if r["kata"] == kata_id and r["outcome"] in ("failed", "error")]
    return next((r for r in failures if not r.get("prerequisites")), failures[0])


def skipped_tests(results: list[dict]) -> list[Text]:
    """One line per reason tests were skipped (a GPU test without CUDA), with the points they
    were not counted for: why `kata list`, which counts every test, offers more points."""
    by_reason: dict[str, list[dict]] = {}
    for r in results:
        if r["outcome"] == "skipped":
            reason = plain(r["message"] or "no reason given").strip().removeprefix("Skipped: ")
            by_reason.setdefault(reason, []).append(r)
    lines = []
    for reason, tests in by_reason.items():
        points = sum(t["points"] or 0.0 for t in tests)
        lines.append(Text(f"{catalog.counted(len(tests), 'test')} skipped ({reason}): "
                          f"{catalog.counted(points, 'point')} not counted", style="yellow"))
    return lines
