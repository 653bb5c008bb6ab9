"""Forbidden APIs: refuse named library calls while a kata's student code runs.

A kata lists what it forbids in its toml (`[forbidden]`). While one student call runs, the
harness arms a guard built from that list; the oracle, computed by the test outside student
calls, is never affected. Three kinds of entry:

- a torch function or Tensor method (`torch.nn.functional.scaled_dot_product_attention`,
  `torch.Tensor.softmax`): caught by a `TorchFunctionMode`, however the student imported it;
- a class (`torch.nn.MultiheadAttention`): its `__init__` and `forward` refuse to run;
- an ATen operator pattern (`aten::_scaled_dot_product*`): caught by a `TorchDispatchMode`,
  for code that reaches the kernels through `torch.ops.aten` directly.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import importlib
import os
import sys

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode


class ForbiddenAPIError(Exception):
    """Raised inside student code that calls an API its kata forbids."""

    def __init__(self, api: str):
        super().__init__(api)
        self.api = api


def _resolve(dotted: str):
    """`torch.nn.functional.softmax` -> the object, or None if this torch lacks it."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


class _FunctionBan(TorchFunctionMode):
    def __init__(self, banned: dict[object, str]):
        super().__init__()
        self.banned = banned

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = self.banned.get(func)
        if name is not None:
            raise ForbiddenAPIError(name)
        return func(*args, **(kwargs or {}))


class _OperatorBan(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch would wrap __torch_dispatch__ in `torch._dynamo.disable`, importing dynamo
        # (1.4 s) in every sandboxed child. Nothing compiles here: dynamo skips every frame
        # while a dispatch mode is on the stack, so a student's torch.compile runs eagerly,
        # through this mode.
        return False

    def __init__(self, patterns: tuple[str, ...]):
        super().__init__()
        self.patterns = patterns

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        op = func._schema.name  # "aten::_softmax"
        for pattern in self.patterns:
            if fnmatch.fnmatchcase(op, pattern):
                raise ForbiddenAPIError(op)
        return func(*args, **(kwargs or {}))


@functools.cache
def _plan(names: tuple[str, ...]):
    functions: dict[object, str] = {}
    classes: list[tuple[type, str]] = []
    operators: list[str] = []
    for name in names:
        if name.startswith("aten::"):
            operators.append(name)
            continue
        obj = _resolve(name)
        if obj is None:
            continue
        if isinstance(obj, type):
            classes.append((obj, name))
        else:
            functions[obj] = name
    return functions, tuple(classes), tuple(operators)


def _refusing(name: str):
    def refuse(*args, **kwargs):
        raise ForbiddenAPIError(name)

    return refuse


@contextlib.contextmanager
def forbid(names: tuple[str, ...]):
    """Arm the guard for `names` for the duration of the block (a no-op when empty)."""
    if not names:
        yield
        return
    functions, classes, operators = _plan(tuple(dict.fromkeys(names)))
    saved = []
    with contextlib.ExitStack() as stack:
        for cls, name in classes:
            for attr in ("__init__", "forward"):
                if attr in vars(cls):
                    saved.append((cls, attr, vars(cls)[attr]))
                    setattr(cls, attr, _refusing(name))
        stack.callback(lambda: [setattr(c, a, v) for c, a, v in reversed(saved)])
        if functions:
            stack.enter_context(_FunctionBan(functions))
        if operators:
            stack.enter_context(_OperatorBan(operators))
        yield


def all_banned_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """The short names a static scan of student source should look for."""
    return tuple(sorted({n.removeprefix("aten::").rstrip("*").split(".")[-1] for n in names}))




# --- threads and processes ------------------------------------------------------------------
#
# The guard above is per thread (torch's modes are thread-local), so work handed to another
# thread or process would escape it. In a kata with a forbidden list, student code may not
# start threads or processes while it runs (its import included), and may not leave one
# running when it returns. Nor may it replace its process with a fresh interpreter (exec):
# in a kata whose tests fork ranks (week3/training) the sandbox lets processes start, and a
# rank that exec'd would run student code with no guard at all. (The static scan refuses
# `threading`, `_thread`, `os.fork`, `os.exec*`, ... in the source of such katas as well:
# this is the run-time half.)


def _thread_ids() -> set[str]:
    try:
        return set(os.listdir("/proc/self/task"))
    except OSError:  # no procfs (macOS): count Python threads instead
        import threading

        return {str(t.ident) for t in threading.enumerate()}


_SPAWNERS = (("_thread", "start_new_thread"), ("_thread", "start_joinable_thread"), ("threading", "_start_new_thread"),
             ("threading", "_start_joinable_thread"), ("os", "fork"), ("os", "forkpty"), ("os", "posix_spawn"),
             ("os", "posix_spawnp"), ("os", "system"), ("os", "popen"), ("_posixsubprocess", "fork_exec"),
             ("posix", "fork"), ("posix", "forkpty"), ("posix", "posix_spawn"), ("posix", "posix_spawnp"),
             ("posix", "system"), ("os", "execv"), ("os", "execve"), ("posix", "execv"), ("posix", "execve"),
             ("subprocess", "_fork_exec"))  # subprocess binds fork_exec when it is imported


@contextlib.contextmanager
def no_new_threads(active: bool):
    """Refuse thread and process creation inside the block, and fail if the block leaves a
    new thread behind (a no-op when `active` is False)."""
    if not active:
        yield
        return
    before = _thread_ids()
    saved = []
    for module_name, attr in _SPAWNERS:
        try:  # imported now: a module first imported inside the block would come unpatched
            module = importlib.import_module(module_name)
        except ImportError:  # posix, _posixsubprocess: not on every platform
            continue
        if hasattr(module, attr):
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, _refusing("threads and processes (work on another thread or process escapes "
                                            "this kata's forbidden-API check)"))
    try:
        yield
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)
    if _thread_ids() - before:
        raise ForbiddenAPIError("a thread left running after the call (work on another thread escapes this "
                                "kata's forbidden-API check)")


__all__ = ["ForbiddenAPIError", "forbid", "no_new_threads", "all_banned_names", "torch"]
