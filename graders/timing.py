"""Throughput timings the submission cannot forge: CPU time the kernel counted, read by the grader.

A throughput test compares a candidate (student code) with a baseline. Timed inside the
sandbox, the submission could patch the clock, the timer helper or the recorded medians.
So when grading, the recording run only marks such a test, and the grader starts it again,
once per side, each time in a fresh sandbox that may not start threads or processes:

    candidate  the test up to its measurement, the warm-up calls, then the timed calls
    baseline   the same with the baseline

The side is read from a pipe only when the measurement starts, so the code before it is the
same in both. After the warm-up the child says "measuring" and waits; the grader reads the
CPU time of every process of the sandbox from /proc (utime + stime, children included) and
says go. After the timed calls the child says "measured" and waits again; the grader reads
the CPU time once more and kills the sandbox. A side costs the difference: start-up, imports
and the test's own set-up are outside it, however long they take.

What this does not stop (README, "Threat model"): the child decides when it says
"measuring" and "measured", so a submission that writes those messages itself, or that
returns a remembered answer for a repeated call, can make its side look fast. Timing is
worth a few points per kata; correctness tests do not depend on it.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import tempfile
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


def run_side(spec: sandbox.ChildSpec, nodeid: str, side: str, limits: sandbox.Limits, seconds: float,
             unsafe: bool = False) -> float | None:
    """CPU seconds of one side's timed calls in a fresh sandbox running `nodeid`, or None
    when it did not get through its measurement in time."""
    iso = sandbox.isolation(unsafe)
    side_read, side_write = os.pipe()
    control_read, control_write = os.pipe()
    seccomp_file = None
    if iso.sandboxed:
        seccomp_file = tempfile.TemporaryFile(dir=spec.tree.work)
        seccomp_file.write(sandbox.seccomp_program(no_spawn=True))
        seccomp_file.seek(0)
    spec = replace(spec, files=[nodeid], deselect=[], timing_fd=side_read)
    command, inside = sandbox._command(spec, iso, control_write, seccomp_file.fileno() if seccomp_file else None)
    env = sandbox.child_environment(inside, spec.recordings)
    try:
        process = subprocess.Popen(command, cwd=spec.tree.work, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   preexec_fn=sandbox._limits(limits), start_new_session=True, close_fds=True,
                                   pass_fds=[side_read, control_write] + ([seccomp_file.fileno()] if seccomp_file else []))
    finally:
        os.close(side_read)
        os.close(control_write)
        if seccomp_file is not None:
            seccomp_file.close()
    os.write(side_write, side.encode() + b"\n")
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=sandbox._control_lines, args=(control_read, lines), daemon=True).start()
    deadline = time.monotonic() + seconds
    uid = spec.uid if iso.drop_to_uid else None
    started: float | None = None
    result = None
    while time.monotonic() < deadline:
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
        if not isinstance(message, dict) or message.get("id") != nodeid:
            continue
        if message.get("e") == "measuring" and started is None:
            started = _cpu_seconds(process.pid, uid)
            os.write(side_write, b"go\n")
        elif message.get("e") == "measured" and started is not None:
            result = _cpu_seconds(process.pid, uid) - started
            break
    os.close(side_write)
    sandbox._kill(process, uid)
    process.wait()
    return result


def time_test(spec: sandbox.ChildSpec, nodeid: str, limits: sandbox.Limits, seconds: float,
              unsafe: bool = False) -> tuple[float, float] | None:
    """(candidate, baseline): CPU seconds of each side's timed calls, or None."""
    candidate = run_side(spec, nodeid, "candidate", limits, seconds, unsafe)
    baseline = run_side(spec, nodeid, "baseline", limits, seconds, unsafe) if candidate is not None else None
    if candidate is None or baseline is None:
        return None
    return candidate, baseline


def write_timings(timings: dict[str, tuple[float, float]], path: Path) -> None:
    path.write_text(json.dumps(timings))

