"""Kata: micrograd, a scalar autograd engine.

Build the engine behind backpropagation, one float at a time (after Karpathy's micrograd).
Every operation makes a new `Value` that remembers its inputs (`_prev`) and a closure
(`_backward`) that pushes the output's gradient to those inputs by the chain rule.
`backward()` then visits the graph from the output back to the leaves.

    >>> a = Value(2.0); b = Value(-3.0)
    >>> c = a * b + a          # c = -4.0; note `a` is used twice
    >>> c.backward()
    >>> a.grad, b.grad         # dc/da = b + 1, dc/db = a
    (-2.0, 2.0)

Rules the tests hold you to (torch autograd in float64 is the oracle):
- `.data` is a Python float; `.grad` starts at 0.0.
- Operators: `+ - * /` between Values and numbers on either side (so you need the
  reflected forms `__radd__ __rsub__ __rmul__ __rtruediv__`: `2 - v` calls
  `v.__rsub__(2)` and must mean 2 - v, not v - 2), unary `-v`, and `v ** n` for a
  number n (int or float; fractional powers are only used on positive values).
- `relu()`, `tanh()`, `exp()`, `log()` (natural log). The gradient of relu at exactly 0
  is 0, as in torch.
- `backward()` sets the output's grad to 1.0 and runs every node's `_backward` once, in
  reverse topological order: a node may push its gradient to its inputs only after ALL
  the nodes that use it have pushed theirs. Tests call it once per fresh graph.
- Gradients ACCUMULATE (`+=`): a node used twice (`a * a`, or `a` in `a * b + a`)
  receives a contribution from each use.
- Graphs 10,000 nodes deep must work: `sum(values)` over thousands of Values builds a
  chain that deep, and a recursive topological sort hits Python's recursion limit. Build
  the order with an explicit stack (iterative depth-first search).

Must catch (each is a test with a hint): `grad =` instead of `+=`; backward without a
topological order; a wrong power rule (d/dx x**n = n * x**(n-1)); sign errors in
`__rsub__` / `__rtruediv__`; relu's gradient at 0; recursion on deep graphs.

Run time: `pytest katas/week2/test_micrograd.py` takes about 3 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""
import math


class Value:
    """A scalar node of the computation graph.

    Args:
        data: the scalar (stored as a float).
        _children: the Values this one was computed from (leave empty for leaves).
        _op: a label for debugging (e.g. "+", "tanh").
    """

    def __init__(self, data: float, _children: tuple = (), _op: str = ""):
        raise NotImplementedError

    def __add__(self, other):
        """self + other (other: Value or number). d(out)/d(self) = d(out)/d(other) = 1."""
        raise NotImplementedError

    def __mul__(self, other):
        """self * other. d(out)/d(self) = other, d(out)/d(other) = self."""
        raise NotImplementedError

    def __pow__(self, exponent):
        """self ** exponent for a number exponent: d/dx x**n = n * x**(n-1)."""
        raise NotImplementedError

    def relu(self):
        """max(0, x); gradient 1 where x > 0 and 0 elsewhere (0 at exactly x == 0)."""
        raise NotImplementedError

    def tanh(self):
        """tanh(x); gradient 1 - tanh(x)**2."""
        raise NotImplementedError

    def exp(self):
        """e**x; gradient e**x."""
        raise NotImplementedError

    def log(self):
        """Natural log (x > 0); gradient 1/x."""
        raise NotImplementedError

    def backward(self):
        """Seed self.grad = 1.0, then run `_backward` of every node in reverse topological order.

        Build the topological order without recursion (an explicit stack), so that a
        10,000-deep graph works.
        """
        raise NotImplementedError

    def __neg__(self):
        """-self."""
        raise NotImplementedError

    def __radd__(self, other):
        """other + self, where other is a number (e.g. `sum()` starts from 0)."""
        raise NotImplementedError

    def __sub__(self, other):
        """self - other."""
        raise NotImplementedError

    def __rsub__(self, other):
        """other - self (NOT self - other): `2 - v` for a number 2."""
        raise NotImplementedError

    def __rmul__(self, other):
        """other * self."""
        raise NotImplementedError

    def __truediv__(self, other):
        """self / other."""
        raise NotImplementedError

    def __rtruediv__(self, other):
        """other / self (NOT self / other): `1 / v` for a number 1."""
        raise NotImplementedError

    def __repr__(self):
        return f"Value(data={getattr(self, 'data', None)}, grad={getattr(self, 'grad', None)})"
