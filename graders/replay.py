"""The replay: a kata's trusted tests run again, answering student calls from the recording.

No student code runs in a replay, only the course's tests, the reference and the oracles
over data decoded from the recordings. So it needs no sandbox, and it runs in a process of
its own: a `ReplayServer` (a trusted graders.zygote, started once per grade or per batch)
imports torch, pytest and what the tests import once, and forks a fresh process per
kata's replay. Replays then run side by side, with each other and with the recordings,
on every core, and each starts with nothing left from the one before it (test modules,
the implementation chosen, hypothesis settings).

    server = ReplayServer(preload=sandbox.test_imports(test_files))
    results = replay(server, files, submission, course, hidden, recordings, timings, work)
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from . import runner, sandbox

HARNESS_ROOT = Path(__file__).resolve().parents[1]  # where this `graders` package lives


class ReplayServer(sandbox.ForkServer):
    """The trusted fork server: the grader's own interpreter, environment and harness."""

    def __init__(self, preload: list[str] = ()):
        super().__init__(preload)
        self._start()

    def _launch(self, fd: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "graders.zygote", str(fd), *self.preload],
                                cwd=HARNESS_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, pass_fds=[fd])


def replay(server: ReplayServer, files: list[str], submission: Path, course: Path, hidden: bool,
           recordings: Path, timings: Path, work: Path) -> runner.Results:
    """Replay `files` (one kata's tests) against the recordings in `recordings`, with the
    throughput timings the grader measured (`timings`); `work`: a directory of the grader's
    for the run's report. Results.tests are graders.plugin's per-test records."""
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        report = Path(scratch) / "report.json"
        argv = [*runner.arguments(files, impl=str(submission), hidden=hidden, profile="grading", root=course),
                "-p", "no:unraisableexception", "--kata-replay", str(recordings), "--kata-timings", str(timings),
                "--kata-report", str(report)]
        control_read, control_write = os.pipe()
        output_read, output_write = os.pipe()
        try:
            run = server.fork(argv, [control_write, output_write])
        finally:
            os.close(control_write)
            os.close(output_write)
        output: list[bytes] = []
        reader = threading.Thread(target=sandbox._drain, args=(os.fdopen(output_read, "rb"), 16 * 1024, output),
                                  daemon=True)
        reader.start()
        lines: queue.Queue = queue.Queue()
        sandbox._control_lines(control_read, lines)  # until the run ends (no student code: no deadline)
        reader.join()
        code = pytest.ExitCode.INTERNAL_ERROR
        while (line := lines.get()) is not None:
            message = json.loads(line) if line.startswith(b"{") else {}
            if message.get("e") == "exited" and message.get("code") in set(pytest.ExitCode):
                code = pytest.ExitCode(message["code"])
        if run is None or not report.exists():
            message = (server.failure() if run is None else b"".join(output).decode("utf-8", "replace"))
            return runner.Results(pytest.ExitCode.INTERNAL_ERROR if code == pytest.ExitCode.OK else code,
                                  [], [], output=message[-4000:])
        return runner.Results(code, json.loads(report.read_text())["results"])
