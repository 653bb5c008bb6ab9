"""Expected values never exist in the grading sandbox (graders/oracle.py, graders/withhold.py).

Three things are checked here:

1. `strip_expected`, the rewrite the sandbox's copy of every kata test file goes through,
   removes what it must (oracle calls and helpers, expected arguments of checks) and keeps
   what the recording needs (every student call);
2. every kata test file follows the rules that make the rewrite enough (`withhold.lint`):
   an expected value computed before its check comes from `oracle(...)` or the reference,
   is only handed to checks, and no student call hides where the sandbox never looks;
3. the rewritten kata test files compile and make the same student calls.
"""

import ast
import inspect
import re
import textwrap

import pytest

from graders import WITHHELD, check, impl, oracle, session, testing
from graders.oracle import Withheld
from graders.withhold import lint, strip_expected, student_calls

KATA_TEST_FILES = sorted(impl.PROJECT_ROOT.glob("katas/week*/test_*.py"))


def strip(source: str) -> str:
    return strip_expected(textwrap.dedent(source), "test_x.py")


def problems(source: str, hidden: bool = False, siblings: dict | None = None) -> list[str]:
    return [str(p) for p in lint(textwrap.dedent(source), "test_x.py", hidden=hidden, siblings=siblings)]


# --- oracle ---------------------------------------------------------------------------------


def test_oracle_calls_through_outside_the_sandbox():
    assert oracle(lambda a, b=0: a + b, 2, b=3) == 5


def test_oracle_is_withheld_in_the_sandbox_and_never_called(monkeypatch):
    monkeypatch.setattr(session.active(), "mode", session.Mode.RECORD)
    calls = []
    result = oracle(lambda: calls.append(1))
    assert result is WITHHELD and calls == []


def test_the_placeholder_absorbs_what_tests_do_to_expected_values():
    import numpy as np
    import torch

    w = WITHHELD
    for value in (w(1), w.logits, w[0], w.float().to("cpu"), w + 1, 1 - w, w @ w, -w, abs(w), w == 1, w < 2,
                  torch.ones(2) * w, np.ones(2) * w, torch.softmax(w, -1), w ** 2):
        assert isinstance(value, Withheld)
    assert list(w) == [] and len(w) == 0 and not w and int(w) == 0 and float(w) == 0.0
    assert repr(w) == "<withheld in the sandbox>" and f"{w:.3f}" == repr(w)
    w.attribute = 1
    w[0] = 1
    with pytest.raises(AttributeError):
        w.__wrapped__


def test_checks_accept_the_placeholder_in_the_sandbox(monkeypatch):
    monkeypatch.setattr(session.active(), "mode", session.Mode.RECORD)
    check.close(1.0, WITHHELD)
    check.equal([1], WITHHELD)
    check.that(True, "")


# --- the rewrite: one rule at a time ----------------------------------------------------------


def test_oracle_calls_become_the_placeholder_without_their_arguments():
    out = strip("""
        import torch
        from graders import check, oracle, student
        kata = student("week2.attention")

        def test_a():
            x = torch.ones(3)
            expected = oracle(torch.softmax, x, dim=-1)
            a, b = oracle(torch.sort, x)
            check.close(kata.softmax(x), expected)
    """)
    assert "torch.softmax" not in out and "torch.sort" not in out
    assert "expected = WITHHELD" in out
    assert "(a, b) = (WITHHELD, WITHHELD)" in out or "a, b = (WITHHELD, WITHHELD)" in out


def test_graders_dot_oracle_is_stripped_too():
    out = strip("""
        import graders
        from graders import check

        def test_a():
            want = graders.oracle(sorted, [3, 1, 2])
            check.equal(graders.student("week1.bpe").f(), want)
    """)
    assert "sorted" not in out and "want = WITHHELD" in out


def test_functions_handed_to_oracle_lose_their_bodies():
    out = strip('''
        from graders import check, oracle

        def torch_mha(weights, x):
            """the secret: 42"""
            return x * 42

        def other(x):
            return x * 7

        def test_a():
            def nested_oracle(x):
                return x + 1234
            check.equal(1, oracle(torch_mha, {}, 1))
            check.equal(1, oracle(nested_oracle, 1))
    ''')
    assert "42" not in out and "1234" not in out and "secret" not in out
    assert "x * 7" in out  # a function never handed to oracle is untouched
    tree = ast.parse(out)
    helper = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "torch_mha")
    assert ast.unparse(helper.body[0]) == "return WITHHELD" and [a.arg for a in helper.args.args] == ["weights", "x"]


def test_expected_arguments_of_close_and_equal_are_withheld():
    out = strip("""
        import torch
        from graders import check, student
        kata = student("week2.attention")

        def test_a(x):
            check.close(kata.softmax(x), torch.softmax(x, -1), hint="wrong_axis", rtol=1e-3, atol=1e-3,
                        reason="fp16", what=f"softmax of {x.sum()}")
            check.equal(actual=kata.causal_mask(3), expected=[1, 2, 3], hint=HINTS[0])
    """)
    call = [n for n in ast.walk(ast.parse(out)) if isinstance(n, ast.Call) and ast.unparse(n.func) == "check.close"][0]
    assert ast.unparse(call.args[0]) == "kata.softmax(x)" and ast.unparse(call.args[1]) == "WITHHELD"
    keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
    assert keywords == {"hint": "'wrong_axis'", "rtol": "None", "atol": "None", "reason": "None", "what": "None"}
    assert "torch.softmax" not in out and "x.sum()" not in out and "[1, 2, 3]" not in out
    assert "actual=kata.causal_mask(3)" in out and "expected=WITHHELD" in out and "hint=None" in out


def test_check_that_keeps_nothing_but_a_constant_hint():
    out = strip("""
        from graders import check

        def test_a(out, n):
            check.that(out.sum() == 3 * n, f"should be {3 * n}", hint="overflow", about=out)
            check.that(condition=out.max() < n, message="too big")
    """)
    assert 'check.that(True, "", hint="overflow", about=None)' in out.replace("'", '"')
    assert "condition=True" in out and "message=''" in out and "3 * n" not in out and "out.max()" not in out


def test_check_raises_keeps_its_exception_and_drops_match():
    out = strip("""
        from graders import check, student
        kata = student("week1.bpe")

        def test_a():
            with check.raises(ValueError, match="secret message", hint="no_words"):
                kata.train("")
    """)
    assert "check.raises(ValueError, match=None, hint='no_words')" in out and "secret" not in out
    assert "kata.train('')" in out


def test_the_placeholder_is_imported_after_docstring_and_future_imports():
    out = strip('''
        """Doc."""
        from __future__ import annotations
        from graders import check
    ''')
    body = ast.parse(out).body
    assert isinstance(body[0], ast.Expr) and body[1].module == "__future__"
    assert ast.unparse(body[2]) == "from graders import WITHHELD"


def test_stripped_source_keeps_every_student_call():
    source = textwrap.dedent("""
        import torch
        from graders import check, oracle, student
        kata = student("week2.attention")

        def test_a():
            x = torch.ones(2, 3)
            out = kata.softmax(x, dim=-1)
            mha = kata.MultiHeadSelfAttention(8, 2)
            check.close(out, oracle(torch.softmax, x, dim=-1))
            check.equal(list(mha.w_qkv.weight.shape), [24, 8])
            check.that(bool(torch.isfinite(kata.softmax(x * 100)).all()) or True, "x")
    """)
    out = strip_expected(source, "test_x.py")
    compile(out, "test_x.py", "exec")
    kept = student_calls(source)
    assert "kata.softmax" in kept and student_calls(out) != kept  # the one inside check.that is gone...
    assert any("inside" in p or "check.that" in p for p in problems(source))  # ...and the lint says so


# --- the lint: one rule at a time -------------------------------------------------------------

HEADER = """
    import torch
    import torch.nn.functional as F
    import pytest
    from graders import check, oracle, reference, student
    kata = student("week2.attention")
    model = reference("week2.attention")
"""


def test_lint_flags_an_expected_value_computed_before_its_check():
    found = problems(HEADER + """
    def test_a():
        q = torch.ones(2, 3)
        expected = F.scaled_dot_product_attention(q, q, q)
        check.close(kata.scaled_dot_product_attention(q, q, q), expected)
    """)
    assert len(found) == 1 and "`expected`" in found[0] and "oracle(" in found[0]


def test_lint_accepts_oracles_reference_calls_inline_values_inputs_and_student_results():
    assert problems(HEADER + """
    def torch_sdpa(q, mask):
        return F.scaled_dot_product_attention(q, q, q, attn_mask=mask)

    def test_a():
        q = torch.ones(2, 3)
        mask = torch.ones(3, 3, dtype=torch.bool).tril()
        expected = oracle(torch_sdpa, q, mask)
        want = model.scaled_dot_product_attention(q, q, q)
        first = want[0].float()
        out = kata.scaled_dot_product_attention(q, q, q, mask=mask)
        row = out[0]
        check.close(out, expected)
        check.close(out, want, what="output")
        check.close(row, first)
        check.close(out, F.scaled_dot_product_attention(q, q, q, attn_mask=mask))  # inline: stripped
        check.equal(kata.causal_mask(3), mask)  # an input: the student was given it
        check.that(bool(torch.isfinite(out).all()), f"not finite: {row}", about=out)
    """) == []


def test_lint_allows_literals_in_public_tests_but_not_in_hidden_ones():
    source = HEADER + """
    LENGTHS = {3: 6}

    @pytest.mark.parametrize("n,total", [(3, 6)])
    def test_a(n, total):
        expected = 6
        for k, want in [(3, 6)]:
            check.equal(kata.f(k), want)
        check.equal(kata.f(n), total)
        check.equal(kata.f(n), expected)
        check.equal(kata.f(n), LENGTHS[n])
    """
    assert problems(source) == []
    found = problems(source, hidden=True)
    assert len(found) == 4 and all("hidden" in p for p in found)
    assert {name for name in ("want", "total", "expected", "LENGTHS") if any(f"`{name}`" in p for p in found)} \
        == {"want", "total", "expected", "LENGTHS"}


def test_lint_keeps_withheld_values_away_from_everything_but_checks():
    found = problems(HEADER + """
    def test_a():
        q = torch.ones(2, 3)
        want = oracle(torch.softmax, q, -1)
        best = torch.argmax(want)
        if want is not None:
            pass
        kata.softmax(want)
        a, b = model.softmax(q)
        c, d = want
        check.equal(kata.f(q), best)
    """)
    text = "\\n".join(found)
    assert "line 12" in text and "line 13" in text and "line 15" in text  # argmax, if, student call
    assert sum("is unpacked" in p for p in found) == 2


def test_lint_flags_a_loop_over_expected_values_that_calls_student_code():
    found = problems(HEADER + """
    def test_a():
        xs = [torch.ones(2), torch.zeros(2)]
        wants = oracle(lambda: [torch.softmax(x, -1) for x in xs])
        for x, want in zip(xs, wants):
            check.close(kata.softmax(x), want)
        for i, x in enumerate(xs):
            check.close(kata.softmax(x), wants[i])
    """)
    assert len(found) == 1 and "line 12" in found[0] and "loop" in found[0]


def test_lint_flags_student_calls_where_the_sandbox_never_looks():
    found = problems(HEADER + """
    def test_a():
        q = torch.ones(2, 3)
        mha = kata.MultiHeadSelfAttention(8, 2)
        out = kata.softmax(q)
        check.close(out, oracle(torch.softmax, kata.softmax(q), -1))
        check.equal(out.shape[0], mha.w_qkv.weight.shape[0])
        check.that(kata.causal_mask(3).all(), "mask")
        check.that(out.abs().max() < 2, "tensor methods are data, not crossings")
    """)
    text = "\\n".join(found)
    assert "line 13" in text and "line 14" in text and "line 15" in text and "line 16" not in text


def test_lint_flags_student_state_copied_into_the_reference():
    found = problems(HEADER + """
    def test_a():
        mha = kata.MultiHeadSelfAttention(8, 2)
        want = model.MultiHeadSelfAttention(8, 2)
        want.load_state_dict(mha.state_dict())
        weights = {"w": torch.ones(2)}
        mha.load_state_dict(weights)
        want.load_state_dict(weights)
        x = torch.ones(1, 2, 8)
        check.close(mha(x), want(x))
    """)
    assert len(found) == 1 and "line 12" in found[0] and "load the same ones into both" in found[0]


def test_lint_flags_oracle_helpers_that_reach_student_code_or_are_called_directly():
    found = problems(HEADER + """
    def expected_of(x):
        return kata.softmax(x)

    def torch_softmax(x):
        return torch.softmax(x, -1)

    def test_a():
        x = torch.ones(2)
        check.close(kata.softmax(x), oracle(expected_of, x))
        check.close(kata.softmax(x), oracle(torch_softmax, x))
        y = torch_softmax(x)
        kata.softmax(y)
    """)
    text = "\\n".join(found)
    assert "reaches student code" in text and "line 19" in text and "use it only as oracle(torch_softmax" in text


def test_lint_flags_rebinding_the_names_the_rewrite_looks_for():
    found = problems(HEADER + """
    def test_a():
        oracle = torch.nn.MultiheadAttention(8, 2)
        check.close(kata.softmax(1), 1)
    """)
    assert len(found) == 1 and "`oracle` is rebound" in found[0]


def test_lint_sees_helpers_imported_from_the_public_file():
    public = textwrap.dedent(HEADER + """
    def student_run(x):
        return kata.softmax(x)

    def torch_run(x):
        return torch.softmax(x, -1)
    """)
    found = problems(HEADER + """
    from .test_public import student_run, torch_run

    def test_a():
        x = torch.ones(2)
        got = student_run(x)
        want = oracle(torch_run, x)
        check.close(got, want)
    """, hidden=True, siblings={"test_public": public})
    assert found == []


def test_an_input_mark_lets_a_named_input_through():
    source = HEADER + """
    def test_a():
        x = torch.ones(2)
        scale = x.max() * 2  # withhold: input
        check.close(kata.softmax(x), scale)
    """
    assert problems(source) == []
    assert len(problems(source.replace("  # withhold: input", ""))) == 1


def test_helpers_imported_from_graders_testing_read_as_if_the_file_defined_them():
    """`hinted(hint, fn, student_object)` runs student code (so what it returns is the
    student's, and what it is given an input), and `randn(...)` is a computation, not a
    literal: the same whether the file imports them or defines them itself."""
    body = """
    def run(layer, x):
        return layer(x)

    def test_a():
        layer = kata.MultiHeadSelfAttention(4, 2)
        x = torch.arange(8.0).reshape(1, 2, 4) * 0.5
        out = hinted("head_order", run, layer, x)
        check.close(out, x)

    def test_b():
        x = randn(3, seed=1)
        check.close(kata.softmax(torch.ones(3)), x)
    """
    definitions = inspect.getsource(testing.hinted) + "\n" + inspect.getsource(testing.randn)
    local = HEADER + textwrap.indent(definitions, "    ") + body
    imported = HEADER + "    from graders.testing import hinted, randn\n" + body

    def without_lines(found):  # the definitions above the tests move them down
        return [re.sub(r"line \d+", "line N", p) for p in found]

    for hidden in (False, True):
        found = without_lines(problems(imported, hidden=hidden))
        assert found == without_lines(problems(local, hidden=hidden))
        assert len(found) == 1 and "`x`" in found[0] and "computed in the test itself" in found[0]


def test_reference_imported_from_graders_testing_is_the_reference():
    header = HEADER.replace("from graders import check, oracle, reference, student",
                            "from graders import check, oracle, student\n    from graders.testing import reference")
    assert header != HEADER
    source = header + """
    def test_a():
        x = torch.ones(2)
        want = model.softmax(x)
        check.close(kata.softmax(x), want)
    """
    assert problems(source, hidden=True) == []


# --- every kata test file ----------------------------------------------------------------------


def _siblings(path):
    return {p.stem: p.read_text(encoding="utf-8") for p in path.parent.glob("test_*.py") if p != path}


@pytest.mark.parametrize("path", KATA_TEST_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_kata_tests_compute_no_expected_value_in_the_sandbox(path):
    found = lint(path.read_text(encoding="utf-8"), str(path), siblings=_siblings(path))
    assert not found, (f"{path.parent.name}/{path.name} computes expected values where the grading sandbox would "
                       f"compute them too (see graders/withhold.py for the rules):\n  "
                       + "\n  ".join(map(str, found)))


@pytest.mark.parametrize("path", KATA_TEST_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_sandboxes_copy_of_each_kata_test_compiles_and_makes_the_same_student_calls(path):
    source = path.read_text(encoding="utf-8")
    stripped = strip_expected(source, str(path))
    compile(stripped, str(path), "exec")
    assert student_calls(stripped) == student_calls(source)
    tree = ast.parse(stripped)
    for node in ast.walk(tree):  # nothing is left for an oracle to compute
        if isinstance(node, ast.Call):
            assert ast.unparse(node.func) not in ("oracle", "graders.oracle"), ast.unparse(node)


def test_lint_flags_an_expected_value_handed_to_a_helper_that_checks_it():
    found = problems(HEADER + """
    def same(out, want):
        check.close(out, want)

    def test_a():
        x = torch.ones(2)
        same(kata.softmax(x), torch.softmax(x, -1))
        same(kata.softmax(x), oracle(torch.softmax, x, -1))
    """)
    assert len(found) == 1 and "line 14" in found[0] and "`same`" in found[0]


def test_lint_sees_student_calls_in_local_helpers_and_labels_from_inputs():
    found = problems(HEADER + """
    def test_a(m, n):
        def score(a, b):
            return kata.softmax(torch.tensor([a, b])).sum()

        hint = "small" if m < n else "large"
        check.close(score(m, n), score(n, m), hint=hint)
    """)
    assert len(found) == 1 and "`score(...)` calls student code" in found[0]


def test_lint_takes_hypothesis_draws_but_not_parametrized_literals_in_hidden_files():
    source = HEADER + """
    from hypothesis import given, strategies as st

    @given(final=st.booleans())
    def test_a(final):
        check.equal(kata.f(1), "yes" if final else "no")

    @pytest.mark.parametrize("answer", ["yes"])
    def test_b(answer):
        check.equal(kata.f(1), answer)
    """
    found = problems(source, hidden=True)
    assert len(found) == 1 and "`answer`" in found[0]


def test_tolerance_options_are_dropped_in_the_sandbox_and_only_literal_ones_allowed():
    source = HEADER + """
    LOOSE = dict(rtol=1e-3, atol=1e-3, reason="float16")

    def test_a():
        check.close(kata.f(1), torch.ones(1), **LOOSE)
    """
    assert problems(source) == []
    out = strip_expected(textwrap.dedent(source), "test_x.py")
    assert "**LOOSE" not in out and "check.close(kata.f(1), WITHHELD)" in out
    computed = source.replace('LOOSE = dict(rtol=1e-3, atol=1e-3, reason="float16")', "LOOSE = make_options()")
    assert any("**LOOSE" in p for p in problems(computed))


def test_a_student_helper_returns_only_student_results():
    found = problems(HEADER + """
    def both(x):
        return kata.softmax(x), torch.softmax(x, -1)

    def test_a():
        x = torch.ones(2)
        got, want = both(x)
        check.close(got, want)
    """)
    assert any("`both` calls student code and also returns" in p for p in found)


# The round trip (record with these stripped copies, replay the original tests, nothing
# DIVERGED or INCOMPLETE) is tests/test_grading.py's whole-course grade of the reference:
# `kata grade` gives its sandboxed children exactly these copies (graders.sandbox.tests_dir).
