"""Public tests for week2/micrograd: the oracle is torch autograd in float64.

Tests reach your `Value` through the harness, which wraps your objects; so they spell
operators out as the methods Python calls for them: `a + b` is `a.__add__(b)`, `2 - a` is
`a.__rsub__(2)`, `-a` is `a.__neg__()`. Write the operators as usual; `sum(values)` and
`2 / v` work the same way in your own code.
"""

import math

import pytest
import torch
from hypothesis import given, strategies as st

from graders import check, in_one_crossing, oracle, student, unwrap
from graders.testing import hinted

micrograd = student("week2.micrograd")


# --- one description of an expression, run on both engines -------------------------------
# An op is (name, operand index, second operand index or constant). The same program is
# evaluated with student Values and with float64 torch tensors, then both are compared.

UNARY = ["neg", "relu", "tanh", "exp", "log"]
BINARY = ["add", "sub", "mul", "div"]                     # Value op Value
WITH_CONST = ["add_c", "radd", "sub_c", "rsub", "mul_c", "rmul", "div_c", "rtruediv", "pow"]
EXPONENTS = [2, 3, -1, -2, 0.5, 1.5, -0.5]


def apply_student(op, a, b):
    """a: a student Value; b: a student Value or a number, depending on the op."""
    return {
        "neg": lambda: a.__neg__(), "relu": lambda: a.relu(), "tanh": lambda: a.tanh(),
        "exp": lambda: a.exp(), "log": lambda: a.log(),
        "add": lambda: a.__add__(b), "sub": lambda: a.__sub__(b), "mul": lambda: a.__mul__(b),
        "div": lambda: a.__truediv__(b),
        "add_c": lambda: a.__add__(b), "radd": lambda: a.__radd__(b), "sub_c": lambda: a.__sub__(b),
        "rsub": lambda: a.__rsub__(b), "mul_c": lambda: a.__mul__(b), "rmul": lambda: a.__rmul__(b),
        "div_c": lambda: a.__truediv__(b), "rtruediv": lambda: a.__rtruediv__(b), "pow": lambda: a.__pow__(b),
    }[op]()


def apply_torch(op, a, b):
    return {
        "neg": lambda: -a, "relu": lambda: torch.relu(a), "tanh": lambda: torch.tanh(a),
        "exp": lambda: torch.exp(a), "log": lambda: torch.log(a),
        "add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "div": lambda: a / b,
        "add_c": lambda: a + b, "radd": lambda: b + a, "sub_c": lambda: a - b, "rsub": lambda: b - a,
        "mul_c": lambda: a * b, "rmul": lambda: b * a, "div_c": lambda: a / b, "rtruediv": lambda: b / a,
        "pow": lambda: a**b,
    }[op]()


def apply_float(op, a, b):
    """The same op on Python floats, to keep every op inside its domain; None when outside."""
    if op == "log" and a < 0.2 or op == "exp" and a > 3.0:
        return None
    if op in ("div", "div_c") and abs(b) < 0.3 or op == "rtruediv" and abs(a) < 0.3:
        return None
    if op == "relu" and abs(a) < 1e-3:  # keep away from the kink (tested on its own below)
        return None
    if op == "pow" and (abs(a) < 0.3 or (b != int(b) and a <= 0.3)):
        return None
    value = apply_torch(op, torch.tensor(a, dtype=torch.float64), b if not isinstance(b, float) else
                        torch.tensor(b, dtype=torch.float64)).item()
    return value if math.isfinite(value) and abs(value) < 50 else None


@st.composite
def programs(draw, max_ops=10):
    """Leaves and a list of in-domain ops over them; nodes are reused freely."""
    leaves = draw(st.lists(st.floats(-2, 2).filter(lambda x: abs(x) > 0.05), min_size=1, max_size=4))
    values, ops = list(leaves), []
    for _ in range(draw(st.integers(1, max_ops))):
        i = draw(st.integers(0, len(values) - 1))
        kind = draw(st.sampled_from(["unary", "binary", "const"]))
        if kind == "unary":
            op, b = draw(st.sampled_from(UNARY)), None
        elif kind == "binary":
            op, b = draw(st.sampled_from(BINARY)), draw(st.integers(0, len(values) - 1))
        else:
            op = draw(st.sampled_from(WITH_CONST))
            b = draw(st.sampled_from(EXPONENTS)) if op == "pow" else draw(st.sampled_from([-1.5, -0.5, 0.75, 2.0, 3.0]))
        operand = values[b] if kind == "binary" else b
        value = apply_float(op, values[i], operand)
        if value is not None:
            ops.append((op, i, b, kind))
            values.append(value)
    return leaves, ops


def run_program(leaves, ops, make_leaf, apply, add):
    nodes = [make_leaf(x) for x in leaves]
    for op, i, b, kind in ops:
        nodes.append(apply(op, nodes[i], nodes[b] if kind == "binary" else b))
    out = nodes[-1]
    for node in nodes[len(leaves):-1]:  # every intermediate node feeds the output: reuse everywhere
        out = add(out, node)
    return nodes, out


def torch_oracle(leaves, ops):
    """(output, leaf gradients) of the program in float64 torch: called only through oracle(...)."""
    nodes, out = run_program(leaves, ops, lambda x: torch.tensor(x, dtype=torch.float64, requires_grad=True),
                             apply_torch, lambda a, b: a + b)
    out.backward()
    grads = [0.0 if t.grad is None else t.grad.item() for t in nodes[: len(leaves)]]
    return out.item(), grads


def student_run(leaves, ops):
    nodes, out = run_program(leaves, ops, micrograd.Value, apply_student, lambda a, b: a.__add__(b))
    out.backward()
    return out.data, [n.grad for n in nodes[: len(leaves)]]


# --- random graphs -----------------------------------------------------------------------


@pytest.mark.points(4)
@given(program=programs())
def test_random_graphs_match_torch_autograd(program):
    leaves, ops = program
    want = oracle(torch_oracle, leaves, ops)
    got_out, got_grads = student_run(leaves, ops)
    check.close(got_out, want[0], what="forward value")
    check.close(torch.tensor(got_grads, dtype=torch.float64), torch.tensor(want[1], dtype=torch.float64),
                what=f"leaf gradients of {[op for op, *_ in ops]}")


# --- one operator at a time --------------------------------------------------------------


def single(op, x, b=None):
    """(value, grad) of op at x, from the student engine."""
    v = micrograd.Value(x)
    out = apply_student(op, v, b)
    out.backward()
    return out.data, v.grad


def single_torch(op, x, b=None):
    """(value, grad) of op at x, from torch: called only through oracle(...)."""
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ref = apply_torch(op, t, b)
    ref.backward()
    return ref.item(), t.grad.item()


def torch_value_and_grads(fn, *xs):
    """fn on float64 leaves: (value, tensor of d value / d leaf); called only through oracle(...)."""
    leaves = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    out = fn(*leaves)
    out.backward()
    grads = [t.grad if t.grad is not None else torch.zeros((), dtype=torch.float64) for t in leaves]
    return out.item(), torch.stack(grads)


@pytest.mark.points(1)
def test_data_is_a_float_and_grad_starts_at_zero():
    v = micrograd.Value(3)
    data = v.data  # read outside the check: the sandbox does not evaluate a check's arguments
    check.that(isinstance(data, float), f"Value(3).data should be the float 3.0, got {data!r}", hint="data_float")
    check.equal(v.grad, 0.0, what="grad of a new Value")
    # results of operations on ints are floats too (Value(2) * 3 is 6.0, not 6)
    two = micrograd.Value(2)
    results = {"Value(2) * 3": two.__mul__(3), "Value(2) + 3": two.__add__(3), "Value(2) ** 2": two.__pow__(2),
               "3 - Value(2)": two.__rsub__(3), "-Value(2)": two.__neg__()}
    for what, out in results.items():
        data = out.data
        check.that(isinstance(data, float), f"({what}).data should be a float, got {data!r}", hint="data_float")


@pytest.mark.points(2)
@pytest.mark.parametrize("op,b", [("add", 2.5), ("add_c", 2.5), ("radd", 2.5), ("sub_c", 2.5), ("mul_c", -1.5),
                                  ("rmul", -1.5), ("div_c", 4.0), ("neg", None)])
def test_arithmetic_with_numbers(op, b):
    op = "add_c" if op == "add" else op
    got, got_grad = single(op, 1.25, b)
    want = oracle(single_torch, op, 1.25, b)
    check.close(got, want[0], what=f"{op} value")
    check.close(got_grad, want[1], what=f"{op} gradient")


@pytest.mark.points(2)
@pytest.mark.parametrize("x", [0.7, -1.3])
def test_rsub_is_number_minus_value(x):
    got, got_grad = single("rsub", x, 2.0)
    want = oracle(single_torch, "rsub", x, 2.0)
    check.close(got, want[0], what="2 - v, via v.__rsub__(2)", hint="rsub_sign")
    check.close(got_grad, want[1], what="gradient of 2 - v", hint="rsub_sign")


@pytest.mark.points(2)
@pytest.mark.parametrize("x", [0.8, -2.5])
def test_rtruediv_is_number_over_value(x):
    got, got_grad = single("rtruediv", x, 2.0)
    want = oracle(single_torch, "rtruediv", x, 2.0)
    check.close(got, want[0], what="2 / v, via v.__rtruediv__(2)", hint="rtruediv_sign")
    check.close(got_grad, want[1], what="gradient of 2 / v", hint="rtruediv_sign")


@pytest.mark.points(2)
@pytest.mark.parametrize("x,n", [(1.5, 3), (-0.8, 2), (1.7, -1), (0.6, -2), (2.3, 0.5), (1.4, 1.5), (0.9, -0.5)])
def test_power_rule(x, n):
    got, got_grad = single("pow", x, n)
    want = oracle(single_torch, "pow", x, n)
    check.close(got, want[0], what=f"v ** {n}", hint="power_rule")
    check.close(got_grad, want[1], what=f"gradient of v ** {n}", hint="power_rule")


@pytest.mark.points(2)
@pytest.mark.parametrize("op,x", [("tanh", 0.6), ("tanh", -1.8), ("exp", 1.3), ("exp", -0.4), ("log", 0.5),
                                  ("log", 3.2), ("relu", 1.7), ("relu", -0.9)])
def test_unary_functions(op, x):
    got, got_grad = single(op, x)
    want = oracle(single_torch, op, x)
    check.close(got, want[0], what=f"{op}({x})", hint="op_gradient")
    check.close(got_grad, want[1], what=f"gradient of {op} at {x}", hint="op_gradient")


# Inputs far outside the random graphs' range, each still inside its operation's domain (no
# result overflows a float): tanh saturates to +-1 with gradient 0, exp underflows to 0 or nears
# the largest float, log of the smallest and largest floats around 1e+-300.
EXTREMES = [("tanh", 400.0), ("tanh", -400.0), ("tanh", 1000.0), ("tanh", -30.0), ("exp", -800.0), ("exp", 700.0),
            ("log", 1e-300), ("log", 1e300), ("relu", 1e300), ("relu", -1e300)]


@pytest.mark.points(2)
@pytest.mark.parametrize("op,x", EXTREMES)
def test_unary_functions_at_extreme_inputs(op, x):
    hint = "tanh_overflow" if op == "tanh" else "op_gradient"
    want = oracle(single_torch, op, x)
    got = hinted(hint, single, op, x)
    check.close(got[0], want[0], what=f"{op}({x:g})", hint=hint)
    check.close(got[1], want[1], what=f"gradient of {op} at {x:g}", hint=hint)


@pytest.mark.points(1)
def test_relu_gradient_at_zero_is_zero():
    got, got_grad = single("relu", 0.0)
    want = oracle(single_torch, "relu", 0.0)
    check.close(got, want[0], what="relu(0)")
    check.close(got_grad, want[1], what="gradient of relu at exactly 0 (torch: 0)", hint="relu_grad_at_zero")


@pytest.mark.points(2)
def test_value_divided_by_value():
    want = oracle(torch_value_and_grads, lambda ta, tb: ta / tb, 1.5, -0.75)
    a, b = micrograd.Value(1.5), micrograd.Value(-0.75)
    out = a.__truediv__(b)
    out.backward()
    check.close(out.data, want[0], what="a / b")
    check.close(torch.tensor([a.grad, b.grad], dtype=torch.float64), want[1],
                what="gradients of a / b (a, b)", hint="power_rule")


# --- the graph walk ----------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.parametrize("expr", ["a*a", "a*b+a", "(a+b)*(a-b)"])
def test_gradients_accumulate_on_reused_nodes(expr):
    def build(a, b, mul, add, sub):
        return {"a*a": lambda: mul(a, a), "a*b+a": lambda: add(mul(a, b), a),
                "(a+b)*(a-b)": lambda: mul(add(a, b), sub(a, b))}[expr]()

    want = oracle(torch_value_and_grads,
                  lambda ta, tb: build(ta, tb, lambda x, y: x * y, lambda x, y: x + y, lambda x, y: x - y), 1.5, -2.0)
    a, b = micrograd.Value(1.5), micrograd.Value(-2.0)
    out = build(a, b, lambda x, y: x.__mul__(y), lambda x, y: x.__add__(y), lambda x, y: x.__sub__(y))
    out.backward()
    check.close(out.data, want[0], what=expr)
    check.close(torch.tensor([a.grad, b.grad], dtype=torch.float64), want[1],
                what=f"gradients of {expr} (a, b)", hint="grad_assign")


@pytest.mark.points(2)
def test_backward_runs_in_topological_order():
    """y is used directly by the output and again through a longer path (y -> tanh -> tanh).

    A breadth-first (or recursive, unordered) walk reaches y before the long path has
    delivered its share of y's gradient, and pushes an incomplete gradient to x.
    """
    want = oracle(torch_value_and_grads, lambda tx: torch.tanh(torch.tanh(tx.exp())) * 3.0 + tx.exp(), 0.3)
    x = micrograd.Value(0.3)
    y = x.exp()
    out = y.tanh().tanh().__mul__(3.0).__add__(y)
    out.backward()
    check.close(out.data, want[0], what="tanh(tanh(exp(x))) * 3 + exp(x)")
    check.equal(out.grad, 1.0, what="the output's own grad after backward() (seeded with 1.0)")
    check.close(x.grad, want[1][0].item(), what="gradient of x", hint="no_topo_order")


@pytest.mark.points(1)
def test_each_backward_runs_once():
    """y = exp(x) feeds the output directly and through u = y * 2 and w = tanh(y): a walk that
    reaches y by three paths must still run y's backward once (twice would push y's gradient to
    x twice). y is the output's first input, so a depth-first walk meets it again below w."""
    want = oracle(torch_value_and_grads, lambda tx: tx.exp() + (tx.exp() * 2.0) * torch.tanh(tx.exp()), -0.4)
    x = micrograd.Value(-0.4)
    y = x.exp()
    out = y.__add__(y.__mul__(2.0).__mul__(y.tanh()))
    out.backward()
    check.close(out.data, want[0], what="exp(x) + (2 exp(x)) * tanh(exp(x))")
    check.close(x.grad, want[1][0].item(), what="gradient of x", hint="no_topo_order")


def _sum_of(n):
    Value = unwrap(micrograd.Value)
    xs = [Value(0.001 * i) for i in range(n)]
    total = sum(xs)
    total.backward()
    return total.data, [v.grad for v in xs]


@pytest.mark.points(2)
def test_sum_of_ten_thousand_values():
    """`sum()` over 10,000 Values is a chain 10,000 nodes deep: no recursion allowed."""
    total, grads = hinted("recursion_depth", in_one_crossing, micrograd, _sum_of, 10_000)
    check.close(total, math.fsum(0.001 * i for i in range(10_000)), what="sum of the values")
    grads = torch.tensor(grads, dtype=torch.float64)
    check.close(grads, torch.ones_like(grads), what="gradients of a sum")


def _deep_chain(x0, n):
    x = unwrap(micrograd.Value)(x0)
    y = x
    for _ in range(n):
        y = y.tanh() * 1.01 + 0.01
    y.backward()
    return y.data, x.grad


def torch_deep_chain(tx):
    ty = tx
    for _ in range(3_500):
        ty = torch.tanh(ty) * 1.01 + 0.01
    return ty


@pytest.mark.points(2)
def test_deep_chain_of_mixed_ops():
    """x -> tanh -> *1.01 -> +0.01, repeated 3,500 times (10,500 nodes deep)."""
    want = oracle(torch_value_and_grads, torch_deep_chain, 0.2)
    value, grad = hinted("recursion_depth", in_one_crossing, micrograd, _deep_chain, 0.2, 3_500)
    check.close(value, want[0], what="value at the end of the chain")
    check.close(grad, want[1][0].item(), what="gradient through 10,500 nodes")
