"""The plugin's user-visible output, tested the way pytest plugins test themselves (pytester).

Each test writes a tiny course into a temporary directory — a test file in `week9/` and
one or more implementation roots — and runs pytest on it in a subprocess.
"""

import textwrap

import pytest

pytestmark = pytest.mark.timeout(600)  # these tests start whole pytest sessions in subprocesses

TEST_FILE = """
import pytest, torch
from graders import check, student

demo = student("week9.demo")

@pytest.mark.points(2)
def test_double():
    check.close(demo.double(torch.ones(3)), torch.full((3,), 2.0))

@pytest.mark.points(1)
def test_softmax_rule():
    check.close(demo.normalise(torch.ones(4)), torch.full((4,), 0.25))

@pytest.mark.hidden
@pytest.mark.points(5)
def test_hidden():
    check.close(demo.double(torch.zeros(1)), torch.zeros(1))

@pytest.mark.gpu
@pytest.mark.points(1)
def test_on_gpu():
    check.close(demo.double(torch.ones(1, device="cuda")), torch.full((1,), 2.0, device="cuda"))
"""

GOOD = """
import torch
def double(x):
    return 2 * x
def normalise(x):
    return x / x.sum()
"""


@pytest.fixture
def course(pytester):
    pytester.makepyfile(**{"week9/test_demo": TEST_FILE})

    def run(impl_source: str | None, *args):
        root = pytester.path / "impl"
        (root / "week9").mkdir(parents=True, exist_ok=True)
        module = root / "week9" / "demo.py"
        if impl_source is None:
            module.unlink(missing_ok=True)
        else:
            module.write_text(textwrap.dedent(impl_source))
        return pytester.runpytest_subprocess("-p", "graders.plugin", "--impl", str(root), "-p", "no:cacheprovider",
                                             "--import-mode=importlib", *args)

    return run


def test_header_names_the_implementation(course):
    result = course(GOOD)
    result.stdout.fnmatch_lines(["kata implementation: */impl (*/impl); public tests only; hypothesis profile: *"])


def test_correct_code_earns_its_points_and_hidden_tests_stay_hidden(course):
    result = course(GOOD, "-rs")
    result.assert_outcomes(passed=2, skipped=1, deselected=1)
    result.stdout.fnmatch_lines(["*kata points*", "week9/demo*3 / 3*passing*"])
    result.stdout.fnmatch_lines(["*needs a CUDA GPU*"])


def test_hidden_tests_run_with_hidden(course):
    result = course(GOOD, "--hidden")
    result.assert_outcomes(passed=3, skipped=1)


def test_stub_fails_as_not_started(course):
    result = course("def double(x):\n    raise NotImplementedError\n\ndef normalise(x):\n    raise NotImplementedError\n")
    result.assert_outcomes(failed=2, skipped=1, deselected=1)
    result.stdout.fnmatch_lines([
        "NOT STARTED: `double` in week9/demo.py still raises NotImplementedError.",
        "Called double(x[3])",
    ])
    assert "During handling" not in result.stdout.str()


def test_missing_function_and_module(course):
    result = course("def double(x):\n    return 2 * x\n")
    result.assert_outcomes(passed=1, failed=1, skipped=1, deselected=1)
    result.stdout.fnmatch_lines(["MISSING FUNCTION: `normalise` not found in week9/demo.py"])
    result = course(None)
    result.stdout.fnmatch_lines(["MISSING MODULE: week9/demo.py not found in */impl"])


def test_syntax_error_costs_tests_not_collection(course):
    result = course("def double(x)\n    return 2 * x\n")
    result.assert_outcomes(failed=2, skipped=1, deselected=1)
    result.stdout.fnmatch_lines(["SYNTAX ERROR in week9/demo.py (line 1): *"])


def test_student_exception_shows_student_frames_only(course):
    result = course(GOOD.replace("return 2 * x", "return helper(x)") + "\ndef helper(x):\n    return x @ x.T.T.T[None]\n")
    result.stdout.fnmatch_lines([
        "ERROR in your `double`: RuntimeError: *",
        "  week9/demo.py:4 in double",
        "  week9/demo.py:* in helper",
    ])
    assert "site-packages" not in result.stdout.str()


def test_value_mismatch_names_the_call_and_the_worst_element(course):
    result = course(GOOD.replace("return 2 * x", "return x + torch.tensor([1.0, 1.0, 1.5])"))
    result.stdout.fnmatch_lines([
        "Called double(x[3])",
        "output values differ: 1 of 3 elements outside rtol=1e-05, atol=1e-05",
        "  max abs error 0.5 at [2] (got 2.5, expected 2); max rel error 0.25",
    ])


def test_wrong_shape_is_reported_before_values(course):
    result = course(GOOD.replace("return 2 * x", "return (2 * x)[None]"))
    result.stdout.fnmatch_lines(["output has the wrong shape: expected [3], got [1, 3]"])


def test_forbidden_api_is_refused_with_the_kata_name(pytester):
    # A forbidden list comes from the kata's toml; week2/attention forbids library softmax in softmax.
    pytester.makepyfile(**{"week2/test_attention": """
import pytest, torch
from graders import check, student
attention = student("week2.attention")

@pytest.mark.points(1)
def test_softmax():
    x = torch.randn(2, 3)
    check.close(attention.softmax(x, dim=-1), torch.softmax(x, dim=-1))
"""})
    root = pytester.path / "impl" / "week2"
    root.mkdir(parents=True)
    (root / "attention.py").write_text("import torch.nn.functional as F\ndef softmax(x, dim=-1):\n    return F.softmax(x, dim)\n")
    result = pytester.runpytest_subprocess("-p", "graders.plugin", "--impl", str(root.parent), "--import-mode=importlib")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "FORBIDDEN: your `softmax` called `torch.nn.functional.softmax`, which is not allowed in week2/attention.*"])


def test_timeout_costs_only_that_test(course):
    result = course(GOOD.replace("return x / x.sum()", "while True:\n        pass"), "--timeout", "3")
    result.assert_outcomes(passed=1, failed=1, skipped=1, deselected=1)
    result.stdout.fnmatch_lines(["*Timeout*"])


def test_hypothesis_examples_do_not_depend_on_imported_modules(tmp_path, monkeypatch):
    """Hypothesis would mix literals of every imported local module into its examples, so a
    test would see other inputs alone than in the suite, and the grader's replay (which never
    imports student code) other inputs than the sandbox that recorded them."""
    import importlib

    from hypothesis import Phase, given, settings, strategies as st

    seen = []

    @settings(derandomize=True, database=None, max_examples=300, phases=[Phase.generate])
    @given(st.floats(-4, 4), st.integers(-50, 50))
    def draw(x, n):
        seen.append((x, n))

    draw()
    before = list(seen)
    (tmp_path / "kata_constants_probe.py").write_text(
        "LITERALS = [1.2345678, -2.718, 3.25, 0.0625, 17, -33, 42]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("kata_constants_probe")
    seen.clear()
    draw()
    assert seen == before
