"""The events of a recording: what a test asked of student code, and what came back.

A recording (graders.recording) is a list of these, in the order the test made them, saved
as JSON beside a safetensors file that holds the tensors its values refer to:

    {"version": 1, "nodeid": "katas/week2/test_attention.py::test_x",
     "events": [{"type": "crossing", "kind": "attr", "ref": ["attr", "week2.attention", "softmax"],
                 "callable": true},
                {"type": "crossing", "kind": "call", "ref": ["f", "week2.attention", "softmax"],
                 "args": "<digest of the arguments>", "returned": {"t": "t0", "rg": false}}]}

Four types of event:

- `Crossing`: one question (a module attribute, a call, an attribute or item of a student
  object, a throughput timing, ...) and its answer: a value, a failure the test must show
  (NOT STARTED, ERROR in ...), or an exception the test expected.
- `Write`: a call changed an object the test gave it (an optimizer's parameters): its new
  value, applied in the replay only where the kata declares the call mutating.
- `Callback`: student code called a function of the test's (an agent's scripted model),
  with these arguments; the replay calls its own copy with them.
- `Consumed`: student code read this many more items of a generator the test gave it
  (`model.parameters()`); the replay reads as many of its own, so both sides agree on what
  is left and on the objects the items are.

The sandbox writes these files and the grader reads them, so parsing is strict: anything
that is not exactly one of these shapes is a `MalformedEvent` with a message that says
which event and why, and the test that owns it is INCOMPLETE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Union

FORMAT_VERSION = 1
MAX_CONSUMED = 1_000_000  # items read from one generator in one call


class Kind(str, enum.Enum):
    """What a crossing asked."""

    ATTR = "attr"  # a module attribute: a function, a class or a value
    CALL = "call"  # a call of a function, a class, an object or a method
    GET = "get"  # an attribute of a student object
    SET = "set"  # setting one
    ITEM = "item"  # obj[key]
    LEN = "len"  # len(obj)
    ITER = "iter"  # iter(obj)
    GLUE = "glue"  # trusted glue over raw student objects, run as one crossing (in_one_crossing)
    TIMING = "timing"  # a throughput measurement: the grader times it itself (graders.timing)
    MEMORY = "memory"  # a measurement the sandbox took beside a call (the largest allocation)


class MalformedEvent(ValueError):
    """A recording holds something that is not an event of this format."""


@dataclass(frozen=True)
class Crossing:
    kind: Kind
    ref: list  # which question: ["f", module, name], ["o", object id], ["get", object id, attr], ...
    args: str | None = None  # digest of the arguments (graders.recording.digest)
    returned: Any = None  # the encoded value (graders.recording.encode)
    failure: str | None = None  # the test fails with this message
    raised: dict | None = None  # an exception the test expected: {"types", "type", "msg"}
    callable: bool = False  # (attr) a student function or class: calls to it cross again
    method: bool = False  # (get) a bound method: calls to it cross again

    def asks(self, kind: Kind, ref: list, args: str | None) -> bool:
        """Whether this answers that question (the same arguments, when they count)."""
        return self.kind == kind and self.ref == ref and (args is None or self.args == args)


@dataclass(frozen=True)
class Write:
    handle: int  # the test's object, numbered in order of first appearance
    value: Any  # its new value, encoded
    grad: Any = None  # its new .grad, encoded (tensors)


@dataclass(frozen=True)
class Callback:
    handle: int  # the test's function, numbered in order of first appearance
    args: Any  # the encoded list of arguments


@dataclass(frozen=True)
class Consumed:
    handle: int  # the test's one-shot iterator (a generator), numbered in order of first appearance
    count: int  # how many more items student code read from it


Event = Union[Crossing, Write, Callback, Consumed]


def to_json(event: Event) -> dict:
    if isinstance(event, Crossing):
        data: dict[str, Any] = {"type": "crossing", "kind": event.kind.value, "ref": event.ref}
        for name in ("args", "returned", "failure", "raised"):
            if getattr(event, name) is not None:
                data[name] = getattr(event, name)
        for name in ("callable", "method"):
            if getattr(event, name):
                data[name] = True
        return data
    if isinstance(event, Write):
        return {"type": "write", "handle": event.handle, "value": event.value, "grad": event.grad}
    if isinstance(event, Consumed):
        return {"type": "consumed", "handle": event.handle, "count": event.count}
    return {"type": "callback", "handle": event.handle, "args": event.args}


def from_json(data: Any, index: int = 0) -> Event:
    def bad(why: str) -> MalformedEvent:
        return MalformedEvent(f"event {index}: {why}")

    if not isinstance(data, dict):
        raise bad(f"a {type(data).__name__}, not an object")
    kind_of_event = data.get("type")
    fields = {k: v for k, v in data.items() if k != "type"}
    if kind_of_event == "crossing":
        allowed = {"kind", "ref", "args", "returned", "failure", "raised", "callable", "method"}
        if set(fields) - allowed:
            raise bad(f"unknown fields {sorted(set(fields) - allowed)}")
        try:
            kind = Kind(fields.get("kind"))
        except ValueError:
            raise bad(f"unknown kind {str(fields.get('kind'))[:40]!r}") from None
        ref = fields.get("ref")
        if not isinstance(ref, list):
            raise bad("its ref is not a list")
        for name, types in (("args", str), ("failure", str), ("raised", dict)):
            if fields.get(name) is not None and not isinstance(fields[name], types):
                raise bad(f"its {name} is not a {types.__name__}")
        for name in ("callable", "method"):
            if not isinstance(fields.get(name, False), bool):
                raise bad(f"its {name} is not true or false")
        return Crossing(kind, ref, fields.get("args"), fields.get("returned"), fields.get("failure"),
                        fields.get("raised"), fields.get("callable", False), fields.get("method", False))
    if kind_of_event in ("write", "callback", "consumed"):
        if not isinstance(fields.get("handle"), int) or isinstance(fields.get("handle"), bool):
            raise bad("its handle is not a number")
        if kind_of_event == "consumed":
            count = fields.get("count")
            if set(fields) - {"handle", "count"} or not isinstance(count, int) or isinstance(count, bool) \
                    or not 0 <= count <= MAX_CONSUMED:
                raise bad(f"a consumed event needs a handle and a count from 0 to {MAX_CONSUMED}, nothing else")
            return Consumed(fields["handle"], count)
        if kind_of_event == "write":
            if set(fields) - {"handle", "value", "grad"}:
                raise bad("unknown fields")
            return Write(fields["handle"], fields.get("value"), fields.get("grad"))
        if set(fields) - {"handle", "args"}:
            raise bad("unknown fields")
        return Callback(fields["handle"], fields.get("args"))
    raise bad(f"unknown type {str(kind_of_event)[:40]!r}")


def recording_to_json(nodeid: str, events: list[Event]) -> dict:
    return {"version": FORMAT_VERSION, "nodeid": nodeid, "events": [to_json(e) for e in events]}


def recording_from_json(content: Any, nodeid: str) -> list[Event]:
    """The events of `nodeid`'s recording; MalformedEvent if it is not one of this format."""
    if not isinstance(content, dict):
        raise MalformedEvent("the recording is not a JSON object")
    if content.get("version") != FORMAT_VERSION:
        raise MalformedEvent(f"the recording's format version is {str(content.get('version'))[:20]}, "
                             f"not {FORMAT_VERSION}")
    if content.get("nodeid") != nodeid:
        raise MalformedEvent("the recording does not belong to this test")
    events = content.get("events")
    if not isinstance(events, list):
        raise MalformedEvent("the recording has no list of events")
    return [from_json(e, i) for i, e in enumerate(events)]
