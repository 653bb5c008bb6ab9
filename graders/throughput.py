"""Throughput checks: ratios against a baseline timed in the same run, never seconds.

Machines are noisy and students' laptops differ by 10x, so a kata never asserts an absolute
time. Instead the candidate and a baseline run interleaved in the same process (A, B, A,
B, ...) after a warm-up, and the medians are compared. Each sample is the CPU time this
process spent (the measure the grader reads from /proc too): other processes' load does
not count, where wall time on a busy machine can swing a ratio by 2x. GPU work is timed
with a monotonic clock instead, CUDA synchronised on both sides, since the device's time is
not the process's CPU time. Interleaving means a burst of load from elsewhere hits both
sides alike either way.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from . import recording
from .check import _fail
from .events import Crossing, Kind

# The resolution of the CPU time the grader reads from /proc (USER_HZ is 100 on Linux): a
# timed side that took less counts as one tick, so no ratio divides by zero.
CPU_CLOCK_TICK = 0.01


@dataclass(frozen=True)
class Timing:
    candidate: float  # median seconds per call
    baseline: float

    @property
    def speedup(self) -> float:
        """How many times faster the candidate is than the baseline."""
        return self.baseline / self.candidate


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _time_once(fn: Callable[[], object], number: int) -> float:
    """Seconds per call over `number` calls: CPU seconds of this process, or, once CUDA is
    in use, wall seconds with CUDA work finished on both sides."""
    clock = time.perf_counter if torch.cuda.is_initialized() else time.process_time
    _synchronize()
    start = clock()
    for _ in range(number):
        fn()
    _synchronize()
    return max(clock() - start, 1e-9) / number


def measure(candidate: Callable[[], object], baseline: Callable[[], object], *,
            warmup: int = 2, rounds: int = 7, number: int = 1) -> Timing:
    """Median time per call of each, sampled alternately after `warmup` calls of each.

    When grading, no timing comes from the sandbox, whose clock the submission could
    patch. The recording run only marks the test; the grader then starts it again in a
    fresh sandbox and reads the CPU time the kernel counted for each side's
    `rounds * number` timed calls (graders.timing). The trusted replay divides those totals
    by the number of calls it asked for itself.
    """
    rec = recording.current()
    timed_calls = rounds * number
    if recording.current_mode() == "replay" and rec is not None:
        try:
            rec.next(Kind.TIMING, ["timing"])
        except recording.RecordingError as exc:
            _fail(str(exc))
        totals = recording.trusted_timing(rec.nodeid)
        if totals is None:
            _fail("the grader could not time this test in its sandbox (the run crashed, hung or left "
                  "threads or processes behind), so it earns no points")
        return Timing(*(max(total, CPU_CLOCK_TICK) / max(timed_calls, 1) for total in totals))
    if recording.current_mode() == "record" and rec is not None:
        if not recording.in_timing_run():  # the recording run: the grader times this test separately
            rec.add(Crossing(Kind.TIMING, ["timing"]))
            return Timing(1.0, 1.0)
        with rec.paused():
            for _ in range(warmup):
                candidate()
                baseline()
            for side, work in (("candidate", candidate), ("baseline", baseline)):
                _synchronize()
                if side == "candidate":
                    recording.timing_mark(rec.nodeid, "start")  # the grader reads the CPU time, then says go
                for _ in range(timed_calls):
                    work()
                _synchronize()
                recording.timing_mark(rec.nodeid, side)  # after "baseline", this never returns
    return _measure(candidate, baseline, warmup, rounds, number)


def _measure(candidate, baseline, warmup, rounds, number) -> Timing:
    for _ in range(warmup):
        candidate()
        baseline()
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        samples[0].append(_time_once(candidate, number))
        samples[1].append(_time_once(baseline, number))
    return Timing(statistics.median(samples[0]), statistics.median(samples[1]))


def assert_speedup(candidate: Callable[[], object], baseline: Callable[[], object], *,
                   at_least: float, what: str = "candidate", hint: str | None = None,
                   **options) -> Timing:
    """The candidate must be at least `at_least` times faster than the baseline."""
    __tracebackhide__ = True
    timing = measure(candidate, baseline, **options)
    if timing.speedup < at_least:
        _fail(f"{what} is {timing.speedup:.2f}x as fast as its baseline; it should be at least {at_least:g}x "
              f"(per call: {timing.candidate * 1e3:.2f} ms vs {timing.baseline * 1e3:.2f} ms, measured together)",
              None, hint)
    return timing


def assert_within(candidate: Callable[[], object], baseline: Callable[[], object], *,
                  factor: float, what: str = "your implementation", hint: str | None = None,
                  **options) -> Timing:
    """The candidate may be at most `factor` times slower than the baseline."""
    __tracebackhide__ = True
    timing = measure(candidate, baseline, **options)
    slowdown = timing.candidate / timing.baseline
    if slowdown > factor:
        _fail(f"{what} is {slowdown:.1f}x slower than its baseline; the limit is {factor:g}x "
              f"(per call: {timing.candidate * 1e3:.2f} ms vs {timing.baseline * 1e3:.2f} ms, measured together)",
              None, hint)
    return timing
