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

This is also the seam for secure grading: a recorder can stand here and see every value
that goes into and comes out of student code.
"""

from __future__ import annotations

import collections
import dataclasses
import contextlib
import contextvars
import inspect
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import pytest

from . import catalog, impl, recording, session, static
from .events import Callback, Crossing, Kind
from .guard import ForbiddenAPIError, forbid, no_new_threads
from .proxies import Gradients, StudentCallable, StudentObject, unwrap
from .session import Mode
from .oracle import WITHHELD

# Exceptions a test expects from the next student call (set by `check.raises`).
_expected: contextvars.ContextVar[tuple[type[BaseException], ...]] = contextvars.ContextVar(
    "kata_expected_exceptions", default=()
)

def clear_call_log() -> None:
    session.active().call_log.clear()


def call_that_made(value: object) -> str | None:
    """"softmax(x[4,7], dim=-1)" for a value that call returned in this test, else None."""
    entry = session.active().call_log.get(id(value))
    return entry[1] if entry is not None and entry[0] is value else None


@contextlib.contextmanager
def expecting(*exceptions: type[BaseException]):
    token = _expected.set(exceptions)
    try:
        yield
    finally:
        _expected.reset(token)


def fail(message: str) -> None:
    __tracebackhide__ = True
    pytest.fail(message, pytrace=False)


# --- describing calls --------------------------------------------------------------------


def describe_value(value: object) -> str:
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        shape = ",".join(map(str, value.shape))
        dtype = "" if value.dtype == torch.float32 else f" {str(value.dtype).removeprefix('torch.')}"
        return f"[{shape}]{dtype}"
    if isinstance(value, np.ndarray):
        return f"ndarray[{','.join(map(str, value.shape))}] {value.dtype}"
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return f"<{type(value).__name__} of {len(value)}>"
    if isinstance(value, str) and len(value) > 40:
        return repr(value[:37] + "...")
    if isinstance(value, StudentObject):
        return f"<{type(value._kata_target).__name__}>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_call(name: str, fn: Callable, args: tuple, kwargs: dict) -> str:
    import torch.nn as nn

    parts = []
    try:
        signature = inspect.signature(fn.forward if isinstance(fn, nn.Module) else fn)
        bound = signature.bind(*args, **kwargs)
        for pname, value in bound.arguments.items():
            kind = signature.parameters[pname].kind
            if pname == "self":
                continue
            if kind is inspect.Parameter.VAR_POSITIONAL:
                parts.extend(describe_value(v) for v in value)
                continue
            if kind is inspect.Parameter.VAR_KEYWORD:
                parts.extend(f"{k}={describe_value(v)}" for k, v in value.items())
                continue
            shown = describe_value(value)
            parts.append(f"{pname}{shown}" if shown.startswith("[") else f"{pname}={shown}")
    except (TypeError, ValueError):
        parts = [describe_value(a) for a in args] + [f"{k}={describe_value(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def _remember(result: object, description: str) -> None:
    calls = session.active().call_log
    calls[id(result)] = (result, description)
    if isinstance(result, Gradients):
        calls[id(result.output)] = (result.output, description)
        for kind, grads in (("input", result.inputs), ("parameter", result.parameters)):
            for key, grad in grads.items():
                calls[id(grad)] = (grad, f"{description}: gradient of {kind} {key}")
    if isinstance(result, (tuple, list)) and len(result) <= 16:
        for i, item in enumerate(result):
            calls[id(item)] = (item, f"{description}[{i}]")


def _student_traceback(exc: BaseException, root: Path) -> str:
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__)
        if Path(f.filename).resolve().is_relative_to(root)
    ]
    lines = [
        f"  {Path(f.filename).resolve().relative_to(root)}:{f.lineno} in {f.name}\n    {f.line}"
        for f in frames[-6:]
    ]
    return "\n".join(lines)


# --- the proxies -------------------------------------------------------------------------


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


def _unwrap_args(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    def one(v):
        if isinstance(v, (StudentObject, StudentCallable)):
            return unwrap(v)
        if type(v) in (list, tuple) and any(isinstance(x, (StudentObject, StudentCallable)) for x in v):
            return type(v)(unwrap(x) for x in v)
        return v

    return tuple(one(a) for a in args), {k: one(v) for k, v in kwargs.items()}


class StudentModule:
    """Lazy handle on `weekN.kata` of an implementation root (the chosen one by default).

    In the sandbox (record mode) it also records every crossing; in the grader (replay mode)
    it never imports student code and answers every crossing from the recording.
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
    def _recording(self):
        """The active test recording when this is the student's side in record/replay mode."""
        if self._role != "student" or recording.current_mode() == Mode.LIVE:
            return None
        return recording.current()

    def module(self):
        __tracebackhide__ = True
        try:
            return self.implementation.import_module(self._dotted)
        except impl.ImplementationError as exc:
            fail(str(exc))

    def __getattr__(self, name: str):
        __tracebackhide__ = True
        if name.startswith("_") or not _inside_a_test():
            # Kata APIs are public names, and student code runs only inside tests: pytest's
            # collection probes attributes (e.g. `_mock_name`), which must never import it.
            raise AttributeError(name)
        if self._role == "reference" and recording.current_mode() == Mode.RECORD:
            return WITHHELD  # the reference runs only in the trusted replay
        rec = self._recording
        if rec is not None and recording.current_mode() == Mode.REPLAY:
            event = self._next(rec, Kind.ATTR, ["attr", self._dotted, name])
            if event.failure is not None:
                fail(event.failure)
            if event.callable:
                return recording.ReplayCallable(["f", self._dotted, name], name, self)
            return self._decode(rec, event.returned)
        importing = f"import {self._dotted}"  # a module whose import hung is not imported again
        imported = f"{self.implementation.package}.{self._dotted}" in sys.modules
        try:
            problem = None if imported else recording.calling(importing)
            if problem:
                raise impl.ImplementationError(problem.replace(f"your `{importing}`",
                                                               f"importing {self.implementation.display_path(self._dotted)}"))
            try:
                with self._guarded("*"):  # the module's own code runs as it is imported
                    module = self.implementation.import_module(self._dotted)
            except impl.ImplementationError as exc:
                if "Timeout (>" in str(exc):  # pytest-timeout stopped the import
                    recording.interrupted_by_timeout(importing)
                raise
            finally:
                if not imported:
                    recording.calling(None)
            if not hasattr(module, name):
                kind = "CONSTANT" if name.isupper() else "CLASS" if name[:1].isupper() else "FUNCTION"
                raise impl.ImplementationError(
                    f"MISSING {kind}: `{name}` not found in {self.implementation.display_path(self._dotted)}")
        except impl.ImplementationError as exc:
            if rec is not None:
                rec.add(Crossing(Kind.ATTR, ["attr", self._dotted, name], failure=str(exc)))
            fail(str(exc))
        value = getattr(module, name)
        if callable(value) and self._owns(value):
            if rec is not None:
                rec.add(Crossing(Kind.ATTR, ["attr", self._dotted, name], callable=True))
            return StudentCallable(value, name, self, ref=("f", name))
        if rec is not None:
            rec.add(Crossing(Kind.ATTR, ["attr", self._dotted, name], returned=recording.encode(value, rec)))
        return value

    def _owns(self, value: object) -> bool:
        module_name = getattr(value, "__module__", None)
        return self.implementation.owns_module(module_name)

    def _wrap(self, value: object, reached_from_object: bool = False) -> object:
        import torch.nn as nn

        if isinstance(value, (StudentObject, StudentCallable)):
            return value
        if self.implementation.owns_module(type(value).__module__) or (
                reached_from_object and isinstance(value, nn.Module)):
            return StudentObject(value, self)
        return value

    # --- recording helpers -------------------------------------------------------------

    def _next(self, rec, kind, ref, args_digest=None) -> dict:
        __tracebackhide__ = True
        try:
            return rec.next(kind, ref, args_digest)
        except recording.RecordingError as exc:
            fail(str(exc))

    def _decode(self, rec, data):
        rec.owner = self  # the replayed objects it returns answer through this module
        return recording.decode(data, rec)

    def _ref(self, rec, ref: tuple) -> list:
        kind, *rest = ref
        if kind == "f":
            return ["f", self._dotted, rest[0]]
        if kind == "o":
            return ["o", rec.oid_of(rest[0])]
        return ["m", rec.oid_of(rest[0]), rest[1]]

    def _getattr_of(self, obj: StudentObject, attr: str):
        __tracebackhide__ = True
        rec = self._recording
        cls_name = type(obj._kata_target).__name__
        try:
            with self._guarded("*"):  # a property is student code too; so is a lazy value's encoding
                value = getattr(obj._kata_target, attr)
                is_method = inspect.ismethod(value) or (
                    callable(value) and not isinstance(value, type) and hasattr(value, "__self__"))
                wrapped = None if is_method else self._wrap(value, reached_from_object=True)
                strange = None if is_method else unplain(wrapped)
                encoded = recording.encode(wrapped, rec) if rec is not None and not is_method and not strange else None
        except ForbiddenAPIError as exc:
            fail(f"FORBIDDEN: reading `{attr}` ran `{exc.api}`, which is not allowed in {self.kata.id}.")
        if is_method:
            if rec is not None:
                rec.add(Crossing(Kind.GET, ["get", rec.oid_of(obj), attr], method=True))
            return StudentCallable(value, f"{cls_name}.{attr}", self, ref=("m", obj, attr))
        if strange:
            fail(f"ERROR in your `{cls_name}`: its `{attr}` is {strange}; keep plain tensors, arrays and values")
        if rec is not None:
            rec.add(Crossing(Kind.GET, ["get", rec.oid_of(obj), attr], returned=encoded))
        return wrapped

    def _simple(self, obj: StudentObject, kind: str, action, *args):
        """setattr / getitem / len / iter on a student object, recorded as one event."""
        __tracebackhide__ = True
        rec = self._recording
        try:
            with self._guarded("*"):
                result = action()
                strange = unplain(result)
                encoded = recording.encode(result, rec) if rec is not None and not strange else None
        except ForbiddenAPIError as exc:
            fail(f"FORBIDDEN: your object ran `{exc.api}`, which is not allowed in {self.kata.id}.")
        if strange:
            fail(f"ERROR in your `{type(obj._kata_target).__name__}`: it gave {strange}; "
                 "keep plain tensors, arrays and values")
        if rec is not None:
            rec.add(Crossing(Kind(kind), [kind, rec.oid_of(obj)], recording.digest(args, rec), returned=encoded))
        return result

    def _replay_getattr(self, obj, attr):
        __tracebackhide__ = True
        rec = recording.current()
        event = self._next(rec, Kind.GET, ["get", obj._kata_oid, attr])
        if event.method:
            return recording.ReplayCallable(["m", obj._kata_oid, attr], f"{obj._kata_type}.{attr}", self)
        return self._decode(rec, event.returned)

    def _replay_simple(self, ref, args):
        __tracebackhide__ = True
        rec = recording.current()
        event = self._next(rec, Kind(ref[0]), ref, recording.digest(args, rec))
        return self._decode(rec, event.returned)

    def _replay_call(self, ref, name, args, kwargs):
        __tracebackhide__ = True
        rec = recording.current()
        args, kwargs = _materialize(args), {k: _materialize(v) for k, v in kwargs.items()}
        description = describe_call(name, _stub_signature(self._dotted, name, ref[0] == "o"), args, kwargs)
        rec.track((args, tuple(kwargs.values())))  # not the kwargs dict: the test never holds it
        for value in list(args) + list(kwargs.values()):
            if _is_callback(value):
                rec.callback_id(value)
        problem = static_problem(self, name)
        event = self._next(rec, Kind.CALL, list(ref), recording.digest((args, kwargs), rec))
        if not rec.apply_side_effects(allowed=self.kata.may_mutate(call_key(name, ("o",) if ref[0] == "o" else ("f",)))):
            problem = problem or _CHANGED_TEST_STATE.format(name=name)
        if problem:
            fail(f"{problem}\nCalled {description}")
        if event.failure is not None:
            fail(event.failure)
        if event.raised is not None:
            raise _replayed_exception(event.raised)
        result = self._decode(rec, event.returned)
        _remember(result, description)
        return result

    # --- the call itself ---------------------------------------------------------------

    def _guarded(self, function: str):
        """The kata's forbidden-API guard for `function`, with threads refused where the kata
        forbids anything (work on another thread would escape the guard)."""
        stack = contextlib.ExitStack()
        stack.enter_context(forbid(self.kata.forbidden_for(function)))
        # The reference is trusted, and it runs in the grader's own process, whose other
        # threads (recording the next kata) must go on starting threads meanwhile.
        stack.enter_context(no_new_threads(bool(self.kata.forbidden) and self._role == "student"))
        return stack

    def _call(self, name: str, fn: Callable, args: tuple, kwargs: dict, ref: tuple = ("f", None)):
        __tracebackhide__ = True
        rec = self._recording
        if rec is not None and rec._paused:  # inside a throughput measurement: nothing to record
            rec = None
        args, kwargs = _materialize(args), {k: _materialize(v) for k, v in kwargs.items()}
        key = call_key(name, ref)
        mutating = self.kata.may_mutate(key)
        if rec is not None:
            asked = self._ref(rec, ref if ref[1] is not None else ("f", name))
            event = Crossing(Kind.CALL, asked + ["with_grad"] if name.endswith(".with_grad") else asked,
                             recording.digest((args, kwargs), rec))
            rec.track((args, tuple(kwargs.values())))  # not the kwargs dict: the test never holds it
            args, kwargs = _record_callbacks(rec, args, kwargs)
        args, kwargs = _unwrap_args(args, kwargs)
        description = describe_call(name, fn, args, kwargs)
        where = self.implementation.display_path(self._dotted)
        expected = _expected.get()
        # A call that may not change the test's objects works on copies of them: the test's
        # own stay pristine for its oracle, and a change is caught below.
        given = (args, kwargs) if mutating else _copies((args, kwargs))
        problem = recording.calling(key)
        if problem is None:
            try:
                with self._guarded(name.split(".")[0]):
                    result = fn(*given[0], **given[1])
                    result = self._wrap(result)
                    # Checked and encoded while the guard is still armed: a result that computes
                    # lazily (a Tensor subclass, a custom __eq__) cannot run forbidden code later.
                    strange = unplain(result)
                    if strange is None and rec is not None:
                        encoded = recording.encode(result, rec)
            except NotImplementedError:
                problem = f"NOT STARTED: `{name}` in {where} still raises NotImplementedError."
            except ForbiddenAPIError as exc:
                problem = (f"FORBIDDEN: your `{name}` called `{exc.api}`, which is not allowed in "
                           f"{self.kata.id}. Write it yourself from tensor operations.")
            except SystemExit as exc:
                problem = f"ERROR in your `{name}`: it called sys.exit({exc.code!r})."
            except pytest.fail.Exception as exc:
                if str(exc).startswith("Timeout"):  # pytest-timeout stopped the call
                    recording.interrupted_by_timeout(key)
                raise
            except Exception as exc:
                if expected and isinstance(exc, expected) and (mutating or _same(given, (args, kwargs))):
                    if rec is not None:
                        rec.add(dataclasses.replace(event, raised=_exception_record(exc)))
                        rec.record_writes(allowed=mutating)
                    recording.calling(None)
                    raise
                trace = _student_traceback(exc, self.implementation.root)
                want = f" (expected {' or '.join(e.__name__ for e in expected)})" if expected else ""
                problem = f"ERROR in your `{name}`: {type(exc).__name__}: {exc}{want}" + (f"\n{trace}" if trace else "")
            else:
                if strange is not None:
                    problem = (f"ERROR in your `{name}`: it returned {strange}; return plain torch.Tensor, "
                               "numpy arrays and Python values (results are checked as they are, not through "
                               "methods they define)")
            finally:
                recording.calling(None)
        if problem is None and not mutating and not _same(given, (args, kwargs)):
            problem = (f"ERROR in your `{name}`: it changed one of its inputs in place. `{name}` must leave "
                       "the tensors, lists and dicts it is given as they were (work on a copy: `x.clone()`, "
                       "`list(ids)`)")
        if problem is None:
            if rec is not None:
                rec.add(dataclasses.replace(event, returned=encoded))
                if not rec.record_writes(allowed=mutating):
                    problem = _CHANGED_TEST_STATE.format(name=name)
            if problem is None:
                _remember(result, description)
                return result
        if rec is not None:
            rec.add(dataclasses.replace(event, failure=f"{problem}\nCalled {description}"))
            rec.record_writes(allowed=mutating)
        # Fail outside the except blocks, so the report does not chain the student's exception.
        fail(f"{problem}\nCalled {description}")

    def __repr__(self):
        return f"<{self._role} {self._dotted} from {self.implementation.label}>"


_CHANGED_TEST_STATE = ("ERROR in your `{name}`: it changed objects the test gave your code earlier (e.g. "
                       "tensors an object of yours keeps), which only the kata's mutating calls may do")


def call_key(name: str, ref: tuple) -> str:
    """How a kata's toml names a call: `softmax`, `AdamW` (the constructor), `AdamW.step`,
    `MultiHeadSelfAttention.__call__` (calling an object); `.with_grad` is the call itself."""
    name = name.removesuffix(".with_grad")
    return f"{name}.__call__" if ref and ref[0] == "o" else name


def _copies(value, depth: int = 0):
    """Deep copies of the tensors, arrays, lists, dicts and sets in `value` (tuples rebuilt
    around them); anything else (modules, generators, student objects, callables) as it is."""
    import numpy as np
    import torch

    if depth > 12:
        return value
    if type(value) in (torch.Tensor, torch.nn.Parameter):
        copy = value.detach().clone()
        if value.requires_grad:
            copy.requires_grad_(True)
        if value.grad is not None:
            copy.grad = value.grad.detach().clone()
        return torch.nn.Parameter(copy, requires_grad=copy.requires_grad) if type(value) is torch.nn.Parameter else copy
    if type(value) is np.ndarray:
        return value.copy()
    if type(value) is list:
        return [_copies(v, depth + 1) for v in value]
    if type(value) is tuple:
        return tuple(_copies(v, depth + 1) for v in value)
    if type(value) in (dict, collections.OrderedDict):
        return type(value)((k, _copies(v, depth + 1)) for k, v in value.items())
    if type(value) is set:
        return set(value)
    return value  # a torch.Generator too: drawing from the test's generator is the contract


def _same(a, b, depth: int = 0) -> bool:
    """Whether a copy still equals its original (bitwise for tensors and arrays)."""
    import numpy as np
    import torch

    if depth > 12 or a is b:
        return True
    if isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
            return False
        if b.device.type == "meta":
            return True
        x, y = a.detach().contiguous().reshape(-1), b.detach().contiguous().reshape(-1)
        if x.dtype == torch.bool or not (x.is_floating_point() or x.is_complex()):
            return bool(torch.equal(x, y))
        return bool(torch.equal(x.view(torch.uint8), y.view(torch.uint8)))
    if isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if type(b) in (list, tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y, depth + 1) for x, y in zip(a, b))
    if type(b) in (dict, collections.OrderedDict):
        return type(a) is type(b) and a.keys() == b.keys() and all(_same(a[k], b[k], depth + 1) for k in b)
    if type(b) is set:
        return type(a) is set and a == b
    return True


_PLAIN_SCALARS = (bool, int, float, complex, str, bytes, type(None))


def unplain(value, depth: int = 0) -> str | None:
    """What, in a student call's result, is not a plain value the grader can take as it is:
    a subclass of a tensor, an array or a builtin (which could compute lazily or lie in its
    `__eq__`), or an object of an unknown class. None when everything is plain."""
    import numpy as np
    import torch

    if depth > 12:
        return "a structure nested too deeply"
    kind = type(value)
    if isinstance(value, (StudentObject, StudentCallable, Gradients)):
        if isinstance(value, Gradients):
            return unplain([value.output, value.inputs, value.parameters], depth + 1)
        return None
    if kind in _PLAIN_SCALARS or kind in (torch.Tensor, torch.nn.Parameter, np.ndarray, torch.dtype, torch.device,
                                          torch.Size, slice, range):
        return None
    if isinstance(value, np.generic) and kind.__module__ == "numpy":
        return None
    if kind in (list, tuple, set, frozenset) or (isinstance(value, tuple) and _library_class(kind)):
        return next((p for p in (unplain(v, depth + 1) for v in value) if p), None)
    if kind in (dict, collections.OrderedDict, collections.defaultdict, collections.Counter) or (
            isinstance(value, dict) and _library_class(kind)):
        return next((p for p in (unplain(v, depth + 1) for kv in value.items() for v in kv) if p), None)
    if isinstance(value, (torch.Tensor, np.ndarray, *_PLAIN_SCALARS, list, tuple, dict, set, frozenset)):
        return f"a {kind.__name__} (a subclass of {next(c.__name__ for c in kind.__mro__[1:] if c.__module__ in ('builtins', 'torch', 'numpy'))})"
    return None  # an object of another library (an nn.Module, a tokenizer): the test's business


def _library_class(kind: type) -> bool:
    """A class of torch or numpy (a named tuple such as `torch.return_types.max` or the
    result of `load_state_dict`), found where its module says it is."""
    import sys

    module = kind.__module__ or ""
    if module.split(".")[0] not in ("torch", "numpy", "collections"):
        return False
    return getattr(sys.modules.get(module), kind.__qualname__.split(".")[0], None) is kind or \
        module == "torch.return_types"


def _inside_a_test() -> bool:
    """False only while a pytest session is active but no test is running (collection)."""
    return not session.in_pytest() or session.active().item is not None


def _stub_signature(dotted: str, name: str, is_object_call: bool = False):
    """The course's own stub of `name` (trusted code), for naming arguments in messages."""
    no_names = lambda *a, **k: None  # noqa: E731
    if not (impl.NAMED_ROOTS["katas"] / f"{dotted.replace('.', '/')}.py").is_file():
        return no_names
    target = impl.resolve("katas").import_module(dotted)
    for part in name.removesuffix(".with_grad").split("."):
        target = getattr(target, part, None)
    if is_object_call and isinstance(target, type):
        target = getattr(target, "forward", getattr(target, "__call__", None))
    if target is None:
        return no_names
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return no_names
    params = list(signature.parameters.values())
    if params and params[0].name == "self":
        signature = signature.replace(parameters=params[1:])
    no_names.__signature__ = signature
    return no_names


def _materialize(value):
    """Generators handed to student code (e.g. `model.parameters()`) become lists: a
    consumer that iterates once cannot tell, and a list can be recorded and tracked."""
    import types

    if isinstance(value, (types.GeneratorType, map, filter, zip)):
        return list(value)
    if isinstance(value, tuple):
        return tuple(_materialize(v) for v in value)
    return value


def _is_callback(value) -> bool:
    """A function of the test's handed to student code (an agent's LLM, a tool), whose calls
    the grader must replay: a plain function, a bound method, a partial, or an instance of a
    Python class with `__call__` (a scripted fake model that keeps its prompts). Modules
    (nn.Module included), classes and student objects are not callbacks."""
    import functools

    import torch.nn as nn

    if inspect.isfunction(value) or inspect.ismethod(value) or isinstance(value, functools.partial):
        return True
    if isinstance(value, (type, nn.Module, StudentObject, StudentCallable, recording.ReplayObject,
                          recording.ReplayCallable)):
        return False
    return inspect.isfunction(getattr(type(value), "__call__", None))


def _record_callbacks(rec, args, kwargs):
    def proxy(value):
        if not _is_callback(value):
            return value
        handle = rec.callback_id(value)

        def recorded(*a, **k):
            rec.add(Callback(handle, recording.encode(list(a), rec)))
            return value(*a, **k)

        return recorded

    return tuple(proxy(a) for a in args), {k: proxy(v) for k, v in kwargs.items()}


def _exception_record(exc: BaseException) -> dict:
    builtin = [c.__name__ for c in type(exc).__mro__ if c.__name__ in recording.BUILTIN_EXCEPTIONS]
    return {"types": builtin, "type": type(exc).__name__, "msg": str(exc)[:2000]}


def _replayed_exception(data: dict) -> BaseException:
    for name in data.get("types", []):
        cls = recording.BUILTIN_EXCEPTIONS.get(name)
        if cls is not None and issubclass(cls, Exception):
            try:
                return cls(data.get("msg", ""))
            except Exception:
                continue
    return Exception(data.get("msg", ""))


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
    name = getattr(glue, "__name__", "glue")
    rec = recording.current() if recording.current_mode() != Mode.LIVE else None
    if recording.current_mode() == Mode.REPLAY and rec is not None:
        event = kata._next(rec, Kind.GLUE, ["glue", name])
        if event.failure is not None:
            fail(event.failure)
        return recording.decode(event.returned, rec)
    problem = None
    where = kata.implementation.display_path(kata._dotted)
    with rec.paused() if rec is not None else contextlib.nullcontext():
        try:
            with forbid(kata.kata.forbidden_for(name)):
                result = glue(*args)
        except NotImplementedError:
            problem = f"NOT STARTED: {where} still raises NotImplementedError (while running {name})."
        except ForbiddenAPIError as exc:
            problem = f"FORBIDDEN: your code called `{exc.api}` (while running {name}), which is not allowed in {kata.kata.id}."
        except Exception as exc:  # the student's error, reported like any call's
            problem = f"ERROR in your code (while running {name}): {type(exc).__name__}: {str(exc)[:300]}"
    if rec is not None:
        rec.add(Crossing(Kind.GLUE, ["glue", name], failure=problem) if problem else
                Crossing(Kind.GLUE, ["glue", name], returned=recording.encode(result, rec)))
    if problem:
        fail(problem)
    return result


def static_problem(module: StudentModule, name: str) -> str | None:
    """A forbidden API named in the submission's source (found by reading it, never running it)."""
    return static.problem_for(module, name)


def student(dotted: str) -> StudentModule:
    """The module under test, from the implementation chosen with --impl / $KATA_IMPL."""
    return StudentModule(dotted)


def reference(dotted: str) -> StudentModule:
    """The model solution (hidden tests only: students do not have `reference/`)."""
    return StudentModule(dotted, impl.reference(), role="reference")
