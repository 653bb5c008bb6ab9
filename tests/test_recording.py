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
