"""How a crossing into student code happens, one object per mode.

A `StudentModule` (graders.boundary) hands every crossing — a module attribute, a call, an
attribute, item, length or iteration of a student object, trusted glue — to the crossing
object of the session, chosen once when pytest configures it (graders.plugin):

    Live      student code runs here, under the kata's guard, on copies of pure calls'
              inputs, and its result is judged here (`pytest`, `kata check`, notebooks)
    Recorder  the same in the grading sandbox, and every question and answer is written to
              the test's recording (graders.events): judging happens elsewhere
    Replayer  the trusted grader: student code is never imported; each crossing is
              answered from the recording, after checking the test asks the same thing

`Recorder` is `Live` plus a `Journal` that writes the events; `Live`'s journal writes
nothing. The methods of `Replayer` follow those of `Live` in the same order, so the record
and the replay of one kind of crossing read side by side.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from . import recording, static
from .events import Callback, Crossing, Kind
from .guard import ForbiddenAPIError, forbid
from .impl import ImplementationError
from .proxies import StudentCallable, StudentObject
from .session import Mode
from .values import (call_key, copies, describe_call, exception_record, expected_exceptions, fail,
                     implementation_problem, is_callback, remember, replayed_exception, same, stub_signature,
                     student_traceback, unplain, unwrap_args, with_iterators)

if TYPE_CHECKING:
    from .boundary import StudentModule

CHANGED_TEST_STATE = ("ERROR in your `{name}`: it changed objects the test gave your code earlier (e.g. "
                      "tensors an object of yours keeps), which only the kata's mutating calls may do")


def _missing(module: "StudentModule", name: str) -> str:
    kind = "CONSTANT" if name.isupper() else "CLASS" if name[:1].isupper() else "FUNCTION"
    return f"MISSING {kind}: `{name}` not found in {module.implementation.display_path(module._dotted)}"


class Journal:
    """What a live crossing tells the recording: nothing (`Live`); see `RecordingJournal`."""

    def attribute(self, module, name: str, **answer) -> None:
        pass

    def object_attribute(self, obj: StudentObject, attr: str, **answer) -> None:
        pass

    def encode(self, value) -> Any:
        return None

    def simple(self, obj: StudentObject, kind: str, args: tuple, encoded) -> None:
        pass

    def before_call(self, module, name: str, ref: tuple, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, kwargs

    def changed_test_state(self, mutating: bool) -> bool:
        """Whether a call the kata declares pure changed objects the test gave student code
        earlier (tensors an object of theirs keeps): only a recording can tell."""
        return False

    def call_answered(self, mutating: bool, **answer) -> None:
        """The call's answer, and after it the test objects a mutating call changed."""

    def glue(self, name: str, **answer) -> None:
        pass

    def paused(self):
        return contextlib.nullcontext()


class RecordingJournal(Journal):
    """Writes each crossing of the test running now into its recording (record mode)."""

    def __init__(self, rec: recording.TestRecording):
        self.rec = rec
        self.call: Crossing | None = None

    def attribute(self, module, name, **answer):
        self.rec.add(Crossing(Kind.ATTR, ["attr", module._dotted, name], **answer))

    def object_attribute(self, obj, attr, **answer):
        self.rec.add(Crossing(Kind.GET, ["get", self.rec.oid_of(obj), attr], **answer))

    def encode(self, value):
        return recording.encode(value, self.rec)

    def simple(self, obj, kind, args, encoded):
        self.rec.add(Crossing(Kind(kind), [kind, self.rec.oid_of(obj)], recording.digest(args, self.rec),
                              returned=encoded))

    def before_call(self, module, name, ref, args, kwargs):
        kind, *rest = ref if ref[1] is not None else ("f", name)
        asked = (["f", module._dotted, rest[0]] if kind == "f" else ["o", self.rec.oid_of(rest[0])] if kind == "o"
                 else ["m", self.rec.oid_of(rest[0]), rest[1]])
        if name.endswith(".with_grad"):
            asked.append("with_grad")
        self.call = Crossing(Kind.CALL, asked, recording.digest((args, kwargs), self.rec))
        self.rec.track((args, tuple(kwargs.values())))  # not the kwargs dict: the test never holds it
        # The test's generators pass through as they are, each item tracked as student code reads it.
        args, kwargs = with_iterators(args, self.rec.reading), dict(zip(kwargs, with_iterators(
            tuple(kwargs.values()), self.rec.reading)))
        return self._recorded_callbacks(args), {k: self._recorded_callbacks((v,))[0] for k, v in kwargs.items()}

    def changed_test_state(self, mutating):
        return not mutating and not self.rec.record_writes(allowed=False)  # (records nothing)

    def call_answered(self, mutating, **answer):
        self.rec.add(dataclasses.replace(self.call, **answer))
        self.rec.record_consumption()  # before the writes: they may name the items read
        self.rec.record_writes(allowed=mutating)

    def glue(self, name, **answer):
        self.rec.add(Crossing(Kind.GLUE, ["glue", name], **answer))

    def paused(self):
        return self.rec.paused()

    def _recorded_callbacks(self, values: tuple) -> tuple:
        """The test's callables, each wrapped so that student code's calls of it are recorded."""
        def proxy(value):
            if not is_callback(value):
                return value
            handle = self.rec.callback_id(value)

            def recorded(*a, **k):
                self.rec.add(Callback(handle, recording.encode(list(a), self.rec)))
                return value(*a, **k)

            return recorded

        return tuple(proxy(v) for v in values)


class Live:
    """Student code runs in this process and its results are judged here."""

    mode = Mode.LIVE

    def journal(self) -> Journal:
        return Journal()

    def attribute(self, module: "StudentModule", name: str):
        __tracebackhide__ = True
        journal = self.journal()
        importing = recording.importing(module._dotted)  # a module whose import hung is not imported again
        implementation = module.implementation
        imported = f"{implementation.package}.{module._dotted}" in sys.modules
        problem = None if imported else recording.calling(importing)
        if problem is None:
            try:
                with module._guarded("*"):  # the module's own code runs as it is imported
                    imported_module = implementation.import_module(module._dotted)
                if not hasattr(imported_module, name):
                    problem = _missing(module, name)
            except ImplementationError as exc:
                problem = self._import_problem(importing, exc, implementation.root)
            finally:
                if not imported:
                    recording.calling(None)
        if problem is not None:
            # Failed outside the except block: pytest would print the import's error twice,
            # "During handling of the above exception" between.
            journal.attribute(module, name, failure=problem)
            fail(problem)
        value = getattr(imported_module, name)
        if callable(value) and module._owns(value):
            journal.attribute(module, name, callable=True)
            return StudentCallable(value, name, module, ref=("f", name))
        journal.attribute(module, name, returned=journal.encode(value))
        return value

    def _import_problem(self, importing: str, error: ImplementationError, root: Path) -> str:
        """Why the module cannot be imported; a live run reports a hung import like a hung call."""
        seconds = recording.timeout_seconds(str(error))
        if seconds is None:
            return implementation_problem(error, root)
        recording.interrupted_by_timeout(importing, seconds)  # pytest-timeout stopped the import
        return recording.timeout_text(importing, seconds) if self.mode == Mode.LIVE else str(error)

    def object_attribute(self, module: "StudentModule", obj: StudentObject, attr: str):
        __tracebackhide__ = True
        journal = self.journal()
        cls_name = type(obj._kata_target).__name__
        problem = None
        try:
            with module._guarded("*"):  # a property is student code too; so is a lazy value's encoding
                value = getattr(obj._kata_target, attr)
                is_method = inspect.ismethod(value) or (
                    callable(value) and not isinstance(value, type) and hasattr(value, "__self__"))
                wrapped = None if is_method else module._wrap(value, reached_from_object=True)
                strange = None if is_method else unplain(wrapped)
                encoded = journal.encode(wrapped) if not is_method and not strange else None
        except NotImplementedError:  # a stub's property
            problem = f"NOT STARTED: `{cls_name}.{attr}` still raises NotImplementedError."
        except ForbiddenAPIError as exc:
            problem = f"FORBIDDEN: reading `{attr}` ran `{exc.api}`, which is not allowed in {module.kata.id}."
        if problem:
            fail(problem)
        if is_method:
            journal.object_attribute(obj, attr, method=True)
            return StudentCallable(value, f"{cls_name}.{attr}", module, ref=("m", obj, attr))
        if strange:
            fail(f"ERROR in your `{cls_name}`: its `{attr}` is {strange}; keep plain tensors, arrays and values")
        journal.object_attribute(obj, attr, returned=encoded)
        return wrapped

    def simple(self, module: "StudentModule", obj: StudentObject, kind: str, action: Callable, args: tuple):
        """setattr / getitem / len / iter on a student object."""
        __tracebackhide__ = True
        journal = self.journal()
        forbidden = None
        try:
            with module._guarded("*"):
                result = action()
                strange = unplain(result)
                encoded = journal.encode(result) if not strange else None
        except ForbiddenAPIError as exc:
            forbidden = exc.api
        if forbidden:
            fail(f"FORBIDDEN: your object ran `{forbidden}`, which is not allowed in {module.kata.id}.")
        if strange:
            fail(f"ERROR in your `{type(obj._kata_target).__name__}`: it gave {strange}; "
                 "keep plain tensors, arrays and values")
        journal.simple(obj, kind, args, encoded)
        return result

    def call(self, module: "StudentModule", name: str, fn: Callable, args: tuple, kwargs: dict, ref: tuple):
        __tracebackhide__ = True
        journal = self.journal()
        key = call_key(name, ref)
        mutating = module.kata.may_mutate(key)
        args, kwargs = journal.before_call(module, name, ref, args, kwargs)
        args, kwargs = unwrap_args(args, kwargs)
        description = describe_call(name, fn, args, kwargs)
        where = module.implementation.display_path(module._dotted)
        expected = expected_exceptions()
        # A call that may not change the test's objects works on copies of them: the test's
        # own stay pristine for its oracle, and a change is caught below.
        given = (args, kwargs) if mutating else copies((args, kwargs))
        problem = recording.calling(key)
        if problem is None:
            try:
                with module._guarded(name.split(".")[0]):
                    result = module._wrap(fn(*given[0], **given[1]))
                    # Checked and encoded while the guard is still armed: a result that computes
                    # lazily (a Tensor subclass, a custom __eq__) cannot run forbidden code later.
                    strange = unplain(result)
                    encoded = journal.encode(result) if strange is None else None
            except NotImplementedError:
                problem = f"NOT STARTED: `{name}` in {where} still raises NotImplementedError."
            except ForbiddenAPIError as exc:
                problem = (f"FORBIDDEN: your `{name}` called `{exc.api}`, which is not allowed in "
                           f"{module.kata.id}: this kata is about writing it yourself.")
            except SystemExit as exc:
                problem = f"ERROR in your `{name}`: it called sys.exit({exc.code!r})."
            except pytest.fail.Exception as exc:
                seconds = recording.timeout_seconds(str(exc))
                if seconds is None:
                    raise
                recording.interrupted_by_timeout(key, seconds)  # pytest-timeout stopped the call
                if self.mode != Mode.LIVE:
                    raise  # the grader says which test timed out, and in which function
                problem = recording.timeout_text(key, seconds)
            except Exception as exc:
                if expected and isinstance(exc, expected) and (mutating or same(given, (args, kwargs))):
                    journal.call_answered(mutating, raised=exception_record(exc))
                    recording.calling(None)
                    raise
                trace = student_traceback(exc, module.implementation.root)
                want = f" (expected {' or '.join(e.__name__ for e in expected)})" if expected else ""
                problem = f"ERROR in your `{name}`: {type(exc).__name__}: {exc}{want}" + (f"\n{trace}" if trace else "")
            else:
                if strange is not None:
                    problem = (f"ERROR in your `{name}`: it returned {strange}; return plain torch.Tensor, "
                               "numpy arrays and Python values (results are checked as they are, not through "
                               "methods they define)")
            finally:
                recording.calling(None)
        if problem is None and not mutating and not same(given, (args, kwargs)):
            problem = (f"ERROR in your `{name}`: it changed one of its inputs in place. `{name}` must leave "
                       "the tensors, lists and dicts it is given as they were (work on a copy: `x.clone()`, "
                       "`list(ids)`)")
        if problem is None and journal.changed_test_state(mutating):
            problem = CHANGED_TEST_STATE.format(name=name)
        if problem is None:
            journal.call_answered(mutating, returned=encoded)
            remember(result, description)
            return result
        journal.call_answered(mutating, failure=f"{problem}\nCalled {description}")
        # Fail outside the except blocks, so the report does not chain the student's exception.
        fail(f"{problem}\nCalled {description}")

    def glue(self, module: "StudentModule", glue: Callable, args: tuple):
        __tracebackhide__ = True
        journal = self.journal()
        name = getattr(glue, "__name__", "glue")
        problem = None
        where = module.implementation.display_path(module._dotted)
        with journal.paused():  # the glue's own crossings are not recorded: its result is
            try:
                with forbid(module.kata.forbidden_for(name)):
                    result = glue(*args)
            except NotImplementedError:
                problem = f"NOT STARTED: {where} still raises NotImplementedError (while running {name})."
            except ForbiddenAPIError as exc:
                problem = (f"FORBIDDEN: your code called `{exc.api}` (while running {name}), which is not "
                           f"allowed in {module.kata.id}.")
            except Exception as exc:  # the student's error, reported like any call's
                problem = f"ERROR in your code (while running {name}): {type(exc).__name__}: {str(exc)[:300]}"
        if problem:
            journal.glue(name, failure=problem)
            fail(problem)
        journal.glue(name, returned=journal.encode(result))
        return result


class Recorder(Live):
    """The grading sandbox: `Live`, writing every crossing of the test into its recording.
    Inside a throughput measurement (the recording paused) nothing is written."""

    mode = Mode.RECORD

    def journal(self) -> Journal:
        rec = recording.current()
        return Journal() if rec is None or rec._paused else RecordingJournal(rec)


class Replayer:
    """The trusted grader: every crossing is answered from the test's recording."""

    mode = Mode.REPLAY

    @staticmethod
    def _next(kind: Kind, ref: list, args_digest: str | None = None) -> Crossing:
        __tracebackhide__ = True
        try:
            return recording.current().next(kind, ref, args_digest)
        except recording.RecordingError as exc:
            problem = str(exc)
        fail(problem)  # outside the except block: the reason is printed once, not chained

    @staticmethod
    def _decode(module: "StudentModule", data):
        rec = recording.current()
        rec.owner = module  # the replayed objects it returns answer through this module
        return recording.decode(data, rec)

    def attribute(self, module: "StudentModule", name: str):
        __tracebackhide__ = True
        event = self._next(Kind.ATTR, ["attr", module._dotted, name])
        if event.failure is not None:
            fail(event.failure)
        if event.callable:
            return recording.ReplayCallable(["f", module._dotted, name], name, module)
        return self._decode(module, event.returned)

    def object_attribute(self, module: "StudentModule", obj: recording.ReplayObject, attr: str):
        __tracebackhide__ = True
        event = self._next(Kind.GET, ["get", obj._kata_oid, attr])
        if event.method:
            return recording.ReplayCallable(["m", obj._kata_oid, attr], f"{obj._kata_type}.{attr}", module)
        return self._decode(module, event.returned)

    def simple(self, module: "StudentModule", ref: list, args: tuple):
        __tracebackhide__ = True
        event = self._next(Kind(ref[0]), ref, recording.digest(args, recording.current()))
        return self._decode(module, event.returned)

    def call(self, module: "StudentModule", ref: list, name: str, args: tuple, kwargs: dict):
        __tracebackhide__ = True
        rec = recording.current()
        description = describe_call(name, stub_signature(module._dotted, name, ref[0] == "o"), args, kwargs)
        rec.track((args, tuple(kwargs.values())))  # not the kwargs dict: the test never holds it
        with_iterators((*args, *kwargs.values()), rec.iterator_id)  # numbered as the sandbox did
        for value in list(args) + list(kwargs.values()):
            if is_callback(value):
                rec.callback_id(value)
        # The grader reads the submission's source for forbidden APIs itself (never running it).
        problem = static.problem_for(module, name)
        event = self._next(Kind.CALL, list(ref), recording.digest((args, kwargs), rec))
        mutating = module.kata.may_mutate(call_key(name, ("o",) if ref[0] == "o" else ("f",)))
        if not rec.apply_side_effects(allowed=mutating):
            problem = problem or CHANGED_TEST_STATE.format(name=name)
        if problem:
            fail(f"{problem}\nCalled {description}")
        if event.failure is not None:
            fail(event.failure)
        if event.raised is not None:
            raise replayed_exception(event.raised)
        result = self._decode(module, event.returned)
        remember(result, description)
        return result

    def glue(self, module: "StudentModule", glue: Callable, args: tuple):
        __tracebackhide__ = True
        event = self._next(Kind.GLUE, ["glue", getattr(glue, "__name__", "glue")])
        if event.failure is not None:
            fail(event.failure)
        return recording.decode(event.returned, recording.current())


CROSSINGS = {Mode.LIVE: Live(), Mode.RECORD: Recorder(), Mode.REPLAY: Replayer()}


def for_mode(mode: Mode) -> Live | Replayer:
    return CROSSINGS[Mode(mode)]
