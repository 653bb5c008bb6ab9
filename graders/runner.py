"""Every pytest session the harness starts, built in one place.

`kata check`, `kata grade` (its collection and its replays), nbgrader's collection, the
notebook's test cells, the self-checks and the sandboxed child all run the course's tests
with the same core options: the course's own rootdir and config, `--import-mode=importlib`
whatever the user's addopts say, no cache directory, no random test order. Only what differs
between them is an argument here:

    run(files, impl="reference", hidden=True)              in this process -> Results
    run(files, collect_only=True)                          the collected items, typed
    arguments(files, impl=root, profile="grading") + [...]  for a session in another process

`Results.tests` are graders.plugin's per-test records (nodeid, kata, outcome, points,
hidden, message), the same ones `--kata-report` writes.
"""

from __future__ import annotations

import contextlib
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import catalog
from . import impl as implementations
from . import session as sessions


# One thread of a process at a time runs a pytest session or parses Python: sessions share
# process state (sys.modules, the current implementation), and CPython 3.11's `ast` is not
# thread-safe ("AST constructor recursion depth mismatch"). Graders that work in threads
# (`kata grade`'s katas, `--batch`, nbgrader's autograde) hold it for both.
exclusive = threading.Lock()


@dataclass(frozen=True)
class CollectedItem:
    """One test as pytest collected it."""

    nodeid: str  # katas/week2/test_attention.py::test_x[1] (relative to the rootdir)
    kata: str | None  # week2/attention
    points: float | None
    hidden: bool
    gpu: bool
    throughput: bool
    timeout: float | None  # its own @pytest.mark.timeout, if any


@dataclass
class Results:
    exit_code: pytest.ExitCode
    tests: list[dict] = field(default_factory=list)  # graders.plugin's records, one per test
    collected: list[CollectedItem] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        """pytest ran the session to its end (tests may have failed)."""
        return self.exit_code in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)


def arguments(files: list[str], impl: str | None = None, hidden: bool = False, profile: str | None = None,
              collect_only: bool = False, root: Path | None = None, config: Path | None = None,
              quiet: bool = True) -> list[str]:
    """The pytest command line (without `python -m pytest`) for `files` of the course at `root`.

    `impl`: the implementation under test (`--impl`; None: pytest's default, the stubs).
    `profile`: the hypothesis settings profile (None: the course's default).
    `config`: the ini file (default: the course's pyproject.toml).
    `quiet`: no terminal output (in-process runs report through `Results`)."""
    root = root or implementations.PROJECT_ROOT
    return [
        *files, *(["--impl", impl] if impl else []), *(["--hidden"] if hidden else []),
        *(["--collect-only"] if collect_only else []),
        *(["--hypothesis-profile", profile] if profile else []),
        "--rootdir", str(root), "-c", str(config or root / "pyproject.toml"),
        "-o", "addopts=--import-mode=importlib", "-p", "no:cacheprovider", "-p", "no:randomly",
        *(["-p", "no:terminal"] if quiet else []),
    ]


class _Collector:
    def __init__(self):
        self.items: list[CollectedItem] = []
        self.tests: list[dict] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            marker = item.get_closest_marker("timeout")
            seconds = (marker.args[0] if marker.args else marker.kwargs.get("timeout")) if marker else None
            self.items.append(CollectedItem(
                item.nodeid, catalog.kata_id_for_test_file(item.path), catalog.points_of(item),
                item.get_closest_marker("hidden") is not None, item.get_closest_marker("gpu") is not None,
                item.get_closest_marker("throughput") is not None, float(seconds) if seconds else None))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        kata_session = sessions.of(session.config)
        self.tests = list(kata_session.results) if kata_session is not None else []


def run(files: list[str], impl: str | None = None, hidden: bool = False, profile: str | None = None,
        collect_only: bool = False, root: Path | None = None, plugins: tuple = (), extra: tuple[str, ...] = (),
        ) -> Results:
    """Run (or only collect) `files` in this process; returns what pytest collected and ran.

    Sessions in one process run one after another: callers that run several at once (the
    grader's threads) take turns themselves. The unraisable-exception plugin is left out: its
    gc passes at the end of a session cost ~0.5 s in a process that imported torch."""
    collector = _Collector()
    args = [*arguments(files, impl, hidden, profile, collect_only, root), *extra, "-p", "no:unraisableexception"]
    code = pytest.main(args, plugins=[collector, *plugins])
    return Results(pytest.ExitCode(code), collector.tests, collector.items)


def run_quietly(files: list[str], **options) -> Results:
    """`run`, with whatever the session prints swallowed (worker processes of the self-checks)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return run(files, **options)
