"""The recording's event format: every event survives its JSON, and anything else is refused
with a message that says which event and why (graders/events.py)."""

import json

import pytest

from graders.events import (FORMAT_VERSION, Callback, Consumed, Crossing, Kind, MalformedEvent, Write, from_json,
                            recording_from_json, recording_to_json, to_json)

EVENTS = [
    Crossing(Kind.ATTR, ["attr", "week2.attention", "softmax"], callable=True),
    Crossing(Kind.CALL, ["f", "week2.attention", "softmax"], "d" * 32, returned={"t": "t0", "rg": False}),
    Crossing(Kind.CALL, ["o", 0], "a" * 32, failure="NOT STARTED: ..."),
    Crossing(Kind.CALL, ["m", 0, "step"], "b" * 32, raised={"types": ["ValueError"], "type": "ValueError", "msg": "x"}),
    Crossing(Kind.GET, ["get", 0, "forward"], method=True),
    Crossing(Kind.ITEM, ["item", 1], "c" * 32, returned={"v": 3}),
    Crossing(Kind.TIMING, ["timing"]),
    Crossing(Kind.MEMORY, ["memory"], returned=[120, "a [3, 40] float32 tensor"]),
    Write(2, {"l": [{"v": 1}]}, None),
    Callback(0, {"l": [{"v": "prompt"}]}),
    Consumed(0, 3),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{type(e).__name__}-{getattr(e, 'kind', '')}")
def test_every_event_survives_its_json(event):
    assert from_json(json.loads(json.dumps(to_json(event)))) == event


def test_a_recording_carries_its_version_and_test():
    content = recording_to_json("t.py::x", EVENTS)
    assert content["version"] == FORMAT_VERSION
    assert recording_from_json(json.loads(json.dumps(content)), "t.py::x") == EVENTS
    with pytest.raises(MalformedEvent, match="does not belong"):
        recording_from_json(content, "t.py::y")
    with pytest.raises(MalformedEvent, match="version"):
        recording_from_json({**content, "version": 0}, "t.py::x")


@pytest.mark.parametrize("data, why", [
    ([], "not an object"),
    ({"type": "exec"}, "unknown type"),
    ({"type": "crossing", "kind": "shell", "ref": []}, "unknown kind"),
    ({"type": "crossing", "kind": "call", "ref": "f"}, "ref is not a list"),
    ({"type": "crossing", "kind": "call", "ref": [], "failure": 3}, "failure is not a str"),
    ({"type": "crossing", "kind": "call", "ref": [], "raised": "ValueError"}, "raised is not a dict"),
    ({"type": "crossing", "kind": "attr", "ref": [], "callable": "yes"}, "callable is not true or false"),
    ({"type": "crossing", "kind": "attr", "ref": [], "code": "print(1)"}, "unknown fields"),
    ({"type": "write", "handle": "0", "value": None}, "handle is not a number"),
    ({"type": "callback", "handle": True, "args": None}, "handle is not a number"),
    ({"type": "consumed", "handle": 0, "count": -1}, "count from 0"),
    ({"type": "consumed", "handle": 0, "count": 10**9}, "count from 0"),
])
def test_a_malformed_event_says_which_and_why(data, why):
    with pytest.raises(MalformedEvent, match=f"event 7: .*{why}"):
        from_json(data, 7)
