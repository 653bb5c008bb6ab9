"""Throughput timings the submission cannot forge: CPU time the kernel counted, read by the grader.

A throughput test compares a candidate (student code) with a baseline. Timed inside the
sandbox, the submission could patch the clock, the timer helper or the recorded medians.
So when grading, the recording run only marks such a test, and the grader starts it again
in a fresh sandbox that may not start threads or processes. There the test runs up to its
measurement and warms both sides up, then:

    "start"      the child says so and waits; the grader reads the CPU time and says go
    "candidate"  the candidate's timed calls are done: the grader reads it again, says go
    "baseline"   the baseline's timed calls are done: the grader reads it a last time and
                 kills the sandbox

The grader reads the CPU time of every process of the sandbox from /proc (utime + stime,
children included). Each side costs the difference between its two readings: start-up,
imports and the test's own set-up are outside both, however long they take, and both sides
run in the same process under the same conditions.

What this does not stop (README, "Threat model"): the child decides when it says where it
is, so a submission that writes those messages itself, or that returns a remembered answer
for a repeated call, can make its side look fast. Timing is worth a few points per kata;
correctness tests do not depend on it.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

from . import sandbox

def _cpu_seconds(root_pid: int, uid: int | None) -> float:
    """CPU time of the sandbox: every process of its uid (when it has its own), or every
    descendant of bubblewrap; each with the time of the children it reaped."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
            owner = entry.stat().st_uid
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
        stats[int(entry.name)] = (owner, fields)
    if uid is not None:
        chosen = [pid for pid, (owner, _) in stats.items() if owner == uid]
    else:
        chosen, frontier = [], {root_pid}
        while frontier:
            chosen += frontier
            frontier = {pid for pid, (_, f) in stats.items() if int(f[1]) in frontier and pid not in chosen}
    total = 0
    for pid in chosen:
        fields = stats[pid][1]
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    return total / ticks


MARKS = ("start", "candidate", "baseline")


def time_test(spec: sandbox.ChildSpec, nodeid: str, limits: sandbox.Limits, seconds: float,
              unsafe: bool = False) -> tuple[float, float] | None:
    """(candidate, baseline): CPU seconds of each side's timed calls, measured in a fresh
    sandbox running `nodeid`; None when it did not get through its measurement in time."""
    iso = sandbox.isolation(unsafe)
    go_read, go_write = os.pipe()
    control_read, control_write = os.pipe()
    spec = replace(spec, files=[nodeid], deselect=[], timing_fd=go_read)
    process = sandbox.start_child(spec, iso, limits, control_write, subprocess.DEVNULL, no_spawn=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=sandbox._control_lines, args=(control_read, lines), daemon=True).start()
    deadline = time.monotonic() + seconds
    uid = spec.uid if iso.drop_to_uid else None
    readings: list[float] = []  # the CPU time at each mark, in MARKS order
    while time.monotonic() < deadline and len(readings) < len(MARKS):
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
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
            readings.append(_cpu_seconds(process.pid, uid))
            if len(readings) < len(MARKS):
                os.write(go_write, b"go\n")
    os.close(go_write)
    sandbox._kill(process, uid)
    process.wait()
    if len(readings) < len(MARKS):
        return None
    start, candidate_done, baseline_done = readings
    return candidate_done - start, baseline_done - candidate_done


def write_timings(timings: dict[str, tuple[float, float]], path: Path) -> None:
    path.write_text(json.dumps(timings))

