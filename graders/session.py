"""The kata state of one pytest session, in one object.

Everything the harness remembers while a session runs lives in a `KataSession`: the
implementation under test, the mode (live, or recording in the grading sandbox, or replaying
in the trusted grader), the test running now and its recording, the per-test results, and,
in the sandbox, the pipes to the grader. The plugin makes one when pytest configures a
session, keeps it in `config.stash`, and drops it when the session ends.

Test code reaches it without a `config` in hand: `student("week2.attention")` called inside a
test asks `session.active()`. Grading runs sessions inside sessions (the replay of a kata
while an outer pytest collects), so the sessions in progress form a stack and the innermost
one is active; outside pytest a live session on the default implementation answers.

This module sits at the bottom of the harness's imports (it knows the catalog and the
implementations, nothing that crosses into student code), so that the boundary, the
recorder and the plugin can all read it without importing each other.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from . import catalog, impl


class Mode(str, enum.Enum):
    """Where student code runs. A `str` enum: `mode == "record"` reads as it looks."""

    LIVE = "live"  # student code runs here and the checks judge it (`pytest`, `kata check`)
    RECORD = "record"  # the grading sandbox: run student code, record every crossing, judge nothing
    REPLAY = "replay"  # the trusted grader: never import student code, answer it from the recording


@dataclass
class SandboxLink:
    """(record mode) What the grading sandbox shares with the grader that started it."""

    control: IO[str] | None = None  # JSON lines to the grader: which test and function run now
    skipped: set[str] = field(default_factory=set)  # student functions that timed out: not called again
    calling: str | None = None  # the student function running now
    last_called: str | None = None  # the last one the current test called
    timeouts: int = 0  # tests this run stopped by pytest-timeout
    reported_timeouts: set[str] = field(default_factory=set)
    timing_fd: int | None = None  # a timing run: where the grader says which side to run


@dataclass
class KataSession:
    implementation: impl.Implementation
    mode: Mode = Mode.LIVE
    crossing: Any = None  # graders.crossings' object for the mode, chosen when the session is configured
    recordings: Path | None = None  # record: where the child writes; replay: where the grader reads
    link: SandboxLink = field(default_factory=SandboxLink)
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)  # (replay) the grader's own
    item: pytest.Item | None = None  # the test running now
    recording: Any = None  # its graders.recording.TestRecording (record and replay modes)
    results: list[dict] = field(default_factory=list)  # one record per test, for reports
    started: float = field(default_factory=time.time)
    # What each value returned by student code came from, for failure messages. Keys are
    # ids; the value is kept alive beside its description so an id is never reused mid-test.
    call_log: dict[int, tuple[object, str]] = field(default_factory=dict)

    def kata(self) -> catalog.Kata | None:
        """The kata of the test running now."""
        if self.item is None:
            return None
        kata_id = catalog.kata_id_for_test_file(self.item.path)
        return catalog.load(kata_id) if kata_id else None


KEY = pytest.StashKey[KataSession]()
_in_progress: list[KataSession] = []  # innermost last
_outside_pytest: KataSession | None = None


def begin(config: pytest.Config, session: KataSession) -> None:
    config.stash[KEY] = session
    _in_progress.append(session)


def end(config: pytest.Config) -> None:
    session = config.stash.get(KEY, None)
    if session is not None and session in _in_progress:
        _in_progress.remove(session)


def of(config: pytest.Config) -> KataSession | None:
    return config.stash.get(KEY, None)


def active() -> KataSession:
    """The innermost session in progress, or a live one on the default implementation."""
    global _outside_pytest
    if _in_progress:
        return _in_progress[-1]
    if _outside_pytest is None:
        _outside_pytest = KataSession(impl.resolve())
    return _outside_pytest


def in_pytest() -> bool:
    return bool(_in_progress)
