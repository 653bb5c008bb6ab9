"""The pytest plugin every kata test runs under (loaded by the root `conftest.py`).

- `--impl {katas,reference,PATH}` (or $KATA_IMPL) picks the implementation under test;
  the header shows which one was resolved.
- Markers: `points(n)`, `hidden`, `gpu`, `throughput`, plus pytest-timeout's `timeout`.
- Hidden tests run only with `--hidden` (the grader) or `--impl reference` (the course's
  own check); a student's copy of the course does not even contain them.
- Hypothesis profiles `dev`, `ci` and `grading`, all derandomized: a test that fails, fails
  every time. `--hypothesis-profile` or $KATA_HYPOTHESIS_PROFILE choose; default `dev`
  (`ci` when $CI is set).
- Points: every result carries its kata and points as user properties (so junit XML and
  xdist see them); the terminal summary adds the points table, with a status per kata
  (`passing`, `failing`, `not started`, `syntax error`, `import error`); `--kata-report FILE`
  writes every result as JSON for the CLI and the grader.
- Timeouts (pytest-timeout): a test stopped inside student code fails as "TIMEOUT in your
  `train_bpe` after 60 s", and the kata's later tests that call `train_bpe` are skipped
  (graders.recording), so a `while True` costs one timeout, not one per test.
- Prerequisites: once every test has run, a failed test that uses a function whose own
  tests fail gives no hint of its own but "fix `merge_pair` first: it fails its own tests"
  (graders.prerequisites), in the terminal and in every result.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from . import catalog, crossings, impl, recording, values
from .prerequisites import NotingCalls, PrerequisiteHints, calls_of
from . import session as sessions

# dev skips shrinking: a student's failure shows its first failing example at once, and a
# stub (every example fails) costs one example, not a shrinking search.
PROFILES = {
    "dev": settings(max_examples=15, phases=[Phase.explicit, Phase.reuse, Phase.generate]),
    "ci": settings(max_examples=40),
    "grading": settings(max_examples=40, phases=[Phase.explicit, Phase.reuse, Phase.generate]),
}
for _name, _profile in PROFILES.items():
    settings.register_profile(
        _name, _profile, derandomize=True, database=None, deadline=None, print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
    )



def _no_local_constants() -> None:
    """Make hypothesis's examples independent of which modules happen to be imported.

    Hypothesis mixes into generation literal constants read from every *local* module
    loaded so far (hypothesis >= 6.131). Here that would make the examples depend on
    whether the student's module (and the reference) were imported: a test run alone
    would get other inputs than in the whole suite, and the grader's trusted replay (which
    never imports student code) other inputs than the sandbox that recorded them. So the
    pool of local constants is pinned empty; hypothesis's own "nasty" constants stay.
    tests/test_plugin.py checks that the examples do not change when a module is imported.
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - a hypothesis without providers has no such pool
        return
    if hasattr(providers, "_get_local_constants"):
        empty = providers.Constants()
        providers._get_local_constants = lambda: empty


_no_local_constants()


def _seed_from_names() -> None:
    """Derive each test's derandomized seed from its name and parameters, not its source.

    Hypothesis seeds a derandomized test from a digest of the test's source code. The grading
    sandbox runs the tests' source with the expected values stripped out (graders.withhold),
    so the source differs from the trusted replay's, and the two would draw other examples.
    The name (with the parametrize case) is the same on both sides.
    """
    import hashlib

    import hypothesis.core
    from hypothesis.internal.reflection import get_signature

    def digest(function) -> bytes:
        hasher = hashlib.sha384(f"{getattr(function, '__module__', '')}".rsplit(".", 1)[-1].encode())
        hasher.update(getattr(function, "__qualname__", getattr(function, "__name__", "")).encode())
        try:
            hasher.update(repr(get_signature(function)).encode())
        except Exception:  # noqa: BLE001 - as hypothesis: the signature is optional
            pass
        hasher.update(getattr(function, "_hypothesis_internal_add_digest", b""))
        return hasher.digest()

    hypothesis.core.function_digest = digest


_seed_from_names()

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kata", "llm-katas")
    group.addoption("--impl", default=None, metavar="katas|reference|PATH",
                    help="implementation under test: the stubs (katas, default), the model solutions "
                         "(reference), or a submission directory laid out like katas/ [env: KATA_IMPL]")
    group.addoption("--hidden", action="store_true", default=None,
                    help="also run the instructors' hidden tests (default with --impl reference)")
    group.addoption("--kata-report", default=None, metavar="FILE",
                    help="write every test result, with kata and points, to FILE as JSON")
    group.addoption("--kata-record", default=None, metavar="DIR",
                    help="(grading sandbox) record every crossing into student code into DIR")
    group.addoption("--kata-replay", default=None, metavar="DIR",
                    help="(trusted grader) answer every crossing into student code from DIR; never import it")
    group.addoption("--kata-control-fd", default=None, type=int, metavar="FD",
                    help="(grading sandbox) report each test's start and end, and each student call, on FD")
    group.addoption("--kata-skip-function", action="append", default=[], metavar="NAME",
                    help="(grading sandbox) do not call this student function: it timed out before")
    group.addoption("--kata-max-test-seconds", default=None, type=float, metavar="S",
                    help="(grading sandbox) every test's timeout at most S seconds")
    group.addoption("--kata-timeout-budget", default=None, type=int, metavar="N",
                    help="(grading sandbox) after N timeouts, every test's timeout is --kata-short-timeout")
    group.addoption("--kata-short-timeout", default=10.0, type=float, metavar="S")
    group.addoption("--kata-timing-fd", default=None, type=int, metavar="FD",
                    help="(grading sandbox) a timing run: read which side to time from FD")
    group.addoption("--kata-timings", default=None, metavar="FILE",
                    help="(trusted grader) throughput timings the grader measured itself")


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "points(n): points this graded test is worth",
        "hidden: instructor-only test (fresh inputs, expected values from the reference)",
        "gpu: needs a CUDA GPU; skipped cleanly without one",
        "throughput: timing check (a ratio against a baseline measured in the same run)",
        "mutation: project self-check that runs kata tests against the stubs, mutants and alternatives (slow stage)",
        "grading: end-to-end `kata grade` of adversarial submissions (slow stage)",
        "slow: a long kata check (a capstone training): left out of the default suite; kata grade, "
        "kata check and the self-checks run it",
    ):
        config.addinivalue_line("markers", line)
    import torch

    # One thread by default: tiny kata tensors run faster without thread hand-offs, results
    # do not depend on the machine's core count, and parallel runs do not oversubscribe.
    torch.set_num_threads(int(os.environ.get("KATA_THREADS", "1")))
    label = config.getoption("impl") or os.environ.get(impl.ENV_VAR) or "katas"
    implementation = impl.resolve(label)
    if not implementation.root.is_dir():
        raise pytest.UsageError(f"--impl {label}: {implementation.root} is not a directory")
    os.environ[impl.ENV_VAR] = str(implementation.root)  # subprocesses and xdist workers agree
    if config.getoption("hidden") is None:
        config.option.hidden = implementation.label == "reference" or os.environ.get("KATA_HIDDEN") == "1"
    if getattr(config.option, "hypothesis_profile", None) is None:
        default = "ci" if os.environ.get("CI") else "dev"
        settings.load_profile(os.environ.get("KATA_HYPOTHESIS_PROFILE", default))
    kata_session = sessions.KataSession(implementation)
    if config.getoption("kata_record"):
        kata_session.mode = sessions.Mode.RECORD
        kata_session.recordings = Path(config.getoption("kata_record"))
        kata_session.link = recording.sandbox_link(config.getoption("kata_control_fd"),
                                                   config.getoption("kata_skip_function"),
                                                   config.getoption("kata_timing_fd"))
    elif config.getoption("kata_replay"):
        kata_session.mode = sessions.Mode.REPLAY
        kata_session.recordings = Path(config.getoption("kata_replay"))
        kata_session.timings = recording.load_timings(config.getoption("kata_timings"))
    kata_session.crossing = crossings.for_mode(kata_session.mode)
    if kata_session.mode != sessions.Mode.REPLAY:  # the replay's calls are read from its recording
        kata_session.crossing = NotingCalls(kata_session.crossing, kata_session)
    sessions.begin(config, kata_session)
    config.pluginmanager.register(PrerequisiteHints(config), "kata-prerequisite-hints")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session is over: the one around it (grading runs sessions inside sessions), if
    any, is active again."""
    sessions.end(config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    current = sessions.of(config).implementation
    hidden = "with hidden tests" if config.option.hidden else "public tests only"
    return [f"kata implementation: {current.label} ({current.root}); {hidden}; "
            f"hypothesis profile: {settings._current_profile}"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if not config.option.hidden:
        hidden = [i for i in items if i.get_closest_marker("hidden")]
        if hidden:
            config.hook.pytest_deselected(items=hidden)
            items[:] = [i for i in items if not i.get_closest_marker("hidden")]
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU; none is available on this machine")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)
    cap = config.getoption("kata_max_test_seconds", None)
    if cap:  # the kata has used its timeouts in the grading sandbox: every test gets a short one
        for item in items:
            marker = item.get_closest_marker("timeout")
            seconds = (marker.args[0] if marker and marker.args else None) or config.getoption("timeout", None) or cap
            item.add_marker(pytest.mark.timeout(min(float(seconds), cap)))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    active = sessions.of(item.config)
    budget = item.config.getoption("kata_timeout_budget", None)
    if active.mode == sessions.Mode.RECORD and budget is not None and recording.timeouts_so_far() >= budget:
        # This kata has used its timeouts: the rest of its tests get a short one.
        item.add_marker(pytest.mark.timeout(item.config.getoption("kata_short_timeout")))
    active.item = item
    values.clear_call_log()
    recording.start_test(item.nodeid)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings) -> bool | None:
    """pytest-timeout's signal timer, without its terminal output.

    pytest-timeout's own handler writes a title and the other threads' stacks to pytest's
    terminal before it fails the test. `kata check` runs pytest without a terminal, where
    that handler fails with an AssertionError, raised inside the student's function and
    reported as their error. This one only fails the test, with pytest-timeout's message
    (graders.crossings turns it into "TIMEOUT in your `train_bpe` after 60 s"). Off the main
    thread, or with the thread method, pytest-timeout's own timer runs.
    """
    import signal
    import threading

    import pytest_timeout

    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        __tracebackhide__ = True
        if settings.disable_debugger_detection or not pytest_timeout.is_debugging():
            pytest.fail(pytest_timeout.PYTEST_FAILURE_MESSAGE % settings.timeout)

    def cancel():
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel
    signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True


def pytest_runtest_teardown(item: pytest.Item) -> None:
    values.clear_call_log()
    recording.finish_test()
    sessions.of(item.config).item = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    if call.when == "setup":
        kata_id = catalog.kata_id_for_test_file(item.path)
        report.user_properties.extend([
            ("kata", kata_id or ""),
            ("points", catalog.points_of(item)),
            ("hidden", item.get_closest_marker("hidden") is not None),
        ])
        item.user_properties[:] = report.user_properties
    report.user_properties.append(("calls", calls_of(item)))
    return report


def _message(report: pytest.TestReport) -> str:
    if report.passed:
        return ""
    if report.skipped and isinstance(report.longrepr, tuple):
        return report.longrepr[2]
    if hasattr(report.longrepr, "reprcrash") and report.longrepr.reprcrash is not None:
        # pytest.fail(pytrace=False) leaves the whole message as the crash message
        text = str(report.longrepr)
        return text if len(text) < 4000 else text[:4000] + "\n..."
    return str(report.longrepr)[:4000]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """One result per test: the call's outcome, or the setup's when setup did not pass."""
    properties = dict(report.user_properties)
    if not sessions.in_pytest() or "kata" not in properties:
        return
    results = sessions.active().results
    if report.failed and "Timeout (>" in str(report.longrepr)[-2000:]:
        recording.timed_out(report.nodeid)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        results.append({
            "nodeid": report.nodeid,
            "kata": properties["kata"],
            "points": properties.get("points"),
            "hidden": properties.get("hidden", False),
            "outcome": "error" if report.when == "setup" and report.failed else report.outcome,
            "message": _message(report),
            "duration": round(report.duration, 4),
            "calls": list(properties.get("calls", ())),
        })
    elif report.when == "teardown" and report.failed:
        for result in results:
            if result["nodeid"] == report.nodeid:
                result["outcome"], result["message"] = "error", _message(report)


# Failures that say why a whole kata fails, by the count kata_totals keeps of them.
FAILURE_KINDS = {"NOT STARTED": "not_started", "SYNTAX ERROR": "syntax_errors", "IMPORT ERROR": "import_errors"}


def kata_totals(results: list[dict]) -> dict[str, dict]:
    """Per kata: points earned and possible, and counts of test outcomes and of the failures
    that say why a whole kata fails (a stub, a module that cannot be imported)."""
    totals: dict[str, dict] = {}
    for r in results:
        if not r["kata"]:
            continue
        t = totals.setdefault(r["kata"], {"earned": 0.0, "possible": 0.0, "passed": 0, "failed": 0, "skipped": 0,
                                           **{count: 0 for count in FAILURE_KINDS.values()}})
        points = r["points"] or 0.0
        if r["outcome"] == "skipped":
            t["skipped"] += 1
            continue
        t["possible"] += points
        if r["outcome"] == "passed":
            t["earned"] += points
            t["passed"] += 1
        else:
            t["failed"] += 1
            for kind, count in FAILURE_KINDS.items():
                if kind in (r["message"] or ""):
                    t[count] += 1
    return totals


def status_of(t: dict) -> str:
    """One word or two for a kata's row. A module that cannot be imported fails every test
    that uses it: the reason is the status, not "failing". (Saved totals of older versions
    lack the newer counts.)"""
    if t["failed"] == 0 and t["passed"] > 0:
        return "passing"
    if t.get("syntax_errors"):
        return "syntax error"
    if t.get("import_errors"):
        return "import error"
    if t["passed"] == 0 and t.get("not_started"):
        return "not started"
    if t["passed"] == 0 and t["failed"] == 0:
        return "no tests"
    return "failing"


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    totals = kata_totals(sessions.of(config).results)
    if not totals:
        return
    tr = terminalreporter
    tr.section("kata points")
    for kata_id, t in totals.items():
        tr.write_line(f"{kata_id:<28} {t['earned']:>6g} / {t['possible']:<6g} {status_of(t)}")
    earned = sum(t["earned"] for t in totals.values())
    possible = sum(t["possible"] for t in totals.values())
    tr.write_line(f"{'total':<28} {earned:>6g} / {possible:<6g}")


def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    config = session.config
    path = config.getoption("kata_report")
    if path and not hasattr(config, "workerinput"):
        Path(path).write_text(json.dumps({
            "implementation": str(sessions.of(config).implementation.root),
            "hidden": bool(config.option.hidden),
            "results": sessions.of(config).results,
        }, indent=1))
