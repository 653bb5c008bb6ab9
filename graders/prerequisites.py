"""Hints that rest on another function's failure ("fix `merge_pair` first").

One broken function fails the tests of every function that uses it, each with its own hint:
an overlapping `merge_pair` makes `train_bpe` learn other merges, and its test then blames
the tie-break. Which student functions a test used is known: what it called across the
boundary (noted per test, below) and what those functions name in the student's source
(`train_bpe` calls `merge_pair` there). A function's *own* tests are those that call it
alone. Once every test has run (so the order they ran in does not matter), a failed test
that used a function whose own tests fail, and is not one of them, gives that function
instead of its hint: "fix `merge_pair` first: it fails its own tests".

`NotingCalls` wraps the session's crossing object and notes each test's student calls;
`PrerequisiteHints` (registered by graders.plugin) rewrites the messages at the end of the
session; `prerequisites` is the pure part, over plain results, that decides.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import catalog, crossings, recording, values
from . import session as sessions
from .events import Crossing, Kind

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
