"""Throughput timings the submission cannot forge: CPU time the kernel counted, read by the grader.

A throughput test compares a candidate (student code) with a baseline. Timed inside the
sandbox, the submission could patch the clock, the timer helper or the recorded medians.
So when grading, the recording run only marks such a test, and the grader starts it again
in a run of its own (forked by the sandbox's zygote, graders.sandbox.Zygote) under a
filter that refuses new threads and processes. There the test runs up to its measurement
and warms both sides up, then:

    "start"      the run says so and waits; the grader reads its CPU time and says go
    "candidate"  the candidate's timed calls are done: the grader reads it again, says go
    "baseline"   the baseline's timed calls are done: the grader reads it a last time and
                 kills the run

The grader reads the run's CPU time from /proc (utime + stime): the run can start nothing
else, and whatever else runs in the sandbox meanwhile is not counted. Each side costs the
difference between its two readings: imports and the test's own set-up are outside both,
however long they take, and both sides run in the same process under the same conditions.

What this does not stop (README, "Threat model"): the child decides when it says where it
is, so a submission that writes those messages itself, or that returns a remembered answer
for a repeated call, can make its side look fast. Timing is worth a few points per kata;
correctness tests do not depend on it.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import replace
from pathlib import Path

from . import sandbox

MARKS = ("start", "candidate", "baseline")


def time_test(spec: sandbox.ChildSpec, zygote: sandbox.Zygote, nodeid: str, seconds: float) -> tuple[float, float] | None:
    """(candidate, baseline): CPU seconds of each side's timed calls, measured in a run of
    its own that runs only `nodeid`; None when it did not get through its measurement in time."""
    go_read, go_write = os.pipe()
    control_read, control_write = os.pipe()
    output = os.open(os.devnull, os.O_WRONLY)
    argv = sandbox._pytest_argv(replace(spec, files=[nodeid], deselect=[]), zygote.inside,
                                zygote.record_path(spec.recordings))
    try:
        run = zygote.fork(argv, [control_write, output, go_read], sandbox.seccomp_program(no_spawn=True))
    finally:
        for fd in (go_read, control_write, output):
            os.close(fd)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=sandbox._control_lines, args=(control_read, lines), daemon=True).start()
    deadline = time.monotonic() + seconds
    readings: list[float] = []  # the CPU time at each mark, in MARKS order
    while run is not None and time.monotonic() < deadline and len(readings) < len(MARKS):
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if run.poll() is not None:
                break
            continue
        if line is None:
            break
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("e") == "timing" and message.get("id") == nodeid \
                and message.get("at") == MARKS[len(readings)]:
            reading = run.cpu_seconds()
            if reading is None:
                break
            readings.append(reading)
            if len(readings) < len(MARKS):
                os.write(go_write, b"go\n")
    os.close(go_write)
    if run is not None:
        run.kill()
    if len(readings) < len(MARKS):
        return None
    start, candidate_done, baseline_done = readings
    return candidate_done - start, baseline_done - candidate_done


def write_timings(timings: dict[str, tuple[float, float]], path: Path) -> None:
    path.write_text(json.dumps(timings))

