"""How values read in the harness's messages ("Called sample(logits[2,5], generator=...)").

A message names what a student can act on: never a C type, a proxy's qualified name or a
memory address. Pure functions, checked in milliseconds.
"""

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from graders import recording
from graders.crossings import RecordingJournal
from graders.values import describe_call, describe_value, syntax_error_excerpt


def fake_llm(prompt):
    return "ok"


def test_a_generator_reads_with_its_seed():
    assert describe_value(torch.Generator().manual_seed(7)) == "<torch.Generator seed=7>"


def test_callbacks_read_as_callbacks_whoever_wraps_them():
    """The grading sandbox hands student code a wrapper of the test's callback (it records
    the calls), named after the recorder's internals: it reads like the callback itself."""
    journal = RecordingJournal(recording.TestRecording("t"))
    (wrapped,) = journal._recorded_callbacks((fake_llm,))
    assert wrapped is not fake_llm and "<locals>" in wrapped.__qualname__
    for value in (fake_llm, lambda prompt: "ok", wrapped):
        assert describe_value(value) == "<callback function>"


def test_values_with_long_or_internal_reprs_read_as_their_kind():
    assert describe_value(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) == "<Sequential>"
    assert describe_value(p for p in nn.Linear(2, 2).parameters()) == "<generator>"
    assert describe_value(recording.RecordedIterator(iter([]), recording.TestRecording("t"))) == "<generator>"
    assert describe_value(torch.relu) == "<function relu>"
    assert describe_value(object()) == "<object>"


def test_plain_values_read_as_before():
    assert describe_value(torch.zeros(4, 7)) == "[4,7]"
    assert describe_value(torch.zeros(2, dtype=torch.int64)) == "[2] int64"
    assert describe_value(-1) == "-1" and describe_value("gpt2") == "'gpt2'" and describe_value(None) == "None"
    assert describe_value(list(range(10))) == "<list of 10>"


def test_a_call_with_a_generator_and_a_callback_reads_plainly():
    def sample(logits, generator=None, on_token=None):
        pass

    text = describe_call("sample", sample, (torch.zeros(2, 5),),
                         {"generator": torch.Generator().manual_seed(0), "on_token": fake_llm})
    assert text == "sample(logits[2,5], generator=<torch.Generator seed=0>, on_token=<callback function>)"
    assert "0x" not in text


def _syntax_error(source: str, path: Path) -> SyntaxError:
    with pytest.raises(SyntaxError) as caught:
        compile(source, str(path), "exec")
    return caught.value


def test_a_syntax_error_shows_its_line_with_a_caret_under_the_column(tmp_path):
    path = tmp_path / "week1" / "bpe.py"
    error = _syntax_error("def merge(ids, pair, new_id)\n    return ids\n", path)
    assert syntax_error_excerpt(error, tmp_path) == (
        "  week1/bpe.py:1\n"
        "    def merge(ids, pair, new_id)\n"
        "                                ^")


def test_an_indented_syntax_error_spans_what_python_underlines(tmp_path):
    error = _syntax_error("def f(x):\n    return (1,\n        2 + 3 3)\n", tmp_path / "week1" / "bpe.py")
    assert syntax_error_excerpt(error, tmp_path).splitlines()[1:] == [
        "    2 + 3 3)",
        "    ^^^^^^^",
    ]
