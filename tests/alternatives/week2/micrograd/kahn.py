"""micrograd written differently: every op stores local derivatives, backward uses Kahn's algorithm."""
import math
from collections import defaultdict


class Value:
    def __init__(self, data, _children=(), _op="", _local=()):
        self.data = float(data)
        self.grad = 0.0
        self._prev = tuple(_children)
        self._local = tuple(_local)  # d(self)/d(child) for each child, same order
        self._op = _op

    @staticmethod
    def _lift(x):
        return x if isinstance(x, Value) else Value(x)

    def __add__(self, other):
        other = Value._lift(other)
        return Value(self.data + other.data, (self, other), "+", (1.0, 1.0))

    def __radd__(self, other):
        return Value._lift(other) + self

    def __sub__(self, other):
        other = Value._lift(other)
        return Value(self.data - other.data, (self, other), "-", (1.0, -1.0))

    def __rsub__(self, other):
        return Value._lift(other) - self

    def __mul__(self, other):
        other = Value._lift(other)
        return Value(self.data * other.data, (self, other), "*", (other.data, self.data))

    def __rmul__(self, other):
        return Value._lift(other) * self

    def __truediv__(self, other):
        other = Value._lift(other)
        q = self.data / other.data
        return Value(q, (self, other), "/", (1.0 / other.data, -q / other.data))

    def __rtruediv__(self, other):
        return Value._lift(other) / self

    def __neg__(self):
        return Value(-self.data, (self,), "neg", (-1.0,))

    def __pow__(self, n):
        return Value(self.data**n, (self,), "pow", (n * self.data ** (n - 1),))

    def relu(self):
        return Value(max(self.data, 0.0), (self,), "relu", (float(self.data > 0),))

    def tanh(self):
        t = math.tanh(self.data)
        return Value(t, (self,), "tanh", (1 - t**2,))

    def exp(self):
        e = math.exp(self.data)
        return Value(e, (self,), "exp", (e,))

    def log(self):
        return Value(math.log(self.data), (self,), "log", (1 / self.data,))

    def backward(self):
        # count, for every node, how many edges lead into it from its users
        users = defaultdict(int)
        seen, stack = {id(self)}, [self]
        while stack:
            node = stack.pop()
            for child in node._prev:
                users[id(child)] += 1
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append(child)
        self.grad = 1.0
        ready = [self]
        while ready:
            node = ready.pop()
            for child, local in zip(node._prev, node._local):
                child.grad += local * node.grad
                users[id(child)] -= 1
                if users[id(child)] == 0:
                    ready.append(child)
