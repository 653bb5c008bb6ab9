"""Hidden tests for week2/micrograd: fresh, larger graphs; torch autograd (float64) is the oracle.

The graph builders below are written once and run on both engines: with your `Value` and
with float64 torch tensors standing in for Values (same operators, same methods).
"""

import random

import pytest
import torch
from hypothesis import given, settings

from graders import check, in_one_crossing, oracle, student, unwrap
from graders.testing import hinted

from .test_micrograd import programs, student_run, torch_oracle

pytestmark = pytest.mark.hidden

micrograd = student("week2.micrograd")


def torch_value(x):
    return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)


@pytest.mark.points(3)
@settings(max_examples=10)
@given(program=programs(max_ops=25))
def test_hidden_larger_random_graphs(program):
    leaves, ops = program
    want = oracle(torch_oracle, leaves, ops)
    got_out, got_grads = student_run(leaves, ops)
    check.close(got_out, want[0], what="forward value")
    check.close(torch.tensor(got_grads, dtype=torch.float64), torch.tensor(want[1], dtype=torch.float64),
                what=f"leaf gradients of {[op for op, *_ in ops]}")


def mlp_loss(Value, seed):
    """A 3-4-1 tanh MLP, mean squared error over 6 points: every weight is reused 6 times."""
    rng = random.Random(seed)
    w1 = [[Value(rng.uniform(-1, 1)) for _ in range(3)] for _ in range(4)]
    b1 = [Value(rng.uniform(-0.5, 0.5)) for _ in range(4)]
    w2 = [Value(rng.uniform(-1, 1)) for _ in range(4)]
    b2 = Value(0.1)
    loss = 0
    for _ in range(6):
        x = [rng.uniform(-2, 2) for _ in range(3)]
        target = rng.choice([-1.0, 1.0])
        hidden = [sum((wi * xi for wi, xi in zip(row, x)), b).tanh() for row, b in zip(w1, b1)]
        y = sum((w * h for w, h in zip(w2, hidden)), b2)
        loss = loss + (y - target) ** 2
    loss = loss / 6
    loss.backward()
    params = [w for row in w1 for w in row] + b1 + w2 + [b2]
    return float(loss.data), [float(p.grad) for p in params]


def _student_mlp(seed):
    return mlp_loss(unwrap(micrograd.Value), seed)


def torch_mlp(seed):
    return mlp_loss(torch_value, seed)


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [11, 12])
def test_hidden_mlp_gradients(seed):
    want = oracle(torch_mlp, seed)
    got_loss, got_grads = in_one_crossing(micrograd, _student_mlp, seed)
    check.close(got_loss, want[0], what="MLP loss")
    check.close(torch.tensor(got_grads, dtype=torch.float64), torch.tensor(want[1], dtype=torch.float64),
                what="MLP parameter gradients", hint="grad_assign")


def deep_random_graph(Value, seed, depth):
    """A chain of random in-domain ops, each also reusing an earlier node."""
    rng = random.Random(seed)
    x = Value(0.5)
    nodes = [x]
    y = x
    for _ in range(depth):
        other = nodes[rng.randrange(len(nodes))]
        kind = rng.randrange(5)
        if kind == 0:
            y = (y + other * 0.01).tanh()
        elif kind == 1:
            y = 0.5 * y - 0.1 * other.tanh()
        elif kind == 2:
            y = (y * y + 1).log() - 0.5
        elif kind == 3:
            y = 1 / (y.tanh() ** 2 + 1.5)
        else:
            y = (0.3 - y).relu() + (-y).exp() * 0.1
        nodes.append(y)
    y.backward()
    return float(y.data), float(x.grad)


def _student_deep(seed, depth):
    return deep_random_graph(unwrap(micrograd.Value), seed, depth)


def torch_deep(seed, depth):
    return deep_random_graph(torch_value, seed, depth)


@pytest.mark.points(2)
def test_hidden_deep_random_graph():
    want = oracle(torch_deep, 5, 2500)
    got = hinted("recursion_depth", in_one_crossing, micrograd, _student_deep, 5, 2500)
    check.close(got[0], want[0], what="value at the end of the graph")
    check.close(got[1], want[1], what="gradient of the input through the graph")
