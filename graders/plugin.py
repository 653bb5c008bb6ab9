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
  (see `hold_back_dependent_hints`), in the terminal and in every result.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from . import catalog, crossings, impl, recording, values
from . import session as sessions
from .events import Crossing, Kind

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
        "mutation: project self-check that runs kata tests against mutants (slow stage)",
        "grading: end-to-end `kata grade` of adversarial submissions (slow stage)",
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


# --- hints that rest on another function's failure ------------------------------------------
#
# One broken function fails the tests of every function that uses it, each with its own hint:
# an overlapping `merge_pair` makes `train_bpe` learn other merges, and its test then blames
# the tie-break. Which student functions a test used is known: what it called across the
# boundary (noted per test, below) and what those functions name in the student's source
# (`train_bpe` calls `merge_pair` there). A function's *own* tests are those that call it
# alone. Once every test has run (so the order they ran in does not matter), a failed test
# that used a function whose own tests fail, and is not one of them, gives that function
# instead of its hint: "fix `merge_pair` first: it fails its own tests".

CALLS = pytest.StashKey[list[str]]()  # per test: the student calls it made, named as call_key names them
UNNAMED_CODE = "*"  # a test ran student code the harness cannot name (trusted glue over student objects)
# Failures where no student code ran: they say what to do already, whatever else fails.
NOTHING_RAN = ("NOT STARTED", "MISSING", "SYNTAX ERROR", "IMPORT ERROR")
HINT_LINES = re.compile(r"^(?:Likely cause, if .*:\n)?Hint \(.*(?:\n|$)", re.MULTILINE)
CALLED = re.compile(r"^Called ([\w.]+)\(", re.MULTILINE)  # the call whose result (or crash) failed the test


class NotingCalls:
    """The session's crossing object (graders.crossings), noting on the running test which
    student functions it calls: `merge_pair`, `Tokenizer.encode`, `Block.__call__`."""

    def __init__(self, crossing: crossings.Live, kata_session: sessions.KataSession):
        self._crossing = crossing
        self._session = kata_session

    def _note(self, name: str) -> None:
        item = self._session.item
        if item is not None:
            calls = item.stash.setdefault(CALLS, [])
            if name not in calls:
                calls.append(name)

    def call(self, module, name, fn, args, kwargs, ref):
        __tracebackhide__ = True
        self._note(values.call_key(name, ref))
        return self._crossing.call(module, name, fn, args, kwargs, ref)

    def glue(self, module, glue, args):
        __tracebackhide__ = True
        self._note(UNNAMED_CODE)
        return self._crossing.glue(module, glue, args)

    def __getattr__(self, attr: str):
        return getattr(self._crossing, attr)


def calls_of(item: pytest.Item) -> list[str]:
    """The student calls a test made; in the trusted replay, those its recording answered."""
    active = sessions.of(item.config)
    if active is not None and active.mode == sessions.Mode.REPLAY and active.recording is not None:
        item.stash[CALLS] = _answered_calls(active.recording)
    return list(item.stash.get(CALLS, ()))


def _answered_calls(rec: recording.TestRecording) -> list[str]:
    """(replay) The calls among the events the test has read so far, named as the sandbox's
    crossing named them: objects by the class their constructor's answer recorded."""
    classes: dict[int, str] = {}
    calls: list[str] = []
    for event in (rec.events or [])[:rec.cursor]:
        if not isinstance(event, Crossing):
            continue
        if event.kind == Kind.GLUE:
            calls.append(UNNAMED_CODE)
        elif event.kind == Kind.CALL:
            kind, *rest = event.ref
            if kind == "f":
                calls.append(values.call_key(rest[1], ("f",)))
            elif kind in ("o", "m"):
                cls = classes.get(rest[0], "?")
                calls.append(f"{cls}.__call__" if kind == "o" else f"{cls}.{rest[1]}")
        classes.update(_objects_in(event.returned))
    return list(dict.fromkeys(calls))


def _objects_in(encoded) -> dict[int, str]:
    """Object id -> class name, for every student object in an encoded value."""
    found: dict[int, str] = {}
    if isinstance(encoded, dict):
        if "o" in encoded and "type" in encoded:
            found[encoded["o"]] = encoded["type"]
        for value in encoded.values():
            found.update(_objects_in(value))
    elif isinstance(encoded, list):
        for value in encoded:
            found.update(_objects_in(value))
    return found


@dataclass(frozen=True)
class CallGraph:
    """Which functions of a student module each one names in its source.

    Keys are named as the boundary names calls: `train_bpe`, `Tokenizer.encode`, `Block.__call__`
    (calling a module runs its `forward`), and `Tokenizer`: the object, which uses every method
    of its class (a test that hands it to `fertility` does not know which ones run). Reading
    is conservative: a call the source does not spell out (`self.blocks[i](x)`) is no edge."""

    uses: dict[str, frozenset[str]]

    def reach(self, names) -> set[str]:
        """`names` and everything they use, directly or through others."""
        seen, todo = set(names), list(names)
        while todo:
            for used in self.uses.get(todo.pop(), ()):
                if used not in seen:
                    seen.add(used)
                    todo.append(used)
        return seen


def call_graph(path: Path) -> CallGraph:
    try:
        return _call_graph(path, path.stat().st_mtime_ns)
    except OSError:
        return CallGraph({})


@functools.lru_cache(maxsize=64)
def _call_graph(path: Path, mtime_ns: int) -> CallGraph:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return CallGraph({})
    defined = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    methods = {name: {m.name: m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
               for name, node in defined.items() if isinstance(node, ast.ClassDef)}

    def named_in(code: ast.AST, cls: str | None) -> frozenset[str]:
        found = set()
        for ref in ast.walk(code):
            if isinstance(ref, ast.Name) and ref.id in defined:
                found |= {ref.id, f"{ref.id}.__call__"} if ref.id in methods else {ref.id}
            elif (cls is not None and isinstance(ref, ast.Attribute) and isinstance(ref.value, ast.Name)
                  and ref.value.id in ("self", "cls", cls) and ref.attr in methods[cls]):
                found.add(f"{cls}.{ref.attr}")
        return frozenset(found)

    uses: dict[str, frozenset[str]] = {}
    for name, node in defined.items():
        if name not in methods:
            uses[name] = named_in(node, None)
            continue
        own = methods[name]
        for method, definition in own.items():
            uses[f"{name}.{method}"] = named_in(definition, name)
        # An object may be handed to other student code, which may call any of its methods.
        body = [s for s in node.body if s not in own.values()]
        uses[name] = frozenset().union(*(named_in(s, name) for s in body), {f"{name}.{m}" for m in own})
        if "__call__" not in own and "forward" in own:
            uses[f"{name}.__call__"] = frozenset({f"{name}.forward"})
    return CallGraph(uses)


def subjects(calls) -> frozenset[str]:
    """What a test tests: the functions it calls, less the constructors of the classes whose
    methods it calls (building the object is only the way to its methods)."""
    return frozenset(c for c in calls if not any(other.startswith(f"{c}.") for other in calls))


@dataclass(frozen=True)
class Prerequisite:
    """Why a failed test's hint is held back: functions it uses fail their own tests."""

    functions: tuple[str, ...]  # the deepest ones: none of them uses another
    own_tests: tuple[str, ...]  # some of their failed own tests, by name
    used_by: str | None  # the function of the test's that uses them; None: the test calls them itself

    def text(self) -> str:
        one = len(self.functions) == 1
        names = " and ".join(f"`{f}`" for f in self.functions)
        them = "it" if one else "them"
        fail = f"{'it fails its' if one else 'they fail their'} own tests ({', '.join(self.own_tests)})"
        if self.used_by is None:  # the test calls them itself: whether their result reaches this call is unknown
            return (f"Note: {names} {fail.removeprefix('it ').removeprefix('they ')}, and this test calls "
                    f"{them} too: if {'its' if one else 'their'} result reaches the call above, fix {them} first.")
        return (f"Hint: fix {names} first: {fail}, and your `{self.used_by}` uses {them}, so this failure "
                f"may only be a consequence (this test's own hint shows once {'it passes' if one else 'they pass'}).")


def prerequisites(results: list[dict], graph_of) -> dict[str, Prerequisite]:
    """nodeid -> the prerequisite of each failed result that uses a function failing its own
    tests. `graph_of(kata_id)` is the CallGraph of the kata's student module."""
    failing_own: dict[tuple[str, str], list[tuple[bool, str]]] = {}  # public tests first, by name
    for r in results:
        tested = subjects(r.get("calls", ()))
        if r["outcome"] in ("failed", "error") and len(tested) == 1 and UNNAMED_CODE not in tested:
            failing_own.setdefault((r["kata"], next(iter(tested))), []).append(
                (bool(r.get("hidden")), r["nodeid"].split("::")[-1]))
    found = {}
    for r in results:
        tested = subjects(r.get("calls", ()))
        if (r["outcome"] not in ("failed", "error") or not tested or UNNAMED_CODE in tested
                or any(kind in (r["message"] or "") for kind in NOTHING_RAN)):
            continue
        graph = graph_of(r["kata"])
        # Not a function the test is an own test of, nor the one whose result failed this
        # test (the failure is its own), nor one that uses what the test tests (they use each
        # other: neither can be said to come first).
        culprit = _failing_call(r)
        suspects = {f for f in graph.reach(tested) if (r["kata"], f) in failing_own and tested != {f}
                    and f != culprit and not (graph.reach({f}) - {f}) & tested}
        if suspects:
            found[r["nodeid"]] = _prerequisite(suspects, tested, graph, lambda f: failing_own[(r["kata"], f)])
    return found


def _failing_call(result: dict) -> str | None:
    """The student call whose result or crash failed the test, from its message's "Called"
    line, named as the test's calls name it."""
    found = CALLED.search(result["message"] or "")
    if found is None:
        return None
    name = found.group(1).removesuffix(".with_grad")
    return f"{name}.__call__" if f"{name}.__call__" in result.get("calls", ()) else name


def _prerequisite(suspects: set[str], tested: frozenset[str], graph: CallGraph, own_tests) -> Prerequisite:
    # A suspect that uses another suspect may fail only because of it: name the deeper one.
    deepest = {f for f in suspects if not (graph.reach({f}) - {f}) & suspects} or suspects
    functions = tuple(sorted(deepest))
    used_by = None
    if not set(functions) <= tested:
        used_by = next((t for t in sorted(tested) if t not in functions and set(functions) & graph.reach({t})), None)
    failed = [name for _, name in sorted({test for f in functions for test in own_tests(f)})]
    return Prerequisite(functions, tuple(failed[:2]) + (("...",) if len(failed) > 2 else ()), used_by)


def without_hint(message: str, prerequisite: Prerequisite) -> str:
    """The failure's message with its hint replaced by what to fix first, or, where the test
    calls the failing function itself (so this failure may still be the call's own), with a
    note added under the hint."""
    if prerequisite.used_by is None:
        return message.rstrip("\n") + "\n" + prerequisite.text()
    return HINT_LINES.sub("", message).rstrip("\n") + "\n" + prerequisite.text()


class PrerequisiteHints:
    """Rewrites, at the end of the session, the failures whose hint rests on another
    function's failure: in the results (`--kata-report`, `kata check`) and in the reports
    pytest's terminal summary prints after this."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.failed: dict[str, pytest.TestReport] = {}  # nodeid -> the report its result came from

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.failed[report.nodeid] = report

    @pytest.hookimpl(tryfirst=True)  # before graders.plugin writes --kata-report
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        active = sessions.of(self.config)
        if active is None or hasattr(self.config, "workerinput"):
            return
        implementation = active.implementation

        def graph_of(kata_id: str) -> CallGraph:
            return call_graph(implementation.path_of(catalog.load(kata_id).module)) if kata_id else CallGraph({})

        found = prerequisites(active.results, graph_of)
        for r in active.results:
            prerequisite = found.get(r["nodeid"])
            if prerequisite is None:
                continue
            r["message"] = without_hint(r["message"], prerequisite)
            r["prerequisites"] = list(prerequisite.functions)
            report = self.failed.get(r["nodeid"])
            if report is not None:
                report.longrepr = without_hint(str(report.longrepr), prerequisite)


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
