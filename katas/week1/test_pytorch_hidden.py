"""Hidden tests for week1/pytorch: fresh seeds, sizes and optimizers, expected values from the
reference or from this file's own loops; the two trainings again at other seeds."""

import functools

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from graders import check, in_one_crossing, oracle, reference, student, unwrap
from graders.testing import FLOAT32_REDUCTION, hinted, randn

from .test_pytorch import (Net, _labels_per_batch, _train_digits_classifier, _transfer_to_new_digits, forward_mistake,
                           loader_of, params_of, seed_parameters, seeded_layers, small_batch, std_mistake)

pytestmark = pytest.mark.hidden

pytorch = student("week1.pytorch")
model = reference("week1.pytorch")


@pytest.mark.points(2)
@pytest.mark.parametrize("widths", [[20, 7, 7, 3], [5, 9], [16, 16, 16], [3, 40, 2]])
def test_mlp_forward_on_fresh_layers(widths):
    weights, biases = seeded_layers(widths, seed=100 + sum(widths))
    x = randn(6, widths[0], seed=200 + sum(widths), scale=2.0)
    out = hinted("weights_in_out", pytorch.mlp_forward, x, weights, biases)
    check.close(out, model.mlp_forward(x, weights, biases), hint=oracle(forward_mistake, out, x, weights, biases),
                what=f"logits of layers {widths}")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [1, 2])
def test_standardizer_on_fresh_float64_data(seed):
    x_train = randn(50, 8, seed=300 + seed, dtype=torch.float64, scale=4.0, shift=3.0)
    x_train[:, seed] = 7.0  # a constant feature
    x_test = randn(20, 8, seed=310 + seed, dtype=torch.float64, scale=4.0, shift=3.0)
    stats = pytorch.fit_standardizer(x_train)
    want = model.fit_standardizer(x_train)
    check.close(stats[0], want[0], what="float64 mean")
    check.close(stats[1], want[1], what="float64 std", hint=oracle(std_mistake, stats[1], x_train))
    check.close(pytorch.standardize(x_test, stats[0], stats[1]), model.standardize(x_test, want[0], want[1]),
                what="standardized float64 test split", hint="refit_on_test")


def reference_loader_labels(make_loader, n, batch_size, shuffle, seed, epochs):
    """The reference's make_loader over labels 0..n-1 (only through oracle(...))."""
    ds = TensorDataset(torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3), torch.arange(n))
    loader = make_loader(ds, batch_size, shuffle, seed)
    return [[yb.tolist() for _, yb in loader] for _ in range(epochs)]


@pytest.mark.points(2)
@pytest.mark.parametrize("n,batch_size,shuffle,seed", [(23, 7, True, 3), (23, 7, True, 11), (23, 6, False, 4),
                                                      (9, 9, True, 2)])
def test_make_loader_on_fresh_sizes_and_seeds(n, batch_size, shuffle, seed):
    got = in_one_crossing(pytorch, _labels_per_batch, n, batch_size, shuffle, seed, 2)
    check.equal([len(b) for b in got[0]], [min(batch_size, n - i) for i in range(0, n, batch_size)],
                hint="loader_drop_last", what=f"batch sizes of {n} samples by {batch_size}")
    check.equal(got, oracle(reference_loader_labels, model.make_loader, n, batch_size, shuffle, seed, 2),
                hint="loader_seed", what=f"labels per batch over two epochs (shuffle={shuffle}, seed={seed})")


def shuffled_loader(x, y, batch_size, seed):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def adamw(params):
    return torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)


def _train_epochs_shuffled(seed, x, y, batch_size, epochs):
    """Several epochs of train_one_epoch on the tests' Net, AdamW and a shuffled loader (one crossing)."""
    net = Net(seed)
    optimizer = adamw(net.parameters())
    loader = shuffled_loader(x, y, batch_size, seed)
    losses = [unwrap(pytorch.train_one_epoch)(net, loader, optimizer) for _ in range(epochs)]
    return losses, params_of(net)


def own_epochs_shuffled(seed, x, y, batch_size, epochs):
    """The same with this file's loop (only through oracle(...))."""
    net = Net(seed)
    optimizer = adamw(net.parameters())
    loader = shuffled_loader(x, y, batch_size, seed)
    losses = []
    for _ in range(epochs):
        total, seen = 0.0, 0
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(yb), seen + len(yb)
        losses.append(total / seen)
    return losses, params_of(net)


@pytest.mark.points(3)
@pytest.mark.parametrize("n,batch_size", [(45, 10), (33, 32)])
def test_train_one_epoch_with_adamw_and_a_shuffled_loader(n, batch_size):
    x, y = small_batch(n, seed=400 + n)
    expected = oracle(own_epochs_shuffled, 401, x, y, batch_size, 3)
    got = in_one_crossing(pytorch, _train_epochs_shuffled, 401, x, y, batch_size, 3)
    for i, p in enumerate(got[1]):
        check.close(p, expected[1][i], what=f"parameter {i} after 3 epochs", hint="no_zero_grad",
                    likely_if="your loss is a mean over samples", **FLOAT32_REDUCTION)
    for epoch in range(3):
        check.close(got[0][epoch], expected[0][epoch], what=f"loss of epoch {epoch}", hint="loss_mean_of_batches",
                    **FLOAT32_REDUCTION)


def _evaluate_net(seed, x, y, batch_size):
    """evaluate on the tests' Net with Dropout(p=1.0), in train mode (one crossing)."""
    return unwrap(pytorch.evaluate)(Net(seed, dropout=1.0), loader_of(x, y, batch_size))


def reference_evaluation(evaluate, seed, x, y, batch_size):
    """(only through oracle(...))"""
    return evaluate(Net(seed, dropout=1.0), loader_of(x, y, batch_size))


@pytest.mark.points(2)
@pytest.mark.parametrize("n,batch_size,seed", [(31, 9, 501), (64, 64, 502)])
def test_evaluate_on_fresh_models(n, batch_size, seed):
    x, y = small_batch(n, seed=seed)
    expected = oracle(reference_evaluation, model.evaluate, seed, x, y, batch_size)
    got = in_one_crossing(pytorch, _evaluate_net, seed, x, y, batch_size)
    check.close(got[0], expected[0], what="mean loss per sample", hint="evaluate_without_eval",
                likely_if="the public test of evaluate passes")
    check.close(got[1], expected[1], what="accuracy", hint="evaluate_mean")


def _transfer_facts(seed, sizes, n_new, x):
    """transfer on a seeded MLP of these sizes; plain facts about the new and the old model."""
    pretrained = seed_parameters(unwrap(pytorch.MLP)(*sizes), seed)
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    new = unwrap(pytorch.transfer)(pretrained, n_new)
    body = new.body.state_dict()
    return {
        "body": sorted(body) == sorted(k[5:] for k in before if k.startswith("body."))
                and all(torch.equal(v, before[f"body.{k}"]) for k, v in body.items()),
        "frozen": [p.requires_grad for p in new.body.parameters()],
        "head": list(new.head.weight.shape),
        "pretrained": all(torch.equal(v, before[k]) for k, v in pretrained.state_dict().items())
                      and all(p.requires_grad for p in pretrained.parameters()),
        "logits": list(new(x).shape),
    }


@pytest.mark.points(2)
@pytest.mark.parametrize("sizes,n_new", [((20, (16, 12, 8), 7), 3), ((9, (5,), 4), 11)])
def test_transfer_on_other_sizes(sizes, n_new):
    x = randn(5, sizes[0], seed=600)
    got = in_one_crossing(pytorch, _transfer_facts, 601, sizes, n_new, x)
    check.that(got["body"], "the new body's state_dict should equal the pretrained body's", hint="transfer_reinit_body")
    check.that(got["pretrained"], "the pretrained model changed (weights or requires_grad)",
               hint="transfer_mutates_pretrained")
    check.equal(got["frozen"], [False] * (2 * len(sizes[1])), what="requires_grad of the new body's parameters",
                hint="transfer_not_frozen")
    check.equal(got["head"], [n_new, sizes[1][-1]], what="the new head's weight shape", hint="mlp_layout")
    check.equal(got["logits"], [5, n_new], what="shape of the new model's logits")


@pytest.mark.points(2)
def test_digits_classifier_at_another_seed():
    """The reference scores 0.975 at seed 1 (0.969-0.975 over seeds 0-4): floor 0.95, as public."""
    losses, accuracy = in_one_crossing(pytorch, _train_digits_classifier, 1)
    check.that(accuracy >= 0.95, f"test accuracy {accuracy:.3f} is below the floor 0.95 (the reference: 0.975 here)")


@pytest.mark.points(2)
def test_transfer_at_another_seed():
    """The reference scores 0.817 at seed 3 (0.70-0.87 over 20 seeds): floor 0.70, as public."""
    got = in_one_crossing(pytorch, _transfer_to_new_digits, 3)
    check.that(got["body_unchanged"], "training the new head moved the frozen body", hint="transfer_not_frozen")
    check.that(got["accuracy"] >= 0.70,
               f"accuracy on digits 5-9 {got['accuracy']:.3f} is below the floor 0.70 (the reference: 0.817 here)")
