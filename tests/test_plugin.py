"""The plugin's user-visible output, tested the way pytest plugins test themselves (pytester).

Each test writes a tiny course into a temporary directory — a test file in `week9/` and
one or more implementation roots — and runs pytest on it in this process (pytester's
in-process run restores `sys.modules` afterwards, so each run imports the student code anew).
"""

import textwrap

import pytest

pytestmark = pytest.mark.timeout(600)  # these tests start whole pytest sessions

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
        return pytester.runpytest("-p", "graders.plugin", "--impl", str(root), "-p", "no:cacheprovider",
                                             "--import-mode=importlib", *args)

    return run


def lines_starting(result, text: str) -> int:
    """How many lines of pytest's output start with `text` (each failure's own report)."""
    return sum(line.startswith(text) for line in result.stdout.lines)


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
    assert lines_starting(result, "NOT STARTED: `double`") == 1
    result.stdout.fnmatch_lines(["week9/demo*0 / 3*not started"])


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


def test_syntax_error_is_printed_once_with_a_caret_under_the_column(course):
    result = course("import torch\n\ndef double(x):\n    return 2 * x +\n")
    output = result.stdout.str()
    # Each failing test prints the error once: no chained copy, "During handling" between.
    assert "During handling" not in output
    assert lines_starting(result, "SYNTAX ERROR in week9/demo.py (line 4)") == 2  # two tests use the module
    result.stdout.fnmatch_lines([
        "SYNTAX ERROR in week9/demo.py (line 4): invalid syntax",
        "  week9/demo.py:4",
        "    return 2 * x +",
        "                  ^",  # under the end of the line, where Python points
    ])
    result.stdout.fnmatch_lines(["week9/demo*0 / 3*syntax error"])


def test_import_error_is_printed_once_with_the_students_line(course):
    result = course("import torch\nimport no_such_package_for_kata_tests\n" + GOOD)
    output = result.stdout.str()
    assert "During handling" not in output
    assert lines_starting(result, "IMPORT ERROR in week9/demo.py") == 2
    result.stdout.fnmatch_lines([
        "IMPORT ERROR in week9/demo.py: No module named 'no_such_package_for_kata_tests'",
        "  week9/demo.py:2 in <module>",
        "    import no_such_package_for_kata_tests",
    ])
    result.stdout.fnmatch_lines(["week9/demo*0 / 3*import error"])


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
    result = pytester.runpytest("-p", "graders.plugin", "--impl", str(root.parent), "--import-mode=importlib")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "FORBIDDEN: your `softmax` called `torch.nn.functional.softmax`, which is not allowed in week2/attention: "
        "this kata is about writing it yourself."])


def test_timeout_costs_only_that_test(course):
    result = course(GOOD.replace("return x / x.sum()", "while True:\n        pass"), "--timeout", "1")
    result.assert_outcomes(passed=1, failed=1, skipped=1, deselected=1)
    result.stdout.fnmatch_lines(["TIMEOUT in your `normalise` after 1 s: the test was stopped",
                                 "Called normalise(x[4])"])


LOOPING_TESTS = """
import pytest, torch
from hypothesis import given, strategies as st
from graders import check, student

demo = student("week9.demo")

@given(n=st.integers(1, 3))
def test_loops_first(n):
    check.close(demo.normalise(torch.ones(n)), torch.full((n,), 1 / n))

def test_loops_again():
    check.close(demo.normalise(torch.ones(2)), torch.full((2,), 0.5))

def test_loops_once_more():
    check.close(demo.normalise(torch.ones(4)), torch.full((4,), 0.25))

def test_other_function_still_runs():
    check.close(demo.double(torch.ones(3)), torch.full((3,), 2.0))
"""


@pytest.mark.parametrize("terminal", ["terminal", "no terminal, as kata check runs it"])
def test_a_hung_function_costs_one_timeout_and_its_later_tests_are_skipped(pytester, terminal):
    """One TIMEOUT naming the function (hypothesis's replay of the failing example included);
    the kata's later tests that call it are skipped at once; other functions still run."""
    import json

    pytester.makepyfile(**{"week9/test_demo": LOOPING_TESTS})
    root = pytester.path / "impl"
    (root / "week9").mkdir(parents=True)
    (root / "week9" / "demo.py").write_text(textwrap.dedent(GOOD.replace("return x / x.sum()", "while True:\n        pass")))
    report = pytester.path / "report.json"
    quiet = ["-p", "no:terminal"] if terminal != "terminal" else []
    result = pytester.runpytest("-p", "graders.plugin", "--impl", str(root), "-p", "no:cacheprovider",
                                           "--import-mode=importlib", "-p", "no:randomly", "--timeout", "1",
                                           "--kata-report", str(report), *quiet)
    results = {r["nodeid"].split("::")[-1]: r for r in json.loads(report.read_text())["results"]}
    assert [r["outcome"] for r in results.values()] == ["failed", "skipped", "skipped", "passed"], results
    assert results["test_loops_first"]["message"].startswith(
        "TIMEOUT in your `normalise` after 1 s: the test was stopped\nCalled normalise(x[")
    for name in ("test_loops_again", "test_loops_once_more"):
        assert results[name]["message"] == (
            "Skipped: your `normalise` timed out in an earlier test (test_loops_first) after 1 s: not run again")
        assert results[name]["duration"] < 1.0  # skipped at once, not after another 2 s
    if terminal == "terminal":
        result.stdout.fnmatch_lines(["*TIMEOUT in your `normalise` after 1 s*"])
        assert "Timeout (>" not in result.stdout.str()  # pytest-timeout's own message never shows


def test_a_hung_import_costs_one_timeout(course):
    result = course("import torch\nwhile True:\n    pass\n", "--timeout", "1", "-rs")
    result.assert_outcomes(failed=1, skipped=2, deselected=1)
    result.stdout.fnmatch_lines([
        "TIMEOUT while importing week9/demo.py after 1 s: the test was stopped",
        "*importing week9/demo.py timed out in an earlier test (test_double) after 1 s: not run again",
    ])


def test_status_says_why_a_whole_kata_fails():
    from graders.plugin import kata_totals, status_of

    def status(*messages: str) -> str:
        results = [{"kata": "week9/demo", "points": 1, "outcome": "failed" if m else "passed", "message": m}
                   for m in messages]
        return status_of(kata_totals(results)["week9/demo"])

    assert status("SYNTAX ERROR in week9/demo.py (line 4): invalid syntax") == "syntax error"
    assert status("IMPORT ERROR in week9/demo.py: No module named 'x'") == "import error"
    assert status("NOT STARTED: `double` in week9/demo.py still raises NotImplementedError.") == "not started"
    assert status("", "output values differ") == "failing"
    assert status("", "") == "passing"
    # totals saved by an older version (kata list reads them) have no count of syntax errors
    assert status_of({"earned": 0, "possible": 1, "passed": 0, "failed": 1, "skipped": 0, "not_started": 0}) == "failing"


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


# --- a failure that only follows from another function's failure ----------------------------

PREREQUISITE_TESTS = """
import pytest, torch
from graders import check, student

demo = student("week9.demo")

@pytest.mark.points(1)
def test_double():
    check.close(demo.double(torch.ones(3)), torch.full((3,), 2.0), hint="double_mistake")

@pytest.mark.points(1)
def test_quadruple():
    check.close(demo.quadruple(torch.ones(3)), torch.full((3,), 4.0), hint="quadruple_mistake")

@pytest.mark.points(1)
def test_double_then_negate():
    check.close(demo.negate(demo.double(torch.ones(3))), torch.full((3,), -2.0), hint="negate_mistake")

@pytest.mark.points(1)
def test_negate():
    check.close(demo.negate(torch.ones(3)), torch.full((3,), -1.0), hint="negate_mistake")
"""

PREREQUISITE_IMPL = """
import torch

def double(x):
    return 2 * x

def quadruple(x):
    return double(double(x))

def negate(x):
    return -x
"""


def run_prerequisite_course(pytester, source: str, order: list[str], *args):
    """The tests above, run in `order`, against `source`; returns (pytest's result, {test: result})."""
    import json

    pytester.makepyfile(**{"week9/test_demo": PREREQUISITE_TESTS})
    root = pytester.path / "impl"
    (root / "week9").mkdir(parents=True, exist_ok=True)
    (root / "week9" / "demo.py").write_text(textwrap.dedent(source))
    report = pytester.path / "report.json"
    result = pytester.runpytest(*(f"week9/test_demo.py::{name}" for name in order),
                                           "-p", "graders.plugin", "--impl", str(root), "-p", "no:cacheprovider",
                                           "--import-mode=importlib", "--kata-report", str(report), *args)
    return result, {r["nodeid"].split("::")[-1]: r for r in json.loads(report.read_text())["results"]}


@pytest.mark.parametrize("order", [["test_double", "test_quadruple", "test_double_then_negate", "test_negate"],
                                   ["test_double_then_negate", "test_quadruple", "test_negate", "test_double"]],
                         ids=["own-tests-first", "own-tests-last"])
def test_a_failure_that_follows_from_a_failing_function_says_fix_it_first(pytester, order):
    """`double` is wrong. Its own test keeps its hint; `quadruple` (which calls it in the student's
    source) and the test that calls `double` and `negate` say "fix `double` first" instead of
    their own hints, in whichever order the tests ran; `negate` alone passes."""
    result, results = run_prerequisite_course(pytester, PREREQUISITE_IMPL.replace("return 2 * x", "return 3 * x"), order)
    assert results["test_double"]["message"].endswith("Hint (double_mistake)")
    assert results["test_negate"]["outcome"] == "passed"
    fix_double = "Hint: fix `double` first: it fails its own tests (test_double), and "
    quadruple = results["test_quadruple"]["message"]
    assert fix_double + "your `quadruple` uses it, so this failure may only be a consequence" in quadruple
    assert "quadruple_mistake" not in quadruple and quadruple.startswith("Called quadruple(x[3])")
    both = results["test_double_then_negate"]["message"]  # the test feeds double's result to negate:
    # negate may be right or wrong, so its hint stays, with a note about double under it
    assert "Hint (negate_mistake)" in both
    assert "Note: `double` fails its own tests (test_double), and this test calls it too: if its result " \
           "reaches the call above, fix it first." in both
    assert results["test_quadruple"]["prerequisites"] == ["double"]
    # the terminal's failure reports say the same
    result.stdout.fnmatch_lines(["*Hint: fix `double` first: it fails its own tests (test_double), and your "
                                 "`quadruple` uses it*"])
    assert "Hint (quadruple_mistake)" not in result.stdout.str()


def test_a_function_that_fails_on_its_own_keeps_its_hint(pytester):
    """`quadruple` is wrong and `double` is right: nothing to fix first, so its hint stays."""
    _, results = run_prerequisite_course(pytester, PREREQUISITE_IMPL.replace("double(double(x))", "double(x) + 1"),
                                         ["test_double", "test_quadruple", "test_double_then_negate", "test_negate"])
    assert results["test_quadruple"]["message"].endswith("Hint (quadruple_mistake)")
    assert "prerequisites" not in results["test_quadruple"]
    assert [r["outcome"] for r in results.values()].count("failed") == 1


def test_a_crash_that_follows_from_a_failing_function_says_fix_it_first_too(pytester):
    """No hint to replace (the student's code raised): the failure still says what to fix first."""
    source = PREREQUISITE_IMPL.replace("return 2 * x", "return (2 * x)[None]").replace(
        "return double(double(x))", "return double(x)[1] * 2")  # IndexError: double's result has one row
    _, results = run_prerequisite_course(pytester, source, ["test_quadruple", "test_double"])
    quadruple = results["test_quadruple"]["message"]
    assert quadruple.startswith("ERROR in your `quadruple`: IndexError")
    assert quadruple.rstrip().endswith("this failure may only be a consequence (this test's own hint shows once it passes).")


def test_the_call_graph_reads_functions_methods_and_modules(tmp_path):
    from graders.prerequisites import call_graph

    source = tmp_path / "demo.py"
    source.write_text(textwrap.dedent("""
        import torch.nn as nn

        def merge(ids):
            return ids

        def train(text):
            return merge(list(text))

        class Tokenizer:
            def __init__(self, merges):
                self.merges = merges
            def _chunk(self, text):
                return merge(text)
            def encode(self, text):
                return self._chunk(text)
            def decode(self, ids):
                return ids

        class Block(nn.Module):
            def forward(self, x):
                return train(x)

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.block = Block()
            def forward(self, x):
                return self.block(x)
    """))
    graph = call_graph(source)
    assert graph.reach({"train"}) == {"train", "merge"}
    assert graph.reach({"Tokenizer.encode"}) == {"Tokenizer.encode", "Tokenizer._chunk", "merge"}
    assert graph.reach({"Tokenizer.decode"}) == {"Tokenizer.decode"}
    assert "merge" in graph.reach({"Tokenizer"})  # an object handed on may have any method called
    assert {"Block.__call__", "Block.forward", "train", "merge"} <= graph.reach({"Model", "Model.__call__"})
    assert call_graph(tmp_path / "missing.py").reach({"train"}) == {"train"}


def test_prerequisites_name_the_deepest_failing_function():
    from graders.prerequisites import CallGraph, prerequisites

    graph = CallGraph({"train": frozenset({"merge", "count"}), "merge": frozenset(), "count": frozenset({"merge"}),
                       "encode": frozenset({"merge"}), "g": frozenset({"h"}), "h": frozenset({"g"})})

    def result(name, calls, outcome="failed", message="values differ\nHint (x): text"):
        return {"nodeid": f"t.py::{name}", "kata": "week9/demo", "calls": calls, "outcome": outcome, "message": message}

    results = [result("test_merge", ["merge"]), result("test_count", ["count"]), result("test_train", ["train"]),
               result("test_encode", ["Tokenizer", "Tokenizer.encode"], "passed", ""),
               result("test_stub", ["train"], message="NOT STARTED: `train` in week9/demo.py ..."),
               result("test_g", ["g"]), result("test_h", ["h"]), result("test_glue", ["train", "*"]),
               result("test_merge_then_encode", ["merge", "Tokenizer", "Tokenizer.encode"],
                      message="Called merge(ids=[1, 1])\noutput: expected [2], got [2, 2]\nHint (x): text")]
    found = prerequisites(results, lambda kata: graph)
    # count fails only because merge does: train is told to fix merge, the deeper one
    assert found["t.py::test_train"].functions == ("merge",)
    assert found["t.py::test_count"].functions == ("merge",)
    assert "t.py::test_merge" not in found  # its own test keeps its hint
    assert "t.py::test_stub" not in found  # nothing ran: the student has code to write
    assert "t.py::test_glue" not in found  # student code the harness cannot name ran
    # merge's own result failed this test: the failure (and its hint) is merge's own
    assert "t.py::test_merge_then_encode" not in found
    # g and h use each other: neither can be said to come first, so both keep their hints
    assert "t.py::test_g" not in found and "t.py::test_h" not in found
