"""The check helpers' own behaviour: what a failure says, and when it names a mistake.

A hint claims a cause, so the checks give tests the means to name one only where the failure
shows it: `check.matches` compares a result with what a mistake would return exactly as the
checks compare it with the right answer, and `likely_if=` prints a probable cause with the
condition it depends on.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from graders import check, impl, runner, selfcheck


def failure(check_call) -> str:
    """The message a failing check gives."""
    with pytest.raises(pytest.fail.Exception) as caught:
        check_call()
    return str(caught.value)


def test_matches_compares_as_the_checks_do():
    assert check.matches(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-6]))  # within float32 tolerance
    assert not check.matches(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.1]))
    assert not check.matches(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0], dtype=torch.float64))  # dtype counts
    assert check.matches(torch.tensor([float("nan"), 1.0]), torch.tensor([float("nan"), 1.0]))
    assert check.matches(np.float32(0.5), 0.5) and not check.matches(0.6, 0.5)
    assert check.matches([(b" ", b" ")], [(b" ", b" ")]) and not check.matches([1, 2], [2, 1])
    assert check.matches({(1, 1): 2}, {(1, 1): 2}) and not check.matches({(1, 1): 1}, {(1, 1): 2})
    assert not check.matches("text", b"text")


def test_a_likely_cause_says_what_it_depends_on():
    message = failure(lambda: check.equal([1], [2], hint="wrong_tie_break", likely_if="your pair counts are right"))
    assert message.endswith("Likely cause, if your pair counts are right:\nHint (wrong_tie_break)")
    message = failure(lambda: check.that(False, "no", hint="x"))
    assert "Likely" not in message and message.endswith("Hint (x)")


def test_no_hint_no_hint_line():
    assert "Hint" not in failure(lambda: check.close(torch.ones(2), torch.zeros(2), hint=None))


def test_nan_where_a_number_was_expected_is_counted():
    message = failure(lambda: check.close(torch.tensor([float("nan"), 1.0, 5.0]), torch.tensor([1.0, 1.0, 1.0])))
    assert message.startswith("output values differ: 2 of 3 elements outside rtol=1e-05, atol=1e-05; "
                              "1 of them nan where a number was expected\n")
    assert "got nan, expected 1" in message
    # nan where nan was expected is no difference
    check.close(torch.tensor([float("nan"), 1.0]), torch.tensor([float("nan"), 1.0]))


def test_an_infinite_expected_value_matches_only_itself():
    """An infinite expected value makes the allowed error `atol + rtol * |inf|` infinite too: a
    finite result, or the other infinity, must still fail (an unsmoothed bigram loss is inf)."""
    inf = float("inf")
    for got in (2.146, -inf, float("nan")):
        assert not check.matches(got, inf)
        assert "values differ" in failure(lambda: check.close(torch.tensor([got, 1.0]), torch.tensor([inf, 1.0])))
    assert not check.matches(torch.tensor([1e30]), torch.tensor([-inf]))
    assert check.matches(inf, inf) and check.matches(torch.tensor([-inf, 1.0]), torch.tensor([-inf, 1.0]))


def run_kata_test(tmp_path, kata: str, source: str, test: str) -> subprocess.CompletedProcess:
    """One public test of `kata` against the reference with the kata's module replaced by `source`."""
    root = selfcheck.make_root(tmp_path / "root", kata, source)
    week, name = kata.split("/")
    files = [f"katas/{week}/test_{name}.py::{test}"]
    return subprocess.run([sys.executable, "-m", "pytest", *runner.arguments(files, impl=str(root), quiet=False),
                           "-p", "no:randomly"], cwd=impl.PROJECT_ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(600)
def test_a_nan_gradient_is_reported_as_nan_not_as_no_gradient(tmp_path):
    reference = (impl.NAMED_ROOTS["reference"] / "week2" / "attention.py").read_text(encoding="utf-8")
    broken = selfcheck.mutate(reference, (("return self.w_o(out.transpose(1, 2).reshape(B, T, C))",
                                           "return self.w_o(out.transpose(1, 2).reshape(B, T, C) * torch.tensor(float('nan')))"),),
                              "nan gradients")
    result = run_kata_test(tmp_path, "week2/attention", broken, "test_mha_gradients_reach_every_parameter")
    assert "the gradient of parameter w_qkv.weight contains nan" in result.stdout, result.stdout[-3000:]
    assert "received no gradient" not in result.stdout
