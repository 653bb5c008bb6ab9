"""Record every crossing of the student boundary in a sandbox; replay it in a trusted process.

Secure grading runs each test twice:

1. In the sandboxed child, with the student's code, in *record* mode. Each time the test
   touches student code — an attribute of the module, a call, an attribute or method of a
   student object — the boundary appends an event to the test's recording: what was asked
   (a reference and a digest of the arguments) and what came back (a value, an exception,
   or a failure such as NOT STARTED). Check helpers do nothing there and the reference is
   never called (it is not even present): the child's pass/fail means nothing.
2. In the trusted parent, in *replay* mode. The student module is never imported; the
   boundary answers each crossing from the recording instead, after checking that the test
   asks the same thing with the same arguments. The real assertions, reference calls and
   hidden expected values run here, and only here.

Recordings are JSON (typed, versioned events: graders/events.py) plus safetensors
(tensors): nothing the child writes is ever unpickled or executed by the parent.

Beyond return values, a call can change the test's own objects: an optimizer updates the
parameters it was given, `get_pair_counts(ids, counts)` fills `counts`, an agent calls the
test's fake LLM. So every tensor, list and dict the test hands to student code is tracked
(numbered in order of first appearance) and after each call the ones that changed are
recorded as write events; the parent applies them to its own copies. A generator the test
hands over (`model.parameters()`) reaches student code as it is, read through a pass-through
that tracks each item and counts them: the parent reads as many items of its own generator.
Callables the test
hands over (callbacks) are recorded with their arguments, and the parent calls its own
callables with the same arguments, so their side effects happen in the trusted process.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from . import catalog, session
from .events import Callback, Consumed, Crossing, Event, Kind, Write, recording_from_json, recording_to_json
from .proxies import OPERATORS, Gradients, StudentCallable, StudentObject
from .session import Mode, SandboxLink
from .untrusted import file_stem, read_regular

MAX_EVENTS = 20_000  # per test; a runaway loop of calls is cut off, not recorded forever
MAX_TENSOR_BYTES = 64 * 2**20  # per test, in the recording
BUILTIN_EXCEPTIONS = {name: obj for name, obj in vars(builtins).items()
                      if isinstance(obj, type) and issubclass(obj, BaseException)}

class RecordingError(Exception):
    """The recording cannot answer what the test asks (it diverged or is incomplete)."""


def current_mode() -> Mode:
    """Live (student code runs here), record (the grading sandbox) or replay (the grader)."""
    return session.active().mode


# --- digests: "is this the same question?" -----------------------------------------------


def digest(value: Any, objects: "TestRecording") -> str:
    h = hashlib.sha256()
    _feed(h, value, objects, depth=0)
    return h.hexdigest()[:32]


def _feed(h, value, rec, depth):
    if depth > 6:
        h.update(b"<deep>")
    elif isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, np.ndarray):
        h.update(f"N{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes() if value.dtype != object else repr(value).encode())
    elif isinstance(value, (StudentObject, ReplayObject)):
        h.update(f"O{rec.oid_of(value)}".encode())
    elif isinstance(value, (StudentCallable, ReplayCallable)):
        h.update(f"F{value._kata_name}".encode())
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}[{len(value)}".encode())
        for item in value:
            _feed(h, item, rec, depth + 1)
    elif isinstance(value, dict):
        h.update(f"dict{len(value)}".encode())
        for k, v in value.items():
            _feed(h, k, rec, depth + 1)
            _feed(h, v, rec, depth + 1)
    elif value is None or isinstance(value, (bool, int, float, str, bytes, np.generic)):
        h.update(repr((type(value).__name__, value)).encode())
    elif callable(value):
        h.update(b"<callable>")
    else:
        h.update(f"<{type(value).__name__}>".encode())


# --- values: what came back ---------------------------------------------------------------


def class_names(cls: type) -> list[str]:
    """`module.QualName` of a class and its bases: what a replayed object knows of its type."""
    return [f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__]


def encode(value: Any, rec: "TestRecording", depth: int = 0) -> Any:
    if depth > 8:
        return {"opaque": "too deeply nested"}
    if isinstance(value, StudentObject):
        return {"o": rec.oid_of(value), "type": type(value._kata_target).__name__,
                "mro": class_names(type(value._kata_target))}
    if isinstance(value, torch.Tensor):
        return {"t": rec.store(value), "rg": bool(value.requires_grad)}
    if isinstance(value, np.ndarray) and value.dtype != object:
        return {"n": rec.store(torch.from_numpy(np.ascontiguousarray(value)))}
    if isinstance(value, np.generic):
        return {"np": value.dtype.str, "v": encode(value.item(), rec, depth + 1)}
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return {"v": value}
    if isinstance(value, float):
        return {"f": repr(value)}
    if isinstance(value, bytes):
        return {"b": value.hex()}
    if isinstance(value, Gradients):
        return {"grad": [encode(value.output, rec, depth + 1), encode(value.inputs, rec, depth + 1),
                         encode(value.parameters, rec, depth + 1)]}
    if isinstance(value, (list, tuple)):
        kind = "l" if isinstance(value, list) else "tu"
        return {kind: [encode(v, rec, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"d": [[encode(k, rec, depth + 1), encode(v, rec, depth + 1)] for k, v in value.items()]}
    if isinstance(value, (set, frozenset)):
        return {"s": [encode(v, rec, depth + 1) for v in sorted(value, key=repr)]}
    return {"opaque": type(value).__name__}


class Opaque:
    """A value the recording could not carry (an unknown object type)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self):
        return f"<unrecordable {self.type_name}>"


def decode(data: Any, rec: "TestRecording") -> Any:
    if "v" in data and "np" not in data:
        return data["v"]
    if "f" in data:
        return float(data["f"])
    if "t" in data:
        return rec.tensor(data["t"]).requires_grad_(data.get("rg", False) and rec.tensor(data["t"]).is_floating_point())
    if "n" in data:
        return rec.tensor(data["n"]).numpy()
    if "np" in data:
        return np.dtype(data["np"]).type(decode(data["v"], rec))
    if "b" in data:
        return bytes.fromhex(data["b"])
    if "l" in data:
        return [decode(v, rec) for v in data["l"]]
    if "tu" in data:
        return tuple(decode(v, rec) for v in data["tu"])
    if "d" in data:
        return {_hashable(decode(k, rec)): decode(v, rec) for k, v in data["d"]}
    if "s" in data:
        return {_hashable(decode(v, rec)) for v in data["s"]}
    if "o" in data:
        return ReplayObject(data["o"], data.get("type", "object"), rec, data.get("mro", ()))
    if "grad" in data:
        out, inputs, params = (decode(v, rec) for v in data["grad"])
        return Gradients(out, inputs, params)
    return Opaque(data.get("opaque", "?"))


def _hashable(value):
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


# --- one test's recording -------------------------------------------------------------


class TestRecording:
    """The events of one test, in order, with the tensors they refer to."""

    def __init__(self, nodeid: str, events: list[Event] | None = None, tensors: dict | None = None):
        self.nodeid = nodeid
        self.events: list[Event] = events or []
        self.tensors: dict[str, torch.Tensor] = tensors or {}
        self.cursor = 0
        self.tensor_bytes = 0
        self._oids: dict[int, tuple[object, int]] = {}
        # The test's mutable objects handed to student code, by handle (numbered in order of
        # first appearance). Tensors and arrays are held weakly: once the test drops one (a
        # `torch.tensor([[0]])` built for a single call), no write to it can be observed, so it
        # stops costing a fingerprint per call. Lists and dicts cannot be weakly referenced.
        self._tracked: dict[int, Callable[[], object]] = {}  # handle -> (weak) reference, live ones
        self._tracked_ids: dict[int, int] = {}  # id(obj) -> handle, live ones
        self._handles = 0
        self._fingerprints: dict[int, str] = {}
        self.callbacks: list[object] = []
        self._callback_ids: dict[int, int] = {}
        # The test's generators handed to student code, by handle (order of first appearance):
        # (record) the pass-through iterator student code reads; (replay) the test's own.
        self.iterators: list[Any] = []
        self._iterator_ids: dict[int, int] = {}
        self._readers: list[RecordedIterator] = []
        self.owner = None  # (replay) the StudentModule whose crossing is being answered

    # identities shared by both sides
    def oid_of(self, obj) -> int:
        if isinstance(obj, ReplayObject):
            return obj._kata_oid
        key = id(obj._kata_target)
        if key not in self._oids:
            self._oids[key] = (obj._kata_target, len(self._oids))
        return self._oids[key][1]

    def track(self, value) -> None:
        """Number every tensor, list and dict inside `value` that the test gave student code."""
        for obj in _mutables(value):
            if id(obj) not in self._tracked_ids:
                handle, key = self._handles, id(obj)
                self._handles += 1
                self._tracked_ids[key] = handle
                self._tracked[handle] = self._reference(obj, handle, key)
                self._fingerprints[handle] = self.fingerprint(obj)

    def _reference(self, obj, handle: int, key: int) -> Callable[[], object]:
        if isinstance(obj, (list, dict)):
            return lambda: obj

        def forget(_):
            self._tracked.pop(handle, None)
            self._fingerprints.pop(handle, None)
            if self._tracked_ids.get(key) == handle:  # the id may already name a newer object
                del self._tracked_ids[key]

        return weakref.ref(obj, forget)

    def tracked(self, handle: int) -> object | None:
        reference = self._tracked.get(handle)
        return None if reference is None else reference()

    def fingerprint(self, obj) -> str:
        grad = getattr(obj, "grad", None) if isinstance(obj, torch.Tensor) else None
        return digest((obj, grad), self)

    def callback_id(self, fn) -> int:
        if id(fn) not in self._callback_ids:
            self._callback_ids[id(fn)] = len(self.callbacks)
            self.callbacks.append(fn)
        return self._callback_ids[id(fn)]

    def iterator_id(self, iterator) -> int:
        if id(iterator) not in self._iterator_ids:
            self._iterator_ids[id(iterator)] = len(self.iterators)
            self.iterators.append(iterator)
        return self._iterator_ids[id(iterator)]

    # record side
    def reading(self, iterator) -> "RecordedIterator":
        """The pass-through student code gets instead of the test's generator `iterator`."""
        handle = self.iterator_id(iterator)
        if handle == len(self._readers):
            self._readers.append(RecordedIterator(iterator, self))
        return self._readers[handle]

    def record_consumption(self) -> None:
        """After a call: how many more items student code read from each generator."""
        if self._paused:
            return
        for handle, reader in enumerate(self._readers):
            if reader.read > reader.reported:
                self.add(Consumed(handle, reader.read - reader.reported))
                reader.reported = reader.read

    def store(self, tensor: torch.Tensor) -> str:
        t = tensor.detach().cpu().contiguous().clone()
        self.tensor_bytes += t.numel() * t.element_size()
        if self.tensor_bytes > MAX_TENSOR_BYTES:
            raise RecordingError("the test's student outputs exceed the recording limit")
        key = f"t{len(self.tensors)}"
        self.tensors[key] = t
        return key

    _paused = False

    @contextlib.contextmanager
    def paused(self):
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def add(self, event: Event) -> None:
        if self._paused:
            return
        if len(self.events) >= MAX_EVENTS:
            raise RecordingError(f"more than {MAX_EVENTS} calls into student code in one test")
        self.events.append(event)

    def record_writes(self, allowed: bool = True) -> bool:
        """After a call: record the test's objects it changed. A call that may not change
        them (`allowed` False) records nothing; returns False when it did change one."""
        if self._paused:
            return True
        clean = True
        for handle, reference in list(self._tracked.items()):
            obj = reference()
            if obj is None:
                continue
            now = self.fingerprint(obj)
            if now != self._fingerprints[handle]:
                self._fingerprints[handle] = now
                if not allowed:
                    clean = False
                    continue
                grad = obj.grad if isinstance(obj, torch.Tensor) else None
                self.add(Write(handle, encode(obj, self), None if grad is None else encode(grad, self)))
        return clean

    def save(self, directory: Path) -> None:
        stem = directory / file_stem(self.nodeid)
        save_file(self.tensors, str(stem) + ".safetensors")
        Path(str(stem) + ".json").write_text(json.dumps(recording_to_json(self.nodeid, self.events)))

    # replay side
    @classmethod
    def load(cls, directory: Path, nodeid: str) -> "TestRecording | None":
        from safetensors.torch import load as load_tensors


        stem = file_stem(nodeid)
        try:
            content = json.loads(read_regular(directory / f"{stem}.json", 2**30))
            tensors = load_tensors(read_regular(directory / f"{stem}.safetensors", 2**31))
            events = recording_from_json(content, nodeid)
        except (OSError, ValueError):  # MalformedEvent included: the grader validated it on ingest
            return None
        return cls(nodeid, events, tensors)

    def tensor(self, key: str) -> torch.Tensor:
        return self.tensors[key].clone()

    def next(self, kind: Kind, ref: list, args_digest: str | None = None) -> Crossing:
        """The crossing answering this question: the next one in order, or (when a test asks
        again what it asked before, as hypothesis does to report a failing example) the
        first earlier one asking exactly the same."""
        kind = Kind(kind)
        self._skip_writes()
        if self.cursor < len(self.events) and _asks(self.events[self.cursor], kind, ref, args_digest):
            event = self.events[self.cursor]
            self.cursor += 1
            return event
        for i, event in enumerate(self.events):
            if _asks(event, kind, ref, args_digest):
                self.cursor = i + 1
                return event
        if self.cursor >= len(self.events):
            raise RecordingError(
                "INCOMPLETE: the sandboxed run stopped before this point of the test "
                "(a crash, a timeout, a memory limit, or an exit from student code)")
        got = self.events[self.cursor]
        raise RecordingError(
            f"DIVERGED: the test asked for {kind.value} {ref!r} but the sandboxed run recorded "
            f"{_describe(got)} here (student code behaved differently in the sandbox, "
            "e.g. it depends on state, time or randomness it does not control)")

    def _skip_writes(self):
        while self.cursor < len(self.events) and isinstance(self.events[self.cursor], (Write, Callback, Consumed)):
            self.cursor += 1

    def apply_side_effects(self, allowed: bool = True) -> bool:
        """After a call: replay callbacks and writes recorded around it, in order. Writes are
        applied only for a call the kata declares mutating (`allowed`, decided here, in the
        grader); returns False when a call that may not change the test's objects did."""
        start = self.cursor - 1
        # callbacks were recorded before the call's own event; writes after it
        i = start - 1
        callbacks = []
        while i >= 0 and isinstance(self.events[i], Callback):
            callbacks.append(self.events[i])
            i -= 1
        for event in reversed(callbacks):
            fn = self.callbacks[event.handle] if 0 <= event.handle < len(self.callbacks) else None
            if fn is not None:
                args = decode(event.args, self)
                try:
                    fn(*args)
                except Exception:  # the test's own callable; its failure is the test's business
                    pass
        while self.cursor < len(self.events) and isinstance(self.events[self.cursor], Consumed):
            event = self.events[self.cursor]
            self.cursor += 1
            iterator = self.iterators[event.handle] if 0 <= event.handle < len(self.iterators) else None
            for _ in range(event.count if iterator is not None else 0):
                try:
                    self.track(next(iterator))
                except StopIteration:
                    break
        clean = True
        while self.cursor < len(self.events) and isinstance(self.events[self.cursor], Write):
            event = self.events[self.cursor]
            self.cursor += 1
            if not allowed:
                clean = False
                continue
            target = self.tracked(event.handle)
            if target is not None:
                _apply_write(target, decode(event.value, self), None if event.grad is None else decode(event.grad, self))
        return clean


class RecordedIterator:
    """(record) A test's generator as student code sees it: each item it reads is tracked,
    like any object the test hands over, and counted for the recording."""

    def __init__(self, iterator, rec: TestRecording):
        self._iterator, self._rec = iterator, rec
        self.read = 0
        self.reported = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._iterator)
        self.read += 1
        self._rec.track(item)
        return item


def _asks(event: Event, kind: Kind, ref: list, args: str | None) -> bool:
    return isinstance(event, Crossing) and event.asks(kind, ref, args)


def _describe(event: Event) -> str:
    if isinstance(event, Crossing):
        return f"{event.kind.value} {event.ref!r}"
    return type(event).__name__.lower()


def _mutables(value, depth=0):
    if depth > 8:  # (args, kwargs) -> args -> [param groups] -> {"params": [...]} -> tensors, and room to spare
        return
    if isinstance(value, (torch.Tensor, np.ndarray)):
        yield value
    elif isinstance(value, (list, dict)):
        yield value
        for item in (value.values() if isinstance(value, dict) else value):
            yield from _mutables(item, depth + 1)
    elif isinstance(value, tuple):
        for item in value:
            yield from _mutables(item, depth + 1)


def _apply_write(target, value, grad) -> None:
    if isinstance(target, torch.Tensor) and isinstance(value, torch.Tensor):
        with torch.no_grad():
            if target.shape != value.shape:
                target.data = value.to(target.dtype)
            else:
                target.copy_(value)
        target.grad = None if grad is None else grad.to(target.dtype)
    elif isinstance(target, np.ndarray) and isinstance(value, np.ndarray) and target.shape == value.shape:
        target[...] = value
    elif isinstance(target, (list, dict)):
        _merged(target, value)


def _merged(old, new):
    """`new`'s value, kept in `old` where both are the same kind of container or tensor, so
    that the objects the test holds stay the ones it holds: after `sgd_step_(params, lr)`
    changes the tensors of the test's list, the list's write must not swap in copies (without
    their `.grad`, which each tensor's own write restores). Returns what the slot now holds."""
    if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor):
        if old.shape == new.shape and old.dtype == new.dtype:
            with torch.no_grad():
                old.copy_(new)
            return old
        return new
    if isinstance(old, np.ndarray) and isinstance(new, np.ndarray):
        if old.shape == new.shape and old.dtype == new.dtype:
            old[...] = new
            return old
        return new
    if isinstance(old, list) and isinstance(new, list):
        if len(old) == len(new):
            old[:] = [_merged(a, b) for a, b in zip(old, new)]
        else:
            old[:] = new
        return old
    if isinstance(old, dict) and isinstance(new, dict):
        kept = {key: _merged(old[key], value) if key in old else value for key, value in new.items()}
        old.clear()
        old.update(kept)
        return old
    return new


# --- the replay side of the boundary ------------------------------------------------------


class ReplayCallable:
    """Stands for a student function or method; answers from the recording."""

    def __init__(self, ref: Any, name: str, module):
        self._kata_ref, self._kata_name, self._kata_module = ref, name, module

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        return self._kata_module._replay_call(self._kata_ref, self._kata_name, args, kwargs)

    def __getattr__(self, attr):
        if attr.startswith("_"):
            raise AttributeError(attr)
        # a classmethod of a student class: recorded as the module function "Class.attr"
        name = f"{self._kata_name}.{attr}"
        return ReplayCallable(["f", self._kata_ref[1], name], name, self._kata_module)

    def with_grad(self, *args, **kwargs):
        __tracebackhide__ = True
        ref = list(self._kata_ref) + ["with_grad"]
        return self._kata_module._replay_call(ref, f"{self._kata_name}.with_grad", args, kwargs)

    def __repr__(self):
        return f"<replayed {self._kata_name}>"


class ReplayObject:
    """Stands for an object of a student class; attribute reads and calls answer from the
    recording, through the student module whose crossing returned it."""

    def __init__(self, oid: int, type_name: str, rec: TestRecording, mro: Iterable[str] = ()):
        object.__setattr__(self, "_kata_oid", oid)
        object.__setattr__(self, "_kata_type", type_name)
        object.__setattr__(self, "_kata_mro", tuple(mro))
        object.__setattr__(self, "_kata_module", rec.owner)

    def __getattr__(self, attr):
        __tracebackhide__ = True
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self._kata_module._replay_getattr(self, attr)

    def __setattr__(self, attr, value):
        self._kata_module._replay_simple(["set", self._kata_oid], (attr, value))

    def __call__(self, *args, **kwargs):
        __tracebackhide__ = True
        return self._kata_module._replay_call(["o", self._kata_oid], self._kata_type, args, kwargs)

    def with_grad(self, *args, **kwargs):
        __tracebackhide__ = True
        return self._kata_module._replay_call(["o", self._kata_oid, "with_grad"],
                                              f"{self._kata_type}.with_grad", args, kwargs)

    def __getitem__(self, key):
        return self._kata_module._replay_simple(["item", self._kata_oid], (key,))

    def __len__(self):
        return self._kata_module._replay_simple(["len", self._kata_oid], ())

    def __iter__(self):
        return iter(self._kata_module._replay_simple(["iter", self._kata_oid], ()))

    def __repr__(self):
        return f"<replayed {self._kata_type}>"


def _replayed_operator(name: str):
    def apply(self, *args):
        __tracebackhide__ = True
        return self._kata_module._replay_call(["m", self._kata_oid, name], f"{self._kata_type}.{name}", args, {})

    apply.__name__ = name
    return apply


for _name in OPERATORS:  # Python looks operators up on the type, never via __getattr__
    setattr(ReplayObject, _name, _replayed_operator(_name))
del _name


def current() -> TestRecording | None:
    """The recording of the test running now (record and replay modes)."""
    return session.active().recording


# --- the sandbox's side of the grader's pipes (record mode) --------------------------------


def sandbox_link(control_fd: int | None, skip: list[str], timing_fd: int | None) -> SandboxLink:
    """The grader's pipes, and the student functions it says not to call again."""
    import os

    control = os.fdopen(control_fd, "w", buffering=1, encoding="utf-8", closefd=False) if control_fd is not None else None
    return SandboxLink(control=control, skipped=set(skip), timing_fd=timing_fd)


def load_timings(timings_file: str | None) -> dict[str, tuple[float, float]]:
    """(replay) The throughput timings the grader measured itself (graders.timing)."""
    if not timings_file:
        return {}
    return {k: tuple(v) for k, v in json.loads(Path(timings_file).read_text()).items()}


def in_timing_run() -> bool:
    """(record mode) Whether this sandbox was started to time a throughput test (graders.timing)."""
    return session.active().link.timing_fd is not None


def timing_mark(nodeid: str, at: str) -> None:
    """(timing runs) Tell the grader where the measurement is ("start", "candidate",
    "baseline": the side whose timed calls are done) and wait until it has read the CPU time
    and says go. After the last mark the grader kills the sandbox: this never returns."""
    import os

    control("timing", id=nodeid, at=at)
    try:
        os.read(session.active().link.timing_fd, 64)
    finally:
        if at == "baseline":
            os._exit(0)


def trusted_timing(nodeid: str) -> tuple[float, float] | None:
    return session.active().timings.get(nodeid)


def control(event: str, **fields) -> None:
    """Tell the grader (one JSON line) what the sandbox is doing; it keeps the clock."""
    pipe = session.active().link.control
    if pipe is None:
        return
    try:
        pipe.write(json.dumps({"e": event, **fields}) + "\n")
    except (OSError, ValueError):
        pass


# --- timeouts: a student function that hangs costs one test its timeout, not every test -----
#
# pytest-timeout stops the test; the crossing that was running says which student function
# it stopped. That function is not called again: in the grading sandbox the grader is told
# (and its later calls fail at once); in a live run (`pytest`, `kata check`) the kata's later
# tests that call it are skipped, so a `while True` costs seconds, not minutes.


def importing(dotted: str) -> str:
    """What the timeout bookkeeping calls the import of a student module: its code runs then
    too, and a module whose import hung is not imported again."""
    return f"import {dotted}"


def _your(function: str) -> str:
    """"your `train_bpe`", or "importing week1/bpe.py" for an import."""
    if function.startswith("import "):
        return f"importing {function.removeprefix('import ').replace('.', '/')}.py"
    return f"your `{function}`"


def timeout_text(function: str | None, seconds: float) -> str:
    """How every run says pytest-timeout stopped a test, live or in the grading sandbox:
    "TIMEOUT in your `train_bpe` after 60 s: the test was stopped"."""
    if not function:
        where = ""
    elif function.startswith("import "):
        where = f"while {_your(function)} "
    else:
        where = f"in {_your(function)} "
    return f"TIMEOUT {where}after {seconds:g} s: the test was stopped"


def timeout_seconds(message: str) -> float | None:
    """The limit a pytest-timeout failure message names; None for any other failure."""
    found = re.search(r"Timeout \(>([0-9.]+)s\) from pytest-timeout", message)
    return float(found.group(1)) if found else None


@dataclass(frozen=True)
class StoppedCall:
    """(live runs) A student function pytest-timeout stopped: in which test, after how long."""

    function: str
    nodeid: str
    seconds: float


# (live runs) Per pytest session: (kata id, function) -> the call pytest-timeout stopped.
STOPPED_CALLS = pytest.StashKey[dict[tuple[str, str], StoppedCall]]()


def _kata_of(item: pytest.Item) -> str:
    return catalog.kata_id_for_test_file(item.path) or ""


def _stopped_before(item: pytest.Item, function: str) -> StoppedCall | None:
    stopped = item.config.stash.get(STOPPED_CALLS, None)
    return stopped.get((_kata_of(item), function)) if stopped else None


def calling(function: str | None) -> str | None:
    """A student function is about to run (None: it returned). Returns why it must not run,
    when it timed out in an earlier test (the grading sandbox); in a live run, the kata's
    later tests that call it again are skipped instead."""
    __tracebackhide__ = True  # a skip is reported at the test's line that called the function
    active = session.active()
    if function is not None and active.mode == Mode.LIVE and active.item is not None:
        stopped = _stopped_before(active.item, function)
        if stopped is not None and stopped.nodeid == active.item.nodeid:
            return timeout_text(function, stopped.seconds)  # hypothesis replays the example that hung
        if stopped is not None:
            pytest.skip(f"{_your(function)} timed out in an earlier test ({stopped.nodeid.split('::')[-1]}) "
                        f"after {stopped.seconds:g} s: not run again")
    link = active.link
    link.calling = function
    if function is not None:
        link.last_called = function
    if function is None or active.mode != Mode.RECORD:
        return None
    if function in link.skipped:
        return (f"TIMEOUT: {_your(function)} did not finish in an earlier test, so the tests that call it again "
                "are not run (each would wait for its whole timeout)")
    control("call", f=function)
    return None


def interrupted_by_timeout(function: str, seconds: float) -> None:
    """pytest-timeout stopped `function` mid-call: never call it again (not even in this test:
    hypothesis re-runs a failing example, without a timer). In a live run, only the tests of
    this kata: a function can be slow on one kata's inputs and fine on another's."""
    active = session.active()
    if active.mode == Mode.LIVE and active.item is not None:
        stopped = active.item.config.stash.setdefault(STOPPED_CALLS, {})
        stopped[(_kata_of(active.item), function)] = StoppedCall(function, active.item.nodeid, seconds)
    elif active.mode == Mode.RECORD and active.recording is not None:
        active.link.skipped.add(function)
        timed_out(active.recording.nodeid, function)


def timed_out(nodeid: str, function: str | None = None) -> None:
    """(record mode) pytest-timeout stopped this test: tell the grader (once per test), and
    do not call the function that was running again."""
    active = session.active()
    link = active.link
    if active.mode != Mode.RECORD or nodeid in link.reported_timeouts:
        return
    link.reported_timeouts.add(nodeid)
    link.timeouts += 1
    function = function or link.calling or link.last_called
    if function:
        link.skipped.add(function)
    control("timeout", id=nodeid, f=function)


def timeouts_so_far() -> int:
    return session.active().link.timeouts


# --- each test ------------------------------------------------------------------------------


def start_test(nodeid: str) -> None:
    active = session.active()
    active.link.last_called = None
    if active.mode == Mode.RECORD:
        active.recording = TestRecording(nodeid)
        control("started", id=nodeid)  # if the sandbox dies or hangs here, the grader knows where
    elif active.mode == Mode.REPLAY:
        directory = active.recordings
        active.recording = TestRecording.load(directory, nodeid) or TestRecording(nodeid, events=None)
        active.recording.missing = not (directory / (file_stem(nodeid) + ".json")).is_file()
    else:
        active.recording = None


def _reap_strays() -> None:
    """In the sandbox's own PID namespace (where the test runner is PID 1), every other
    process was started by student code: end them all before the next test (fork bombs,
    background loops)."""
    import os
    import signal

    if os.getpid() != 1:
        return
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != "1":
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def finish_test() -> None:
    active = session.active()
    if active.mode == Mode.RECORD:
        _reap_strays()
        if active.recording is not None and active.recordings is not None:
            active.recording.save(active.recordings)
            control("finished", id=active.recording.nodeid)
    active.recording = None
