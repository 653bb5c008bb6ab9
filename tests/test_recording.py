"""Unit checks of what a recording carries from the sandbox to the trusted replay.

The end-to-end proof is `tests/test_grading.py` (every kata of the reference replays to full
marks); these pin the pieces that once lost information on the way, in milliseconds.
"""

import torch
import torch.nn as nn

from graders import is_instance, type_name
from graders.proxies import StudentObject
from graders.values import is_callback as _is_callback
from graders import recording
from graders.recording import ReplayObject, decode, digest, encode


def test_digest_takes_zero_dim_tensors_of_every_dtype():
    rec = recording.TestRecording("t")
    for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.int64, torch.bool):
        one, two = torch.tensor(1, dtype=dtype), torch.tensor(0, dtype=dtype)
        assert digest(one, rec) == digest(one.clone(), rec) != digest(two, rec)


def test_a_replayed_object_knows_its_classes():
    rec = recording.TestRecording("t")
    proxy = StudentObject(nn.Linear(3, 2), module=None)
    replayed = decode(encode(proxy, rec), rec)
    assert isinstance(replayed, ReplayObject)
    assert type_name(replayed) == type_name(proxy) == "Linear"
    assert is_instance(replayed, nn.Linear) and is_instance(replayed, nn.Module)
    assert is_instance(proxy, nn.Linear) and not is_instance(proxy, nn.Conv1d)
    assert not is_instance(replayed, nn.Conv1d)


class ScriptedModel:
    def __init__(self):
        self.prompts = []

    def __call__(self, prompt):
        self.prompts.append(prompt)
        return "ok"


def test_callable_objects_of_the_test_are_callbacks_but_modules_and_classes_are_not():
    assert _is_callback(ScriptedModel())
    assert _is_callback(lambda x: x)
    assert not _is_callback(nn.Linear(2, 2))
    assert not _is_callback(ScriptedModel)
    assert not _is_callback(StudentObject(ScriptedModel(), module=None))


def test_what_student_code_reads_of_a_generator_reaches_the_replay():
    """Student code gets the test's generator as it is (reading it twice is a mistake a test
    can see); the recording says how many items it read, and the replay reads as many of its
    own, tracking them, so the writes recorded after the call land on the right tensors."""
    made = [torch.zeros(2), torch.zeros(2), torch.zeros(2)]
    rec = recording.TestRecording("t")
    reader = rec.reading(iter(p for p in made))
    assert rec.reading(reader._iterator) is reader  # the same generator: the same pass-through
    first, second = next(reader), next(reader)
    first += 1  # student code changes what it read
    second += 2
    rec.record_consumption()
    assert rec.record_writes(allowed=True)
    assert [type(e).__name__ for e in rec.events] == ["Consumed", "Write", "Write"]
    assert list(reader) == [made[2]] and rec.events[0].count == 2

    fresh = [torch.zeros(2), torch.zeros(2), torch.zeros(2)]
    replay = recording.TestRecording("t", events=list(rec.events[:3]), tensors=rec.tensors)
    generator = (p for p in fresh)
    replay.iterator_id(generator)
    assert replay.apply_side_effects(allowed=True)
    assert torch.equal(fresh[0], torch.ones(2)) and torch.equal(fresh[1], torch.full((2,), 2.0))
    assert list(generator) == [fresh[2]]  # the replay's generator is where the sandbox's was


def sgd_step_(params, lr):
    """A mutating call as week1/pytorch's students write it: in place, then the grads cleared."""
    with torch.no_grad():
        for p in params:
            p -= lr * p.grad
            p.grad = None


def test_a_write_to_a_list_keeps_the_tensors_the_test_holds():
    """The list the test hands `sgd_step_` changes only through its tensors. The replay applies
    the list's write and each tensor's own: it must keep the test's tensors in the list (and
    their `.grad` as the sandbox left it), not swap in copies, or `params[0].grad` would read
    differently in the replay than in the sandbox."""
    def parameters():
        made = [torch.ones(3, requires_grad=True), torch.full((2,), 2.0, requires_grad=True)]
        made[0].grad, made[1].grad = torch.full((3,), 0.5), torch.ones(2)
        return made

    live = parameters()
    rec = recording.TestRecording("t")
    rec.track(((live, 0.1), {}))
    sgd_step_(live, 0.1)
    assert rec.record_writes(allowed=True)

    replayed = parameters()
    held = list(replayed)
    replay = recording.TestRecording("t", events=list(rec.events), tensors=rec.tensors)
    replay.track(((replayed, 0.1), {}))
    assert replay.apply_side_effects(allowed=True)
    assert all(a is b for a, b in zip(replayed, held))
    for got, want in zip(replayed, live):
        assert torch.equal(got.detach(), want.detach()) and got.grad is None and got.requires_grad


def test_a_write_that_reshapes_a_list_or_dict_takes_the_new_value():
    values = {"lr": 0.1, "params": [torch.zeros(2)], "gone": 1}
    rec = recording.TestRecording("t")
    rec.track(((values,), {}))
    values["lr"] = 0.05
    values["params"].append(torch.ones(1))
    del values["gone"]
    assert rec.record_writes(allowed=True)

    replayed = {"lr": 0.1, "params": [torch.zeros(2)], "gone": 1}
    replay = recording.TestRecording("t", events=list(rec.events), tensors=rec.tensors)
    replay.track(((replayed,), {}))
    assert replay.apply_side_effects(allowed=True)
    assert replayed["lr"] == 0.05 and "gone" not in replayed
    assert [p.tolist() for p in replayed["params"]] == [[0.0, 0.0], [1.0]]
