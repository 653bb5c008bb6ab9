"""The boundary between a test and student code.

Tests never import student modules. They write

    attention = student("week2.attention")
    out = attention.scaled_dot_product_attention(q, k, v, is_causal=True)

and every call crosses this boundary, which

- imports the module lazily from the chosen implementation root (so collection never
  errors), turning a missing file, a syntax error or a missing name into one failed test
  with a message a student understands (MISSING, SYNTAX ERROR, NOT STARTED, ERROR in ...);
- arms the kata's forbidden-API guard for exactly the duration of the student's call, so
  the oracle a test computes is never affected;
- remembers each call ("Called softmax(x[4,7], dim=-1)") so that a failing check can say
  which call produced the value it rejected;
- wraps objects of student classes so that their methods cross the boundary too.

Each crossing goes to the session's crossing object (graders.crossings): `Live` runs the
student code here, `Recorder` also writes it down in the grading sandbox, and `Replayer`
answers it from that recording in the trusted grader. The helpers that describe and copy
the values that cross live in graders.values; the proxies a test holds, in graders.proxies.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

from . import catalog, crossings, impl, recording, session
from .guard import forbid, no_new_threads
from .oracle import WITHHELD
from .proxies import StudentCallable, StudentObject, unwrap
from .session import Mode
from .values import implementation_problem


def type_name(value: Any) -> str:
    """The class name of a value, seen through proxies (live, recorded or replayed alike)."""
    if isinstance(value, recording.ReplayObject):
        return value._kata_type
    return type(unwrap(value)).__name__


def is_instance(value: Any, cls: type) -> bool:
    """`isinstance(value, cls)`, seen through proxies.

    Tests must not `unwrap` a student object to check its type: when grading, the trusted
    replay holds a stand-in that only knows the names of the object's classes, recorded where
    the student code ran. This compares those names (`module.QualName`) with `cls`.
    """
    if isinstance(value, recording.ReplayObject):
        return recording.class_names(cls)[0] in value._kata_mro
    return isinstance(unwrap(value), cls)


class StudentModule:
    """Lazy handle on `weekN.kata` of an implementation root (the chosen one by default).

    Every crossing goes to the session's crossing object: run live, recorded in the
    sandbox, or answered from the recording in the grader (which never imports student
    code). The reference (`role="reference"`) always runs live: it is trusted, and it exists
    only in the grader (in the sandbox its names are `WITHHELD`).
    """

    def __init__(self, dotted: str, implementation: impl.Implementation | None = None, role: str = "student"):
        self._dotted = dotted
        self._fixed_impl = implementation
        self._role = role
        self.kata = catalog.load(dotted.replace(".", "/"))

    @property
    def implementation(self) -> impl.Implementation:
        return self._fixed_impl or session.active().implementation

    @property
    def _crossing(self) -> crossings.Live | crossings.Replayer:
        if self._role == "reference":
            return crossings.for_mode(Mode.LIVE)
        return session.active().crossing or crossings.for_mode(session.active().mode)

    def module(self):
        __tracebackhide__ = True
        try:
            return self.implementation.import_module(self._dotted)
        except impl.ImplementationError as exc:
            problem = implementation_problem(exc, self.implementation.root)
        crossings.fail(problem)  # outside the except block: the error is printed once, not chained

    def __getattr__(self, name: str):
        __tracebackhide__ = True
        if name.startswith("_") or not _inside_a_test():
            # Kata APIs are public names, and student code runs only inside tests: pytest's
            # collection probes attributes (e.g. `_mock_name`), which must never import it.
            raise AttributeError(name)
        if self._role == "reference" and session.active().mode == Mode.RECORD:
            return WITHHELD  # the reference runs only in the trusted replay
        return self._crossing.attribute(self, name)

    def _owns(self, value: object) -> bool:
        return self.implementation.owns_module(getattr(value, "__module__", None))

    def _wrap(self, value: object, reached_from_object: bool = False) -> object:
        """A value of a student class becomes a `StudentObject` (so do modules reached from one)."""
        import torch.nn as nn

        if isinstance(value, (StudentObject, StudentCallable)):
            return value
        if self.implementation.owns_module(type(value).__module__) or (
                reached_from_object and isinstance(value, nn.Module)):
            return StudentObject(value, self)
        return value

    def _guarded(self, function: str):
        """The kata's forbidden-API guard for `function`, with threads refused where the kata
        forbids anything (work on another thread would escape the guard)."""
        stack = contextlib.ExitStack()
        stack.enter_context(forbid(self.kata.forbidden_for(function)))
        # The reference is trusted, and it runs in the grader's own process, whose other
        # threads (recording the next kata) must go on starting threads meanwhile.
        stack.enter_context(no_new_threads(bool(self.kata.forbidden) and self._role == "student"))
        return stack

    # --- what the proxies call (graders.proxies, and the replay's stand-ins in graders.recording)

    def _call(self, name: str, fn: Callable, args: tuple, kwargs: dict, ref: tuple = ("f", None)):
        __tracebackhide__ = True
        return self._crossing.call(self, name, fn, args, kwargs, ref)

    def _getattr_of(self, obj: StudentObject, attr: str):
        __tracebackhide__ = True
        return self._crossing.object_attribute(self, obj, attr)

    def _simple(self, obj: StudentObject, kind: str, action: Callable, *args):
        """setattr / getitem / len / iter on a student object."""
        __tracebackhide__ = True
        return self._crossing.simple(self, obj, kind, action, args)

    def _replay_call(self, ref: list, name: str, args: tuple, kwargs: dict):
        __tracebackhide__ = True
        return crossings.for_mode(Mode.REPLAY).call(self, ref, name, args, kwargs)

    def _replay_getattr(self, obj: recording.ReplayObject, attr: str):
        __tracebackhide__ = True
        return crossings.for_mode(Mode.REPLAY).object_attribute(self, obj, attr)

    def _replay_simple(self, ref: list, args: tuple):
        __tracebackhide__ = True
        return crossings.for_mode(Mode.REPLAY).simple(self, ref, args)

    def __repr__(self):
        return f"<{self._role} {self._dotted} from {self.implementation.label}>"


def _inside_a_test() -> bool:
    """False only while a pytest session is active but no test is running (collection)."""
    return not session.in_pytest() or session.active().item is not None


def in_one_crossing(kata: StudentModule, glue: Callable, *args):
    """Run `glue(*args)`, trusted test code that drives raw student objects, as ONE crossing.

    Some checks need thousands of operations on student objects (a 10,000-node micrograd
    graph built with `sum()`): one boundary crossing per operator would be slow and would
    swamp the grader's recording. Here the glue runs unwrapped, under the kata's forbidden-API
    guard; NotImplementedError and other exceptions are reported like any call's. When
    grading, the sandbox records the glue's result once (recording paused inside, as for
    throughput timing) and the trusted replay reads it back, so the result must be plain
    data or tensors, never a student object.
    """
    __tracebackhide__ = True
    return kata._crossing.glue(kata, glue, args)


def student(dotted: str) -> StudentModule:
    """The module under test, from the implementation chosen with --impl / $KATA_IMPL."""
    return StudentModule(dotted)


def reference(dotted: str) -> StudentModule:
    """The model solution (hidden tests only: students do not have `reference/`)."""
    return StudentModule(dotted, impl.reference(), role="reference")
