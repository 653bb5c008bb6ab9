"""What crosses the boundary, and what the harness says about it.

The crossing objects (graders.crossings) and the check helpers share these: naming a call in
a failure message ("Called softmax(x[4,7], dim=-1)") and remembering which call made which
value; the copies a pure call works on and the bitwise comparison that catches a call that
changed its inputs anyway; `unplain`, which refuses results that could lie (a Tensor
subclass, a custom `__eq__`); and exceptions carried across as plain records.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import inspect
import re
import traceback
from pathlib import Path
from typing import Callable

import pytest

from . import impl, recording, session
from .impl import ImplementationError
from .proxies import Gradients, StudentCallable, StudentObject, unwrap


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


def remember(result: object, description: str) -> None:
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


def expected_exceptions() -> tuple[type[BaseException], ...]:
    return _expected.get()


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


def describe_value(value: object) -> str:
    """How a value reads in "Called softmax(x[4,7], dim=-1)": short, and never an internal
    name the student cannot act on (a C type, a proxy's qualified name, an address)."""
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
    if isinstance(value, torch.Generator):
        return f"<torch.Generator seed={value.initial_seed()}>"
    if isinstance(value, torch.nn.Module):  # its repr is the whole module tree, many lines
        return f"<{type(value).__name__}>"
    if is_one_shot_iterator(value) or isinstance(value, recording.RecordedIterator):
        return "<generator>"  # the sandbox's pass-through (graders.recording) reads the same
    if is_callback(value):  # the sandbox's wrapper of a test's callback (graders.crossings) too
        return "<callback function>"
    if inspect.isbuiltin(value):
        return f"<function {value.__name__}>"
    text = repr(value)
    if _DEFAULT_REPR.search(text):  # `<torch._C.Thing object at 0x7f...>`
        return f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


_DEFAULT_REPR = re.compile(r" at 0x[0-9a-fA-F]+>$")


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


def stub_signature(dotted: str, name: str, is_object_call: bool = False):
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


def student_traceback(exc: BaseException, root: Path) -> str:
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__)
        if Path(f.filename).resolve().is_relative_to(root)
    ]
    lines = [
        f"  {Path(f.filename).resolve().relative_to(root)}:{f.lineno} in {f.name}\n    {f.line}"
        for f in frames[-6:]
    ]
    return "\n".join(lines)


def implementation_problem(error: ImplementationError, root: Path) -> str:
    """What a module that cannot be imported tells the student: the harness's one line, then
    where it broke in their code. graders.impl raises these `from None` (importlib's frames
    teach nothing), which keeps the original exception as the context, not as a second
    traceback: a syntax error's line with a caret, an import error's student frames."""
    original = error.__context__
    if isinstance(original, SyntaxError):
        where = syntax_error_excerpt(original, root)
    elif original is not None:
        where = student_traceback(original, root)
    else:
        where = ""
    return f"{error}\n{where}" if where else str(error)


def syntax_error_excerpt(error: SyntaxError, root: Path) -> str:
    """The offending line with carets under the columns Python points at, as Python prints it:

      week1/bpe.py:12
        def merge(ids, pair, new_id)
                                    ^
    """
    if not error.text or not error.lineno:
        return ""
    line = error.text.rstrip("\r\n")
    code = line.lstrip()
    indent = len(line) - len(code)
    start = max((error.offset or 1) - 1 - indent, 0)
    same_line = error.end_lineno in (None, error.lineno)
    end = (error.end_offset or 0) - 1 - indent if same_line else len(code)
    path = Path(error.filename or "").resolve()
    shown = path.relative_to(root) if path.is_relative_to(root) else path.name
    return f"  {shown}:{error.lineno}\n    {code}\n    {' ' * start}{'^' * max(end - start, 1)}"


def unwrap_args(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    def one(v):
        if isinstance(v, (StudentObject, StudentCallable)):
            return unwrap(v)
        if type(v) in (list, tuple) and any(isinstance(x, (StudentObject, StudentCallable)) for x in v):
            return type(v)(unwrap(x) for x in v)
        return v

    return tuple(one(a) for a in args), {k: one(v) for k, v in kwargs.items()}


ONE_SHOT_ITERATORS = ("generator", "map", "filter", "zip")


def is_one_shot_iterator(value) -> bool:
    """A generator (`model.parameters()`) or a lazy map/filter/zip: it can be read only once.
    Student code gets it as the test made it, so reading it twice is a mistake a test can
    see; when grading, what the student read of it is recorded (graders.crossings)."""
    import types

    return isinstance(value, (types.GeneratorType, map, filter, zip))


def with_iterators(values: tuple, replace: Callable) -> tuple:
    """`values` with each one-shot iterator in it (at the top, or inside tuples) replaced."""
    return tuple(replace(v) if is_one_shot_iterator(v) else with_iterators(v, replace) if type(v) is tuple else v
                 for v in values)


def call_key(name: str, ref: tuple) -> str:
    """How a kata's toml names a call: `softmax`, `AdamW` (the constructor), `AdamW.step`,
    `MultiHeadSelfAttention.__call__` (calling an object); `.with_grad` is the call itself."""
    name = name.removesuffix(".with_grad")
    return f"{name}.__call__" if ref and ref[0] == "o" else name


def copies(value, depth: int = 0):
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
        return [copies(v, depth + 1) for v in value]
    if type(value) is tuple:
        return tuple(copies(v, depth + 1) for v in value)
    if type(value) in (dict, collections.OrderedDict):
        return type(value)((k, copies(v, depth + 1)) for k, v in value.items())
    if type(value) is set:
        return set(value)
    return value  # a torch.Generator too: drawing from the test's generator is the contract


def same(a, b, depth: int = 0) -> bool:
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
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y, depth + 1) for x, y in zip(a, b))
    if type(b) in (dict, collections.OrderedDict):
        return type(a) is type(b) and a.keys() == b.keys() and all(same(a[k], b[k], depth + 1) for k in b)
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


def is_callback(value) -> bool:
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


def exception_record(exc: BaseException) -> dict:
    builtin = [c.__name__ for c in type(exc).__mro__ if c.__name__ in recording.BUILTIN_EXCEPTIONS]
    return {"types": builtin, "type": type(exc).__name__, "msg": str(exc)[:2000]}


def replayed_exception(data: dict) -> BaseException:
    for name in data.get("types", []):
        cls = recording.BUILTIN_EXCEPTIONS.get(name)
        if cls is not None and issubclass(cls, Exception):
            try:
                return cls(data.get("msg", ""))
            except Exception:
                continue
    return Exception(data.get("msg", ""))
